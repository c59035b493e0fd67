"""Schedule of FlashAttention's forward kernel (Dao et al. 2022, Algorithm 1).

One block per (batch b, head group g); the outer loop walks the key tiles j of the union
of all query tiles' active ranges, the inner loop the query tiles a that see tile j
(a contiguous range, since every mask's active key range moves forward with a):

    step j          load K_j, V_j (line 6; V_j not loaded under MLA)
    step (j, a)     load Q_a (line 8) and, unless j is a's first key tile, its running
                    O_a, ℓ_a, m_a (line 8); S = Q_a K_jᵀ, update (lines 9–11);
                    store O_a, ℓ_a, m_a (lines 12–13)

Tensors: q, k, v, o as usual; ℓ and m are fp32 (B, H, N) in HBM. Work per (a, j) step
(r rows × c keys, hpb heads): matmul hpb·r·c·2·(D + Dv); vector hpb·(4·r·c +
r·(2·Dv + 4)); exp hpb·(r·c + 2·r) (line 10: e^{m − m_new} and e^{m̃ − m_new});
SRAM reads hpb·r·(D·e + Dv·e + 8) + c·(D + Dv)·e·warps; SRAM writes: every byte loaded.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.layout import Layout
from memsim.trace.program import LOAD, STORE, Access, KernelBuilder, KernelProgram
from memsim.trace.sched_flash2 import kv_loads
from memsim.trace.tiles import F4, Dims, Tensors, qkv_tensors, query_tiles


def pair_work(d: Dims, rows, keys, state_loaded) -> dict:
    """Work of one (query tile, key tile) step; ``state_loaded``: O, ℓ, m were read."""
    hpb, e = d.hpb, d.e
    q_bytes = hpb * rows * d.D * e
    state_bytes = hpb * rows * (d.Dv * e + 2 * F4)
    return dict(
        matmul_flops=hpb * rows * keys * 2 * (d.D + d.Dv),
        vector_flops=hpb * (4 * rows * keys + rows * (2 * d.Dv + 4)),
        exp_ops=hpb * (rows * keys + 2 * rows),
        sram_read_bytes=q_bytes + state_bytes + keys * (d.D + d.Dv) * e * d.warps,
        sram_write_bytes=q_bytes + state_bytes * state_loaded,
    )


def _state_accesses(t: Tensors, first_row, rows, kind: int) -> list[Access]:
    """O_a, ℓ_a, m_a of the query tile starting at ``first_row`` (loads or stores);
    successive iterations move one query tile (Br rows) on."""
    d = t.d
    return [
        Access(kind, t.id("o"), t.addr("o", 0, first_row, 0, 0), rows * d.hpb * d.Dv * d.e,
               step_bytes=d.Br * t.stride("o", 1)),
        Access(kind, t.id("l"), t.addr("l", 0, 0, first_row), rows * d.hpb * F4,
               step_bytes=d.Br * F4),
        Access(kind, t.id("m"), t.addr("m", 0, 0, first_row), rows * d.hpb * F4,
               step_bytes=d.Br * F4),
    ]


def build(d: Dims, layout: Layout) -> list[KernelProgram]:
    """FlashAttention-1 forward: one kernel, one block per (batch, head group)."""
    t = qkv_tensors(d, layout)
    for name in ("l", "m"):
        t.add(name, (d.B, d.H, d.N), F4, "workspace", head_axis=1, heads_per_group=d.hpb)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    T = qt.count
    ragged_q = int(qt.rows[-1] < d.Br)          # the last query tile has fewer rows
    r_last = int(qt.rows[-1])
    j = np.arange(int(qt.f_lo.min()), int(qt.f_hi.max()) + 1)
    a0 = np.searchsorted(qt.f_hi, j, "left")     # first tile whose range reaches j
    a1 = np.searchsorted(qt.f_lo, j, "right")    # one past the last tile starting ≤ j
    first = np.searchsorted(qt.f_lo, j, "left")  # tiles ≥ first start at j: first touch
    keys = np.where((j == d.key_tiles - 1) & (d.S % d.Bc > 0), d.S - j * d.Bc, d.Bc)
    kb = KernelBuilder("flash1", 1, per_head=True, sram_bytes=_sram(d))
    kb.run(0, 10 * j, 1, kv_loads(t, j * d.Bc, keys),
           sram_write_bytes=keys * (d.D + d.dv_load) * d.e)
    ranges = ((a0, np.minimum(a1, first), True, 1), (np.maximum(a0, first), a1, False, 3))
    for lo, hi, revisit, phase in ranges:
        n = np.maximum(hi - lo, 0)
        has_ragged = ragged_q * (n > 0) * (hi == T)     # the ragged tile is the last one
        for rows, count, offset in ((d.Br, n - has_ragged, 0), (r_last, has_ragged, 0.5)):
            first_row = np.where(offset, (T - 1) * d.Br, lo * d.Br)
            q = Access(LOAD, t.id("q"), t.addr("q", 0, first_row, 0, 0),
                       rows * d.hpb * d.D * d.e, step_bytes=d.Br * t.stride("q", 1))
            loads = [q] + (_state_accesses(t, first_row, rows, LOAD) if revisit else [])
            kb.run(0, 10 * j + phase + offset, count,
                   loads + _state_accesses(t, first_row, rows, STORE),
                   **pair_work(d, rows, keys, int(revisit)))
    return [kb.build()]


def _sram(d: Dims) -> int:
    """Q, K, V tiles (storage dtype) + the O tile and ℓ, m (fp32) of hpb·Br rows."""
    rows = d.hpb * d.Br
    return int((rows * d.D + d.Bc * d.D + d.Bc * d.dv_load + rows * d.Dv) * d.e
               + rows * 2 * F4)
