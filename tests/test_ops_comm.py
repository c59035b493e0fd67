"""memsim.ops.comm: the libraries' algorithm switch points and the bandwidth laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.hardware import load_gpu
from memsim.ops import comm
from memsim.ops.classes import kernel_class


def _algo(nbytes, gpus, backend="trtllm", gpu="h100-sxm"):
    return str(comm.all_reduce_algorithm(nbytes, gpus, gpu=gpu, backend=backend))


def test_trtllm_switch_points() -> None:
    # TensorRT-LLM AUTO: the custom kernel measured fastest per shape (selectStrategyLookUpTable,
    # customAllReduceUtils.h) inside the workspace (16 MB on 2 ranks, 8 MB beyond), then NCCL
    sizes = np.geomspace(1e3, 8e6, 25)
    for G in (4, 8):
        algo = comm.all_reduce_algorithm(sizes, G, gpu="h200", backend="trtllm")
        one, two = (kernel_class(f"allreduce/{a}", "trtllm") for a in ("oneshot", "twoshot"))
        hop = load_gpu("h200").interconnect.nvlink_latency_s   # oneshot 1 hop, twoshot 4
        t_one = one.floor_s + hop + (G - 1) * sizes / (450e9 * one.eff("link"))
        t_two = two.floor_s + 4 * hop + 2 * (G - 1) / G * sizes / (450e9 * two.eff("link"))
        assert algo.tolist() == np.where(t_one <= t_two, "oneshot", "twoshot").tolist()
    assert _algo(1e3, 8) == "oneshot"
    assert _algo(8e6 + 1, 8) in ("ring", "nvls") and _algo(16e6, 2) != "ring"
    assert _algo(17e6, 2) == "ring"  # NVLS needs more than 2 ranks


def test_vllm_switch_points() -> None:
    # vLLM custom_all_reduce.cuh: 1-stage for 2 ranks, < 512 KiB on ≤ 4, < 256 KiB on ≤ 8;
    # custom all-reduce below max_size = 8 MiB, NCCL above.
    assert _algo(4 * 2**20, 2, "vllm") == "oneshot"
    assert _algo(256 * 2**10 - 1, 8, "vllm") == "oneshot"
    assert _algo(256 * 2**10, 8, "vllm") == "twoshot"
    assert _algo(512 * 2**10, 4, "vllm") == "twoshot"
    assert _algo(8 * 2**20, 8, "vllm") in ("ring", "nvls")


def test_no_backend_is_the_default_backend() -> None:
    sizes = np.geomspace(1e2, 1e9, 15)
    for G in (2, 8):
        assert np.array_equal(comm.all_reduce(sizes, G, gpu="b200").time_s,
                              comm.all_reduce(sizes, G, gpu="b200", backend="trtllm").time_s)


def test_one_gpu_costs_nothing_and_a_group_beyond_the_domain_uses_nccl() -> None:
    assert comm.all_reduce(1e6, 1).time_s == 0.0
    assert _algo(1e3, 16) == "ring"  # 16 H100s: two HGX boards, no custom all-reduce


@given(st.floats(1e2, 1e9), st.sampled_from([2, 4, 8]), st.sampled_from(["trtllm", "vllm"]))
def test_time_at_least_floor_and_link_bytes_over_link(nbytes: float, gpus: int,
                                                      backend: str) -> None:
    p = comm.all_reduce(nbytes, gpus, gpu="h200", backend=backend)
    link = load_gpu("h200").interconnect.nvlink_bytes_per_s_per_direction
    assert p.time_s >= p.launch_s > 0
    assert p.time_s >= p.detail["link_bytes"] / link  # never faster than the wire


def test_ring_bus_bandwidth_formula() -> None:
    # nccl-tests PERFORMANCE.md: busBw = algBw · 2(n−1)/n; large messages approach the link.
    M, G = 1e9, 4
    p = comm.all_reduce(M, G, gpu="a100-sxm4-80gb")  # no NVLS on A100
    assert p.detail["algorithm"] == "ring"
    cls = kernel_class("allreduce/ring", "trtllm")
    link = 300e9 * cls.eff("link")
    # 1 GB runs NCCL's Simple protocol: its base latency over LL's (8.4 − 6.6 µs) and its
    # NVLink step latency (3.4 µs, the profile's 0.6 µs plus NCCL's 2.8 µs difference)
    fill = 1 + cls.efficiency.get("fill", 0.0) / (G - 1)
    assert p.terms_s["link"] == pytest.approx(2 * (G - 1) / G * M * fill / link + 1.8e-6
                                              + 2 * (G - 1) * (3.4e-6 + cls.row_s))


def test_faster_links_are_faster() -> None:
    M = np.array([1e5, 1e7, 1e9])
    h100 = comm.all_reduce(M, 8, gpu="h100-sxm").time_s
    assert np.all(comm.all_reduce(M, 8, gpu="b200").time_s <= h100)
    assert np.all(comm.all_reduce(M, 8, gpu="h800-sxm").time_s >= h100)


def test_all_gather_all_to_all_p2p() -> None:
    assert comm.all_gather(1e8, 8).time_s < comm.all_reduce(1e8, 8, backend="vllm").time_s * 2
    assert comm.all_to_all(1e8, 16, gpu="b200").time_s > comm.all_to_all(1e8, 16,
                                                                          gpu="gb200").time_s
    a2a = kernel_class("nccl/alltoall")   # a send is the alltoall kernel's, to one peer
    # 1 GB to one peer: NCCL's Simple protocol (its base and step latency over LL's: 1.8 +
    # 2.8 µs, tuning.cc) over the whole link
    assert comm.p2p(1e9).time_s == pytest.approx(
        a2a.floor_s + 1e9 / (450e9 * a2a.eff("link")) + 0.6e-6 + a2a.row_s + 4.6e-6)


def test_nccl_all_to_all_sends_to_every_peer_at_once() -> None:
    # nccl-tests alltoall: one ncclSend/ncclRecv per peer in one group — one latency step,
    # (G − 1)/G of the buffer over the link
    # (G − 1)/G of the buffer over the link; LL up to 16 KiB a peer (NCCL_P2P_LL_THRESHOLD),
    # Simple beyond (+1.8 µs base, +2.8 µs step latency, the whole link)
    cls = kernel_class("nccl/alltoall")
    for G in (2, 8):
        M = 1e6
        p = comm.all_to_all(M, G, gpu="h200")
        assert p.detail["link_bytes"] == pytest.approx((G - 1) / G * M)
        assert p.terms_s["link"] == pytest.approx((G - 1) / G * M / (450e9 * cls.eff("link"))
                                                  + 0.6e-6 + cls.row_s + 4.6e-6)
        M = 16384.0 * G   # 16 KiB a peer: still LL
        ll = min(141e9, 0.5 * 450e9 * cls.eff("link"))
        assert comm.all_to_all(M, G, gpu="h200").terms_s["link"] == pytest.approx(
            (G - 1) / G * M / ll + 0.6e-6 + cls.row_s)


def test_nccl_table_runs_nccls_algorithms_and_pcie_gpus_have_no_custom_all_reduce() -> None:
    sizes = np.geomspace(1e3, 1e9, 13)
    assert set(comm.nccl_all_reduce(sizes, 8, gpu="h200").detail["algorithm"]) <= {"ring",
                                                                                 "nvls"}
    for backend in ("trtllm", "vllm"):   # L40S: PCIe only, the frameworks call NCCL
        assert set(comm.all_reduce_algorithm(sizes, 4, gpu="l40s", backend=backend)) == {"ring"}
    assert _algo(1e3, 8) == "oneshot"    # NVLink: the custom kernel


def test_remote_ranks_per_token_is_the_hypergeometric_expectation() -> None:
    from math import comb

    # DeepSeek-V3: 256 experts, top-8, EP 8 → 32 experts per rank
    assert comm.remote_ranks_per_token(256, 8, 8) == pytest.approx(
        7 * (1 - comb(224, 8) / comb(256, 8)))
    assert comm.remote_ranks_per_token(256, 8, 1) == 0.0
    assert comm.remote_ranks_per_token(8, 8, 8) == pytest.approx(7.0)   # one expert per rank


def test_group_limited_routing_reaches_fewer_ranks() -> None:
    # DeepSeek-V3 (n_group 8, topk_group 4) on EP 8: one group per rank, a token's experts in
    # 4 groups, each chosen for its best two experts: 7 · (1 − C(7, 4)/C(8, 4)) = 3.5 ranks
    assert comm.remote_ranks_per_token(256, 8, 8, 8, 4) == pytest.approx(3.5)
    for ep in (2, 4, 8, 16, 32):
        grouped = comm.remote_ranks_per_token(256, 8, ep, 8, 4)
        assert 0 < grouped <= comm.remote_ranks_per_token(256, 8, ep) + 1e-12
    assert comm.remote_ranks_per_token(256, 8, 8, 1, 1) == comm.remote_ranks_per_token(256, 8, 8)
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "gpu": "h200"}
    assert (comm.moe_all_to_all(4096, groups=8, topk_groups=4, **kw).time_s
            < comm.moe_all_to_all(4096, **kw).time_s)


@given(st.integers(1, 4096), st.sampled_from([2, 4, 8, 16]), st.sampled_from([1, 2, 6, 8]),
       st.sampled_from(["dispatch", "combine"]), st.sampled_from(["trtllm", "vllm"]))
def test_moe_dispatch_laws(tokens: int, ep: int, top_k: int, phase: str, backend: str) -> None:
    kw = {"hidden": 7168, "top_k": top_k, "experts": 256, "ep": ep, "phase": phase,
          "gpu": "h200", "backend": backend}
    normal = comm.moe_all_to_all(tokens, mode="normal", **kw)
    ll = comm.moe_all_to_all(tokens, mode="low_latency", **kw)
    # low latency: one copy per (token, expert); normal: one per rank holding one of its
    # experts; the warps copy the own rank's too, but only the (G − 1)/G that leave the
    # rank cross the link
    assert ll.detail["copies"] == pytest.approx(tokens * top_k)
    assert normal.detail["copies"] <= ll.detail["copies"] * (1 + 1e-12)
    assert normal.detail["copies"] <= tokens * min(top_k, ep) * (1 + 1e-12)
    wire = comm.A2A_WIRE_BYTES["bf16"] * 7168
    domain = load_gpu("h200").interconnect.scale_up_gpus   # beyond it: nodes, not ranks
    n = ep if ep <= domain else -(-ep // domain)
    assert normal.detail["link_bytes"] == pytest.approx(
        normal.detail["copies"] * wire * (n - 1) / n)
    assert ll.detail["link_bytes"] == pytest.approx(ll.detail["copies"] * wire * (ep - 1) / ep)
    link = load_gpu("h200").interconnect.link_bytes_per_s(ep)
    for p in (normal, ll):
        assert p.time_s >= p.launch_s > 0
        assert p.time_s >= p.detail["link_bytes"] / link   # never faster than the wire
    fp8 = comm.moe_all_to_all(tokens, mode="low_latency", dtype="fp8", **kw)
    assert (fp8.time_s < ll.time_s) if phase == "dispatch" else fp8.time_s == ll.time_s


@given(st.integers(1, 65536), st.sampled_from(["normal", "low_latency"]),
       st.sampled_from(["dispatch", "combine"]), st.floats(0.0, 1.0))
def test_moe_a2a_kernels_hide_behind_the_host_work_after_their_launch(
        tokens: int, mode: str, phase: str, host_share: float) -> None:
    # an eager call (vLLM's prepare / finalize as the collector times them): the kernels
    # run under the host work after their launch (host_s, part of the floor), so its time
    # is the floor alone while the GPU work beyond the floor is shorter than host_s, and
    # floor + that work − host_s beyond; the GPU work is read off the same call with no
    # host work (time − floor), not recomputed from the terms. A CUDA-graph replay
    # (eager=False, the default) has no host work: it pays floor − host_s + GPU work
    import dataclasses

    from memsim.ops.classes import trial_classes

    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": mode, "phase": phase,
          "gpu": "h200", "backend": "vllm"}
    cls = kernel_class(f"a2a/{mode}/{phase}", "vllm")
    # the host work *before* the launch (prelaunch_s) has its own law, below
    no_host = dataclasses.replace(cls, host_s=0.0, prelaunch_s=0.0)
    host = dataclasses.replace(cls, host_s=host_share * cls.floor_s, prelaunch_s=0.0)
    with trial_classes({cls.name: no_host}):
        ref = comm.moe_all_to_all(tokens, eager=True, **kw)
    gpu_s = float(ref.time_s - cls.floor_s)
    assert gpu_s > 0
    with trial_classes({cls.name: host}):
        eager, more = (comm.moe_all_to_all(t, eager=True, **kw) for t in (tokens, tokens + 64))
        graphed = comm.moe_all_to_all(tokens, **kw)
    assert eager.time_s == pytest.approx(cls.floor_s + max(0.0, gpu_s - host.host_s),
                                         rel=1e-9)
    assert more.time_s >= eager.time_s
    assert (eager.bound == "latency") == (cls.floor_s > gpu_s - host.host_s)
    assert graphed.time_s == pytest.approx(float(ref.time_s) - host.host_s, rel=1e-12)


def test_host_work_is_not_applied_to_graph_captured_or_sglang_calls() -> None:
    # whole-model predictions: the decode's low-latency calls run inside a CUDA graph (no
    # host work), SGLang's dispatcher is not vLLM's code (its classes hold no host_s). A
    # replay pays floor − host_s + GPU work, an eager call floor + max(0, GPU − host_s):
    # the same once the GPU work outlasts host_s, the eager call dearer below it
    from memsim.inference.comm import moe_a2a_s

    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "gpu": load_gpu("h200"),
          "dtype": "bf16", "phase": "dispatch"}
    cls = kernel_class("a2a/normal/dispatch", "vllm")
    assert cls.host_s > 0   # the class this law is about holds host work
    big = 8192.0
    graphed = comm.moe_all_to_all(big, mode="normal", backend="vllm", **kw)
    eager = comm.moe_all_to_all(big, mode="normal", backend="vllm", eager=True, **kw)
    assert float(eager.time_s - cls.floor_s) > cls.host_s   # the GPU work outlasts it
    assert eager.time_s == pytest.approx(graphed.time_s)
    small = {e: comm.moe_all_to_all(1.0, mode="normal", backend="vllm", eager=e, **kw)
             for e in (False, True)}
    assert small[True].time_s == pytest.approx(cls.floor_s)   # hidden behind host_s
    assert small[False].time_s < small[True].time_s
    assert moe_a2a_s(big, mode="normal", backend="vllm", **kw) == pytest.approx(
        graphed.time_s)
    assert moe_a2a_s(big, mode="normal", backend="vllm", eager=True, **kw) == pytest.approx(
        eager.time_s)
    assert kernel_class("a2a/normal/dispatch", "sglang").host_s == 0.0
    for phase in ("dispatch", "combine"):
        for b in ("vllm", "sglang", "trtllm"):
            assert kernel_class(f"a2a/low_latency/{phase}", b).host_s == 0.0


def test_moe_dispatch_bad_input() -> None:
    from memsim.errors import InputError

    with pytest.raises(InputError, match="mode"):
        comm.moe_all_to_all(16, hidden=7168, top_k=8, experts=256, ep=8, mode="fast")
    with pytest.raises(InputError, match="experts"):
        comm.moe_all_to_all(16, hidden=7168, top_k=8, experts=4, ep=2)


def test_nccl_ring_steps_pay_the_hop_and_the_kernels_own_step_time() -> None:
    # all-gather: G − 1 ring steps, (G − 1)/G of the gathered buffer over the link; a small
    # message runs NCCL's LL protocol (tuning.cc: the lowest latency, half the link)
    cls, M = kernel_class("nccl/all_gather"), 4e3
    for G in (2, 4, 8):
        p = comm.all_gather(M, G, gpu="h100-sxm")
        traffic = (G - 1) / G * M * (1 + cls.efficiency.get("fill", 0.0) / (G - 1))
        assert p.terms_s["link"] == pytest.approx(
            traffic / min(141e9, 0.5 * 450e9 * cls.eff("link")) + (G - 1) * (0.6e-6 + cls.row_s))


def test_nccl_protocol_switch_follows_nccls_cost_model() -> None:
    # LL for small messages, LL128 in between (NVLink only), Simple for large ones; LL's
    # bandwidth is capped at llMaxBw: 141 GB/s on Hopper, 282 GB/s on Blackwell (tuning.cc)
    cls = kernel_class("nccl/all_gather")
    sizes = np.geomspace(1e3, 1e9, 61)
    _, proto = comm.nccl_ring_s(sizes, 7, 8, load_gpu("h100-sxm"), cls)
    order = [p for i, p in enumerate(proto) if i == 0 or proto[i - 1] != p]
    assert order == ["LL", "LL128", "Simple"]
    _, pcie = comm.nccl_ring_s(sizes, 7, 8, load_gpu("l40s"), cls)
    assert "LL128" not in set(pcie)
    big = np.array([1e8])
    hopper, p = comm.nccl_ring_s(big, 1, 2, load_gpu("h100-sxm"), cls)
    assert p[0] == "Simple" and hopper < big / 141e9   # LL would be slower: capped
    for gpu in ("h100-sxm", "b200"):
        t, proto = comm.nccl_ring_s(sizes, 7, 8, load_gpu(gpu), cls)
        assert np.all(np.diff(t) >= 0)   # a larger message never costs less


@given(st.floats(1e8, 1e10), st.sampled_from([2, 4]))
def test_nccl_ring_bus_bandwidth_grows_with_the_group(nbytes: float, gpus: int) -> None:
    # the pipeline's fill and drain is one chunk (M/G) per pass: a larger group spreads it
    # over more steps, so the bus bandwidth (G − 1)/G · M / t of a large message (the steps'
    # latencies negligible) does not fall with G
    bus = [(G - 1) / G * nbytes / comm.all_gather(nbytes, G, gpu="h200").time_s
           for G in (gpus, 2 * gpus)]
    assert bus[1] >= bus[0]


def test_nvls_bandwidth_scales_with_nccls_efficiency_per_architecture() -> None:
    # tuning.cc nvlsEfficiency: Hopper 0.85, Blackwell 0.74; the class is fitted on Hopper
    cls, M, G = kernel_class("nccl/all_reduce/nvls"), 1e9, 8
    for gpu, link, ratio in (("h100-sxm", 450e9, 1.0), ("b200", 900e9, 0.74 / 0.85)):
        link_s, traffic, _ = comm._algorithm_s("nvls", np.array([M]), G, load_gpu(gpu),
                                               comm.NCCL)
        assert traffic[0] == pytest.approx((G + 1) / G * M)
        assert link_s[0] == pytest.approx(traffic[0] / (link * ratio * cls.eff("link")))


def _slower_hop(gpu: str, extra_s: float):
    """``gpu``'s profile with its NVLink hop latency ``extra_s`` longer."""
    g = load_gpu(gpu)
    link = g.interconnect.model_copy(
        update={"nvlink_latency_s": g.interconnect.nvlink_latency_s + extra_s})
    return g.model_copy(update={"interconnect": link})


@given(st.floats(1e2, 5e6), st.sampled_from([2, 4, 8]), st.floats(1e-8, 2e-6))
def test_each_hop_on_the_critical_path_costs_the_profiles_nvlink_latency(
        nbytes: float, gpus: int, extra_s: float) -> None:
    # a slower hop costs each kernel its NVLink latencies in a row, nothing else: vLLM's
    # custom kernels their barriers and peer loads (comm.CUSTOM_HOPS), a ring one hop per
    # step (2(G − 1) for all-reduce, G − 1 for all-gather), NCCL's sends one
    base, slow = load_gpu("h200"), _slower_hop("h200", extra_s)
    p = comm.all_reduce(nbytes, gpus, gpu=base, backend="vllm")
    q = comm.all_reduce(nbytes, gpus, gpu=slow, backend="vllm")
    algo = str(p.detail["algorithm"])
    assert algo == str(q.detail["algorithm"])   # vLLM's rule reads sizes, not times
    hops = {"ring": 2 * (gpus - 1), "nvls": 0}.get(algo, comm.CUSTOM_HOPS.get(("vllm", algo)))
    assert q.time_s - p.time_s == pytest.approx(hops * extra_s, rel=1e-6, abs=1e-15)
    ag = [comm.all_gather(nbytes, gpus, gpu=g).time_s for g in (base, slow)]
    assert ag[1] - ag[0] == pytest.approx((gpus - 1) * extra_s, rel=1e-6, abs=1e-15)
    a2a = [comm.all_to_all(nbytes, gpus, gpu=g).time_s for g in (base, slow)]
    assert a2a[1] - a2a[0] == pytest.approx(extra_s, rel=1e-6, abs=1e-15)


@given(st.integers(1, 65536), st.floats(1e-8, 2e-6), st.sampled_from(["normal", "low_latency"]),
       st.sampled_from(["dispatch", "combine"]), st.sampled_from(["trtllm", "vllm"]))
def test_moe_a2a_per_copy_cost_is_nvlink_round_trips(
        tokens: int, extra_s: float, mode: str, phase: str, backend: str) -> None:
    # DeepEP's normal kernels' per-copy cost is their chunks' NVLink round trips (remote
    # head read, system-scope release): it scales with the profile's hop over the fitted
    # GPUs' hop; the low-latency kernels' copies are stores nothing waits on
    # (internode_ll.cu), so theirs does not. The link's bytes, the floor and the copies do
    # not move with the hop
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": mode, "phase": phase,
          "backend": backend}
    base, slow = load_gpu("h200"), _slower_hop("h200", extra_s)
    p, q = (comm.moe_all_to_all(tokens, gpu=g, **kw) for g in (base, slow))
    hop = base.interconnect.nvlink_latency_s
    assert comm.fitted_hop_s() == pytest.approx(hop)   # H100 and H200 share one hop
    ratio = (hop + extra_s) / hop if mode == "normal" else 1.0
    assert q.terms_s["copy"] == pytest.approx(p.terms_s["copy"] * ratio)
    rate = "sm_copy" if mode == "normal" else "link"
    assert q.terms_s[rate] == p.terms_s[rate] and q.launch_s == p.launch_s
    assert q.detail["copies"] == p.detail["copies"]
    assert q.time_s >= p.time_s


@pytest.mark.parametrize("mode", ["normal", "low_latency"])
def test_moe_a2a_per_copy_cost_is_the_same_inside_one_nvlink_domain(mode: str) -> None:
    # the fitted rows are all EP 8 on one node: the per-copy cost is the fitted NVLink
    # hop's, scaled by the group's own hop; GB200's EP 8 and EP 16 both stay in its 72-GPU
    # NVLink domain, so a copy costs the same at both (and a copy that crosses H200's
    # network beyond its 8-GPU domain costs more than one inside it)
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "mode": mode, "backend": "vllm"}

    def per_copy_s(gpu: str, ep: int) -> float:
        p = comm.moe_all_to_all(4096, ep=ep, gpu=gpu, **kw)
        return float(p.terms_s["copy"]) / float(p.detail["copies"])

    assert load_gpu("gb200").interconnect.scale_up_gpus >= 16
    assert per_copy_s("gb200", 16) == pytest.approx(per_copy_s("gb200", 8))
    assert per_copy_s("gb200", 8) > 0
    if mode == "normal":
        assert per_copy_s("h200", 16) > per_copy_s("h200", 8)


def test_blackwell_hop_is_slower_and_small_collectives_with_it() -> None:
    # NVIDIA/nccl#1940: the one-hop LL all-reduce takes ~3.0 µs on 8×B200 against ~2.3 on
    # H200; the B200 profile carries that difference, so a tiny collective is slower there
    # (and a large one faster: twice the NVLink bandwidth)
    h200, b200 = (load_gpu(g).interconnect.nvlink_latency_s for g in ("h200", "b200"))
    assert b200 - h200 == pytest.approx(0.7e-6)
    for fn in (comm.all_gather, comm.nccl_all_reduce):
        assert fn(1e3, 8, gpu="b200").time_s > fn(1e3, 8, gpu="h200").time_s
        assert fn(1e9, 8, gpu="b200").time_s < fn(1e9, 8, gpu="h200").time_s


def test_a_one_gpu_row_maps_to_no_time_and_no_kernel_class() -> None:
    # a collective over one GPU runs no kernel: the silicon mapper must still map the row
    from memsim.silicon import tables
    from memsim.silicon.classes import CLASSES

    cols = {"num_gpus": np.array([1, 2]), "message_size": np.array([4096, 4096]),
            "nccl_dtype": np.array(["half", "half"], dtype=object),
            "op_name": np.array(["all_gather"] * 2, dtype=object),
            "kernel_source": np.array(["NCCL"] * 2, dtype=object),
            "latency": np.array([0.01, 0.01])}
    rows = tables.Rows("h100_sxm", "comm", "nccl", "t", "nccl_perf", "synthetic", "t",
                       np.arange(2), cols)
    assert comm.all_gather(8192, 1).detail["kernel_class"] == comm.NO_CLASS
    for op in ("nccl_all_gather", "nccl_all_reduce"):
        mapped = CLASSES[op].mapper(rows, load_gpu("h100-sxm"))
        t = np.asarray(mapped.time_s["analytic"], dtype=float)
        assert not mapped.reasons and t[0] == 0.0 and t[1] > 0


@given(st.integers(1, 65536), st.floats(1.1, 4.0), st.sampled_from(["dispatch", "combine"]),
       st.sampled_from(["trtllm", "vllm"]))
def test_deepep_normal_kernels_copy_at_their_sms_rate_not_the_links(
        tokens: int, factor: float, phase: str, backend: str) -> None:
    # the normal kernels run on DeepEP's 20 SMs, whose warps set the byte rate (their share
    # of the L2 bandwidth × the class's l2 efficiency): a faster NVLink moves no byte
    # faster, a faster L2 per SM does; the low-latency kernels (every SM) ride the link.
    # The wire still bounds every transfer
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "phase": phase,
          "backend": backend}
    base = load_gpu("h200")
    link = base.interconnect.model_copy(update={
        "nvlink_bytes_per_s_per_direction":
            base.interconnect.nvlink_bytes_per_s_per_direction * factor})
    wide = base.model_copy(update={"interconnect": link})
    spec = base.spec.model_copy(update={
        "l2_bandwidth_bytes_per_s": base.spec.l2_bandwidth_bytes_per_s * factor})
    fast_l2 = base.model_copy(update={"spec": spec})
    p, w, f = (comm.moe_all_to_all(tokens, mode="normal", gpu=g, **kw)
               for g in (base, wide, fast_l2))
    cls = kernel_class(f"a2a/normal/{phase}", backend)
    rate = (comm.DEEPEP_NORMAL_SMS * base.spec.l2_bandwidth_bytes_per_s
            / base.spec.sm_count * cls.eff("l2"))
    # the SMs copy every destination's bytes, the own rank's too: n/(n − 1) of the link's
    assert p.detail["copy_bytes"] == pytest.approx(p.detail["link_bytes"] * 8 / 7)
    assert p.terms_s["sm_copy"] == pytest.approx(p.detail["copy_bytes"] / rate)
    assert w.terms_s["sm_copy"] == pytest.approx(p.terms_s["sm_copy"])
    assert f.terms_s["sm_copy"] == pytest.approx(p.terms_s["sm_copy"] / factor)
    ll, ll_wide = (comm.moe_all_to_all(tokens, mode="low_latency", gpu=g, **kw)
                   for g in (base, wide))
    assert ll_wide.terms_s["link"] == pytest.approx(ll.terms_s["link"] / factor)
    for q, g in ((p, base), (w, wide), (f, fast_l2), (ll, base)):
        assert q.time_s >= q.detail["link_bytes"] / g.interconnect.link_bytes_per_s(8)


@pytest.mark.parametrize("ep", sorted(comm.DEEPEP_INTERNODE_GBPS))
@pytest.mark.parametrize("phase", ["dispatch", "combine"])
def test_internode_normal_kernels_match_deepeps_published_rates(ep: int, phase: str) -> None:
    # golden: DeepEP's own internode benchmark (docs/legacy.md "Normal kernels with NVLink
    # and RDMA forwarding", H800 + one CX7 400 Gb/s NIC per GPU, 4096 tokens a rank, 7168
    # hidden, top-8 of 256, fp8 dispatch / bf16 combine; tests/test_internode.py @73b6ea4
    # routes with one group per node and min(nodes, 4) groups a token, and prints logical
    # GB/s: (token, node) pairs, own node included, × hidden × bytes over the kernel
    # time). memsim's logical bytes are its copies × bytes (detail["copy_bytes"]); the
    # TensorRT-LLM class is DeepEP with its defaults (no set_num_sms, no config). 15 %: the
    # published figures are one run each, and memsim's routing is the expected value
    nodes = ep // 8
    published = comm.DEEPEP_INTERNODE_GBPS[ep][0 if phase == "dispatch" else 1] * 1e9
    p = comm.moe_all_to_all(4096, hidden=7168, top_k=8, experts=256, ep=ep, phase=phase,
                            mode="normal", dtype="fp8", gpu="h800-sxm", backend="trtllm",
                            groups=nodes, topk_groups=min(nodes, 4))
    assert float(p.detail["copy_bytes"]) / float(p.time_s) == pytest.approx(published,
                                                                           rel=0.15)
    # EP 16 (2 nodes) is bound by the NVLink forwarding inside each node, EP 32 and 64 by
    # the network
    assert p.bound == ("forward" if ep == 16 else "wire")


@given(st.integers(1, 65536), st.sampled_from(["dispatch", "combine"]),
       st.sampled_from([16, 32, 64]), st.floats(1.1, 4.0))
def test_internode_wire_bound_is_the_networks_remote_bytes(
        tokens: int, phase: str, ep: int, factor: float) -> None:
    # beyond one node the bytes that leave the rank (own node's copies stay) cross the NIC
    # at DeepEP's measured share of it: the wire term is link_bytes / (network × share),
    # a faster NIC shortens it by its factor, and the time never falls below it
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": ep, "phase": phase,
          "mode": "normal", "backend": "trtllm"}
    base = load_gpu("h200")
    fast = base.model_copy(update={"interconnect": base.interconnect.model_copy(update={
        "network_bytes_per_s_per_gpu": base.interconnect.network_bytes_per_s_per_gpu
        * factor})})
    p, q = (comm.moe_all_to_all(tokens, gpu=g, **kw) for g in (base, fast))
    net = base.interconnect.network_bytes_per_s_per_gpu
    assert p.terms_s["wire"] == pytest.approx(
        p.detail["link_bytes"] / (net * comm.deepep_rdma_efficiency()))
    assert q.terms_s["wire"] == pytest.approx(p.terms_s["wire"] / factor)
    assert p.time_s >= p.launch_s + p.terms_s["wire"] * (1 - 1e-12)
    assert p.terms_s["forward"] > 0
    inside = comm.moe_all_to_all(tokens, gpu=base, **{**kw, "ep": 8})
    assert inside.terms_s["forward"] == 0.0


def test_deepep_wire_efficiency_is_the_published_fastest_wire_rate() -> None:
    # logical → wire: (N − 1)/N of the (token, node) pairs leave the node; the fastest
    # published wire rate over the 50 GB/s NIC (EP 64 dispatch: 51 × 7/8 = 44.6 GB/s)
    assert comm.deepep_rdma_wire_share(16) == 0.5
    assert comm.deepep_rdma_wire_share(64) == 7 / 8
    assert comm.deepep_rdma_efficiency() == pytest.approx(51 * 7 / 8 / 50, abs=1e-3)
    assert comm.wire_efficiency(load_gpu("h200"), 8) == 1.0
    assert comm.wire_efficiency(load_gpu("h200"), 16) == comm.deepep_rdma_efficiency()


def test_collector_rank_skew_applies_to_the_collectors_rows_only() -> None:
    # vLLM's low-latency combine waits for every rank's flag; the collector starts the
    # ranks unaligned, so its rows are short by up to skew_s. That is the benchmark's, not
    # the kernel's: a model's eager call (collector=False) never pays it less (its graphed
    # call pays no host work, prelaunch_s, and nothing else less)
    cls = kernel_class("a2a/low_latency/combine", "vllm")
    assert cls.skew_s > 0 and cls.host_s == 0.0 and cls.prelaunch_s > 0
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "gpu": "h200",
          "mode": "low_latency", "phase": "combine", "backend": "vllm"}
    big = 4096.0
    eager = comm.moe_all_to_all(big, eager=True, **kw)
    graphed = comm.moe_all_to_all(big, **kw)
    assert graphed.time_s == pytest.approx(eager.time_s - cls.prelaunch_s)
    row = comm.moe_all_to_all(big, eager=True, collector=True, **kw)
    assert float(eager.time_s - cls.floor_s) > cls.skew_s   # the GPU work outlasts it
    # at 4096 tokens the collector's clone (15 ms) hides all of prelaunch_s
    assert row.time_s == pytest.approx(eager.time_s - cls.skew_s - cls.prelaunch_s)
    for b in ("trtllm", "sglang"):
        for phase in ("dispatch", "combine"):
            for mode in ("normal", "low_latency"):
                assert kernel_class(f"a2a/{mode}/{phase}", b).skew_s == 0.0


def test_collector_clone_is_the_packed_receive_buffer_copied_at_the_profiles_copy_rate() -> None:
    # golden by hand, from the sources: collect_moe_a2a.py clones DeepEP's packed_recv_x,
    # (experts / G, G · T, hidden) bf16 (deep_ep.cpp @73b6ea4; the collector's capacity is
    # T), read + written once; H100's copy rate is its measured device-to-device copy,
    # 3.35 TB/s × 0.893 (hardware_profiles/h100-sxm.toml)
    expected_s = 2 * 256 * 16 * 7168 * 2 / (3.35e12 * 0.893)   # 117 MB: 39.2 µs
    got = comm.collector_clone_s(16, experts=256, hidden=7168, dtype="bf16",
                                 gpu=load_gpu("h100-sxm"))
    assert float(got) == pytest.approx(expected_s, rel=1e-12)
    assert float(got) == pytest.approx(39.2e-6, rel=2e-3)


@given(st.integers(1, 512), st.floats(0.0, 1.0), st.sampled_from(["h100-sxm", "h200", "b200"]))
def test_the_collectors_clone_hides_the_combines_host_work_before_its_launch(
        tokens: int, share: float, gpu: str) -> None:
    # prelaunch_s: host work before the launch, part of the floor. The collector's rows
    # (eager, collector=True) pay floor − min(prelaunch_s, clone): the clone of the dispatch
    # output runs on the GPU meanwhile; a graph replay pays floor − prelaunch_s (no host
    # work); a model's eager call pays the whole floor. Nothing else moves
    import dataclasses

    from memsim.ops.classes import trial_classes

    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": "low_latency",
          "phase": "combine", "gpu": gpu, "backend": "vllm", "dtype": "bf16"}
    cls = kernel_class("a2a/low_latency/combine", "vllm")
    prelaunch = dataclasses.replace(cls, prelaunch_s=share * cls.floor_s)
    none = dataclasses.replace(cls, prelaunch_s=0.0)
    calls = {"row": {"eager": True, "collector": True}, "eager": {"eager": True},
             "graph": {}}
    times = {}
    for name, c in (("with", prelaunch), ("without", none)):
        with trial_classes({cls.name: c}):
            times[name] = {k: float(comm.moe_all_to_all(tokens, **kw, **v).time_s)
                           for k, v in calls.items()}
    clone_s = float(comm.collector_clone_s(tokens, experts=256, hidden=7168, dtype="bf16",
                                           gpu=load_gpu(gpu)))
    hidden = {"row": min(prelaunch.prelaunch_s, clone_s), "eager": 0.0,
              "graph": prelaunch.prelaunch_s}
    for k in calls:
        assert times["with"][k] == pytest.approx(times["without"][k] - hidden[k],
                                                 rel=1e-9, abs=1e-15)


@given(st.integers(1, 256))
def test_h100s_slower_copy_makes_its_collector_combine_rows_no_slower_than_h200s(
        tokens: int) -> None:
    # H100 and H200 share the NVLink (450 GB/s a direction, the same hop) and the SM
    # clock; the collector's low-latency combine rows differ only by the clone, which
    # H100's slower HBM stretches, hiding more of the host work: H100 ≤ H200 there, and
    # the two are equal where nothing is hidden (a graph replay)
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": "low_latency",
          "phase": "combine", "backend": "vllm"}
    row = {g: float(comm.moe_all_to_all(tokens, gpu=g, eager=True, collector=True,
                                        **kw).time_s) for g in ("h100-sxm", "h200")}
    graph = {g: float(comm.moe_all_to_all(tokens, gpu=g, **kw).time_s)
             for g in ("h100-sxm", "h200")}
    assert row["h100-sxm"] <= row["h200"]
    assert graph["h100-sxm"] == pytest.approx(graph["h200"], rel=1e-12)
    # strictly less while H200's clone is shorter than the host work (H100's is longer)
    h200_clone = float(comm.collector_clone_s(tokens, experts=256, hidden=7168,
                                              dtype="bf16", gpu=load_gpu("h200")))
    if h200_clone < kernel_class("a2a/low_latency/combine", "vllm").prelaunch_s:
        assert row["h100-sxm"] < row["h200"]


@given(st.integers(1, 65536), st.sampled_from(["vllm", "trtllm", "sglang"]),
       st.sampled_from(["normal", "low_latency"]), st.sampled_from(["dispatch", "combine"]),
       st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_a_graph_replay_pays_no_host_work_of_either_kind(
        tokens: int, backend: str, mode: str, phase: str, host_share: float,
        prelaunch_share: float) -> None:
    # one rule for host_s (after the launch) and prelaunch_s (before it): a CUDA-graph
    # replay has no host work, so it pays floor_s − host_s − prelaunch_s + GPU work, the
    # GPU work unchanged; an eager call (no collector) never pays less than the replay
    import dataclasses

    from memsim.ops.classes import trial_classes

    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": mode,
          "phase": phase, "gpu": "h200", "backend": backend}
    cls = kernel_class(f"a2a/{mode}/{phase}", backend)
    none = dataclasses.replace(cls, host_s=0.0, prelaunch_s=0.0)
    some = dataclasses.replace(cls, host_s=host_share * cls.floor_s,
                               prelaunch_s=prelaunch_share * cls.floor_s)
    times = {}
    for name, c in (("none", none), ("some", some)):
        with trial_classes({cls.name: c}):
            times[name] = {e: float(comm.moe_all_to_all(tokens, eager=e, **kw).time_s)
                           for e in (False, True)}
    assert times["some"][False] == pytest.approx(
        times["none"][False] - some.host_s - some.prelaunch_s, rel=1e-9, abs=1e-15)
    assert times["some"][True] >= times["some"][False] * (1 - 1e-12)


@pytest.mark.parametrize("backend", ["trtllm", "sglang"])
def test_only_vllms_collector_rows_get_the_clone(backend: str) -> None:
    # the clone is vLLM's collector's (collect_moe_a2a.py), not the kernel's: another
    # backend's low-latency combine holding a prelaunch_s pays all of it on a collector
    # row, as in a model's eager call; the fitter frees prelaunch_share by the same set
    import dataclasses

    from memsim.ops.classes import trial_classes
    from memsim.silicon import fit

    assert fit.COLLECTOR_CLONED is comm.COLLECTOR_CLONED
    assert comm.COLLECTOR_CLONED == {("vllm", "low_latency", "combine")}
    kw = {"hidden": 7168, "top_k": 8, "experts": 256, "ep": 8, "mode": "low_latency",
          "phase": "combine", "gpu": "h100-sxm", "eager": True}
    cls = kernel_class("a2a/low_latency/combine", backend)
    trial = dataclasses.replace(cls, prelaunch_s=0.5 * cls.floor_s, skew_s=0.0)
    vllm = kernel_class("a2a/low_latency/combine", "vllm")
    with trial_classes({cls.name: trial, vllm.name: dataclasses.replace(
            vllm, prelaunch_s=0.5 * vllm.floor_s, skew_s=0.0)}):
        row, call = (float(comm.moe_all_to_all(64, backend=backend, collector=c,
                                               **kw).time_s) for c in (True, False))
        vrow, vcall = (float(comm.moe_all_to_all(64, backend="vllm", collector=c,
                                                 **kw).time_s) for c in (True, False))
    assert row == pytest.approx(call, rel=1e-12)
    # the law's other side: vLLM's row does get it (64 tokens: the clone outlasts it)
    assert vrow == pytest.approx(vcall - 0.5 * vllm.floor_s, rel=1e-9)


def test_collector_clone_copies_elements_not_scales() -> None:
    # the collector clones prepared[0], DeepEP's packed_recv_x: elements only (its fp8
    # scales are packed_recv_x_scales, another tensor), so fp8 copies half bf16's bytes
    # and nvfp4 a quarter, not the wire's 1 + 4/128 and 0.5 + 1/16 bytes per element
    kw = {"experts": 256, "hidden": 7168, "gpu": load_gpu("h200")}
    bf16 = float(comm.collector_clone_s(16, dtype="bf16", **kw))
    assert float(comm.collector_clone_s(16, dtype="fp8", **kw)) == pytest.approx(bf16 / 2)
    assert float(comm.collector_clone_s(16, dtype="nvfp4", **kw)) == pytest.approx(bf16 / 4)
    assert comm.A2A_WIRE_BYTES["fp8"] == 1.0 + 4.0 / 128   # the wire keeps its scales
