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
    # with many tokens per expert the hot rank is slower; with few, skew touches fewer experts
    p = moe.predict(4096, **DSV3, ep=8, distribution="power_law_1.01")
    assert p.time_s > 1.2 * moe.predict(4096, **DSV3, ep=8).time_s


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
