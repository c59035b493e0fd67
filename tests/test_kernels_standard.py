"""Standard attention's three kernels (QKᵀ, softmax, PV) in the CUDA simulator against the
float64 reference: S and P as well as O, and S and P must stay untouched (NaN poison)
outside the active tiles. Fresh random inputs each run; the seed is in every failure."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from memsim.kernels.registry import explicit_tiling, mismatches, run_once

from memsim.problem import AttentionProblem, Mask

MASKS = {
    "full": Mask(causal=False),
    "causal": Mask(),
    "window": Mask(window=5),
    "band": Mask(causal=False, window=9),
    "chunk": Mask(chunk=12),
}


def check(problem: AttentionProblem, logit_scale: float = 1.0, tolerance: float | None = None,
          **tiles) -> dict:
    tiles = dict(block_q=16, block_kv=16, threads=32) | tiles
    tiling = explicit_tiling(problem, "standard_blockskip", **tiles)
    seed = secrets.randbits(32)
    bufs, _ = run_once(problem, tiling, np.random.default_rng(seed), logit_scale=logit_scale)
    bad = mismatches(problem, tiling, bufs, tolerance)
    assert not bad, f"seed={seed}: {bad}"
    return bufs


def awkward(mask: Mask, dtype: str = "fp32") -> AttentionProblem:
    return AttentionProblem(batch=1, seq_len=37, kv_len=45, heads=4, kv_heads=2, head_dim=24,
                            dtype=dtype, mask=mask)


@pytest.mark.parametrize("mask", list(MASKS))
def test_every_mask_matches_the_reference(mask: str) -> None:
    bufs = check(awkward(MASKS[mask]))
    if mask != "full":                  # masked tiles are skipped: their S is never written
        assert np.isnan(bufs["s"]).any()


def test_fp16_storage_of_s_p_and_o() -> None:
    check(awkward(Mask(), "fp16"))


def test_mla_and_several_rows_per_thread() -> None:
    p = AttentionProblem(batch=2, seq_len=20, heads=4, kv_heads=1, head_dim=16, head_dim_v=8,
                         mla=True, dtype="fp32", mask=Mask())
    check(p, block_q=8, block_kv=8, threads=16)


def test_large_logits_do_not_overflow() -> None:
    bufs = check(awkward(Mask()), logit_scale=12.0, tolerance=1e-3)
    assert np.isfinite(bufs["o"]).all() and np.nanmax(bufs["s"]) > 89
