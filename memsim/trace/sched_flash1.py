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
from memsim.trace.sched_flash2 import backward_tensors, kv_loads
from memsim.trace.tiles import F4, Dims, Tensors, key_tiles, qkv_tensors, query_tiles


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


def _pair_runs(kb: KernelBuilder, t: Tensors, qt, kt, step) -> None:
    """Runs of the (key tile j, query tile a) steps of one block, j outer, a inner and
    ascending: per j, the query tiles revisited (a0 ≤ a < first) then those touched for
    the first time (first ≤ a < a1), the ragged last query tile after the full ones.
    ``step(first_row, rows, revisit)`` gives a run's accesses and work."""
    d = t.d
    T, r_last = qt.count, int(qt.rows[-1])
    ragged_q = int(r_last < d.Br)                # the last query tile has fewer rows
    ranges = ((kt.a0, np.minimum(kt.a1, kt.first), True, 1),
              (np.maximum(kt.a0, kt.first), kt.a1, False, 3))
    for lo, hi, revisit, phase in ranges:
        n = np.maximum(hi - lo, 0)
        has_ragged = ragged_q * (n > 0) * (hi == T)     # the ragged tile is the last one
        for rows, count, offset in ((d.Br, n - has_ragged, 0), (r_last, has_ragged, 0.5)):
            first_row = np.where(offset, (T - 1) * d.Br, lo * d.Br)
            accesses, work = step(first_row, rows, revisit)
            kb.run(0, 10 * kt.j + phase + offset, count, accesses, **work)


def _q_rows(t: Tensors, name: str, kind: int, first_row, rows, width: float) -> Access:
    """Rows of a (B, N, H, ·) tensor for the block's heads; iterations move one query tile."""
    d = t.d
    return Access(kind, t.id(name), t.addr(name, 0, first_row, 0, 0), rows * d.hpb * width,
                  step_bytes=d.Br * t.stride(name, 1))


def build(d: Dims, layout: Layout) -> list[KernelProgram]:
    """FlashAttention-1 forward: one kernel, one block per (batch, head group)."""
    t = qkv_tensors(d, layout)
    for name in ("l", "m"):
        t.add(name, (d.B, d.H, d.N), F4, "workspace", head_axis=1, heads_per_group=d.hpb)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    kt = key_tiles(qt, d.S, d.Bc)
    kb = KernelBuilder("flash1", 1, per_head=True, sram_bytes=_sram(d))
    kb.run(0, 10 * kt.j, 1, kv_loads(t, kt.j * d.Bc, kt.keys),
           sram_write_bytes=kt.keys * (d.D + d.dv_load) * d.e)

    def step(first_row, rows, revisit):
        q = _q_rows(t, "q", LOAD, first_row, rows, d.D * d.e)
        loads = [q] + (_state_accesses(t, first_row, rows, LOAD) if revisit else [])
        return (loads + _state_accesses(t, first_row, rows, STORE),
                pair_work(d, rows, kt.keys, int(revisit)))

    _pair_runs(kb, t, qt, kt, step)
    return [kb.build()]


def build_backward(d: Dims, layout: Layout) -> list[KernelProgram]:
    """FlashAttention-1 backward (Algorithm 4): one kernel, one block per (batch, head
    group); per key tile j: load K_j, V_j (line 6); per query tile a that sees j: load Q_a,
    O_a, dO_a, ℓ_a, m_a and, unless j is a's first key tile, dQ_a (line 8; dQ starts at 0,
    line 2); recompute P, Δ = rowsum(dO ∘ O) (line 19); store dQ_a (line 21); after the
    query tiles store dK_j, dV_j (line 24). Work per (a, j) of r rows × c keys: matmul
    hpb·r·c·(6·D + 4·Dv) (S, dV, dP, dQ, dK), vector hpb·(5·r·c + 2·r·Dv), exp hpb·r·c;
    SRAM: K/V and Q, O, dO, dQ staged, read by every warp."""
    t = qkv_tensors(d, layout)
    for name in ("l", "m"):
        t.add(name, (d.B, d.H, d.N), F4, "workspace", head_axis=1, heads_per_group=d.hpb)
    backward_tensors(t, delta=False)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    kt = key_tiles(qt, d.S, d.Bc)
    e, hpb = d.e, d.hpb
    kb = KernelBuilder("flash1.bwd", 1, per_head=True, sram_bytes=_sram_backward(d))
    kv_bytes = kt.keys * (d.D + d.dv_load) * e
    kb.run(0, 10 * kt.j, 1, kv_loads(t, kt.j * d.Bc, kt.keys),
           sram_write_bytes=kv_bytes, sram_read_bytes=kv_bytes * d.warps)

    def step(first_row, rows, revisit):
        loads = [_q_rows(t, "q", LOAD, first_row, rows, d.D * e),
                 _q_rows(t, "o", LOAD, first_row, rows, d.Dv * e),
                 _q_rows(t, "do", LOAD, first_row, rows, d.Dv * e)]
        loads += _state_accesses(t, first_row, rows, LOAD)[1:]          # ℓ, m
        if revisit:
            loads.append(_q_rows(t, "dq", LOAD, first_row, rows, d.D * e))
        staged = rows * hpb * (2 * d.D + 2 * d.Dv) * e
        return (loads + [_q_rows(t, "dq", STORE, first_row, rows, d.D * e)], dict(
            matmul_flops=hpb * rows * kt.keys * (6 * d.D + 4 * d.Dv),
            vector_flops=hpb * (5 * rows * kt.keys + 2 * rows * d.Dv),
            exp_ops=hpb * rows * kt.keys,
            sram_write_bytes=staged, sram_read_bytes=staged * d.warps))

    _pair_runs(kb, t, qt, kt, step)
    stores = [Access(STORE, t.id("dk"), t.addr("dk", 0, kt.j * d.Bc, 0, 0), kt.keys * d.D * e)]
    if not d.mla:
        stores.append(Access(STORE, t.id("dv"), t.addr("dv", 0, kt.j * d.Bc, 0, 0),
                             kt.keys * d.Dv * e))
    kb.run(0, 10 * kt.j + 9, 1, stores)
    return [kb.build()]


def _sram_backward(d: Dims) -> int:
    """K, V tiles and the Q, O, dO, dQ tiles of hpb·Br rows (storage dtype), ℓ and m."""
    rows = d.hpb * d.Br
    return int((d.Bc * (d.D + d.dv_load) + rows * (2 * d.D + 2 * d.Dv)) * d.e
               + rows * 2 * F4)


def _sram(d: Dims) -> int:
    """Q, K, V tiles (storage dtype) + the O tile and ℓ, m (fp32) of hpb·Br rows."""
    rows = d.hpb * d.Br
    return int((rows * d.D + d.Bc * d.D + d.Bc * d.dv_load + rows * d.Dv) * d.e
               + rows * 2 * F4)
