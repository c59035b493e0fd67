"""Schedule of DeepSeek Sparse Attention (memsim.algorithms.dsa): lightning indexer,
top-k, sparse attention over the gathered keys, and — when decoding with splits — a
reduce kernel.

Tensors: q_index (B, N, H_I, D_I) at the indexer dtype, index_weights (B, N, H_I) fp32,
k_index (B, S, D_I) and, for fp8 keys, k_index_scale (B, S, ⌈D_I/128⌉) fp32 (separate
buffers, as DeepSeek-V3.2-Exp's reference keeps them); logits (B, N, S) fp32; topk
(B, N, k) int32; q, k (the latent under MLA), v (not under MLA), o, lse as usual.

    indexer  one block per query tile of Br_I tokens (all H_I heads):
             load q_index and index_weights of the tile; per causal key tile j: load the
             k_index (and scale) tile, score, store the tile's logits row by row
             (unit: one row of one key tile, the unit the top-k kernel reads).
             Decoding (kv_splits > 1 and N ≤ Br_I): the single tile's key tiles are cut
             into ranges of ⌈n/s⌉, one block per non-empty range, each loading q_index
             and the weights.
    top-k    one block per query token i: load its logits row over the key tiles its
             indexer tile visited; store min(k, p + 1) int32 indices (one unit, or when
             decoding with splits one unit per split's slice).
    sparse   one block per (token, head group): load the indices and Q; gather the
             selected keys Bc per step (latent rows under MLA, else K and V rows; the
             selection model is :func:`memsim.trace.engine.selected_key`); store O and
             the logsumexp. Decoding with s'' splits: the ⌈min(k, S)/Bc⌉ gathered tiles
             are cut into ranges of ⌈·/s⌉ tiles, one block per (token, split), each
             loading Q and its slice of the indices and storing an fp32 partial O and
             logsumexp; a split whose slice is empty (p + 1 < min(k, S) only) loads Q
             and stores a neutral partial, as the analytic count has it.
    reduce   (decoding with splits) one block per (batch, head group): per token, load
             the s'' partials, store O.

Work: indexer per (tile, key tile) r·c·H_I·2·D_I matmul FLOPs (fp8 rate for fp8 keys)
and 3·H_I·r·c vector; top-k one vector op per logit read; sparse per step of c keys
hpb·c·2·(D + Dv) matmul, hpb·4·c vector, hpb·(c + 1) exp (online softmax: one rescale
per row and step), per token hpb·(Dv + 2) vector; splits: hpb·Dv per (token, split) at
the end of the split, hpb·(Dv + 2) vector and hpb exp per (token, split) in the reduce.
SRAM: staged bytes (q_index, index keys, Q, gathered rows) written, read by every warp.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.layout import Layout
from memsim.trace.program import GATHER, LOAD, STORE, Access, KernelBuilder, KernelProgram
from memsim.trace.tiles import (
    F4,
    INDEX_BYTES,
    Dims,
    Tensors,
    add_lse,
    qkv_tensors,
    query_tiles,
)
from memsim.units import DTYPE_BYTES


def _active_splits(n: int, s: int) -> tuple[int, int]:
    """(tiles per split ⌈n/s⌉, non-empty splits ⌈n/⌈n/s⌉⌉)."""
    per = -(-n // max(s, 1))
    return per, -(-n // per)


def build(d: Dims, layout: Layout) -> list[KernelProgram]:
    """DSA forward: indexer, top-k, sparse (and reduce when decoding with splits)."""
    from memsim.geometry import MaskGeometry

    t = qkv_tensors(d, layout)
    fp8 = d.index_e == DTYPE_BYTES["fp8"]
    n_scales = -(-d.index_head_dim // d.index_scale_block) if fp8 else 0
    t.add("q_index", (d.B, d.N, d.index_heads, d.index_head_dim), d.index_e, "input")
    t.add("index_weights", (d.B, d.N, d.index_heads), F4, "input")
    t.add("k_index", (d.B, d.S, d.index_head_dim), d.index_e, "input")
    if n_scales:
        t.add("k_index_scale", (d.B, d.S, n_scales), F4, "input")
    t.add("logits", (d.B, d.N, d.S), F4, "workspace")
    t.add("topk", (d.B, d.N, d.top_k), INDEX_BYTES, "workspace")
    decoding = d.splits > 1 and d.index_Br >= d.N
    sel_tiles = -(-min(d.top_k, d.S) // d.Bc)
    per_sp, s_sp = _active_splits(sel_tiles, d.splits) if decoding else (sel_tiles, 1)
    qt = query_tiles(d.N, d.S, d.index_Br, d.Bc, MaskGeometry("causal"))
    kernels = [_indexer(t, qt, decoding, fp8, n_scales), _topk(t, qt, per_sp * d.Bc, s_sp)]
    if s_sp > 1:
        kernels += _sparse_split(t, per_sp, s_sp)
    else:
        add_lse(t)
        kernels.append(_sparse(t))
    return kernels


def _indexer(t: Tensors, qt, decoding: bool, fp8: bool, n_scales: int) -> KernelProgram:
    d = t.d
    HI, DI, eI, Bc = d.index_heads, d.index_head_dim, d.index_e, d.Bc
    if decoding:                       # one query tile, its key tiles split over blocks
        n = int(qt.f_hi[0] - qt.f_lo[0] + 1)
        per, blocks = _active_splits(n, d.splits)
        i = np.arange(blocks)
        lo = int(qt.f_lo[0]) + i * per
        tiles = np.minimum(lo + per, int(qt.f_hi[0]) + 1) - lo
        ragged = (lo + tiles - 1 == qt.f_hi[0]) * int(qt.ragged[0])
        first_row, rows, f_lo, n_full = 0, d.N, lo, tiles - ragged
    else:
        blocks, i = qt.count, np.arange(qt.count)
        first_row, rows, f_lo, n_full, ragged = qt.first_row, qt.rows, qt.f_lo, qt.n_full, qt.ragged
    key_bytes = DI * eI + n_scales * F4
    kb = KernelBuilder("dsa.indexer", blocks, per_head=False,
                       sram_bytes=int(d.index_Br * HI * DI * eI + Bc * key_bytes))
    q_bytes = rows * HI * DI * eI
    kb.run(i, 0, 1, [
        Access(LOAD, t.id("q_index"), t.addr("q_index", 0, first_row, 0, 0), q_bytes),
        Access(LOAD, t.id("index_weights"), t.addr("index_weights", 0, first_row, 0),
               rows * HI * F4),
    ], sram_write_bytes=q_bytes, sram_read_bytes=q_bytes * d.warps)
    last = (d.key_tiles - 1) * Bc
    for first_key, keys, count, off in ((f_lo * Bc, Bc, n_full, 0.0),
                                        (last, qt.ragged_keys, ragged, 0.5)):
        loads = [Access(LOAD, t.id("k_index"), t.addr("k_index", 0, first_key, 0),
                        keys * DI * eI, step_bytes=Bc * t.stride("k_index", 1))]
        if n_scales:
            loads.append(Access(LOAD, t.id("k_index_scale"),
                                t.addr("k_index_scale", 0, first_key, 0),
                                keys * n_scales * F4,
                                step_bytes=Bc * t.stride("k_index_scale", 1)))
        logits = Access(STORE, t.id("logits"), t.addr("logits", 0, first_row, first_key),
                        keys * F4, step_bytes=Bc * F4, units=rows,
                        unit_stride_bytes=t.stride("logits", 1))
        flops = rows * keys * HI * 2 * DI
        kb.run(i, 1 + off, count, loads + [logits],
               matmul_flops=0.0 if fp8 else flops, fp8_matmul_flops=flops if fp8 else 0.0,
               vector_flops=3 * HI * rows * keys, sram_write_bytes=keys * key_bytes,
               sram_read_bytes=keys * key_bytes * d.warps)
    return kb.build()


def _selected(d: Dims) -> tuple[np.ndarray, np.ndarray]:
    """Query positions p and selected keys min(k, p + 1) per token."""
    p = d.o + np.arange(d.N)
    return p, np.minimum(d.top_k, p + 1)


def _topk(t: Tensors, qt, slice_keys: int, s_sp: int) -> KernelProgram:
    """Per token: read its logits row, store its indices (in ``s_sp`` slices of
    ``slice_keys`` entries when decoding with splits)."""
    d = t.d
    i = np.arange(d.N)
    a = i // d.index_Br                                  # the token's indexer tile
    kb = KernelBuilder("dsa.topk", d.N, per_head=False, sram_bytes=0)
    last = (d.key_tiles - 1) * d.Bc
    for first_key, keys, count, off in ((0, d.Bc, qt.n_full[a], 0.0),
                                        (last, qt.ragged_keys, qt.ragged[a], 0.5)):
        kb.run(i, off, count, [Access(LOAD, t.id("logits"), t.addr("logits", 0, i, first_key),
                                      keys * F4, step_bytes=d.Bc * F4)],
               vector_flops=keys)
    _, sel = _selected(d)
    if s_sp == 1:
        slice_keys = d.top_k
    full, rest = sel // slice_keys, sel % slice_keys
    kb.run(i, 2, (full > 0).astype(np.int64), [
        Access(STORE, t.id("topk"), t.addr("topk", 0, i, 0), slice_keys * INDEX_BYTES,
               units=full, unit_stride_bytes=slice_keys * INDEX_BYTES)])
    kb.run(i, 3, (rest > 0).astype(np.int64), [
        Access(STORE, t.id("topk"), t.addr("topk", 0, i, full * slice_keys), rest * INDEX_BYTES)])
    return kb.build()


def _gather_runs(kb: KernelBuilder, t: Tensors, block, order, p, first, n_keys) -> None:
    """Gather ``n_keys`` selected keys of query position ``p`` from selection index
    ``first``: full steps of Bc keys, then the remainder."""
    d = t.d
    full, rest = n_keys // d.Bc, n_keys % d.Bc
    for start, per_step, count, off in ((first, d.Bc, full, 0.0),
                                        (first + full * d.Bc, rest, (rest > 0) * 1, 0.5)):
        rows = [("k", d.D)] + ([] if d.mla else [("v", d.Dv)])
        acc = [Access(GATHER, t.id(name), t.addr(name, 0, 0, 0, 0), width * d.e,
                      units=per_step, unit_stride_bytes=t.stride(name, 1), gather_pos=p,
                      gather_k=d.top_k, gather_first=start) for name, width in rows]
        staged = per_step * (d.D + d.dv_load) * d.e
        kb.run(block, order + off, count, acc,
               matmul_flops=d.hpb * per_step * 2 * (d.D + d.Dv),
               vector_flops=d.hpb * 4 * per_step, exp_ops=d.hpb * (per_step + 1),
               sram_write_bytes=staged, sram_read_bytes=staged * d.warps)


def _q_load(t: Tensors, token) -> Access:
    d = t.d
    return Access(LOAD, t.id("q"), t.addr("q", 0, token, 0, 0), d.hpb * d.D * d.e)


def _sparse(t: Tensors) -> KernelProgram:
    """One block per (token, head group): indices, Q, gathered keys, O and lse."""
    d = t.d
    i = np.arange(d.N)
    p, sel = _selected(d)
    kb = KernelBuilder("dsa.sparse", d.N, per_head=True,
                       sram_bytes=int((d.hpb * d.D + d.Bc * (d.D + d.dv_load)) * d.e))
    q_bytes = d.hpb * d.D * d.e
    kb.run(i, 0, 1, [Access(LOAD, t.id("topk"), t.addr("topk", 0, i, 0), sel * INDEX_BYTES),
                     _q_load(t, i)],
           sram_write_bytes=q_bytes, sram_read_bytes=q_bytes * d.warps)
    _gather_runs(kb, t, i, 1, p, 0, sel)
    kb.run(i, 2, 1, [
        Access(STORE, t.id("o"), t.addr("o", 0, i, 0, 0), d.hpb * d.Dv * d.e),
        Access(STORE, t.id("lse"), t.addr("lse", 0, 0, i), d.hpb * F4),
    ], vector_flops=d.hpb * (d.Dv + 2))
    return kb.build()


def _sparse_split(t: Tensors, per_sp: int, s_sp: int) -> list[KernelProgram]:
    """Decoding with splits: (token, split) blocks writing partials, then the reduce."""
    d = t.d
    hpb = d.hpb
    t.add("o_partial", (s_sp, d.B, d.H, d.N, d.Dv), F4, "workspace", batch_axis=1,
          head_axis=2, heads_per_group=hpb)
    t.add("lse_partial", (s_sp, d.B, d.H, d.N), F4, "workspace", batch_axis=1, head_axis=2,
          heads_per_group=hpb)
    p, sel = _selected(d)
    blk = np.arange(d.N * s_sp)
    i, sigma = blk // s_sp, blk % s_sp                  # split fastest
    slice_keys = per_sp * d.Bc
    first = sigma * slice_keys
    n_keys = np.clip(sel[i] - first, 0, slice_keys)
    kb = KernelBuilder("dsa.sparse_split", d.N * s_sp, per_head=True,
                       sram_bytes=int((hpb * d.D + d.Bc * (d.D + d.dv_load)) * d.e))
    q_bytes = hpb * d.D * d.e
    kb.run(blk, 0, 1, [_q_load(t, i)], sram_write_bytes=q_bytes,
           sram_read_bytes=q_bytes * d.warps)
    kb.run(blk, 0.5, (n_keys > 0).astype(np.int64), [
        Access(LOAD, t.id("topk"), t.addr("topk", 0, i, first), n_keys * INDEX_BYTES)])
    _gather_runs(kb, t, blk, 1, p[i], first, n_keys)
    o_bytes, l_bytes = hpb * d.Dv * F4, hpb * F4
    kb.run(blk, 2, 1, [
        Access(STORE, t.id("o_partial"), t.addr("o_partial", sigma, 0, 0, i, 0), o_bytes),
        Access(STORE, t.id("lse_partial"), t.addr("lse_partial", sigma, 0, 0, i), l_bytes),
    ], vector_flops=hpb * d.Dv)
    reduce = KernelBuilder("dsa.reduce", 1, per_head=True, sram_bytes=0)
    tok = np.arange(d.N)
    reduce.run(0, 2 * tok, s_sp, [
        Access(LOAD, t.id("o_partial"), t.addr("o_partial", 0, 0, 0, tok, 0), o_bytes,
               step_bytes=t.stride("o_partial", 0)),
        Access(LOAD, t.id("lse_partial"), t.addr("lse_partial", 0, 0, 0, tok), l_bytes,
               step_bytes=t.stride("lse_partial", 0)),
    ], vector_flops=hpb * (d.Dv + 2), exp_ops=hpb)
    reduce.run(0, 2 * tok + 1, 1, [Access(STORE, t.id("o"), t.addr("o", 0, tok, 0, 0),
                                          hpb * d.Dv * d.e)],
               vector_flops=hpb * (d.Dv + 2))
    return [kb.build(), reduce.build()]
