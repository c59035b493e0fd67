"""Split-KV decoding (Flash-Decoding; FlashAttention-2's ``flash_fwd_splitkv`` kernels) in
Numba-CUDA, from a Tiling: a few query tokens against a long KV cache.

1. ``split``: the FlashAttention-2 kernel body (kernels/flash2.py, ``split=True``) with
   grid ``(kv_splits, H/hpb, B)``. All N query tokens of the ``hpb`` heads of one KV head
   form the one query tile (``block_q ≥ N``); its n active K/V tiles are cut into ranges of
   ⌈n/kv_splits⌉ tiles, one per block, so that even batch 1 fills the GPU. Each block writes
   normalised fp32 partials ``o_part (B, H, kv_splits, N, Dv)`` and ``lse_part (B, H,
   kv_splits, N)``; a block past the s' = ⌈n/⌈n/kv_splits⌉⌉ non-empty ranges loads nothing
   and writes O = 0, lse = −∞ (FA-2's ``compute_attn_1rowblock_splitkv``, flash_fwd_kernel.h:
   "We exit early and write 0 to gOaccum and -inf to gLSEaccum").
2. ``reduce``: one block per (head group, batch) reads the partials of all kv_splits
   splits once (FA-2's ``combine_attn_seqk_parallel`` loops over ``params.num_splits``) —
   first each row's logsumexps, giving weights w_s = exp(lse_s − max) (one exponential per
   row and split, kept in shared memory for a chunk of rows at a time), then the partial O
   values in coalesced runs — and writes O = Σ_s w_s·O_s / Σ_s w_s at the storage dtype.

A query row can see no key at all in one split: with N > 1 the first query (position
S − N) sees none of the keys after it, so a last split holding only such keys leaves that
row fully masked. Its partial is O = 0, lse = −∞, and it gets weight 0 in the reduction.

Global traffic (memsim.algorithms.flash_decode, rule "fa2"): per non-empty split Q and the
valid keys of its tiles, per launched split the partials; the reduction reads the partials
and writes O.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from memsim.errors import InputError
from memsim.problem import AttentionProblem
from memsim.tiling import Tiling

from . import reference
from .common import (
    F32,
    NEG_INF,
    ONE,
    OPS_EXP,
    ZERO,
    Launch,
    attention_inputs,
    ceil_div,
    check_tiling,
    mask_spec,
    numba_storage,
    poisoned,
    storage_dtype,
)
from .flash2 import forward_kernel

ALGORITHM = "flash_decode"
OUTPUTS = ("o_part", "lse_part", "o")


#: Shared-memory budget of the reduce kernel's per-row split weights, fp32 words.
REDUCE_WEIGHT_WORDS = 4096


@functools.cache
def reduce_kernel(tiling: Tiling, rows: int, count: bool = False):
    """``(o_part, lse_part, o, n_q, used, ops)``: O from the partials of the first ``used``
    splits (every launched one), for the N·hpb ≤ ``rows`` rows of one (head group, batch)
    per block, taken in chunks whose split weights fit :data:`REDUCE_WEIGHT_WORDS`."""
    HPB, T, DV, SPLITS = tiling.heads_per_block, tiling.threads, tiling.head_dim_v, \
        tiling.kv_splits
    CHUNK = max(1, min(rows, REDUCE_WEIGHT_WORDS // SPLITS))
    STORE = numba_storage(tiling.elem_bytes)
    COUNT = count

    @cuda.jit
    def kernel(o_part, lse_part, o, n_q, used, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.x * HPB
        b = cuda.blockIdx.y
        w_sh = cuda.shared.array((CHUNK, SPLITS), float32)
        inv_sh = cuda.shared.array(CHUNK, float32)
        n_exp = 0
        n_rows = n_q * HPB                               # rows ordered (token, head)
        for r0 in range(0, n_rows, CHUNK):
            n_chunk = min(CHUNK, n_rows - r0)
            for rr in range(tid, n_chunk, T):            # weights w_s = exp(lse_s − max)
                i = (r0 + rr) // HPB
                h = h0 + r0 + rr - i * HPB
                top = NEG_INF
                for sp in range(used):
                    w_sh[rr, sp] = lse_part[b, h, sp, i]
                    top = max(top, w_sh[rr, sp])
                top_use = top if top != NEG_INF else ZERO
                total = ZERO
                for sp in range(used):
                    w_sh[rr, sp] = float32(math.exp(w_sh[rr, sp] - top_use))
                    total += w_sh[rr, sp]
                inv_sh[rr] = ONE / total if total > ZERO else ZERO
                if COUNT:
                    n_exp += used
            cuda.syncthreads()
            for e in range(tid, n_chunk * DV, T):        # O = Σ_s w_s·O_s / Σ_s w_s
                rr = e // DV
                dv = e - rr * DV
                i = (r0 + rr) // HPB
                h = h0 + r0 + rr - i * HPB
                val = ZERO
                for sp in range(used):
                    val += w_sh[rr, sp] * o_part[b, h, sp, i, dv]
                o[b, i, h, dv] = STORE(val * inv_sh[rr])
            cuda.syncthreads()
        if COUNT:
            cuda.atomic.add(ops, OPS_EXP, n_exp)

    return kernel


def used_splits(n_tiles: int, splits: int) -> int:
    """Non-empty splits when ``n_tiles`` tiles are cut into ranges of ⌈n/splits⌉."""
    per = ceil_div(n_tiles, splits)
    return ceil_div(n_tiles, per)


def launches(problem: AttentionProblem, tiling: Tiling, count: bool = False) -> list[Launch]:
    """The split and reduce launches for ``problem`` under ``tiling``."""
    check_tiling(problem, tiling, ALGORITHM)
    p = problem
    if tiling.block_q < p.N:
        raise InputError("block_q", tiling.block_q,
                         f"must hold all seq_len={p.N} query tokens for flash_decode")
    spec = mask_spec(p.mask)
    groups = p.H // tiling.heads_per_block
    used = tiling.kv_splits                 # launched, empty ones too (they write partials)
    v = "k" if p.mla else "v"
    return [
        Launch("flash_decode.split", forward_kernel(tiling, spec, count, split=True),
               (used, groups, p.B), tiling.threads,
               ("q", "k", v, "o_part", "lse_part"), (p.N, p.S, p.H // p.K)),
        Launch("flash_decode.reduce", reduce_kernel(tiling, tiling.rows, count), (groups, p.B),
               tiling.threads, ("o_part", "lse_part", "o"), (p.N, used)),
    ]


def buffers(problem: AttentionProblem, tiling: Tiling, rng: np.random.Generator,
            logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random inputs; poisoned fp32 partials and ``o (B, N, H, Dv)``."""
    p, s = problem, tiling.kv_splits
    out = attention_inputs(p, rng, logit_scale)
    out["o_part"] = poisoned((p.B, p.H, s, p.N, p.Dv), F32)
    out["lse_part"] = poisoned((p.B, p.H, s, p.N), F32)
    out["o"] = poisoned((p.B, p.N, p.H, p.Dv), storage_dtype(p.dtype))
    return out


def expected(problem: AttentionProblem, tiling: Tiling,
             bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 partials (NaN for empty splits, never written) and O."""
    return reference.split_kv(bufs["q"], bufs["k"], bufs.get("v"), problem.mask,
                              tiling.block_kv, tiling.kv_splits, problem.Dv)
