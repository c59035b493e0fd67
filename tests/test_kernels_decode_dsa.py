"""Split-KV decoding and DeepSeek Sparse Attention in the CUDA simulator against their
float64 references: the fp32 partials and O of decoding; the indexer logits, a valid top-k
and the sparse attention over the chosen keys of DSA (split and reduced when decoding).
Fresh random inputs each run, outputs poisoned; the seed is in every failure."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from memsim.kernels.registry import explicit_tiling, mismatches, run_once

from memsim.problem import AttentionProblem, Indexer, Mask


def check(problem: AttentionProblem, algorithm: str, **tiles) -> dict:
    tiling = explicit_tiling(problem, algorithm, **tiles)
    seed = secrets.randbits(32)
    bufs, _ = run_once(problem, tiling, np.random.default_rng(seed))
    bad = mismatches(problem, tiling, bufs)
    assert not bad, f"seed={seed}: {bad}"
    return bufs


def decode(mask: Mask, dtype: str = "fp32", N: int = 4, S: int = 97) -> AttentionProblem:
    return AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=4, kv_heads=2, head_dim=24,
                            dtype=dtype, mask=mask)


@pytest.mark.parametrize(("mask", "dtype"), [(Mask(), "fp32"), (Mask(window=20), "fp32"),
                                             (Mask(causal=False), "fp16")])
def test_split_kv_decoding(mask: Mask, dtype: str) -> None:
    check(decode(mask, dtype), "flash_decode", block_q=4, block_kv=16, kv_splits=4)


def test_a_split_where_a_query_sees_no_key_gets_weight_zero() -> None:
    """Queries at positions 62..65, Bc = 16, one split per tile: the last split holds keys
    64 and 65, which the query at 62 does not see — a fully masked row of that split. Its
    partial is O = 0, lse = −∞, and O is still right (no NaN)."""
    bufs = check(decode(Mask(), S=66), "flash_decode", block_q=4, block_kv=16, kv_splits=5)
    assert np.isneginf(bufs["lse_part"][0, :, 4, 0]).all()
    assert (bufs["o_part"][0, :, 4, 0] == 0).all() and np.isfinite(bufs["o"]).all()


def test_the_reduce_takes_rows_in_chunks_when_many_splits() -> None:
    """600 splits leave room for the weights of 6 rows at a time; 8 rows need two chunks."""
    check(decode(Mask(), S=66), "flash_decode", block_q=4, block_kv=16, kv_splits=600)


def dsa(N: int, S: int, k: int, dtype: str, mla: bool) -> AttentionProblem:
    return AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=4, kv_heads=1 if mla else 2,
                            head_dim=24, head_dim_v=16 if mla else None, mla=mla, dtype=dtype,
                            mask=Mask(top_k=k), indexer=Indexer(heads=2, head_dim=8,
                                                                dtype="fp16"))


@pytest.mark.parametrize(("dtype", "mla"), [("fp32", True), ("fp16", False)])
def test_dsa_prefill(dtype: str, mla: bool) -> None:
    """N = 24 queries over S = 30 keys, k = 8: early queries see fewer than k keys."""
    check(dsa(24, 30, 8, dtype, mla), "dsa", block_q=1, block_kv=8, threads=16,
          heads_per_block=4 if mla else 2, index_block_q=8)


@pytest.mark.parametrize("S", [40, 14])
def test_dsa_decoding_splits_indexer_and_sparse_kernels(S: int) -> None:
    """Three queries in one indexer tile with kv_splits = 3: split indexer, split sparse
    kernel and the reduce. S = 14 < k = 16: the selections are shorter than k."""
    check(dsa(3, S, 16, "fp32", True), "dsa", block_q=1, block_kv=4, threads=16,
          index_block_q=4, kv_splits=3)
