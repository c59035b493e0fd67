"""FlashAttention-2 forward (Dao 2023, Algorithm 1) in Numba-CUDA, from a memsim Tiling.

One block per (query tile, head group, batch): grid ``(⌈N/Br⌉, H/hpb, B)``. The block
stages its Q tile — ``rows = hpb × Br`` query rows, the ``hpb`` query heads of one KV head
packed together (GQA) — in shared memory once, then walks the active K/V tiles of that
query tile from the last down, as FA-2's forward does (memsim.geometry: fully masked
tiles are skipped, FlashAttention Prop. 4), staging the valid keys of each in shared
memory. Each query row is owned by one thread,
whose scores, running max m, sum ℓ and O accumulator stay in its registers/local memory,
as the Tiling's SRAM footprint (Q + K + V tiles) assumes; a thread owns ⌈rows/threads⌉
rows, and threads beyond the rows only help stage tiles. Every score of an active tile is
computed, masked ones too (then set to −∞). O and the fp32 logsumexp are written once.

Global traffic per block (memsim.algorithms.flash2): Q tile once, the valid keys of each
active tile (K and V; under MLA V is K[..., :Dv] of the staged tile), O and logsumexp once.

The same kernel body serves split-KV decoding (``split=True``, kernels/decode.py): the one
query tile holds all N queries and block x takes its share of the active tiles, writing
fp32 partials instead of O.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, int32

from memsim.problem import AttentionProblem
from memsim.tiling import Tiling

from . import reference
from .common import (
    F32,
    NEG_INF,
    ONE,
    OPS_EXP,
    OPS_MATMUL_FLOPS,
    ZERO,
    Launch,
    MaskSpec,
    attention_inputs,
    ceil_div,
    check_tiling,
    mask_spec,
    numba_storage,
    online_softmax_update,
    poisoned,
    row_key_range,
    rows_per_thread,
    skewed_dot,
    softmax_scale,
    storage_dtype,
    tile_key_range,
)

ALGORITHM = "flash2"
OUTPUTS = ("o", "lse")


@functools.cache
def forward_kernel(tiling: Tiling, spec: MaskSpec, count: bool = False, split: bool = False):
    """The compiled forward kernel for one Tiling and mask.

    Arguments: ``q, k, v, o, lse, n_q, n_kv, group, ops`` with ``group = H/K`` query heads
    per KV head. ``split=False``: ``o (B, N, H, Dv)`` at the storage dtype, ``lse (B, H, N)``
    fp32. ``split=True``: ``o (B, H, splits, N, Dv)`` and ``lse (B, H, splits, N)`` fp32
    partials, normalised per split.
    """
    BR, BC, HPB, T = tiling.block_q, tiling.block_kv, tiling.heads_per_block, tiling.threads
    D, DV, MLA, SPLITS = tiling.head_dim, tiling.head_dim_v, tiling.mla, tiling.kv_splits
    ROWS, RPT = tiling.rows, rows_per_thread(tiling)
    STORE = numba_storage(tiling.elem_bytes)
    SCALE = softmax_scale(D)
    KIND, W, HALF, C = spec.kind, spec.w, spec.half, spec.c
    VR, VC = (1, 1) if MLA else (BC, DV)     # under MLA V is read from the K tile
    COUNT, SPLIT = count, split
    STAGE_O = not split and DV <= D          # O fits in the Q tile's place

    @cuda.jit
    def kernel(q, k, v, o, lse, n_q, n_kv, group, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.y * HPB
        b = cuda.blockIdx.z
        kvh = h0 // group
        q_sh = cuda.shared.array((ROWS, D), STORE)
        k_sh = cuda.shared.array((BC, D), STORE)
        v_sh = cuda.shared.array((VR, VC), STORE)
        acc = cuda.local.array((RPT, DV), float32)
        s = cuda.local.array(BC, float32)
        m = cuda.local.array(RPT, float32)
        ell = cuda.local.array(RPT, float32)
        jlo = cuda.local.array(RPT, int32)
        jhi = cuda.local.array(RPT, int32)
        n_mac = 0
        n_exp = 0

        if SPLIT:
            i0 = 0
            n_rows = n_q
        else:
            i0 = cuda.blockIdx.x * BR
            n_rows = min(BR, n_q - i0)
        lo = n_kv - n_q + i0                       # position of the tile's first query
        kmin, kmax = tile_key_range(KIND, W, HALF, C, lo, lo + n_rows - 1, n_kv)
        t_first = kmin // BC
        t_last = kmax // BC
        if SPLIT:                                  # this block's share of the tiles
            per = (t_last - t_first + SPLITS) // SPLITS
            t_first += cuda.blockIdx.x * per
            t_last = min(t_last, t_first + per - 1)
            if t_first > t_last:                   # empty split: no reads; FA-2 writes
                for e in range(tid, n_rows * HPB, T):  # O = 0, lse = −∞ and exits
                    i = e // HPB                   # (flash_fwd_kernel.h, splitkv)
                    h = h0 + e - i * HPB
                    for dv in range(DV):
                        o[b, h, cuda.blockIdx.x, i, dv] = ZERO
                    lse[b, h, cuda.blockIdx.x, i] = NEG_INF
                return

        # Q tile, rows ordered (token, head) so a warp reads contiguous global memory
        for e in range(tid, n_rows * HPB * D, T):
            r = e // D
            d = e - r * D
            i = r // HPB
            q_sh[r, d] = q[b, i0 + i, h0 + r - i * HPB, d]
        for slot in range(RPT):
            m[slot] = NEG_INF
            ell[slot] = ZERO
            for dv in range(DV):
                acc[slot, dv] = ZERO
            r = tid + slot * T
            a, z = row_key_range(KIND, W, HALF, C, lo + r // HPB, n_kv)
            jlo[slot] = a
            jhi[slot] = z

        # from the last active tile down, as FA-2 does (flash_fwd_kernel.h
        # compute_attn_1rowblock and _splitkv: "We iterate over the blocks in reverse
        # order"); memsim.trace.sched_flash2 plays the same order through its L2
        for tile in range(t_last, t_first - 1, -1):
            j0 = tile * BC
            nk = min(BC, n_kv - j0)                # valid keys of this tile
            cuda.syncthreads()                     # the previous tile is consumed
            for e in range(tid, nk * D, T):
                c = e // D
                k_sh[c, e - c * D] = k[b, j0 + c, kvh, e - c * D]
            if not MLA:
                for e in range(tid, nk * DV, T):
                    c = e // DV
                    v_sh[c, e - c * DV] = v[b, j0 + c, kvh, e - c * DV]
            cuda.syncthreads()
            for slot in range(RPT):
                r = tid + slot * T
                if r >= n_rows * HPB:
                    continue
                # S = Q Kᵀ/√D for every key of the tile; d starts at r so that the
                # threads of a warp hit different banks of q_sh and k_sh
                m_tile = NEG_INF
                for c in range(nk):
                    dot = skewed_dot(q_sh, r, k_sh, c, D, r % D)
                    if COUNT:
                        n_mac += D
                    j = j0 + c
                    sc = dot * SCALE if jlo[slot] <= j <= jhi[slot] else NEG_INF
                    s[c] = sc
                    m_tile = max(m_tile, sc)
                # online softmax (FA-2 Alg. 1 lines 8-10), −∞-guarded; under MLA V is
                # the first Dv columns of the K tile
                online_softmax_update(acc, m, ell, slot, s, nk, m_tile,
                                      k_sh if MLA else v_sh, DV)
                if COUNT:
                    n_mac += nk * DV
                    n_exp += nk + 1

        # O = acc/ℓ and logsumexp = m + log ℓ (lines 12-13); a row that saw no key: 0, −∞.
        # O goes through q_sh (free once every thread is past the tile loop) so that the
        # block writes whole rows of O: coalesced, one 32-byte sector per 8 or 16 values.
        if STAGE_O:
            cuda.syncthreads()
        for slot in range(RPT):
            r = tid + slot * T
            if r >= n_rows * HPB:
                continue
            i = r // HPB
            h = h0 + r - i * HPB
            has = ell[slot] > ZERO
            inv = ONE / ell[slot] if has else ZERO
            lse_row = m[slot] + float32(math.log(ell[slot])) if has else NEG_INF
            if SPLIT:
                for dv in range(DV):
                    o[b, h, cuda.blockIdx.x, i, dv] = acc[slot, dv] * inv
                lse[b, h, cuda.blockIdx.x, i] = lse_row
            else:
                dv = r % DV
                for _ in range(DV):
                    if STAGE_O:
                        q_sh[r, dv] = STORE(acc[slot, dv] * inv)
                    else:
                        o[b, i0 + i, h, dv] = STORE(acc[slot, dv] * inv)
                    dv += 1
                    if dv == DV:
                        dv = 0
                lse[b, h, i0 + i] = lse_row
        if STAGE_O:
            cuda.syncthreads()
            for e in range(tid, n_rows * HPB * DV, T):
                r = e // DV
                i = r // HPB
                o[b, i0 + i, h0 + r - i * HPB, e - r * DV] = q_sh[r, e - r * DV]
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)
            cuda.atomic.add(ops, OPS_EXP, n_exp)

    return kernel


def launches(problem: AttentionProblem, tiling: Tiling, count: bool = False) -> list[Launch]:
    """The one launch of the FlashAttention-2 forward for ``problem`` under ``tiling``."""
    check_tiling(problem, tiling, ALGORITHM)
    p = problem
    kernel = forward_kernel(tiling, mask_spec(p.mask), count)
    grid = (ceil_div(p.N, tiling.block_q), p.H // tiling.heads_per_block, p.B)
    v = "k" if p.mla else "v"
    return [Launch("flash2.forward", kernel, grid, tiling.threads,
                   ("q", "k", v, "o", "lse"), (p.N, p.S, p.H // p.K))]


def buffers(problem: AttentionProblem, tiling: Tiling, rng: np.random.Generator,
            logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random inputs and poisoned outputs: ``o (B, N, H, Dv)``, ``lse (B, H, N)`` fp32."""
    p = problem
    out = attention_inputs(p, rng, logit_scale)
    out["o"] = poisoned((p.B, p.N, p.H, p.Dv), storage_dtype(p.dtype))
    out["lse"] = poisoned((p.B, p.H, p.N), F32)
    return out


def expected(problem: AttentionProblem, tiling: Tiling,
             bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 reference of the outputs (kernels.reference.flash2)."""
    o, lse = reference.flash2(bufs["q"], bufs["k"], bufs.get("v"), problem.mask,
                              tiling.block_q, tiling.block_kv, problem.Dv)
    return {"o": o, "lse": lse}
