"""Collectives between GPUs: latency + bytes over the link, with the algorithm switch the
libraries make.

Bytes each GPU moves over its link (per direction) for a message of M bytes on G GPUs:

- ring all-reduce (NCCL): 2(G−1)/G · M — the bus-bandwidth factor of nccl-tests
  (doc/PERFORMANCE.md: busBw = algBw · 2(n−1)/n); reduce-scatter then all-gather, one
  latency per step: 2(G−1) hops;
- NVLS all-reduce (NCCL ≥ 2.17 on NVSwitch with NVLink SHARP): the switch adds. Each GPU
  sends its whole buffer into the switch's multimem reduction and then its reduced 1/G slice
  for the switch to multicast, and receives the same: (G+1)/G · M each way (memsim's count
  of the multimem.ld_reduce / multimem.st pair);
- one-shot custom all-reduce (TensorRT-LLM, vLLM ``cross_device_reduce_1stage``): each GPU
  reads every peer's whole buffer and reduces locally: (G−1) · M in, one barrier;
- two-shot (``cross_device_reduce_2stage``): reduce-scatter + all-gather through peer
  memory: 2(G−1)/G · M, two barriers.

Which algorithm runs is the library's rule, not memsim's choice:

- TensorRT-LLM (PyTorch flow, AUTO strategy): if the message fits the workspace
  (``customAllReduceUtils::getMaxRequiredWorkspaceSize``: 16 MB for ≤ 2 ranks, else 8 MB)
  the custom kernel, one-shot or two-shot as ``selectStrategyLookUpTable`` says — a table
  of the kernel measured fastest per (SM, TP, hidden, tokens)
  (cpp/tensorrt_llm/common/customAllReduceUtils.h) — which memsim reproduces by taking
  the faster of its own one-shot and two-shot times; otherwise NCCL. (The older plugin
  rule, allreducePlugin.cpp: one-shot below 1 MB on ≤ 4 ranks, below 500 kB beyond.)
- vLLM (and SGLang's copy of it) ``csrc/custom_all_reduce.cuh``: one-stage if
  world_size == 2, or ≤ 4 ranks and < 512 KiB, or ≤ 8 ranks and < 256 KiB, else
  two-stage; ``CustomAllreduce.should_custom_ar`` uses it below ``max_size`` = 8 MiB,
  otherwise NCCL.
- NCCL picks the algorithm and protocol its cost model predicts fastest
  (src/graph/tuning.cc); memsim does the same between ring and NVLS (where the profile's
  switch has NVLink SHARP) and, for a ring, between the LL, LL128 and Simple protocols
  with NCCL's own latency and bandwidth constants (:func:`nccl_ring_s`); sends (all-to-all,
  p2p) switch from LL to Simple at NCCL's 16 KiB a peer (:func:`nccl_p2p_s`).
- Custom all-reduce needs NVLink (peer memory): PCIe-only GPUs run NCCL.

NCCL's own collectives as nccl-tests times them (:func:`nccl_all_reduce`, all-gather,
reduce-scatter, all-to-all) have their own classes ``nccl/<op>``; an all-to-all sends to
every peer at once (one latency). An MoE layer's dispatch and combine are DeepEP's kernels
(:func:`moe_all_to_all`: per-rank copies in the normal kernels, per-expert copies in the
low-latency ones).

Custom all-reduce needs peer access inside one scale-up domain; beyond it everything is
NCCL over the network. Link bandwidth per direction, the hop latency and the domain size
come from the profile's ``[interconnect]``; the floor and link efficiency of each algorithm
are fitted (:mod:`memsim.ops.classes`), and for NCCL's step-by-step algorithms the kernel's
own seconds per step beyond the wire's hop latency (the class's ``row_s``: the LL
protocol's flag polling and the step hand-off between ranks) and a ring's pipeline fill
and drain (its ``fill``, a fraction of one chunk step per pass).

Every NVLink latency a kernel waits out in a row is the profile's ``nvlink_latency_s``, never
folded into a fitted floor: a ring's steps, a send, the custom kernels' barriers and peer
loads (:data:`CUSTOM_HOPS`). The classes are fitted on Hopper, where the hop is the same on
both GPUs; Blackwell's hop is 0.7 µs longer (NVIDIA/nccl#1940), which is what makes its small
collectives slower than Hopper's despite twice the NVLink bandwidth.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, check_backend, out, positive, resolve_gpu
from memsim.ops.classes import FIT_GPUS, kernel_class

MB = 1e6
MiB = 2**20
KiB = 2**10


def _link(gpu: Any, gpus: int) -> tuple[float, float]:
    """(bytes/s per direction, hop latency s) for a group of ``gpus``."""
    from memsim.errors import InputError

    link = gpu.interconnect
    if link is None:
        raise InputError("gpu", gpu.name, "has no [interconnect] section in its profile")
    return link.link_bytes_per_s(gpus), link.link_latency_s(gpus)


def _check_gpus(gpus: Any) -> int:
    from memsim.errors import InputError

    if not isinstance(gpus, int | np.integer) or gpus < 1:
        raise InputError("gpus", gpus, "must be a positive integer")
    return int(gpus)


NCCL = "nccl"  # the pseudo-backend of NCCL's own kernels (nccl-tests rows, no framework)


def _resolve_backend(backend: str | None) -> str:
    """:data:`NCCL`, or the framework ``backend`` names (the default for None), checked."""
    return backend if backend == NCCL else check_backend(backend)


def _all_reduce_class(name: str, backend: str | None) -> Any:
    """The kernel class of all-reduce algorithm ``name``: the framework's (its custom
    kernels, and NCCL as it calls it) or, for ``backend`` = :data:`NCCL`, NCCL's own as
    nccl-tests times it."""
    if backend == NCCL:
        return kernel_class(f"nccl/all_reduce/{name}")
    return kernel_class(f"allreduce/{name}", backend)


# ---- NCCL's three protocols (src/graph/tuning.cc of github.com/NVIDIA/nccl @5067397) ------
#: Ring base latency per protocol, µs → s (``ncclTunerConstantsDefaults.baseLatencies``,
#: Ring row: LL 6.6, LL128 14.0, Simple 8.4 µs). The class's fitted ``floor_s`` stands for
#: LL's; the other protocols add NCCL's difference to it.
NCCL_PROTOCOLS = ("LL", "LL128", "Simple")
_RING_BASE_S = {"LL": 6.6e-6, "LL128": 14.0e-6, "Simple": 8.4e-6}
#: Per-step hardware latency of a ring, per link type and protocol (``hwLatencies``, Ring
#: column): NVLink 0.6 / 1.9 / 3.4 µs, PCI 1.0 / 2.5 / 5.7 µs, NET 2.7 / 4.0 / 14.0 µs. The
#: profile's ``nvlink_latency_s`` / ``network_latency_s`` are the LL entries; the other
#: protocols add NCCL's difference to them.
_RING_HW_S = {"nvlink": {"LL": 0.6e-6, "LL128": 1.9e-6, "Simple": 3.4e-6},
              "pci": {"LL": 1.0e-6, "LL128": 2.5e-6, "Simple": 5.7e-6},
              "net": {"LL": 2.7e-6, "LL128": 4.0e-6, "Simple": 14.0e-6}}
#: LL's bandwidth ceiling on one node per compute capability, GB/s (``llMaxBws`` column N1:
#: Volta 39.0, Ampere 87.7, Hopper 141.0, Blackwell 2 × 141.0); LL moves 8-byte lines of 4
#: data bytes and a 4-byte flag, so it also gets at most half the link (``busBw * .5``).
_LL_MAX_BW = {"volta": 39.0e9, "turing": 39.0e9, "ampere": 87.7e9, "ada": 87.7e9,
              "hopper": 141.0e9, "blackwell": 282.0e9}
#: LL128's share of the link: 120 data bytes per 128-byte line (``busBw * 0.92``).
_LL128_SHARE = 0.92
#: NVLS efficiency per architecture (tuning.cc ``nvlsEfficiency``: Hopper 0.85, Blackwell
#: 0.74): the NVLS classes are fitted on Hopper, so another architecture's NVLS bandwidth
#: is scaled by its ratio to Hopper's.
_NVLS_EFFICIENCY = {"hopper": 0.85, "blackwell": 0.74}


def _link_kind(gpu: Any, G: int) -> str:
    link = gpu.interconnect
    if G > link.scale_up_gpus:
        return "net"
    return "nvlink" if link.nvlink_bytes_per_s_per_direction > 0 else "pci"


def _protocol_bws(gpu: Any, G: int, cls: Any, kind: str) -> dict[str, float]:
    """Bytes/s per direction of NCCL's three protocols on ``kind``'s link: Simple the link
    × ``cls.eff("link")``, LL128 × 0.92 of it, LL half of it capped at the architecture's
    ``llMaxBw`` (tuning.cc "Various model refinements"; the N2/N4 columns beyond a node)."""
    bw, _ = _link(gpu, G)
    simple = bw * cls.eff("link")
    ll_max = _LL_MAX_BW.get(str(gpu.architecture), _LL_MAX_BW["ampere"])
    if kind == "net":
        ll_max = min(ll_max, _LL_MAX_BW["ampere"])   # llMaxBws N2/N4 columns are lower
    return {"LL": min(ll_max, 0.5 * simple), "LL128": _LL128_SHARE * simple, "Simple": simple}


def _protocol_latency_s(protocol: str, steps: int, hop_s: float, kind: str, cls: Any
                        ) -> float:
    """NCCL's latency of ``steps`` steps under ``protocol`` beyond LL's base (the class's
    ``floor_s`` stands for that): base − base(LL) + steps · (hop + Δhop + ``cls.row_s``),
    Δhop the protocol's step latency over LL's on ``kind``'s link (tuning.cc)."""
    return (_RING_BASE_S[protocol] - _RING_BASE_S["LL"]
            + steps * (hop_s + _RING_HW_S[kind][protocol] - _RING_HW_S[kind]["LL"]
                       + cls.row_s))


def nccl_ring_s(traffic: np.ndarray, steps: int, G: int, gpu: Any, cls: Any
                ) -> tuple[np.ndarray, np.ndarray]:
    """(seconds without the floor, protocol) of an NCCL ring collective that moves
    ``traffic`` bytes per GPU per direction in ``steps`` ring steps, with the protocol
    NCCL's cost model picks (``ncclTopoGetAlgoTime``: latency + bytes / bandwidth, the
    smallest wins; :func:`_protocol_latency_s`, :func:`_protocol_bws`; LL128 only on
    NVLink: ``pEnable &= typeIntra <= PATH_NVB``, and not over PCIe).

    The ring moves one chunk (M/G) per step, G − 1 steps per pass; the class's ``fill``
    (a fraction of one step, kept with its efficiencies, 0 where absent) is the pipeline's
    fill and drain each pass adds: bytes × (1 + fill/(G − 1)). Without it the bus bandwidth
    would not depend on G, where nccl-tests' does (aiconfigurator's H100 rows at 512 MB:
    all-gather 258 / 318 / 336 GB/s on 2 / 4 / 8 GPUs, reduce-scatter 235 / 300 / 328)."""
    _, hop = _link(gpu, G)
    traffic = traffic * (1.0 + cls.efficiency.get("fill", 0.0) / max(G - 1, 1))
    kind = _link_kind(gpu, G)
    bws = _protocol_bws(gpu, G, cls, kind)
    protos = ("LL", "Simple") if kind == "pci" else NCCL_PROTOCOLS
    best = np.full(np.shape(traffic), np.inf)
    pick = np.full(np.shape(traffic), "Simple", dtype=object)
    for p in protos:
        t = _protocol_latency_s(p, steps, hop, kind, cls) + traffic / bws[p]
        pick = np.where(t < best, p, pick)
        best = np.minimum(best, t)
    return best, pick


#: NCCL p2p (send/recv, hence all-to-all) runs LL while a peer's bytes are at most
#: ``NCCL_P2P_LL_THRESHOLD`` (16384) per channel, Simple beyond (src/enqueue.cc l. 859,
#: 932-933); below 64 KiB a peer gets one channel on one node (``minPartSize`` =
#: ``P2P_NVL_CHUNKSIZE`` 512 KiB / 8, l. 912-913), so the switch is at 16 KiB a peer.
P2P_LL_THRESHOLD_BYTES = 16384


def nccl_p2p_s(peer_bytes: np.ndarray, peers: int, G: int, gpu: Any, cls: Any
               ) -> tuple[np.ndarray, np.ndarray]:
    """(seconds without the floor, protocol) of NCCL sends of ``peer_bytes`` to each of
    ``peers`` peers at once (one step of the ring's protocols, :func:`nccl_ring_s`): LL up
    to :data:`P2P_LL_THRESHOLD_BYTES` a peer, Simple beyond."""
    _, hop = _link(gpu, G)
    kind = _link_kind(gpu, G)
    bws = _protocol_bws(gpu, G, cls, kind)
    traffic = peers * peer_bytes
    use_ll = peer_bytes <= P2P_LL_THRESHOLD_BYTES
    t = {p: _protocol_latency_s(p, 1, hop, kind, cls) + traffic / bws[p]
         for p in ("LL", "Simple")}
    return np.where(use_ll, t["LL"], t["Simple"]), \
        np.where(use_ll, "LL", "Simple").astype(object)


#: One-way NVLink latencies in a row on a custom all-reduce's critical path (a store that
#: must land at a peer before the peer, polling its own memory, goes on; a load from a
#: peer's memory counts two, there and back), from the kernels each framework launches:
#:
#: - TensorRT-LLM (cpp/tensorrt_llm/kernels/communicationKernels/allReduceFusionKernels.cu,
#:   the kernels of its ONESHOT / TWOSHOT strategies): ``oneshot_lamport`` pushes the
#:   buffer into every peer's Lamport buffer and polls its own until no −0.0 sentinel is
#:   left: 1; ``twoshot_sync``: ``barrier.sync()`` (1), loads of the peers' slices (2),
#:   the reduced slice pushed to every peer and ``barrier.sync()`` (1): 4;
#: - vLLM (csrc/custom_all_reduce.cuh; SGLang's copy of it): ``cross_device_reduce_1stage``
#:   ``barrier_at_start`` (1), ``packed_reduce`` over the peers' buffers (2),
#:   ``barrier_at_end`` (1): 4; ``cross_device_reduce_2stage`` the same with a second
#:   round of peer loads after its middle barrier: 6.
#:
#: Each costs the profile's ``nvlink_latency_s``; the class's fitted floor holds the rest
#: (launch, the local work). On H100 and H200, where the classes are fitted, the hop is the
#: same, so the split changes nothing there; it is what carries to a GPU whose NVLink
#: latency differs (Blackwell's, hardware_profiles/b200.toml).
CUSTOM_HOPS = {("trtllm", "oneshot"): 1, ("trtllm", "twoshot"): 4,
               ("vllm", "oneshot"): 4, ("vllm", "twoshot"): 6,
               ("sglang", "oneshot"): 4, ("sglang", "twoshot"): 6}


def _algorithm_s(name: str, M: np.ndarray, G: int, gpu: Any, backend: str | None
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(time without floor, link bytes per GPU per direction, floor) of one algorithm:
    a ring through :func:`nccl_ring_s`; NVLS and the custom kernels as link bytes over
    the link, plus the custom kernels' :data:`CUSTOM_HOPS` NVLink latencies."""
    bw, hop = _link(gpu, G)
    cls = _all_reduce_class(name, backend)
    traffic = {"oneshot": (G - 1) * M, "nvls": (G + 1) / G * M}.get(name, 2.0 * (G - 1) / G * M)
    if name == "ring":   # one step per neighbour exchange, NCCL's protocol switch
        return nccl_ring_s(traffic, 2 * (G - 1), G, gpu, cls)[0], traffic, cls.floor_s
    if name == "nvls":
        arch = _NVLS_EFFICIENCY.get(str(gpu.architecture), _NVLS_EFFICIENCY["hopper"])
        bw = bw * arch / _NVLS_EFFICIENCY["hopper"]
    hops = CUSTOM_HOPS.get((backend, name), 0)
    return hops * hop + traffic / (bw * cls.eff("link")), traffic, cls.floor_s


def _nccl_choice(M: np.ndarray, G: int, gpu: Any, backend: str | None) -> np.ndarray:
    """NCCL's own pick: the algorithm with the smaller modelled time (tuning.cc)."""
    link = gpu.interconnect
    if not (link is not None and link.nvls and G <= link.scale_up_gpus and G > 2):
        return np.full(M.shape, "ring", dtype=object)
    ring, _, f_ring = _algorithm_s("ring", M, G, gpu, backend)
    nvls, _, f_nvls = _algorithm_s("nvls", M, G, gpu, backend)
    return np.where(nvls + f_nvls < ring + f_ring, "nvls", "ring").astype(object)


def all_reduce_algorithm(message_bytes: Any, gpus: int, *, gpu: Any,
                         backend: str | None = None) -> np.ndarray:
    """The algorithm the backend's rule picks per message size (array of str):
    "oneshot", "twoshot", "ring" or "nvls" (module docstring for the sources)."""
    gpu = resolve_gpu(gpu)
    backend = _resolve_backend(backend)
    (M,) = as_float(message_bytes)
    G = _check_gpus(gpus)
    nccl = _nccl_choice(M, G, gpu, backend)
    link = gpu.interconnect
    # custom all-reduce reads and writes peers' memory over NVLink: without NVLink (PCIe
    # GPUs such as L40S) the frameworks call NCCL (vLLM CustomAllreduce: "not supported on
    # more than two PCIe-only GPUs", and it needs P2P access; aiconfigurator's L40S rows
    # time NCCL's latencies)
    if (backend == NCCL or link is None or G > link.scale_up_gpus or G == 1
            or link.nvlink_bytes_per_s_per_direction <= 0):
        return nccl
    if backend == "trtllm":
        workspace = 16 * MB if G <= 2 else 8 * MB
        one, _, f_one = _algorithm_s("oneshot", M, G, gpu, backend)
        two, _, f_two = _algorithm_s("twoshot", M, G, gpu, backend)
        custom = np.where(one + f_one <= two + f_two, "oneshot", "twoshot").astype(object)
        return np.where(M <= workspace, custom, nccl)
    one = (G == 2) | ((G <= 4) & (M < 512 * KiB)) | ((G <= 8) & (M < 256 * KiB))
    custom = np.where(one, "oneshot", "twoshot").astype(object)
    return np.where(M < 8 * MiB, custom, nccl)


def _collective_args(message_bytes: Any, gpus: int, gpu: Any) -> tuple[Any, int, np.ndarray]:
    """(GPU, G, M as float array) of a collective's arguments, checked."""
    positive("message_bytes", message_bytes)
    gpu = resolve_gpu(gpu)
    G = _check_gpus(gpus)
    (M,) = as_float(message_bytes)
    return gpu, G, M


#: The kernel class of a collective over one GPU (no kernel runs: no class's numbers)
NO_CLASS = "none"


def _no_link(M: np.ndarray) -> OpPrediction:
    """A collective over one GPU: nothing crosses a link, nothing is timed."""
    zero = np.zeros_like(M)
    return OpPrediction(out(zero), "none", out(zero), out(zero), out(zero),
                        {"link": out(zero)}, {"algorithm": "none", "link_bytes": out(zero),
                                              "kernel_class": NO_CLASS})


def all_reduce(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """All-reduce of ``message_bytes`` (each GPU's buffer, bytes; arrays broadcast) over
    ``gpus`` GPUs with the algorithm ``backend``'s rule picks (module docstring)."""
    gpu, G, M = _collective_args(message_bytes, gpus, gpu)
    if G == 1:
        return _no_link(M)
    backend = _resolve_backend(backend)
    algo = all_reduce_algorithm(M, G, gpu=gpu, backend=backend)
    link_s = np.zeros_like(M)
    floor = np.zeros_like(M)
    traffic = np.zeros_like(M)
    for name in ("oneshot", "twoshot", "ring", "nvls"):
        pick = algo == name
        if not np.any(pick):
            continue
        t, tr, f = _algorithm_s(name, M, G, gpu, backend)
        link_s = np.where(pick, t, link_s)
        floor = np.where(pick, f, floor)
        traffic = np.where(pick, tr, traffic)
    time = floor + link_s
    bound = np.where(floor > link_s, "latency", "link")
    # HBM: read the local buffer and the reduced peers' data, write the result
    hbm = 2.0 * M + traffic
    return OpPrediction(
        time_s=out(time), bound=str(bound) if bound.ndim == 0 else bound,
        flops=out(np.zeros_like(M)), hbm_bytes=out(hbm), launch_s=out(floor),
        terms_s={"link": out(link_s)},
        detail={"algorithm": str(algo) if algo.ndim == 0 else algo.astype(str),
                "link_bytes": out(traffic),
                "kernel_class": np.vectorize(
                    lambda a: _all_reduce_class(a, backend).name, otypes=[object])(algo)})


def nccl_all_reduce(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
                    backend: str | None = None) -> OpPrediction:
    """NCCL's own all-reduce (``ncclAllReduce`` as nccl-tests times it, no framework's
    custom kernels): ring or NVLS, whichever NCCL's cost model picks, with NCCL's classes
    (``nccl/all_reduce/ring``, ``nccl/all_reduce/nvls``). ``backend`` is checked and
    otherwise unused, as for :func:`all_gather`: every framework calls the same NCCL."""
    check_backend(backend)
    return all_reduce(message_bytes, gpus, gpu=gpu, backend=NCCL)


def _simple(op: str, message_bytes: Any, gpus: int, gpu: Any, factor) -> OpPrediction:
    """An NCCL collective whose per-GPU traffic is ``factor(G) · M``, with NCCL's class
    ``nccl/<op>`` (p2p sends with the alltoall kernel): a ring of G − 1 steps for
    all-gather and reduce-scatter, concurrent sends for alltoall and p2p."""
    gpu, G, M = _collective_args(message_bytes, gpus, gpu)
    if G == 1:
        return _no_link(M)
    cls = kernel_class(f"nccl/{'alltoall' if op == 'p2p' else op}")
    traffic = factor(G) * M
    if op in ("all_gather", "reduce_scatter"):   # ring: G − 1 steps, NCCL's protocols
        link_s = nccl_ring_s(traffic, G - 1, G, gpu, cls)[0]
    elif op == "alltoall":   # a send to each of G − 1 peers at once
        link_s = nccl_p2p_s(M / G, G - 1, G, gpu, cls)[0]
    else:                    # p2p: the whole message to one peer
        link_s = nccl_p2p_s(M, 1, G, gpu, cls)[0]
    floor = np.full_like(M, cls.floor_s)
    bound = np.where(floor > link_s, "latency", "link")
    return OpPrediction(
        time_s=out(floor + link_s), bound=str(bound) if bound.ndim == 0 else bound,
        flops=out(np.zeros_like(M)), hbm_bytes=out(M + traffic), launch_s=out(floor),
        terms_s={"link": out(link_s)}, detail={"algorithm": op, "link_bytes": out(traffic),
                                               "kernel_class": cls.name})


def all_gather(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """All-gather whose gathered output is ``message_bytes`` per GPU: each GPU receives the
    (G−1)/G of it it lacks (nccl-tests busBw factor (n−1)/n), G − 1 ring steps."""
    check_backend(backend)
    return _simple("all_gather", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


def reduce_scatter(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
                   backend: str | None = None) -> OpPrediction:
    """Reduce-scatter of a ``message_bytes`` input per GPU: (G−1)/G of it crosses the link."""
    check_backend(backend)
    return _simple("reduce_scatter", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


def all_to_all(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """NCCL all-to-all of ``message_bytes`` per GPU: each GPU keeps 1/G and sends (G−1)/G
    of its buffer, and receives as much, to all peers at once (nccl-tests alltoall.cu: one
    ncclSend and ncclRecv per peer inside one group: one latency, not G − 1 ring steps).
    An MoE layer's dispatch and combine are :func:`moe_all_to_all`."""
    check_backend(backend)
    return _simple("alltoall", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


# ---- MoE dispatch / combine (expert parallelism) ------------------------------------------

#: The two kernel families of DeepEP (github.com/deepseek-ai/DeepEP), which TensorRT-LLM
#: (``AlltoallMethodType.DeepEP`` / ``DeepEPLowLatency``), vLLM and SGLang launch for EP.
A2A_MODES = ("normal", "low_latency")
A2A_PHASES = ("dispatch", "combine")
#: Dispatch formats: bytes per hidden element, the elements alone (what DeepEP's
#: ``packed_recv_x`` holds; its scales are a separate tensor, ``packed_recv_x_scales``).
A2A_ELEMENT_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "nvfp4": 0.5}
#: Per-token scale bytes per hidden element of the quantised formats. fp8: one fp32 scale
#: per 128 elements (DeepEP's (x, x_scales) tuple, DeepSeek-V3 §3.3.2); nvfp4: one fp8
#: scale per 16 (TensorRT-LLM dispatches the packed x and x_sf through DeepEP,
#: fused_moe_wide_ep.py "Adapter between x_sf and DeepEP").
A2A_SCALE_BYTES = {"fp8": 4.0 / 128, "nvfp4": 1.0 / 16}
#: Dispatch wire formats: bytes per hidden element on the wire, elements and scales.
A2A_WIRE_BYTES = {d: b + A2A_SCALE_BYTES.get(d, 0.0) for d, b in A2A_ELEMENT_BYTES.items()}


def remote_ranks_per_token(experts: int, top_k: int, ep: int, groups: int = 1,
                           topk_groups: int = 1) -> float:
    """Expected number of *other* EP ranks that hold at least one of a token's top-k
    experts, experts placed X/G per rank. DeepEP's normal kernels send a token once per
    such rank (``is_token_in_rank``, csrc/kernels/intranode.cu ``notify_dispatch`` /
    ``dispatch``), not once per expert.

    - Uniform routing (``groups`` = 1): without replacement, (G − 1) · (1 − C(X − X/G, k)
      / C(X, k)) (X/G the mean where G does not divide X, as with redundant experts).
    - Group-limited routing (DeepSeek-V3 ``n_group`` = 8, ``topk_group`` = 4; its Gate,
      inference/model.py, keeps the ``topk_group`` groups with the highest sum of their
      top-2 scores and takes the top-k among their experts): a chosen group holds one of
      the token's experts (it was chosen for its best two), so where G divides the groups
      (each rank holds groups/G whole groups) a rank is reached iff one of its groups is
      chosen: (G − 1) · (1 − C(groups − groups/G, topk_groups) / C(groups, topk_groups));
      where a group spans several ranks, its chosen share of the k experts lands uniformly
      on them.
    """
    from math import comb

    if groups <= 1 or topk_groups >= groups:
        per_rank = experts / ep  # redundant-expert layouts (X not divisible by G): the mean
        miss = float(np.prod([(experts - per_rank - i) / (experts - i)
                              for i in range(top_k)]))
        return (ep - 1) * (1.0 - max(miss, 0.0))
    if groups % ep == 0:
        per_rank = groups // ep
        return (ep - 1) * (1.0 - comb(groups - per_rank, topk_groups) / comb(groups,
                                                                             topk_groups))
    # a group spans ep/groups ranks: the token's k experts lie in topk_groups groups
    pool = topk_groups * experts / groups
    per_rank = experts / ep
    miss = float(np.prod([(pool - per_rank - i) / (pool - i) for i in range(top_k)]))
    return (ep - 1) * topk_groups / groups * (1.0 - max(miss, 0.0))


#: The SMs DeepEP's normal kernels run on (deep_ep/buffer.py @73b6ea4 ``Buffer.num_sms``
#: = 20, a class attribute: every ``dispatch`` / ``combine`` without a ``config`` takes
#: ``get_dispatch_config`` / ``get_combine_config``, built on it). vLLM: the ``sms`` column
#: of its rows (aiconfigurator's vLLM collector calls ``Buffer.set_num_sms(HT_SMS)``,
#: HT_SMS = 20). TensorRT-LLM: its ``VariableLengthBuffer`` (tensorrt_llm/_torch/modules/
#: fused_moe/deep_ep_utils.py @0fbbb91) never calls ``set_num_sms`` and passes no
#: ``config``, so DeepEP's default 20 holds (its rows' ``sms`` column is 0: not recorded).
#: The low-latency kernels take every SM.
DEEPEP_NORMAL_SMS = 20


def a2a_sm_copy_bytes_per_s(gpu: Any, cls: Any) -> float:
    """Bytes/s DeepEP's normal-mode dispatch or combine copies: the
    :data:`DEEPEP_NORMAL_SMS` SMs' share of the L2 bandwidth (``l2_bandwidth_bytes_per_s`` /
    ``sm_count`` each) × the class's ``l2`` efficiency (the wire still bounds the whole
    transfer: :func:`moe_all_to_all`).

    The source makes it the SMs' rate: the kernels are launched on a fixed budget of
    ``num_sms`` CTAs (intranode.cu @73b6ea4 ``dispatch`` / ``combine``: ``num_sms`` blocks,
    half senders, half receivers, one channel per pair), whatever the GPU's SM count or
    link, and every byte, the own rank's included, is moved by their warps' loads and
    stores a few KB in flight each (``UNROLLED_WARP_COPY``); no copy engine or TMA moves
    it. On H100 and H200 this rate and the NVLink's coincide in the fit (the same 20 SMs,
    the same link), so only the other GPUs tell them apart: aiconfigurator's normal-mode
    rows are slower on B200 than on H200 at 65536 tokens (vLLM combine, 7168 wide, top-8
    of 256: 109 against 67 ns a copy), though B200's NVLink is twice as fast. B200's L2
    bandwidth per SM is H100's (its profile scales H100's by the SM count), so the SMs'
    rate carries unchanged to it.
    """
    per_sm = gpu.spec.l2_bandwidth_bytes_per_s / gpu.spec.sm_count
    return DEEPEP_NORMAL_SMS * per_sm * cls.eff("l2")


def a2a_link_bytes_per_s(link_bytes_per_s: float, cls: Any) -> float:
    """Bytes/s DeepEP's low-latency dispatch or combine moves over the link: the link ×
    the class's ``link`` efficiency. Every SM copies: csrc/kernels/internode_ll.cu
    @73b6ea4 launches ``ceil(experts / num_warp_groups)`` CTAs, ``num_warp_groups`` =
    ``ceil(experts / device SMs)``, one warp group per expert (host launchers of
    ``dispatch`` and ``combine``), not a fixed SM budget as the normal kernels."""
    return link_bytes_per_s * cls.eff("link")


#: DeepEP's published normal-kernel benchmark (github.com/deepseek-ai/DeepEP docs/legacy.md,
#: "Normal kernels with NVLink and RDMA forwarding": H800, one CX7 400 Gb/s NIC (~50 GB/s)
#: per GPU, 4096 tokens a rank, 7168 hidden, top-8 of 256 experts, fp8 dispatch and bf16
#: combine): EP → (dispatch, combine) "bottleneck bandwidth" GB/s (RDMA).
DEEPEP_INTERNODE_GBPS = {16: (43.0, 43.0), 32: (58.0, 57.0), 64: (51.0, 50.0)}


def deepep_rdma_wire_share(ep: int, gpus_per_node: int = 8) -> float:
    """The share of DeepEP's *logical* RDMA bytes that cross the wire at ``ep`` ranks.

    tests/test_internode.py (@73b6ea4) prints ``num_rdma_token_sent · hidden · 2`` (× (1 +
    4/128)/2 in fp8) over the kernel time, ``num_rdma_token_sent`` the (token, node) pairs
    the routing reaches, the token's own node included; the own node's copy stays on the
    node (internode.cu ``dispatch``: the RDMA sender's put is for ``dst_rdma_rank !=
    rdma_rank`` only). Each of the N nodes is reached with the same probability, so the own
    node is on average 1/N of the pairs: (N − 1)/N of the logical bytes are wire bytes.
    """
    nodes = ep // gpus_per_node
    return (nodes - 1) / nodes


#: The GPU DeepEP's published table was measured on (docs/legacy.md: H800 with one CX7
#: 400 Gb/s NIC per GPU); its NIC and NVLink rates come from its profile
#: (hardware_profiles/h800-sxm.toml), their one home.
DEEPEP_TESTBED_GPU = "h800-sxm"


@functools.cache
def deepep_rdma_efficiency() -> float:
    """The network's share of its datasheet rate that DeepEP's normal kernels reach: the
    fastest wire rate of :data:`DEEPEP_INTERNODE_GBPS` (logical GB/s ×
    :func:`deepep_rdma_wire_share`; EP 64 dispatch: 51 × 7/8 = 44.6 GB/s) over the test
    bed's NIC (50 GB/s). The wire bound is a bound: the rows below it (EP 16: 21.5 GB/s on
    the wire) are bound elsewhere (the NVLink forwarding inside each node,
    :func:`_forward_s`)."""
    from memsim.hardware import load_gpu

    nic_gbps = load_gpu(DEEPEP_TESTBED_GPU).interconnect.network_bytes_per_s_per_gpu / 1e9
    return round(max(max(d, c) * deepep_rdma_wire_share(ep)
                     for ep, (d, c) in DEEPEP_INTERNODE_GBPS.items()) / nic_gbps, 3)


@functools.cache
def deepep_nvlink_logical_efficiency() -> float:
    """DeepEP's published intranode rate on H800 (docs/legacy.md, the same table: EP 8
    dispatch 153, combine 158 GB/s, "NVLink" bottleneck; tests/test_intranode.py counts
    ``recv_x.numel()`` bytes, the own rank's copies included) over the test bed's NVLink
    per direction (200 GB/s): the share of the NVLink's datasheet rate DeepEP's warps reach
    in *logical* bytes (every rank's copy, the own included)."""
    from memsim.hardware import load_gpu

    link = load_gpu(DEEPEP_TESTBED_GPU).interconnect
    return round(max(153.0, 158.0) / (link.nvlink_bytes_per_s_per_direction / 1e9), 3)


def wire_efficiency(gpu: Any, gpus: int) -> float:
    """The share of the link's datasheet rate a DeepEP transfer over ``gpus`` ranks can
    reach: :func:`deepep_rdma_efficiency` beyond one scale-up domain (the network), 1
    inside it (NVLink's bound is the class's fitted rate, :func:`a2a_sm_copy_bytes_per_s`
    or :func:`a2a_link_bytes_per_s`)."""
    link = gpu.interconnect
    return deepep_rdma_efficiency() if link is not None and gpus > link.scale_up_gpus else 1.0


def _forward_s(T: np.ndarray, copy_bytes: float, gpu: Any, G: int, mode: str, experts: int,
               top_k: int, groups: int, topk_groups: int) -> np.ndarray:
    """Seconds DeepEP's internode normal kernels spend forwarding tokens over NVLink
    inside each node (0 inside one scale-up domain and in low-latency mode).

    internode.cu (@73b6ea4) ``dispatch``: a node's forwarder warps
    (``kRDMAAndNVLForwarder``, one per NVLink peer) copy every token that arrived in the
    GPU's RDMA buffer, from every node the own included, into the NVLink buffer of each
    local rank that holds one of its experts (``combine`` reduces the same copies the
    other way). Over the ranks these are a token's ranks reached, the own included
    (:func:`remote_ranks_per_token` × G/(G − 1)); by symmetry each GPU forwards T of them
    a token at DeepEP's logical NVLink rate (:func:`deepep_nvlink_logical_efficiency` ×
    the link). On H800 this binds DeepEP's EP 16 row (2 nodes: half the wire bytes of
    EP 32, about as many forwarded copies), not its EP 32 / 64 rows (the wire binds).
    """
    link = gpu.interconnect
    if mode != "normal" or link is None or G <= link.scale_up_gpus:
        return np.zeros_like(T)
    ranks = remote_ranks_per_token(experts, top_k, G, groups, topk_groups) * G / (G - 1)
    rate = link.nvlink_bytes_per_s_per_direction * deepep_nvlink_logical_efficiency()
    return T * ranks * copy_bytes / rate if rate > 0 else np.zeros_like(T)


@functools.cache
def fitted_hop_s() -> float:
    """The NVLink hop latency (s) of the GPUs the kernel classes are fitted on
    (:data:`memsim.ops.classes.FIT_GPUS`, their mean ``nvlink_latency_s``): the hop a
    fitted per-copy cost was measured at. Every ``moe_a2a_perf`` row of those GPUs is EP 8
    on one node (``ep_size`` 8, ``node_num`` 1), inside their NVLink domain, whatever group
    the prediction is for."""
    return float(np.mean([resolve_gpu(name).interconnect.nvlink_latency_s
                          for name in FIT_GPUS]))


#: The (backend, mode, phase) of the collector rows whose call follows a GPU kernel of the
#: collector's own that the call's host work before its launch runs under
#: (:func:`collector_clone_s`; memsim.ops.classes.KernelClass ``prelaunch_s``): vLLM's
#: low-latency combine, after collector/wideep/vllm/collect_moe_a2a.py's ``expert_output =
#: expert_x.clone()`` of the dispatch's whole packed receive buffer. The normal combine's
#: clone is of the received tokens only (T · ranks reached rows, not experts/G · G · T),
#: too small to hide anything; TensorRT-LLM's collector (collector/wideep/trtllm/
#: collect_moe_a2a.py) is other code. The one place this rule lives: the fitter
#: (memsim.silicon.fit) frees ``prelaunch_share`` for these classes only.
COLLECTOR_CLONED = frozenset({("vllm", "low_latency", "combine")})


def collector_clone_s(tokens: Any, *, experts: int, hidden: int, dtype: str,
                      gpu: Any) -> np.ndarray:
    """Seconds of the GPU copy aiconfigurator's vLLM collector runs between its timed
    low-latency dispatch and combine (collector/wideep/vllm/collect_moe_a2a.py
    ``VllmBenchmarkAdapter.benchmark``: ``expert_output = expert_x.clone()``, outside both
    events): DeepEP's whole packed receive buffer, ``(experts / G, G · capacity, hidden)``
    elements of the dispatch's ``dtype`` (csrc/deep_ep.cpp @73b6ea4 ``low_latency_dispatch``:
    ``packed_recv_x``; :data:`A2A_ELEMENT_BYTES`: its fp8 scales are another tensor,
    ``packed_recv_x_scales``, which the collector does not clone: it clones ``prepared[0]``
    alone), read and written once at the profile's measured copy rate
    (``hbm_bandwidth`` × its efficiency). The collector's capacity is the row's token count
    (``VllmMoeA2ACase(..., tokens, LL_SMS, tokens)``), so the copy is 2 · experts · T ·
    hidden elements whatever the EP size: 117 MB at T = 16, 7168 wide, 256 experts, bf16
    (39 µs on H100, 30 µs on H200, 19 µs on B200)."""
    T = np.asarray(tokens, dtype=float)
    clone_bytes = 2.0 * experts * T * hidden * A2A_ELEMENT_BYTES[dtype]
    return clone_bytes / (gpu.spec.hbm_bandwidth_bytes_per_s * gpu.efficiency.hbm_bandwidth)


def _floor_s(cls: Any, T: np.ndarray, *, cloned: bool, eager: bool, collector: bool,
             experts: int, hidden: int, dtype: str, gpu: Any) -> np.ndarray:
    """Seconds of the class's ``floor_s`` a call pays, less the host work in it that the
    call does not pay: a CUDA-graph replay has no host work, before its launch or after it
    (``floor_s`` − ``host_s`` − ``prelaunch_s``); the collector's rows of a
    :data:`COLLECTOR_CLONED` class (``cloned``) pay ``floor_s`` − min(``prelaunch_s``, the
    clone queued right before the call, :func:`collector_clone_s`: the GPU copies while
    the host works); any other eager call pays all of ``floor_s`` (its ``host_s`` hides
    GPU time instead, :func:`moe_all_to_all`)."""
    if not eager:
        return np.full_like(T, cls.floor_s - cls.host_s - cls.prelaunch_s)
    if collector and cloned and cls.prelaunch_s:
        return cls.floor_s - np.minimum(cls.prelaunch_s, collector_clone_s(
            T, experts=experts, hidden=hidden, dtype=dtype, gpu=gpu))
    return np.full_like(T, cls.floor_s)


def moe_all_to_all(tokens: Any, *, hidden: int, top_k: int, experts: int, ep: int,
                   phase: str = "dispatch", mode: str = "normal", dtype: str = "bf16",
                   gpu: Any = "h200", backend: str | None = None, groups: int = 1,
                   topk_groups: int = 1, eager: bool = False,
                   collector: bool = False) -> OpPrediction:
    """One MoE dispatch or combine of ``tokens`` tokens per rank (arrays broadcast) over
    ``ep`` ranks, as DeepEP's kernels move them.

    - ``mode="normal"`` (DeepEP intranode/internode "normal" kernels; prefill): a token
      crosses the link once per remote rank holding one of its experts
      (:func:`remote_ranks_per_token` copies); beyond one scale-up domain once per remote
      *node* over the network, forwarded to the node's ranks over NVLink (DeepEP README:
      "forwarding data from NVLink domain to RDMA domain"), the network binding;
    - ``mode="low_latency"`` (DeepEP ``low_latency_dispatch`` / ``low_latency_combine``;
      decode): one message per (token, expert) pair, k·(G − 1)/G per token that leave the
      rank (csrc/kernels/internode_ll.cu sends per expert, no rank dedup).

    The per-copy cost (``row_s``) counts n copies per destination a token reaches (n
    ranks, or nodes beyond one domain), the own rank's included, not the n − 1 remote
    ones: a sender SM splits its warps evenly over all n destinations, its own among them
    (intranode.cu @73b6ea4 ``dispatch``: ``num_threads_per_rank = kNumThreads /
    kNumRanks``, ``buffer_ptrs[responsible_rank]`` and ``is_token_in_rank`` over every
    rank; ``combine``: ``send_rank_id`` over every rank; internode.cu ``dispatch``: the own
    node's tokens go to ``recv_buffer``), so each destination's chain of copies runs on
    1/n of the warps and the slowest (remote) one sets the time: per-destination copies ×
    n. A low-latency warp copies a message for its own rank's experts through
    ``nvshmemi_get_p2p_ptr``'s local address like any other: k per token. Only the
    remote copies cross the link. The fitted rows are all EP 8, where this is a constant
    8/7 that ``row_s`` absorbs; it is what carries to another EP size (GB200's rows are
    EP 4).

    ``groups`` / ``topk_groups``: the model's group-limited routing (config.json
    ``n_group`` / ``topk_group``; 1 / 1 is uniform), which bounds the ranks a token
    reaches in the normal kernels (:func:`remote_ranks_per_token`).

    Dispatch sends ``dtype`` on the wire (:data:`A2A_WIRE_BYTES`); combine returns bf16
    (DeepEP's combine takes bf16 x). GPU time = max(rate term + copy term, wire term,
    forward term):

    - rate term (``terms_s["sm_copy"]`` in normal mode, ``terms_s["link"]`` in low
      latency): bytes / :func:`a2a_sm_copy_bytes_per_s` (normal) or
      :func:`a2a_link_bytes_per_s` (low latency). In normal mode the bytes are every
      copy's, the own destination's included (``detail["copy_bytes"]`` = copies ×
      hidden × wire bytes): the SMs copy those too (see the per-copy cost below); in low
      latency the bytes that leave the rank (``detail["link_bytes"]``) at the link's rate;
    - copy term (``terms_s["copy"]``): copies · ``row_s`` (· hop / hop_fit in normal
      mode), the kernel class's seconds per token copy (``row_s``, fitted per (mode,
      phase, backend) on the H100 and H200 rows of aiconfigurator's ``moe_a2a_perf``);
    - wire term (``terms_s["wire"]``): the bytes that leave the rank (own copies stay on
      it) over the link's datasheet rate × :func:`wire_efficiency` (DeepEP's published
      internode rate on the network, :func:`deepep_rdma_efficiency`; 1 on NVLink);
    - forward term (``terms_s["forward"]``, normal mode beyond one domain): every
      token's copies to the ranks of each node it reaches over NVLink (:func:`_forward_s`).

    DeepEP's own internode figures (EP 16/32/64 on H800) are reproduced within 10 % by
    the TensorRT-LLM classes (tests/test_ops_comm.py, golden).

    ``bound`` names the largest side: "forward", "wire", else "sm_copy" / "link" or "copy"
    (whichever of the two is larger), or "latency" where the floor exceeds what is left.
    Time = floor + max(0, GPU time − ``host_s``) for an ``eager`` call, floor + GPU time
    in a CUDA-graph replay (``eager=False``); the floor is ``floor_s`` less the host work
    in it the call does not pay. One rule for both kinds of host work: a replay has none,
    so it pays ``floor_s`` − ``host_s`` − ``prelaunch_s`` (the low-latency kernels in
    vLLM's and TensorRT-LLM's decode); an eager call pays ``floor_s`` (less the clone's
    share of ``prelaunch_s`` on the collector's rows, below).

    ``host_s`` is the part of the call's fixed time that the transfer runs under; it
    exists only for an ``eager`` call (host code runs between the launch and the caller's
    end event), and a replay, with no host work to hide behind, pays neither it nor the
    GPU time it would hide. aiconfigurator's vLLM rows time the framework's eager
    Python calls with CUDA events around them
    (ai-dynamo/aiconfigurator collector/wideep/vllm/collect_moe_a2a.py
    ``VllmBenchmarkAdapter.benchmark``: ``prepare_finalize.prepare`` / ``.finalize``, no
    CUDA graph: the silicon mapper passes ``eager=True``), so a kernel shorter than the
    host code after its launch costs nothing beyond the floor. vLLM's normal-mode
    ``prepare`` (vllm/model_executor/layers/fused_moe/prepare_finalize/deepep_ht.py
    ``_do_dispatch`` and ``_receiver``) blocks the host in DeepEP's ``dispatch`` until
    ``notify_dispatch`` has published the receive counts, then launches the dispatch
    kernel and runs ``_receiver`` (the ``torch.where`` on the expert ids,
    ``ExpertTokensMetadata.make_from_list``, the quantisation check) while it copies: its
    rows are flat near 250 µs up to 512 tokens a rank on H100 and H200, then rise. Which
    classes hold a ``host_s`` is chosen from that source (memsim.silicon.fit
    ``VLLM_HOST_HIDDEN``); the others hold 0 (SGLang's included: its dispatcher is other
    code), and their time is floor + GPU time.

    ``collector``: the call is one of aiconfigurator's measured rows (the silicon mapper),
    whose ranks start unaligned: a class's ``skew_s`` (vLLM's low-latency combine, whose
    receive phase waits for every rank's flag, internode_ll.cu ``combine``) hides that
    much more GPU time there, and nowhere else (a model's calls are not skewed by the
    benchmark's launch order).

    ``prelaunch_s`` is the host work a call does before its launch, inside ``floor_s``
    (vLLM's low-latency ``finalize``, deepep_ll.py ``_finalize``: its Python down to
    ``low_latency_combine``'s launch). A CUDA-graph replay has none (above). GPU work
    queued before the call runs under it; in the collector (vLLM's: the
    :data:`COLLECTOR_CLONED` classes, by (backend, mode, phase)) that is its own
    ``expert_output = expert_x.clone()`` of the low-latency dispatch's whole
    packed receive buffer, right before the combine's start event
    (:func:`collector_clone_s`: 2 · experts · T · hidden elements, read and written), so
    its rows pay floor_s − min(prelaunch_s, clone). The rows show it: vLLM's low-latency
    combine is *faster* at 12-24 tokens than at 1-4 (H100, 6144 wide, top-8 of 256: 37
    against 46-56 µs), where the clone (25-50 µs on H100) outlasts the host work. H100's
    rows there are below H200's (37-38 against 41-51 µs) by what its dispatch rows there
    take above H200's (the dispatch's GPU work ending later after its host work exposes
    less of the combine's; the two phases' differences anti-correlate, their sum holds:
    docs/silicon.md), which memsim does not model. A model's eager call pays all of it,
    an upper bound: what GPU work precedes it is not this op's to know (in a MoE layer the
    combine is queued right after the expert GEMMs, which hide the host work as the clone
    does; no caller makes that call today: memsim.inference.mlp runs the low-latency
    kernels in the decode's CUDA graph).

    In the normal kernels the per-copy cost is a chain of NVLink round trips, not SM work,
    so it is scaled by the group's own hop latency (NVLink inside the scale-up domain, the
    network beyond it) over the fitted GPUs' NVLink hop (:func:`fitted_hop_s`: their rows
    are all EP 8 on one node): DeepEP's intranode kernels (csrc/kernels/intranode.cu @92fe2de,
    ``dispatch`` / ``combine``) run ``num_sms`` / 2 channels (20 SMs by default, the
    ``sms`` column of vLLM's rows), each sender SM's warps streaming one rank's tokens in
    chunks (``Config`` for 8 ranks: 6 tokens a chunk in dispatch, 4 in combine,
    deep_ep/buffer.py ``get_dispatch_config`` / ``get_combine_config``), and every chunk
    reads the receiver's ring-buffer head over NVLink (``ld_volatile_global(
    channel_head_idx)`` on the peer's buffer) and publishes its tail with a system-scope
    release (``st_release_sys_global``), which waits for the chunk's remote stores to be
    acknowledged. aiconfigurator's rows agree: beyond 1024 tokens B200's normal-mode rows
    take 1.3-1.7× H200's (vLLM, median per token count) at the same SM clock and per-SM
    L2 bandwidth though its NVLink is twice as fast: its copies wait out its 1.3 µs NVLink
    hop against Hopper's 0.6 µs (NVIDIA/nccl#1940), and its bytes move at the 20 SMs'
    rate, not the link's (:func:`a2a_sm_copy_bytes_per_s`).

    The low-latency kernels wait out no round trip per copy (csrc/kernels/internode_ll.cu
    @92fe2de, ``dispatch`` / ``combine``): a warp writes each message into the peer's
    buffer with stores that nothing waits on (dispatch: ``UNROLLED_WARP_COPY`` with
    ``st_na_global``, its slot from a local ``atomicAdd``; combine: ``tma_store_1d`` bulk
    copies, whose ``tma_store_wait`` is ``cp.async.bulk.wait_group.read``, the shared-memory
    source read, not the remote write), and each expert is signalled once at the end (one
    ``st_release_sys_global`` of its count or flag): their ``row_s`` is not scaled.
    """
    from memsim.errors import InputError

    positive("tokens", tokens)
    if mode not in A2A_MODES:
        raise InputError("mode", mode, f"must be one of {', '.join(A2A_MODES)}")
    if phase not in A2A_PHASES:
        raise InputError("phase", phase, f"must be one of {', '.join(A2A_PHASES)}")
    wire = "bf16" if phase == "combine" else dtype
    if wire not in A2A_WIRE_BYTES:
        raise InputError("dtype", dtype, f"must be one of {', '.join(A2A_WIRE_BYTES)}")
    G = _check_gpus(ep)
    if top_k < 1 or experts < top_k:
        raise InputError("experts", experts, f"must be ≥ top_k={top_k} ≥ 1")
    gpu = resolve_gpu(gpu)
    (T,) = as_float(tokens)
    if G == 1:
        return _no_link(T)
    domain = gpu.interconnect.scale_up_gpus if gpu.interconnect is not None else G
    if mode == "low_latency":   # one message per (token, expert): n = G "destinations"
        dests, remote = G, top_k * (G - 1) / G
    elif G <= domain:
        dests, remote = G, remote_ranks_per_token(experts, top_k, G, groups, topk_groups)
    else:  # normal internode: once per remote node over the network, then NVLink fan-out
        dests = -(-G // domain)
        remote = remote_ranks_per_token(experts, top_k, dests, groups, topk_groups)
    # n destinations share a sender's warps, the own one too (docstring): n/(n − 1) of the
    # remote copies; only the remote ones cross the link
    copies = T * remote * dests / (dests - 1)
    copy_bytes = hidden * A2A_WIRE_BYTES[wire]
    traffic = T * remote * copy_bytes
    bw, hop_s = _link(gpu, G)
    cls = kernel_class(f"a2a/{mode}/{phase}", backend)
    rate = (a2a_sm_copy_bytes_per_s(gpu, cls) if mode == "normal"
            else a2a_link_bytes_per_s(bw, cls))
    # normal mode: the SMs copy every destination's bytes, the own one's too; low latency:
    # the link's rate on the bytes that leave the rank
    rate_s = (copies * copy_bytes if mode == "normal" else traffic) / rate
    hop_ratio = hop_s / fitted_hop_s() if mode == "normal" else 1.0
    copy_s = copies * cls.row_s * hop_ratio
    wire_s = traffic / (bw * wire_efficiency(gpu, G))
    forward_s = _forward_s(T, copy_bytes, gpu, G, mode, experts, top_k, groups, topk_groups)
    cloned = (check_backend(backend), mode, phase) in COLLECTOR_CLONED
    floor = _floor_s(cls, T, cloned=cloned, eager=eager, collector=collector,
                     experts=experts, hidden=hidden, dtype=dtype, gpu=gpu)
    # never faster than the wire, nor than the NVLink forwarding beyond one domain
    gpu_s = np.maximum(np.maximum(rate_s + copy_s, wire_s), forward_s)
    # host work after the launch (eager calls); the collector's rank skew (its rows only)
    hidden_s = (cls.host_s if eager else 0.0) + (cls.skew_s if collector else 0.0)
    beyond_host_s = np.maximum(0.0, gpu_s - hidden_s)   # GPU time the host hides
    rate_term = "sm_copy" if mode == "normal" else "link"
    bound = np.where(floor > beyond_host_s, "latency",
                     np.where(forward_s >= np.maximum(wire_s, rate_s + copy_s), "forward",
                              np.where(wire_s >= rate_s + copy_s, "wire",
                                       np.where(rate_s >= copy_s, rate_term, "copy"))))
    return OpPrediction(
        time_s=out(floor + beyond_host_s), bound=str(bound) if bound.ndim == 0 else bound,
        flops=out(np.zeros_like(T)), hbm_bytes=out(2.0 * traffic), launch_s=out(floor),
        terms_s={rate_term: out(rate_s), "copy": out(copy_s), "wire": out(wire_s),
                 "forward": out(forward_s)},
        detail={"algorithm": f"deepep/{mode}/{phase}", "link_bytes": out(traffic),
                "copy_bytes": out(copies * copy_bytes), "copies": out(copies)})


def p2p(message_bytes: Any, *, gpu: Any = "h100-sxm", gpus: int = 2,
        backend: str | None = None) -> OpPrediction:
    """Send ``message_bytes`` from one GPU to another (pipeline stages); ``gpus`` = 2 is a
    pair in one scale-up domain, more than the domain crosses the network."""
    check_backend(backend)
    return _simple("p2p", message_bytes, max(gpus, 2), gpu, lambda G: 1.0)


def collective_s(kind: str, message_bytes: Any, gpus: int, *, gpu: Any,
                 backend: str | None = None) -> Any:
    """Seconds of collective ``kind`` ("all_reduce", "all_gather", "reduce_scatter",
    "all_to_all", "p2p") for whole-model sums: empty messages and one GPU cost nothing."""
    M = np.asarray(message_bytes, dtype=float)
    if gpus <= 1 and kind != "p2p":
        return np.zeros_like(M)
    fn = {"all_reduce": all_reduce, "all_gather": all_gather, "reduce_scatter": reduce_scatter,
          "all_to_all": all_to_all}.get(kind)
    safe = np.maximum(M, 1.0)
    if fn is None:
        t = p2p(safe, gpu=gpu, gpus=max(int(gpus), 2), backend=backend).time_s
    else:
        t = fn(safe, int(gpus), gpu=gpu, backend=backend).time_s
    return np.where(M > 0, t, 0.0)
