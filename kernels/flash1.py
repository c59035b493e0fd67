"""FlashAttention-1 forward (Dao et al. 2022, Algorithm 1) in Numba-CUDA, from a Tiling.

One block per (head group, batch), grid ``(H/hpb, B)``: the outer loop walks the K/V tiles
of the union of all active tiles, staging each once; the inner loop walks the query tiles
for which that K/V tile is active, and for each re-reads Q_i and — except on the query
tile's first active K/V tile, where the block starts from O = 0, ℓ = 0, m = −∞ — O_i, ℓ_i,
m_i from global memory into shared memory, updates them (lines 9-12: tile max m̃, P̃ =
exp(S − m̃), ℓ̃, then m_new, ℓ_new and the rescaled, normalised O) and writes them back
(line 13). One thread owns each query row; O travels at the storage dtype, ℓ and m in
fp32 — the loop order FlashAttention-2 swapped to keep them on chip.

Global traffic (memsim.algorithms.flash1): K/V of the union once; per active (K/V tile,
query tile) pair Q_i, O_i, ℓ_i, m_i read (not on first touch) and written.
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
    F32,
    NEG_INF,
    OPS_EXP,
    OPS_MATMUL_FLOPS,
    ZERO,
    Launch,
    MaskSpec,
    attention_inputs,
    check_tiling,
    mask_spec,
    numba_storage,
    online_softmax_step,
    poisoned,
    row_key_range,
    rows_per_thread,
    skewed_dot,
    softmax_scale,
    storage_dtype,
    tile_key_range,
)

ALGORITHM = "flash1"
OUTPUTS = ("o", "ell", "m")


@functools.cache
def forward_kernel(tiling: Tiling, spec: MaskSpec, count: bool = False):
    """``(q, k, v, o, ell, m, n_q, n_kv, group, ops)``: ``o (B, N, H, Dv)`` at the storage
    dtype, ``ell``, ``m (B, H, N)`` fp32."""
    BR, BC, HPB, T = tiling.block_q, tiling.block_kv, tiling.heads_per_block, tiling.threads
    D, DV, MLA = tiling.head_dim, tiling.head_dim_v, tiling.mla
    ROWS, RPT = tiling.rows, rows_per_thread(tiling)
    STORE = numba_storage(tiling.elem_bytes)
    SCALE = softmax_scale(D)
    KIND, W, HALF, C = spec.kind, spec.w, spec.half, spec.c
    VR, VC = (1, 1) if MLA else (BC, DV)
    COUNT = count

    @cuda.jit
    def kernel(q, k, v, o, ell, m, n_q, n_kv, group, ops):
        tid = cuda.threadIdx.x
        h0 = cuda.blockIdx.x * HPB
        b = cuda.blockIdx.y
        kvh = h0 // group
        q_sh = cuda.shared.array((ROWS, D), STORE)
        k_sh = cuda.shared.array((BC, D), STORE)
        v_sh = cuda.shared.array((VR, VC), STORE)
        o_sh = cuda.shared.array((ROWS, DV), STORE)
        l_sh = cuda.shared.array(ROWS, float32)
        m_sh = cuda.shared.array(ROWS, float32)
        s = cuda.local.array(BC, float32)
        n_mac = 0
        n_exp = 0
        o_pos = n_kv - n_q                         # position of query row 0
        n_tiles_q = (n_q + BR - 1) // BR
        last_lo = o_pos + (n_tiles_q - 1) * BR
        k_first, _ = tile_key_range(KIND, W, HALF, C, o_pos, o_pos + min(BR, n_q) - 1, n_kv)
        _, k_last = tile_key_range(KIND, W, HALF, C, last_lo, n_kv - 1, n_kv)

        for tile in range(k_first // BC, k_last // BC + 1):          # line 5
            j0 = tile * BC
            nk = min(BC, n_kv - j0)
            cuda.syncthreads()
            for e in range(tid, nk * D, T):                          # line 6
                c = e // D
                k_sh[c, e - c * D] = k[b, j0 + c, kvh, e - c * D]
            if not MLA:
                for e in range(tid, nk * DV, T):
                    c = e // DV
                    v_sh[c, e - c * DV] = v[b, j0 + c, kvh, e - c * DV]
            for a in range(n_tiles_q):                               # line 7
                i0 = a * BR
                n_rows = min(BR, n_q - i0)
                lo = o_pos + i0
                kmin, kmax = tile_key_range(KIND, W, HALF, C, lo, lo + n_rows - 1, n_kv)
                if tile < kmin // BC or tile > kmax // BC:
                    continue                               # K/V tile inactive for Q_i
                first = tile == kmin // BC
                cuda.syncthreads()
                for e in range(tid, n_rows * HPB * D, T):            # line 8
                    r = e // D
                    i = r // HPB
                    q_sh[r, e - r * D] = q[b, i0 + i, h0 + r - i * HPB, e - r * D]
                if not first:
                    for e in range(tid, n_rows * HPB * DV, T):
                        r = e // DV
                        i = r // HPB
                        o_sh[r, e - r * DV] = o[b, i0 + i, h0 + r - i * HPB, e - r * DV]
                    for r in range(tid, n_rows * HPB, T):
                        i = r // HPB
                        l_sh[r] = ell[b, h0 + r - i * HPB, i0 + i]
                        m_sh[r] = m[b, h0 + r - i * HPB, i0 + i]
                cuda.syncthreads()
                for slot in range(RPT):
                    r = tid + slot * T
                    if r >= n_rows * HPB:
                        continue
                    jlo, jhi = row_key_range(KIND, W, HALF, C, lo + r // HPB, n_kv)
                    m_t = NEG_INF                                    # line 9
                    for c in range(nk):
                        dot = skewed_dot(q_sh, r, k_sh, c, D, r % D)
                        if COUNT:
                            n_mac += D
                        sc = dot * SCALE if jlo <= j0 + c <= jhi else NEG_INF
                        s[c] = sc
                        m_t = max(m_t, sc)
                    _, m_t_use, _ = online_softmax_step(m_t, m_t)   # −∞-guarded shift
                    l_t = ZERO                                       # line 10
                    for c in range(nk):
                        s[c] = float32(math.exp(s[c] - m_t_use))
                        l_t += s[c]
                    m_old = NEG_INF if first else m_sh[r]
                    l_old = ZERO if first else l_sh[r]
                    m_new, m_use, a_old = online_softmax_step(m_old, m_t)   # line 11
                    a_new = float32(math.exp(m_t - m_use))
                    l_new = a_old * l_old + a_new * l_t
                    keep = l_old * a_old                             # line 12
                    inv = float32(1.0) / l_new if l_new > ZERO else ZERO
                    dv = r % DV
                    for _ in range(DV):
                        pv = ZERO
                        for c in range(nk):
                            if MLA:
                                pv += s[c] * float32(k_sh[c, dv])
                            else:
                                pv += s[c] * float32(v_sh[c, dv])
                            if COUNT:
                                n_mac += 1
                        o_old = ZERO if first else float32(o_sh[r, dv])
                        o_sh[r, dv] = STORE((keep * o_old + a_new * pv) * inv)
                        dv += 1
                        if dv == DV:
                            dv = 0
                    l_sh[r] = l_new
                    m_sh[r] = m_new
                    if COUNT:
                        n_exp += nk + 2
                cuda.syncthreads()
                for e in range(tid, n_rows * HPB * DV, T):           # line 13
                    r = e // DV
                    i = r // HPB
                    o[b, i0 + i, h0 + r - i * HPB, e - r * DV] = o_sh[r, e - r * DV]
                for r in range(tid, n_rows * HPB, T):
                    i = r // HPB
                    ell[b, h0 + r - i * HPB, i0 + i] = l_sh[r]
                    m[b, h0 + r - i * HPB, i0 + i] = m_sh[r]
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)
            cuda.atomic.add(ops, OPS_EXP, n_exp)

    return kernel


def launches(problem: AttentionProblem, tiling: Tiling, count: bool = False) -> list[Launch]:
    """The one launch of the FlashAttention-1 forward for ``problem`` under ``tiling``."""
    check_tiling(problem, tiling, ALGORITHM)
    p = problem
    kernel = forward_kernel(tiling, mask_spec(p.mask), count)
    v = "k" if p.mla else "v"
    return [Launch("flash1.forward", kernel, (p.H // tiling.heads_per_block, p.B),
                   tiling.threads, ("q", "k", v, "o", "ell", "m"), (p.N, p.S, p.H // p.K))]


def buffers(problem: AttentionProblem, tiling: Tiling, rng: np.random.Generator,
            logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random inputs; poisoned ``o (B, N, H, Dv)``, ``ell`` and ``m (B, H, N)`` fp32."""
    p = problem
    out = attention_inputs(p, rng, logit_scale)
    out["o"] = poisoned((p.B, p.N, p.H, p.Dv), storage_dtype(p.dtype))
    out["ell"] = poisoned((p.B, p.H, p.N), F32)
    out["m"] = poisoned((p.B, p.H, p.N), F32)
    return out


def expected(problem: AttentionProblem, tiling: Tiling,
             bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 reference of O, ℓ and m (kernels.reference.flash1)."""
    o, ell, m = reference.flash1(bufs["q"], bufs["k"], bufs.get("v"), problem.mask,
                                 tiling.block_q, tiling.block_kv, problem.Dv)
    return {"o": o, "ell": ell, "m": m}
