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
