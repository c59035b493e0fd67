"""vLLM's FlashMLA sparse MLA kernels (memsim.ops.sparse_mla): which kernel runs, the
heads it pads to, and the keys it computes."""

from __future__ import annotations

import numpy as np
import pytest

from memsim.hardware import load_gpu
from memsim.ops import sparse_mla


def test_vllm_picks_the_fp8_decode_kernel_for_few_heads_or_one_token() -> None:
    """bf16 cache: the sparse prefill kernel always; fp8 cache: the fp8 decode kernel
    below 32 heads (mixed batch) and for one-token decodes, else the prefill kernel."""
    N = np.array([1, 16, 4096])
    assert sparse_mla.vllm_kernel(False, 8, N).tolist() == ["prefill"] * 3
    assert sparse_mla.vllm_kernel(True, 16, N).tolist() == ["decode"] * 3
    assert sparse_mla.vllm_kernel(True, 32, N).tolist() == ["decode", "prefill", "prefill"]


def test_heads_padded_to_the_kernels_tiles() -> None:
    h100, b200 = load_gpu("h100-sxm"), load_gpu("b200")
    assert sparse_mla.padded_heads("prefill", 8, h100) == 64
    assert sparse_mla.padded_heads("prefill", 128, h100) == 128
    assert sparse_mla.padded_heads("prefill", 32, b200) == 128
    assert sparse_mla.padded_heads("decode", 8, h100) == 64
    assert sparse_mla.padded_heads("decode", 100, h100) == 128


def _t(kv_fp8: bool, heads: int, B, N, S, gpu: str = "h100-sxm") -> np.ndarray:
    return sparse_mla.sparse_time_s(kv_fp8, heads, np.asarray(B), np.asarray(N),
                                    np.asarray(S), 2048, load_gpu(gpu))


def test_prefill_kernel_computes_only_the_selected_key_blocks() -> None:
    """topk_length: the prefill kernel's time grows with a decode's valid keys (whole
    64-key blocks) until the top-k is full, then stays."""
    t = _t(False, 128, [64] * 5, [1] * 5, [3, 64, 65, 2048, 65536])
    assert t[0] == t[1] < t[2] < t[3] == t[4]


def test_fp8_decode_kernel_computes_every_top_k_slot() -> None:
    """V3.2's fp8 sparse decode has no dynamic top-k length: the same time at any cache."""
    t = _t(True, 128, [512] * 3, [1] * 3, [3, 2048, 65536])
    assert t[0] == t[1] == t[2]


def test_prefill_kernel_runs_in_waves_of_one_cta_per_sm() -> None:
    """One CTA per (token, 64-head tile), one per SM: up to 132 CTAs (H100's SMs) time as
    one; the next CTA starts a second wave."""
    t = _t(False, 128, [1, 66, 67], [1, 1, 1], [4096] * 3)
    assert t[0] == pytest.approx(t[1])
    assert t[2] > t[1]


def test_module_times_vllm_dsa_with_its_own_kernels() -> None:
    """The DSA module's attention with vLLM on Hopper no longer pays FlashMLA's sparse
    kernel over every top-k slot: a short decode costs less than a full one."""
    from memsim.inference import mla_module

    short, full = (float(mla_module.module("decode", 1024, 1, s, 128, sparse=True,
                                           gpu="h100-sxm", backend="vllm")
                         .terms_s["attention"]) for s in (3, 4096))
    assert short < full


def test_sm100_prefill_kernel_splits_each_head_tile_over_two_ctas() -> None:
    """SM100: one token's 128-head tile is a cluster of two CTAs (64 heads each), one CTA
    per SM, so B200's 148 SMs take 74 tokens in one wave; the 75th starts a second. Each
    CTA computes half the tile, so one wave costs less than a whole tile on one SM."""
    t = _t(False, 128, [1, 74, 75], [1, 1, 1], [4096] * 3, "b200")
    assert t[0] == pytest.approx(t[1])
    assert t[2] > t[1]
    b200 = load_gpu("b200")
    from memsim.ops.classes import kernel_class

    cls = kernel_class("dsa", "vllm", "sparse_prefill")
    rate = b200.peak_flop_per_s("tensor", "bf16") * min(cls.eff("tensor"), 1.0)
    whole_tile_s = (cls.floor_s + 2048 * 128 * sparse_mla.MLA_FLOPS_PER_KEY
                    / (rate / b200.spec.sm_count) + 128 * cls.row_s)
    assert t[0] < whole_tile_s


def test_sm100_prefill_kernel_walks_128_key_blocks() -> None:
    """SM100's sparse prefill kernel gathers whole 128-key blocks (SM90's: 64), so a
    decode over 64 or 65 valid keys costs the same on B200 but not on H100."""
    b200 = _t(False, 128, [8, 8], [1, 1], [64, 65], "b200")
    h100 = _t(False, 128, [8, 8], [1, 1], [64, 65], "h100-sxm")
    assert b200[0] == b200[1]
    assert h100[0] < h100[1]
