"""memsim.ops.moe: expert loads, grouped-GEMM quantisation, EP/TP sharding, fp8."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.ops import moe

DSV3 = dict(hidden=7168, inter=2048, experts=256, top_k=8)


@given(st.integers(1, 20000), st.sampled_from([1, 2, 8, 32]),
       st.sampled_from(["balanced", "power_law_1.01", "power_law_1.2"]))
def test_loads_are_whole_tokens_capped_per_expert(tokens: int, ep: int, dist: str) -> None:
    loads = moe.expert_loads(np.array(tokens), 256, 8, ep, dist)
    draws = 1 if dist == "balanced" else moe.DRAWS
    assert loads.shape == (draws, 256 // ep)
    assert np.all(loads >= 0) and np.all(loads <= tokens)
    assert np.all(loads == np.round(loads))
    # the measured rank is the busiest: at least its fair share of the assignments
    assert np.all(loads.sum(axis=-1) >= tokens * 8 / ep - 1e-9)
    if ep == 1:
        assert np.all(loads.sum(axis=-1) == tokens * 8)


def test_power_law_routing_is_seeded_and_skewed() -> None:
    # the database's routing (aiconfigurator power_law_logits_v3): random per-expert loads,
    # the same draws on every call, heavier than balanced on the busiest EP rank
    a = moe.expert_loads(np.array([4096, 64]), 256, 8, 8, "power_law_1.2")
    assert np.array_equal(a, moe.expert_loads(np.array([4096, 64]), 256, 8, 8, "power_law_1.2"))
    assert a.shape == (2, moe.DRAWS, 32)
    assert np.all(a[0].max(axis=-1) > 4 * 4096 * 8 / 256)  # a hot expert, 4x the mean
    # with many tokens per expert the hot rank is slower (aiconfigurator h200 trtllm
    # fp8_block, DeepSeek-V3 EP8, 4096 tokens: 1.168 ms power-law 1.01 against 0.726 ms
    # balanced, 1.61x)
    kw = dict(ep=8, dtype="fp8_block", gpu="h200", backend="trtllm")
    p = moe.predict(4096, **DSV3, distribution="power_law_1.01", **kw)
    assert p.time_s > 1.3 * moe.predict(4096, **DSV3, **kw).time_s


def test_balanced_ep_splits_the_work_and_power_law_loads_rank_zero() -> None:
    one = moe.predict(8192, **DSV3, ep=1, dtype="fp8_block", gpu="h200")
    eight = moe.predict(8192, **DSV3, ep=8, dtype="fp8_block", gpu="h200")
    assert eight.flops == pytest.approx(one.flops / 8)
    skew = moe.predict(8192, **DSV3, ep=8, dtype="fp8_block", gpu="h200",
                       distribution="power_law_1.01")
    assert skew.time_s > eight.time_s


def test_few_tokens_per_expert_waste_tiles() -> None:
    # 64 tokens over 256 experts (top-8): 2 tokens per expert, each in a 64-row tile: time per
    # FLOP is far above that of 16K tokens (512 per expert).
    few = moe.predict(64, **DSV3, dtype="bf16")
    many = moe.predict(16384, **DSV3, dtype="bf16")
    assert few.time_s / few.flops > 5 * many.time_s / many.flops


def test_fp8_is_faster_than_bf16_and_tp_divides_the_expert() -> None:
    T = np.array([1, 64, 4096])
    assert np.all(moe.predict(T, **DSV3, dtype="fp8").time_s
                  < moe.predict(T, **DSV3, dtype="bf16").time_s)
    tp = moe.predict(4096, **DSV3, tp=4, dtype="bf16")
    assert tp.flops == pytest.approx(moe.predict(4096, **DSV3, dtype="bf16").flops / 4)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="top_k=9"):
        moe.predict(1, 64, 64, 8, 9)
    with pytest.raises(InputError, match="ep=3"):
        moe.predict(1, 64, 64, 8, 2, ep=3)
    with pytest.raises(InputError, match="distribution='zipf'"):
        moe.predict(1, 64, 64, 8, 2, distribution="zipf")


def test_kernel_tiles_and_triton_passes_follow_the_framework() -> None:
    h100 = "h100-sxm"
    assert moe.grouped_tiles("trtllm", "bf16", 1, moe.resolve_gpu(h100))[0] == moe.SM90_GROUPED
    assert moe.grouped_tiles("vllm", "bf16", 1, moe.resolve_gpu(h100))[0] == moe.TRITON
    assert moe.grouped_tiles("trtllm", "bf16", 1, moe.resolve_gpu("b200"))[0] == (
        moe.SM100_GROUPED)
    # vLLM's Triton fused_moe runs silu_and_mul and moe_sum over all tokens · top_k rows, EP or
    # not; TensorRT-LLM's CUTLASS MoE only over the local experts' rows
    T, ep = 4096, 8
    vllm = moe.predict(T, **DSV3, ep=ep, backend="vllm", gpu=h100)
    trt = moe.predict(T, **DSV3, ep=ep, backend="trtllm", gpu=h100)
    rows, local = T * 8, T * 8 / ep
    extra = (T * 7168 * 2 * 2 * 8 * (1 - 1 / ep) + (rows - local) * 2048 * (2 * 2 + 2))
    assert vllm.hbm_bytes - trt.hbm_bytes == pytest.approx(extra)


def test_few_tokens_per_expert_stream_the_touched_experts_weights() -> None:
    # decode-sized batches: each token touches top_k more experts whose weights are read once
    # (aiconfigurator h200 trtllm bf16, 6144/2048/256 top-8, TP1 EP1 balanced: 0.166, 0.300,
    # 0.573, 1.131 ms for 1, 2, 4, 8 tokens — doubling with the touched experts)
    T = np.array([1, 2, 4, 8])
    p = moe.predict(T, 6144, 2048, 256, 8, dtype="bf16", gpu="h200", backend="trtllm")
    gemm_s = np.asarray(p.time_s) - np.asarray(p.launch_s)
    assert np.all(np.asarray(p.bound) == "hbm")
    np.testing.assert_allclose(gemm_s[1:] / gemm_s[:-1], 2.0, rtol=0.05)
    weights = 8 * T * 3 * 6144 * 2048 * 2  # touched experts × (gate, up, down) × bf16
    assert np.all(np.asarray(p.hbm_bytes) >= weights)


def test_activation_passes_run_at_their_own_bandwidth() -> None:
    # the permute / activation / finalize traffic is the class's hbm_act term, apart from
    # the weight stream; TP does not shrink the hidden-sized rows it moves
    from memsim.ops.classes import kernel_class

    gpu = moe.resolve_gpu("h100-sxm")
    cls = kernel_class("moe", "trtllm", "bf16")
    T, h, i, k = 16384.0, 4096, 2048, 8
    p = moe.predict(T, h, i, 256, k, tp=32, dtype="bf16", gpu=gpu, backend="trtllm")
    rows, il = T * k, i / 32
    # every token's output row, then per local row the permute (read + write) and the
    # finalize read (memsim.ops.moe.route_permute_bytes)
    act = (T * h * 2 + rows * h * (2 * 2 + 2) + rows * il * (2 * 2 + 2)
           + rows * (h * 2 + 2 * il * 2) + rows * (il * 2 + h * 2))
    bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.efficiency.get("hbm_act", cls.eff("hbm"))
    assert p.terms_s["act"] == pytest.approx(act / bw)


def test_vllm_fp8_off_hopper_takes_the_triton_class() -> None:
    kw = dict(dtype="fp8", backend="vllm")
    T = np.array([1, 16, 256])
    # off Hopper vLLM's fp8 MoE is Triton fused_moe: the Triton (bf16) class at the fp8 rate
    l40s = moe.predict(T, **DSV3, gpu="l40s", **kw)
    assert l40s.detail["kernel_class"] == "moe/vllm/bf16"
    assert moe.predict(T, **DSV3, gpu="h100-sxm", **kw).detail["kernel_class"] == "moe/vllm/fp8"


def test_vllm_on_blackwell_runs_tensorrt_llm_moe_kernels() -> None:
    b200 = moe.predict(64, **DSV3, dtype="fp8", gpu="b200", backend="vllm")
    assert b200.detail["kernel_class"].startswith("moe/trtllm/")
    assert b200.time_s == moe.predict(64, **DSV3, dtype="fp8", gpu="b200",
                                      backend="trtllm").time_s
    h100 = moe.predict(64, **DSV3, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert h100.detail["kernel_class"].startswith("moe/vllm/")


def _collector_balanced(tokens: int, experts: int, top_k: int, ep: int) -> np.ndarray:
    """aiconfigurator collector/helper.py balanced_logits, pick by pick (each token's
    distinct experts counted once), on EP rank 0's contiguous experts."""
    stride = -(-experts // top_k)
    loads = np.zeros(experts)
    for t in range(tokens):
        picks = {(t + i * stride) % experts if tokens >= stride
                 else int(np.floor((t * stride / tokens + i * stride) % experts))
                 for i in range(top_k)}
        for e in picks:
            loads[e] += 1
    return loads[:experts // ep]


@given(st.integers(1, 600), st.sampled_from([8, 16, 60, 128, 256, 512]),
       st.sampled_from([1, 2, 6, 8, 22]), st.sampled_from([1, 2, 4, 8]))
def test_strided_loads_are_the_collectors_balanced_routing(tokens: int, experts: int,
                                                          top_k: int, ep: int) -> None:
    if top_k > experts or experts % ep:
        return
    loads = moe.expert_loads(np.array(tokens), experts, top_k, ep, "strided")
    assert loads.shape == (1, experts // ep)
    assert np.array_equal(loads[0], _collector_balanced(tokens, experts, top_k, ep))


def test_strided_routing_touches_more_of_rank_zero_than_an_even_spread() -> None:
    # 8 tokens, 512 experts top-22, EP32: the collector's picks land every 3rd expert and the
    # last stride block wraps round, so rank 0 (experts 0-15) has 11 touched, an even spread
    # 6 (aiconfigurator h100 TensorRT-LLM bf16 2048/5120: 8 tokens 0.191 ms, 16 tokens, all
    # 16 touched, 0.260 ms)
    strided = moe.expert_loads(np.array([8, 16]), 512, 22, 32, "strided")[:, 0]
    even = moe.expert_loads(np.array([8, 16]), 512, 22, 32, "balanced")[:, 0]
    assert np.count_nonzero(strided, axis=-1).tolist() == [11, 16]
    assert np.count_nonzero(even, axis=-1).tolist() == [6, 11]
    kw = dict(ep=32, gpu="h100-sxm", backend="trtllm")
    t8, t16 = (moe.predict(n, 2048, 5120, 512, 22, distribution="strided", **kw).time_s
               for n in (8, 16))
    assert t8 < t16 and t8 > 1.3 * moe.predict(8, 2048, 5120, 512, 22, **kw).time_s


def test_a_tiles_fixed_time_weighs_on_short_k_loops() -> None:
    # the class's cta_s: per tile of the grouped GEMM, beyond the weight stream; with TP 32
    # (64 columns per expert) the tiles' short K loops make it a larger share of the time
    # than with TP 1
    from dataclasses import replace

    from memsim.ops.classes import kernel_class, trial_classes

    cls = kernel_class("moe", "trtllm", "bf16")
    kw = dict(ep=1, gpu="h200", backend="trtllm")
    share = []
    for tp in (1, 32):
        with trial_classes({cls.name: replace(cls, cta_s=0.0)}):
            base = moe.predict(64, **DSV3, tp=tp, **kw).time_s
        with trial_classes({cls.name: replace(cls, cta_s=1e-6)}):
            more = moe.predict(64, **DSV3, tp=tp, **kw).time_s
        assert more > base
        share.append(more / base - 1.0)
    assert share[1] > 2 * share[0]


def test_vllm_per_tensor_fp8_on_hopper_runs_flashinfers_fallback_tile() -> None:
    # vLLM's ModelOpt fp8 MoE on SM90 is FlashInfer's CUTLASS fused MoE, untuned: its first
    # SM90 grouped-GEMM candidate, 128 × 16 without a cluster (cutlass_heuristic.cpp
    # get_candidate_tiles_sm90); not TensorRT-LLM's autotuned pick, not block-scaled fp8,
    # not Blackwell (there vLLM runs TensorRT-LLM's kernels)
    h100, b200 = moe.resolve_gpu("h100-sxm"), moe.resolve_gpu("b200")
    assert moe.grouped_tiles("vllm", "fp8", 1, h100) == (((128, 16),), 1)
    assert moe.grouped_tiles("vllm", "fp8", 8, h100) == (((128, 16),), 1)
    assert moe.grouped_tiles("trtllm", "fp8", 1, h100)[0] == moe.SM90_GROUPED
    assert moe.grouped_tiles("vllm", "fp8_block", 8, h100)[0] == moe.SM90_GROUPED
    assert moe.grouped_tiles(moe.kernel_backend("vllm", b200), "fp8", 1, b200)[0] == (
        moe.SM100_GROUPED)


def test_vllm_per_tensor_fp8_pads_each_expert_to_128_rows() -> None:
    # one 128-row tile per expert holds 1 … 128 tokens: the MMA term is flat from 32 tokens
    # (one per expert, 256 experts top-8) to 4096 (128 per expert) and doubles at 8192
    # (aiconfigurator h200 vllm fp8 6144/2048/256 top-8 TP1 EP1: 14.1, 9.0, 17.9 ms)
    p = moe.predict(np.array([32, 4096, 8192]), 6144, 2048, 256, 8, dtype="fp8",
                    gpu="h200", backend="vllm", distribution="strided")
    matmul = np.asarray(p.terms_s["matmul"])
    assert matmul[1] == pytest.approx(matmul[0])
    assert matmul[2] == pytest.approx(2.0 * matmul[0], rel=0.01)  # whole waves


@given(st.sampled_from([1, 4, 16, 64, 256, 1024]), st.sampled_from([1, 4, 32]))
def test_vllm_per_tensor_fp8_is_tile_bound_not_hbm_bound_on_hopper(tokens: int,
                                                                   tp: int) -> None:
    # the fallback tile's time is its MMAs and per-tile overhead, the same on H100 and H200
    # (same SMs, clock and tensor peak): aiconfigurator's vllm fp8 rows take the same time
    # on both up to 1024 tokens (median H100/H200 1.00-1.03 over 533 rows per token count),
    # where a weight stream would make H200 1.43× faster (its HBM bandwidth ratio)
    kw = dict(hidden=4096, inter=2048, experts=256, top_k=8, tp=tp, dtype="fp8",
              backend="vllm", distribution="strided")
    h100 = moe.predict(tokens, gpu="h100-sxm", **kw)
    h200 = moe.predict(tokens, gpu="h200", **kw)
    assert h100.bound in ("matmul", "latency")
    assert float(h100.time_s) / float(h200.time_s) == pytest.approx(1.0, abs=0.05)


@given(st.integers(1, 16384), st.sampled_from([1, 8, 64, 256]), st.sampled_from([1, 4]),
       st.sampled_from(["balanced", "power_law_1.2"]))
def test_trtllm_block_fp8_on_hopper_requantises_its_16_bit_rows(tokens: int, ep: int, tp: int,
                                                                 dist: str) -> None:
    # TensorRT-LLM's block-scaled fp8 MoE on Hopper keeps its rows in bf16 and quantises each
    # grouped GEMM's input itself (fp8_blockscale_gemm.cu moeGemm, internal_quantize_a):
    # per local row (hidden + inter/tp) · (2 read + 1 written + 4/128 scale) bytes, and the
    # activation writes bf16, inter/tp bytes more than fp8. Per-tensor fp8 moves fp8 rows, so
    # the two differ by those bytes on every local row (same weights, same tiles).
    kw = dict(**DSV3, tp=tp, ep=ep, gpu="h100-sxm", backend="trtllm", distribution=dist)
    block = moe.predict(float(tokens), dtype="fp8_block", **kw)
    fp8 = moe.predict(float(tokens), dtype="fp8", **kw)
    h, i = 7168.0, 2048.0 / tp
    per_row = (h + i) * (2 + 1 + 4 / 128) + i * (2 - 1)
    local_rows = np.mean(moe.expert_loads(np.array(tokens), 256, 8, ep, dist).sum(axis=-1))
    # and per-tensor fp8 quantises every token first (route_permute_bytes): 2 + 1 bytes
    assert float(block.hbm_bytes) - float(fp8.hbm_bytes) == pytest.approx(
        local_rows * per_row - tokens * h * 3, rel=1e-9)


def test_requantisation_is_only_trtllm_block_fp8_on_hopper() -> None:
    h, i = 7168.0, 256.0
    assert moe.requant_bytes_per_row("trtllm", "fp8_block", moe.resolve_gpu("h200"), h, i) > 0
    for backend, dtype, gpu in (("trtllm", "fp8", "h200"), ("trtllm", "bf16", "h100-sxm"),
                                ("vllm", "fp8_block", "h200"),     # vLLM: its own kernels
                                ("trtllm", "fp8_block", "b200")):  # DeepGEMM on Blackwell
        assert moe.requant_bytes_per_row(backend, dtype, moe.resolve_gpu(gpu), h, i) == 0.0


def test_trtllm_block_fp8_on_hopper_walks_every_local_expert() -> None:
    # DeepGEMM's GroupedWithOffset GEMMs and their input quantisation search all local
    # experts per call (memsim.ops.moe.problem_walk_s): a fixed time per call of row_s per
    # local expert, touched or not (aiconfigurator h100 fp8_block 7168/2048, 384 experts
    # top-8, TP16, 1 token: 146.6 µs at EP1, 33.6 µs at EP16)
    from dataclasses import replace

    from memsim.ops.classes import clock_ratio, kernel_class

    cls = kernel_class("moe", "trtllm", "fp8_block")
    assert cls.row_s > 0
    h100 = moe.resolve_gpu("h100-sxm")
    unit = replace(cls, row_s=1e-6)
    assert moe.problem_walk_s("trtllm", "fp8_block", h100, 384, unit) == pytest.approx(384e-6)
    b200, l40s = moe.resolve_gpu("b200"), moe.resolve_gpu("l40s")
    # DeepGEMM on Blackwell walks them too (the b200 rows: 138 µs at EP1, 36 µs at EP16)
    assert moe.problem_walk_s("trtllm", "fp8_block", b200, 384, unit) > 0
    for backend, dtype, gpu in (("trtllm", "fp8", h100), ("vllm", "fp8_block", h100),
                                ("vllm", "fp8_block", b200), ("trtllm", "fp8_block", l40s)):
        assert moe.problem_walk_s(backend, dtype, gpu, 384, unit) == 0.0
    # vLLM on Blackwell runs FlashInfer's kernels through TensorRT-LLM's class: no walk
    vllm = moe.predict(1, **{**DSV3, "tp": 8}, dtype="fp8_block", gpu=b200, backend="vllm")
    assert float(vllm.launch_s) == pytest.approx(cls.floor_s)
    kw = dict(hidden=7168, inter=2048, experts=384, top_k=8, tp=16, dtype="fp8_block",
              gpu=h100, backend="trtllm")
    for ep in (1, 16):
        p = moe.predict(1, ep=ep, **kw)
        walk = 384 // ep * cls.row_s * clock_ratio(h100)
        assert float(p.launch_s) == pytest.approx(cls.floor_s + walk)
    assert float(moe.predict(1, ep=1, **kw).time_s) > 2 * float(moe.predict(1, ep=16, **kw).time_s)


def test_vllm_triton_under_ep_runs_a_program_per_block_of_every_expert() -> None:
    # vLLM's Triton fused_moe aligns every expert's rows and writes zeros for the other
    # ranks' blocks (fused_moe_kernel: off_experts == -1): those programs cost the class's
    # cta_s per wave, and more of them with more tokens; none where every expert is local
    from dataclasses import replace

    from memsim.ops.classes import kernel_class, trial_classes

    h100 = moe.resolve_gpu("h100-sxm")
    fitted = kernel_class("moe", "vllm", "bf16")
    cls = replace(fitted, cta_s=2.0 * fitted.cta_s + 1e-7)  # more than the class's own
    loads = moe.expert_loads(np.array([64, 16384]), 256, 8, 8, "strided")
    every = moe.expert_loads(np.array([64, 16384]), 256, 8, 1, "strided")
    args = (4096.0, 7168.0, h100, cls, "bf16", 2.0, 2.0)
    alone = moe._grouped_terms(loads, *args[:4], "bf16", 2.0, 2.0, moe.TRITON, 1)["t"]
    local = moe.triton_ep_terms(loads, loads, *args)["t"]
    assert np.allclose(local, alone)
    extra = moe.triton_ep_terms(loads, every, *args)["t"] - alone
    assert np.all(extra > 0) and extra[1, 0] > 2 * extra[0, 0]
    kw = dict(**DSV3, ep=8, dtype="bf16", gpu=h100, backend="vllm", distribution="strided")
    base = moe.predict(np.array([64, 4096]), **kw).time_s
    with trial_classes({cls.name: cls}):
        more = moe.predict(np.array([64, 4096]), **kw).time_s
    assert np.all(np.asarray(more) > np.asarray(base))


def test_vllm_block_scaled_fp8_on_hopper_has_a_class_per_kernel() -> None:
    # without EP vLLM runs Triton fused_moe (vllm_fp8moe_triton_tritonexperts), with EP
    # FlashInfer's CUTLASS block-scaled MoE (vllm_fp8moe_flashinfer_cutlass_flashinferexperts)
    h100, l40s = moe.resolve_gpu("h100-sxm"), moe.resolve_gpu("l40s")
    assert moe.class_variant("vllm", "fp8_block", h100, 1) == "fp8_block"
    assert moe.class_variant("vllm", "fp8_block", h100, 8) == "fp8_block_flashinfer"
    assert moe.class_variant("trtllm", "fp8_block", h100, 8) == "fp8_block"
    assert moe.class_variant("vllm", "fp8_block", l40s, 8) == "fp8_block"
    kw = dict(**DSV3, dtype="fp8_block", gpu=h100, backend="vllm")
    assert moe.predict(64, ep=8, **kw).detail["kernel_class"] == "moe/vllm/fp8_block_flashinfer"
    assert moe.predict(64, ep=1, **kw).detail["kernel_class"] == "moe/vllm/fp8_block"


def test_trtllm_mxfp4_on_hopper_runs_triton_kernels_with_its_own_class() -> None:
    # aiconfigurator's collector runs gpt-oss's MXFP4 MoE on Hopper with TensorRT-LLM's
    # Triton backend (collector/trtllm/collect_moe.py: moe_backend = "triton" for
    # 86 < SM < 100) and on Blackwell with TRT-LLM-gen; vLLM keeps its own kernels
    h100, b200 = moe.resolve_gpu("h100-sxm"), moe.resolve_gpu("b200")
    assert moe.class_variant("trtllm", "w4a16_mxfp4", h100) == "w4a16_mxfp4"
    assert moe.grouped_tiles("trtllm", "w4a16_mxfp4", 8, h100) == (moe.TRITON, 1)
    assert moe.class_variant("trtllm", "w4a16_mxfp4", b200) == "bf16"
    assert moe.class_variant("vllm", "w4a16_mxfp4", h100) == "bf16"
    assert not moe.runs_triton_kernels("trtllm", "bf16", h100)
    p = moe.predict(64, 2880, 2880, 32, 4, dtype="w4a16_mxfp4", gpu=h100, backend="trtllm")
    assert p.detail["kernel_class"] == "moe/trtllm/w4a16_mxfp4"
    assert "route" in p.terms_s
    assert "route" not in moe.predict(64, **DSV3, gpu=h100, backend="trtllm").terms_s


def test_matmul_ogs_block_m_follows_opt_flags() -> None:
    # triton_kernels opt_flags.py make_default_opt_flags_nvidia, tokens per expert = every
    # gate over the local experts: 128 experts top-4 EP2 (64 local), the measured steps
    # of aiconfigurator's h100 w4a16_mxfp4 2880/2880 rows fall where block_m doubles
    tokens = np.array([1, 128, 160, 256, 320, 1024, 1536, 16384])
    assert moe.matmul_ogs_block_m(tokens, 4, 64).tolist() == [16, 16, 32, 32, 64, 64, 128, 128]


@given(st.integers(1, 100000), st.integers(1, 100000), st.sampled_from([1, 2, 4, 8, 22]),
       st.sampled_from([1, 4, 16, 64, 128]))
def test_matmul_ogs_block_m_is_a_power_of_two_growing_with_tokens(a: int, b: int, top_k: int,
                                                                 local: int) -> None:
    lo, hi = sorted((a, b))
    m = moe.matmul_ogs_block_m(np.array([lo, hi]), top_k, local)
    assert set(m.tolist()) <= {16.0, 32.0, 64.0, 128.0}
    assert m[0] <= m[1]


@given(st.integers(1, 16384), st.sampled_from([1, 8, 32]))
def test_trtllm_mxfp4_token_walk_grows_with_every_token_not_the_local_rows(tokens: int,
                                                                           ep: int) -> None:
    # the Triton router's per-token time: linear in the tokens entering the layer, the same
    # at every EP, and absent from every other kernel
    h100 = moe.resolve_gpu("h100-sxm")
    cls = moe.kernel_class("moe", "trtllm", "w4a16_mxfp4")
    one = moe.token_walk_s("trtllm", "w4a16_mxfp4", h100, np.array(1.0), cls)
    walk = moe.token_walk_s("trtllm", "w4a16_mxfp4", h100, np.array(float(tokens)), cls)
    assert one > 0 and walk == pytest.approx(tokens * one)
    assert moe.token_walk_s("trtllm", "bf16", h100, np.array(float(tokens)), cls) == 0
    p = moe.predict(tokens, 2880, 2880, 32, 4, ep=ep, dtype="w4a16_mxfp4", gpu=h100,
                    backend="trtllm")
    assert p.terms_s["route"] == pytest.approx(walk)


def test_vllm_zero_writing_programs_follow_the_triton_kernel() -> None:
    # vLLM runs Triton fused_moe with an expert_map wherever it runs Triton (a100
    # vllm_fused_moe, l40s …_triton_tritonexperts for bf16, fp8 and fp8_block at every EP),
    # not FlashInfer's CUTLASS MoE on Hopper (fp8, fp8_block with EP), not on Blackwell,
    # not without EP; SGLang's rows are not vLLM's kernel
    h100, l40s, a100, b200 = (moe.resolve_gpu(g) for g in
                              ("h100-sxm", "l40s", "a100-sxm4-80gb", "b200"))
    assert moe.writes_ep_zeros("vllm", "bf16", 8, h100)
    assert not moe.writes_ep_zeros("vllm", "bf16", 1, h100)
    for dtype in ("bf16", "fp8", "fp8_block"):
        assert moe.writes_ep_zeros("vllm", dtype, 8, l40s)
        assert moe.grouped_tiles("vllm", dtype, 8, l40s) == (moe.TRITON, 1)
    assert moe.writes_ep_zeros("vllm", "bf16", 8, a100)
    assert not moe.writes_ep_zeros("vllm", "fp8", 8, h100)
    assert not moe.writes_ep_zeros("vllm", "fp8_block", 8, h100)
    assert not moe.writes_ep_zeros("vllm", "int4_wo", 8, l40s)
    assert not moe.writes_ep_zeros(moe.kernel_backend("vllm", b200), "bf16", 8, b200)
    assert not moe.writes_ep_zeros("sglang", "bf16", 8, h100)
    assert moe.grouped_tiles("trtllm", "bf16", 8, l40s)[0] == moe.TILES


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200"])
def test_vllm_per_tensor_fp8_has_no_cliff_as_a_block_fills(gpu: str) -> None:
    # aiconfigurator h200 vllm fp8 5120/8192, 128 experts top-1: 24.0, 18.2, 13.5 ms at 32,
    # 96, 128 rows per expert, a smooth fall as the 128-row blocks fill; a law that prices
    # a part-filled block apart from a full one jumps between 127 and 128 rows (2.3x)
    rows = np.array([127, 128])
    t = moe.predict(128 * rows, 5120, 8192, 128, 1, dtype="fp8", gpu=gpu, backend="vllm",
                    distribution="strided").time_s
    assert float(t[0]) <= 1.2 * float(t[1])


@given(tokens=st.integers(1, 1 << 15), ep=st.sampled_from([1, 8, 64, 256]),
       hidden=st.sampled_from([2048, 4096, 7168]))
def test_trtllm_cutlass_moe_touches_every_token_only_to_write_its_output(tokens: int, ep: int,
                                                                          hidden: int) -> None:
    # TensorRT-LLM's CUTLASS MoE (moe_kernels.cu): expandInputRowsKernel copies the local
    # rows only, finalizeMoeRoutingKernel writes every token's 16-bit output row; per-tensor
    # fp8 first quantises every token (bf16 read, fp8 write)
    h100 = moe.resolve_gpu("h100-sxm")
    T, local = np.array([float(tokens)]), np.array([tokens * 8.0 / ep])
    bf16 = moe.route_permute_bytes("trtllm", "bf16", h100, T, local, hidden, 8, ep,
                                   2.0)
    assert bf16 == pytest.approx(tokens * hidden * 2.0 + local * hidden * 6.0)
    none_local = moe.route_permute_bytes("trtllm", "bf16", h100, T, 0.0 * local,
                                         hidden, 8, ep, 2.0)
    assert none_local == pytest.approx(tokens * hidden * 2.0)
    fp8 = moe.route_permute_bytes("trtllm", "fp8", h100, T, local, hidden, 8, ep, 1.0)
    assert fp8 == pytest.approx(tokens * hidden * 5.0 + local * hidden * 4.0)
    # Triton fused_moe: routing and permute read every token, top_k / ep rows each way
    sglang = moe.route_permute_bytes("sglang", "bf16", h100, T, local, hidden, 8, ep, 2.0)
    assert sglang == pytest.approx(tokens * hidden * 2.0 * (2.0 + 2.0 * 8 / ep))
