"""Schedules of FlashAttention-2's forward kernel and of split-KV decoding (Flash-Decoding).

FlashAttention-2 (FA-2 Algorithm 1), one block per (query tile a, batch b, head group g of
hpb heads sharing one KV head), r = rows of tile a:

    step 0          load Q_a                      q[b, a·Br : +r, g·hpb : +hpb, :]
    steps 1 … n     load K_j, V_j; S = Q K_jᵀ; online softmax; O += P V_j
                    for j over the active key tiles f_lo … f_hi (k[b, j·Bc : +Bc, kv, :]);
                    under MLA V_j is not loaded: it is the first Dv elements of the
                    latent rows of K_j, already in SRAM
    step n + 1      O /= ℓ; store O_a (o[b, a·Br :, g·hpb :, :]) and the logsumexp
                    (lse[b, g·hpb : +hpb, a·Br : +r])

Flash-Decoding: the N query tokens (N ≤ Br) form one query tile whose n active key tiles
are cut into ranges of ⌈n/s⌉ tiles (s = ``kv_splits``), one block per non-empty range:
s' = ⌈n/⌈n/s⌉⌉ blocks are launched (FA-2's kernel would launch s and let the empty ones
write neutral partials; memsim.algorithms.flash_decode counts s'). A block loads Q,
streams its K/V tiles as above and stores an fp32 partial O and logsumexp
(o_partial[split, b, g·hpb :, :, :], FA-2's ``oaccum`` layout). A reduce kernel, one block
per (batch, head group), reads the s' non-empty partials and writes O.

Work per step (r rows × c keys, hpb heads): matmul hpb·r·c·2·(D + Dv); vector
hpb·(4·r·c + r·(Dv + 2)) (scale, max, subtract, sum; rescale O, update m and ℓ); exp
hpb·(r·c + r); SRAM reads hpb·r·D·e (each warp its rows of Q) + c·(D + Dv)·e·warps (each
warp the whole K and V tile); SRAM writes: every byte loaded from global memory.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.layout import Layout
from memsim.trace.program import LOAD, STORE, Access, KernelBuilder, KernelProgram
from memsim.trace.tiles import F4, Dims, Tensors, add_lse, qkv_tensors, query_tiles


def tile_work(d: Dims, rows, keys) -> dict:
    """Per-step work of one (query tile, key tile) pair (see module docstring)."""
    hpb, e = d.hpb, d.e
    return dict(
        matmul_flops=hpb * rows * keys * 2 * (d.D + d.Dv),
        vector_flops=hpb * (4 * rows * keys + rows * (d.Dv + 2)),
        exp_ops=hpb * (rows * keys + rows),
        sram_read_bytes=hpb * rows * d.D * e + keys * (d.D + d.Dv) * e * d.warps,
        sram_write_bytes=keys * (d.D + d.dv_load) * e,
    )


def kv_loads(t: Tensors, first_key, keys) -> list[Access]:
    """Loads of the K tile (and the V tile unless MLA) of ``keys`` keys from
    ``first_key``; successive iterations move one key tile (Bc keys) on."""
    d = t.d
    out = [Access(LOAD, t.id("k"), t.addr("k", 0, first_key, 0, 0), keys * d.D * d.e,
                  step_bytes=d.Bc * t.stride("k", 1))]
    if not d.mla:
        out.append(Access(LOAD, t.id("v"), t.addr("v", 0, first_key, 0, 0),
                          keys * d.Dv * d.e, step_bytes=d.Bc * t.stride("v", 1)))
    return out


def add_kv_loop(kb: KernelBuilder, t: Tensors, block, order, f_lo, n_full, ragged,
                ragged_keys: int, rows) -> None:
    """Runs over a block's active key tiles: ``n_full`` full tiles from tile ``f_lo``,
    then the ragged last key tile (``ragged_keys`` keys) where ``ragged`` is 1."""
    d = t.d
    kb.run(block, order, n_full, kv_loads(t, f_lo * d.Bc, d.Bc), **tile_work(d, rows, d.Bc))
    if ragged_keys:
        kb.run(block, order + 0.5, ragged, kv_loads(t, (d.key_tiles - 1) * d.Bc, ragged_keys),
               **tile_work(d, rows, ragged_keys))


def sram_bytes(d: Dims, rows: int) -> int:
    """Q tile + K tile + V tile (none under MLA) in the storage dtype."""
    return int((rows * d.D + d.Bc * d.D + d.Bc * d.dv_load) * d.e)


def build(d: Dims, layout: Layout) -> list[KernelProgram]:
    """FlashAttention-2 forward: one kernel."""
    t = qkv_tensors(d, layout)
    add_lse(t)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    a, rows = np.arange(qt.count), qt.rows
    kb = KernelBuilder("flash2", qt.count, per_head=True, sram_bytes=sram_bytes(d, d.hpb * d.Br))
    q_bytes = rows * d.hpb * d.D * d.e
    kb.run(a, 0, 1, [Access(LOAD, t.id("q"), t.addr("q", 0, qt.first_row, 0, 0), q_bytes)],
           sram_write_bytes=q_bytes)
    add_kv_loop(kb, t, a, 1, qt.f_lo, qt.n_full, qt.ragged, qt.ragged_keys, rows)
    kb.run(a, 2, 1, [
        Access(STORE, t.id("o"), t.addr("o", 0, qt.first_row, 0, 0), rows * d.hpb * d.Dv * d.e),
        Access(STORE, t.id("lse"), t.addr("lse", 0, 0, qt.first_row), rows * d.hpb * F4),
    ], vector_flops=d.hpb * rows * d.Dv)
    return [kb.build()]


def build_decode(d: Dims, layout: Layout) -> list[KernelProgram]:
    """Flash-Decoding: the split kernel and the reduce kernel."""
    t = qkv_tensors(d, layout)
    qt = query_tiles(d.N, d.S, d.N, d.Bc, d.geometry)   # one tile holding all N queries
    f_lo, f_hi = int(qt.f_lo[0]), int(qt.f_hi[0])
    per = -(-(f_hi - f_lo + 1) // d.splits)
    s = -(-(f_hi - f_lo + 1) // per)                    # non-empty splits
    t.add("o_partial", (s, d.B, d.H, d.N, d.Dv), F4, "workspace", batch_axis=1, head_axis=2,
          heads_per_group=d.hpb)
    t.add("lse_partial", (s, d.B, d.H, d.N), F4, "workspace", batch_axis=1, head_axis=2,
          heads_per_group=d.hpb)
    i = np.arange(s)
    lo = f_lo + i * per
    tiles = np.minimum(lo + per, f_hi + 1) - lo
    ragged = (lo + tiles - 1 == f_hi) * int(qt.ragged[0])
    rows, hpb = d.N, d.hpb
    split = KernelBuilder("flash_decode.split", s, per_head=True,
                          sram_bytes=sram_bytes(d, hpb * d.N))
    q_bytes = rows * hpb * d.D * d.e
    split.run(i, 0, 1, [Access(LOAD, t.id("q"), t.addr("q", 0, 0, 0, 0), q_bytes)],
              sram_write_bytes=q_bytes)
    add_kv_loop(split, t, i, 1, lo, tiles - ragged, ragged, qt.ragged_keys, rows)
    o_bytes, l_bytes = rows * hpb * d.Dv * F4, rows * hpb * F4
    split.run(i, 2, 1, [
        Access(STORE, t.id("o_partial"), t.addr("o_partial", i, 0, 0, 0, 0), o_bytes),
        Access(STORE, t.id("lse_partial"), t.addr("lse_partial", i, 0, 0, 0), l_bytes),
    ], vector_flops=hpb * rows * d.Dv)
    reduce = KernelBuilder("flash_decode.reduce", 1, per_head=True, sram_bytes=0)
    reduce.run(0, 0, s, [
        Access(LOAD, t.id("o_partial"), t.addr("o_partial", 0, 0, 0, 0, 0), o_bytes,
               step_bytes=t.stride("o_partial", 0)),
        Access(LOAD, t.id("lse_partial"), t.addr("lse_partial", 0, 0, 0, 0), l_bytes,
               step_bytes=t.stride("lse_partial", 0)),
    ], vector_flops=hpb * rows * (d.Dv + 2), exp_ops=hpb * rows)
    reduce.run(0, 1, 1, [Access(STORE, t.id("o"), t.addr("o", 0, 0, 0, 0),
                                rows * hpb * d.Dv * d.e)])
    return [split.build(), reduce.build()]
