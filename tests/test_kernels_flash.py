"""FlashAttention-2 and -1 kernels in the CUDA simulator against their float64 references.

Inputs are fresh random numbers every run (the seed is in every failure message), outputs
are poisoned with NaN first, so an element the kernel never writes fails. Shapes are tiny
and awkward — N = 37 queries over S = 45 keys, D = 24, tiles of 16 that divide neither —
with GQA packing (two query heads per KV head in one block).
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from memsim.kernels import reference
from memsim.kernels.common import key_range_host, mask_spec
from memsim.kernels.registry import explicit_tiling, mismatches, run_once

from memsim.problem import AttentionProblem, Mask

MASKS = {
    "full": Mask(causal=False),
    "causal": Mask(),
    "window": Mask(window=5),
    "band": Mask(causal=False, window=9),
    "chunk": Mask(chunk=12),
}


def awkward(mask: Mask, dtype: str = "fp32", **kw) -> AttentionProblem:
    shape = dict(batch=1, seq_len=37, kv_len=45, heads=4, kv_heads=2, head_dim=24) | kw
    return AttentionProblem(**shape, dtype=dtype, mask=mask)


def check(problem: AttentionProblem, algorithm: str, logit_scale: float = 1.0,
          tolerance: float | None = None, **tiles) -> dict:
    tiles = dict(block_q=16, block_kv=16, threads=32) | tiles
    tiling = explicit_tiling(problem, algorithm, **tiles)
    seed = secrets.randbits(32)
    bufs, _ = run_once(problem, tiling, np.random.default_rng(seed), logit_scale=logit_scale)
    bad = mismatches(problem, tiling, bufs, tolerance)
    assert not bad, f"seed={seed}: {bad}"
    return bufs


@pytest.mark.parametrize("algorithm", ["flash2", "flash1"])
@pytest.mark.parametrize("mask", list(MASKS))
def test_every_mask_matches_the_reference(algorithm: str, mask: str) -> None:
    check(awkward(MASKS[mask]), algorithm)


@pytest.mark.parametrize("algorithm", ["flash2", "flash1"])
def test_fp16_storage(algorithm: str) -> None:
    check(awkward(Mask(), "fp16"), algorithm)


@pytest.mark.parametrize("algorithm", ["flash2", "flash1"])
def test_mla_reads_v_from_the_latent_and_threads_own_several_rows(algorithm: str) -> None:
    """MLA: one latent of D = 16 per key, V its first 8 elements, four heads in one block
    (32 rows) on 16 threads: two rows per thread."""
    p = AttentionProblem(batch=2, seq_len=20, heads=4, kv_heads=1, head_dim=16, head_dim_v=8,
                         mla=True, dtype="fp32", mask=Mask())
    check(p, algorithm, block_q=8, block_kv=8, threads=16)


@pytest.mark.parametrize("algorithm", ["flash2", "flash1"])
def test_rows_that_see_no_key_of_their_first_tiles_stay_finite(algorithm: str) -> None:
    """No memsim mask masks a whole row (each query sees itself), but a row can see none of
    the keys of its first active tiles: window W = 3 with Br = 16 > Bc = 4. The online
    softmax then starts from m = −∞ for that row (−∞ − (−∞) is the NaN trap)."""
    p = AttentionProblem(batch=1, seq_len=40, heads=2, head_dim=8, dtype="fp32",
                         mask=Mask(window=3))
    lo, hi = 16, 31                                     # query tile 1
    kmin, _ = key_range_host(mask_spec(p.mask), lo, hi, p.S)
    assert reference.visible(p.mask, p.N, p.S)[hi, kmin // 4 * 4:(kmin // 4 + 1) * 4].sum() == 0
    bufs = check(p, algorithm, block_q=16, block_kv=4)
    assert np.isfinite(bufs["o"]).all()


def test_large_logits_do_not_overflow() -> None:
    """q, k × 12: logits up to several hundred, so exp(logit) overflows fp32 (exp(89) does)
    unless the running max is subtracted first."""
    p = awkward(Mask(causal=False))
    bufs = check(p, "flash2", logit_scale=12.0, tolerance=1e-3)
    assert np.isfinite(bufs["o"]).all() and bufs["lse"].max() > 89
