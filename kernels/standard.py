"""Standard attention as three Numba-CUDA kernels with S and P in global memory — the HBM
round trips FlashAttention removes (FlashAttention paper, Algorithm 0).

Every kernel has one block per (query tile, head group, batch), grid ``(⌈N/Br⌉, H/hpb, B)``,
and walks the active key tiles of its query tile (fully masked tiles skipped, Prop. 4):

1. ``qk``: Q tile staged once, each active K tile staged; every score of the tile is
   computed (one thread per score, so a warp writes a contiguous run of a row of S) and
   written to ``s (B, H, N, S)`` at the storage dtype, −∞ where masked.
2. ``softmax``: one thread per row reads its span of S twice — an online max and sum
   (one exponential per element: the sum is rescaled only when the max grows), then
   P = exp(S − m)/ℓ (a second exponential per element) — and writes ``p (B, H, N, S)``.
3. ``pv``: each active P tile and V tile staged; one thread per row accumulates O, written
   once (through shared memory, so the writes are coalesced).

Global traffic (memsim.algorithms.standard): Q once and the valid keys of every active tile
(K, then V), S written once and read twice, P written once and read once, O written once.
Only the active tiles of S and P are touched; the rest of the dense buffers is never
written.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from memsim.problem import AttentionProblem
from memsim.tiling import Tiling

from . import reference
from .common import (
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
    poisoned,
    row_key_range,
    rows_per_thread,
    skewed_dot,
    softmax_scale,
    storage_dtype,
    tile_key_range,
)

ALGORITHM = "standard_blockskip"
OUTPUTS = ("s", "p", "o")


@functools.cache
def qk_kernel(tiling: Tiling, spec: MaskSpec, count: bool = False):
    """S = QKᵀ/√D over the active tiles: ``(q, k, s, n_q, n_kv, group, ops)``."""
    BR, BC, HPB, T = tiling.block_q, tiling.block_kv, tiling.heads_per_block, tiling.threads
    D, ROWS = tiling.head_dim, tiling.rows
    STORE = numba_storage(tiling.elem_bytes)
    SCALE = softmax_scale(D)
    KIND, W, HALF, C = spec.kind, spec.w, spec.half, spec.c
    COUNT = count

    @cuda.jit
    def kernel(q, k, s, n_q, n_kv, group, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.y * HPB
        b = cuda.blockIdx.z
        kvh = h0 // group
        q_sh = cuda.shared.array((ROWS, D), STORE)
        k_sh = cuda.shared.array((BC, D), STORE)
        n_mac = 0
        i0 = cuda.blockIdx.x * BR
        n_rows = min(BR, n_q - i0)
        lo = n_kv - n_q + i0
        kmin, kmax = tile_key_range(KIND, W, HALF, C, lo, lo + n_rows - 1, n_kv)
        for e in range(tid, n_rows * HPB * D, T):
            r = e // D
            i = r // HPB
            q_sh[r, e - r * D] = q[b, i0 + i, h0 + r - i * HPB, e - r * D]
        for tile in range(kmin // BC, kmax // BC + 1):
            j0 = tile * BC
            nk = min(BC, n_kv - j0)
            cuda.syncthreads()
            for e in range(tid, nk * D, T):
                c = e // D
                k_sh[c, e - c * D] = k[b, j0 + c, kvh, e - c * D]
            cuda.syncthreads()
            for e in range(tid, n_rows * HPB * nk, T):
                r = e // nk
                c = e - r * nk
                dot = skewed_dot(q_sh, r, k_sh, c, D, c % D)
                if COUNT:
                    n_mac += D
                i = r // HPB
                jlo, jhi = row_key_range(KIND, W, HALF, C, lo + i, n_kv)
                val = dot * SCALE if jlo <= j0 + c <= jhi else NEG_INF
                s[b, h0 + r - i * HPB, i0 + i, j0 + c] = STORE(val)
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)

    return kernel


@functools.cache
def softmax_kernel(tiling: Tiling, spec: MaskSpec, count: bool = False):
    """P = softmax(S) over each query tile's active key span: ``(s, p, n_q, n_kv, ops)``."""
    BR, BC, HPB, T = tiling.block_q, tiling.block_kv, tiling.heads_per_block, tiling.threads
    RPT = rows_per_thread(tiling)
    STORE = numba_storage(tiling.elem_bytes)
    KIND, W, HALF, C = spec.kind, spec.w, spec.half, spec.c
    COUNT = count

    @cuda.jit
    def kernel(s, p, n_q, n_kv, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.y * HPB
        b = cuda.blockIdx.z
        n_exp = 0
        i0 = cuda.blockIdx.x * BR
        n_rows = min(BR, n_q - i0)
        lo = n_kv - n_q + i0
        kmin, kmax = tile_key_range(KIND, W, HALF, C, lo, lo + n_rows - 1, n_kv)
        j_first = (kmin // BC) * BC
        j_end = min(n_kv, (kmax // BC + 1) * BC)
        for slot in range(RPT):
            r = tid + slot * T
            if r >= n_rows * HPB:
                continue
            i = i0 + r // HPB
            h = h0 + r % HPB
            # pass 1: running max m and sum ℓ = Σ exp(x − m), one exponential per element
            m = NEG_INF
            ell = ZERO
            for j in range(j_first, j_end):
                x = float32(s[b, h, i, j])
                if x > m:
                    ell = ell * float32(math.exp(m - x)) + ONE
                    m = x
                else:
                    ell += float32(math.exp(x - (m if m != NEG_INF else ZERO)))
            # pass 2: P = exp(S − m)/ℓ
            inv = ONE / ell if ell > ZERO else ZERO
            m_use = m if m != NEG_INF else ZERO
            for j in range(j_first, j_end):
                x = float32(s[b, h, i, j])
                p[b, h, i, j] = STORE(float32(math.exp(x - m_use)) * inv)
            if COUNT:
                n_exp += 2 * (j_end - j_first)
        if COUNT:
            cuda.atomic.add(ops, OPS_EXP, n_exp)

    return kernel


@functools.cache
def pv_kernel(tiling: Tiling, spec: MaskSpec, count: bool = False):
    """O = P·V over the active tiles: ``(p, v, o, n_q, n_kv, group, ops)``; under MLA
    ``v`` is the K latent, of which the first Dv elements are read."""
    BR, BC, HPB, T = tiling.block_q, tiling.block_kv, tiling.heads_per_block, tiling.threads
    DV, ROWS, RPT = tiling.head_dim_v, tiling.rows, rows_per_thread(tiling)
    STORE = numba_storage(tiling.elem_bytes)
    KIND, W, HALF, C = spec.kind, spec.w, spec.half, spec.c
    STAGE_O = DV <= BC                           # O fits in the P tile's place
    COUNT = count

    @cuda.jit
    def kernel(p, v, o, n_q, n_kv, group, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.y * HPB
        b = cuda.blockIdx.z
        kvh = h0 // group
        p_sh = cuda.shared.array((ROWS, BC), STORE)
        v_sh = cuda.shared.array((BC, DV), STORE)
        acc = cuda.local.array((RPT, DV), float32)
        n_mac = 0
        i0 = cuda.blockIdx.x * BR
        n_rows = min(BR, n_q - i0)
        lo = n_kv - n_q + i0
        kmin, kmax = tile_key_range(KIND, W, HALF, C, lo, lo + n_rows - 1, n_kv)
        for slot in range(RPT):
            for dv in range(DV):
                acc[slot, dv] = ZERO
        for tile in range(kmin // BC, kmax // BC + 1):
            j0 = tile * BC
            nk = min(BC, n_kv - j0)
            cuda.syncthreads()
            for e in range(tid, n_rows * HPB * nk, T):
                r = e // nk
                i = r // HPB
                p_sh[r, e - r * nk] = p[b, h0 + r - i * HPB, i0 + i, j0 + e - r * nk]
            for e in range(tid, nk * DV, T):
                c = e // DV
                v_sh[c, e - c * DV] = v[b, j0 + c, kvh, e - c * DV]
            cuda.syncthreads()
            for slot in range(RPT):
                r = tid + slot * T
                if r >= n_rows * HPB:
                    continue
                for c in range(nk):
                    pc = float32(p_sh[r, c])
                    for dv in range(DV):
                        acc[slot, dv] += pc * float32(v_sh[c, dv])
                        if COUNT:
                            n_mac += 1
        if STAGE_O:
            cuda.syncthreads()
        for slot in range(RPT):
            r = tid + slot * T
            if r >= n_rows * HPB:
                continue
            i = r // HPB
            dv = r % DV
            for _ in range(DV):
                if STAGE_O:
                    p_sh[r, dv] = STORE(acc[slot, dv])
                else:
                    o[b, i0 + i, h0 + r - i * HPB, dv] = STORE(acc[slot, dv])
                dv += 1
                if dv == DV:
                    dv = 0
        if STAGE_O:
            cuda.syncthreads()
            for e in range(tid, n_rows * HPB * DV, T):
                r = e // DV
                i = r // HPB
                o[b, i0 + i, h0 + r - i * HPB, e - r * DV] = p_sh[r, e - r * DV]
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)

    return kernel


def launches(problem: AttentionProblem, tiling: Tiling, count: bool = False) -> list[Launch]:
    """QKᵀ, softmax and PV launches for ``problem`` under ``tiling``."""
    check_tiling(problem, tiling, ALGORITHM)
    p, spec = problem, mask_spec(problem.mask)
    grid = (ceil_div(p.N, tiling.block_q), p.H // tiling.heads_per_block, p.B)
    group = p.H // p.K
    v = "k" if p.mla else "v"
    return [
        Launch("standard.qk", qk_kernel(tiling, spec, count), grid, tiling.threads,
               ("q", "k", "s"), (p.N, p.S, group)),
        Launch("standard.softmax", softmax_kernel(tiling, spec, count), grid, tiling.threads,
               ("s", "p"), (p.N, p.S)),
        Launch("standard.pv", pv_kernel(tiling, spec, count), grid, tiling.threads,
               ("p", v, "o"), (p.N, p.S, group)),
    ]


def buffers(problem: AttentionProblem, tiling: Tiling, rng: np.random.Generator,
            logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random inputs; poisoned ``s``, ``p (B, H, N, S)`` and ``o (B, N, H, Dv)``."""
    p = problem
    dt = storage_dtype(p.dtype)
    out = attention_inputs(p, rng, logit_scale)
    out["s"] = poisoned((p.B, p.H, p.N, p.S), dt)
    out["p"] = poisoned((p.B, p.H, p.N, p.S), dt)
    out["o"] = poisoned((p.B, p.N, p.H, p.Dv), dt)
    return out


def expected(problem: AttentionProblem, tiling: Tiling,
             bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 reference of S, P (NaN where never written) and O."""
    return reference.standard(bufs["q"], bufs["k"], bufs.get("v"), problem.mask,
                              tiling.block_q, tiling.block_kv, problem.Dv)
