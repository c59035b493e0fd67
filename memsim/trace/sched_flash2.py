"""Schedules of FlashAttention-2's forward kernel and of split-KV decoding (Flash-Decoding).

FlashAttention-2 (FA-2 Algorithm 1), one block per (query tile a, batch b, head group g of
hpb heads sharing one KV head), r = rows of tile a:

    step 0          load Q_a                      q[b, a·Br : +r, g·hpb : +hpb, :]
    steps 1 … n     load K_j, V_j; S = Q K_jᵀ; online softmax; O += P V_j
                    for j over the active key tiles f_hi down to f_lo (k[b, j·Bc : +Bc,
                    kv, :]; flash_fwd_kernel.h walks n_block from n_block_max − 1 down);
                    under MLA V_j is not loaded: it is the first Dv elements of the
                    latent rows of K_j, already in SRAM
    step n + 1      O /= ℓ; store O_a (o[b, a·Br :, g·hpb :, :]) and the logsumexp
                    (lse[b, g·hpb : +hpb, a·Br : +r])

Flash-Decoding: the N query tokens (N ≤ Br) form one query tile whose n active key tiles
are cut into ranges of ⌈n/s⌉ tiles (s = ``kv_splits``), one block per range; s' =
⌈n/⌈n/s⌉⌉ of them hold a tile. A block with tiles loads Q, streams its K/V tiles as above
and stores an fp32 partial O and logsumexp (o_partial[split, b, g·hpb :, :, :], FA-2's
``oaccum`` layout); a block without one loads nothing and stores the neutral partial (O = 0,
logsumexp −∞: FA-2's flash_fwd_kernel.h "We exit early and write 0 to gOaccum and -inf to
gLSEaccum"; memsim.algorithms.flash_decode, rule "fa2"). A reduce kernel, one block per
(batch, head group), reads all s partials (``combine_attn_seqk_parallel`` loops over
``params.num_splits``) and writes O.

Work per step (r rows × c keys, hpb heads): matmul hpb·r·c·2·(D + Dv); vector
hpb·(4·r·c + r·(Dv + 2)) (scale, max, subtract, sum; rescale O, update m and ℓ); exp
hpb·(r·c + r); SRAM reads hpb·r·D·e (each warp its rows of Q) + c·(D + Dv)·e·warps (each
warp the whole K and V tile); SRAM writes: every byte loaded from global memory.
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._tiles import fa2_backward_kernel_sram_bytes
from memsim.trace.layout import Layout
from memsim.trace.program import LOAD, STORE, Access, KernelBuilder, KernelProgram
from memsim.trace.tiles import (
    F4,
    Dims,
    Tensors,
    add_lse,
    key_tiles,
    qkv_tensors,
    query_tiles,
)


def tile_work(d: Dims, rows, keys, kv_readers: int | None = None) -> dict:
    """Per-step work of one (query tile, key tile) pair (see module docstring);
    ``kv_readers``: warps reading each staged K/V byte (default every warp; 1 when the
    warps split the keys, as split-KV decoding kernels do)."""
    hpb, e = d.hpb, d.e
    readers = d.warps if kv_readers is None else kv_readers
    return dict(
        matmul_flops=hpb * rows * keys * 2 * (d.D + d.Dv),
        vector_flops=hpb * (4 * rows * keys + rows * (d.Dv + 2)),
        exp_ops=hpb * (rows * keys + rows),
        sram_read_bytes=hpb * rows * d.D * e + keys * (d.D + d.Dv) * e * readers,
        sram_write_bytes=keys * (d.D + d.dv_load) * e,
    )


def kv_loads(t: Tensors, first_key, keys, step_tiles: int = 1) -> list[Access]:
    """Loads of the K tile (and the V tile unless MLA) of ``keys`` keys from
    ``first_key``; successive iterations move ``step_tiles`` key tiles (Bc keys each)
    on (−1: down)."""
    d = t.d
    out = [Access(LOAD, t.id("k"), t.addr("k", 0, first_key, 0, 0), keys * d.D * d.e,
                  step_bytes=step_tiles * d.Bc * t.stride("k", 1))]
    if not d.mla:
        out.append(Access(LOAD, t.id("v"), t.addr("v", 0, first_key, 0, 0),
                          keys * d.Dv * d.e, step_bytes=step_tiles * d.Bc * t.stride("v", 1)))
    return out


def add_kv_loop(kb: KernelBuilder, t: Tensors, block, order, f_lo, n_full, ragged,
                ragged_keys: int, rows, kv_readers: int | None = None) -> None:
    """Runs over a block's active key tiles from the last down, as FA-2's kernels do
    (Dao-AILab/flash-attention csrc/flash_attn/src/flash_fwd_kernel.h,
    ``compute_attn_1rowblock`` and ``compute_attn_1rowblock_splitkv``: "We iterate over
    the blocks in reverse order", ``for (; n_block >= n_block_min; --n_block)`` from
    ``n_block_max - 1``): the ragged last key tile (``ragged_keys`` keys) first where
    ``ragged`` is 1, then the ``n_full`` full tiles from tile ``f_lo + n_full − 1`` down
    to ``f_lo``."""
    d = t.d
    if ragged_keys:
        kb.run(block, order, ragged, kv_loads(t, (d.key_tiles - 1) * d.Bc, ragged_keys),
               **tile_work(d, rows, ragged_keys, kv_readers))
    kb.run(block, order + 0.5, n_full, kv_loads(t, (f_lo + n_full - 1) * d.Bc, d.Bc, -1),
           **tile_work(d, rows, d.Bc, kv_readers))


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
    s = d.splits                                        # launched, empty ones too
    t.add("o_partial", (s, d.B, d.H, d.N, d.Dv), F4, "workspace", batch_axis=1, head_axis=2,
          heads_per_group=d.hpb)
    t.add("lse_partial", (s, d.B, d.H, d.N), F4, "workspace", batch_axis=1, head_axis=2,
          heads_per_group=d.hpb)
    i = np.arange(s)
    lo = np.minimum(f_lo + i * per, f_hi)
    tiles = np.maximum(np.minimum(f_lo + i * per + per, f_hi + 1) - (f_lo + i * per), 0)
    busy = tiles > 0                                    # the s' non-empty splits
    ragged = busy * (lo + tiles - 1 == f_hi) * int(qt.ragged[0])
    rows, hpb = d.N, d.hpb
    split = KernelBuilder("flash_decode.split", s, per_head=True,
                          sram_bytes=sram_bytes(d, hpb * d.N))
    q_bytes = rows * hpb * d.D * d.e
    split.run(i, 0, busy * 1, [Access(LOAD, t.id("q"), t.addr("q", 0, 0, 0, 0), q_bytes)],
              sram_write_bytes=q_bytes)
    # the warps split each K/V tile's keys (memsim.algorithms.flash_decode)
    add_kv_loop(split, t, i, 1, lo, tiles - ragged, ragged, qt.ragged_keys, rows, 1)
    o_bytes, l_bytes = rows * hpb * d.Dv * F4, rows * hpb * F4
    split.run(i, 2, 1, [
        Access(STORE, t.id("o_partial"), t.addr("o_partial", i, 0, 0, 0, 0), o_bytes),
        Access(STORE, t.id("lse_partial"), t.addr("lse_partial", i, 0, 0, 0), l_bytes),
    ], vector_flops=busy * hpb * rows * d.Dv)   # an empty split normalises nothing
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


def backward_tensors(t: Tensors, delta: bool = True) -> None:
    """dO (B, N, H, Dv) and the gradients dQ (B, N, H, D), dK (B, S, K, D), dV (B, S, K,
    Dv; none under MLA: the latent's gradient is dK); with ``delta``, Δ = rowsum(dO ∘ O)
    (B, H, N) fp32."""
    d = t.d
    t.add("do", (d.B, d.N, d.H, d.Dv), d.e, "input", head_axis=2, heads_per_group=d.hpb)
    t.add("dq", (d.B, d.N, d.H, d.D), d.e, "output", head_axis=2, heads_per_group=d.hpb)
    t.add("dk", (d.B, d.S, d.K, d.D), d.e, "output", head_axis=2, group_divisor=d.kv_div)
    if not d.mla:
        t.add("dv", (d.B, d.S, d.K, d.Dv), d.e, "output", head_axis=2, group_divisor=d.kv_div)
    if delta:
        t.add("delta", (d.B, d.H, d.N), F4, "workspace", head_axis=1, heads_per_group=d.hpb)


def _rows(t: Tensors, name: str, kind: int, first_row, head, rows, width: float,
          step_rows: int = 0) -> Access:
    """The rows ``first_row …`` of query head ``head`` (of the template group) of tensor
    ``name`` laid out (B, N, H, ·), ``width`` bytes per row; iterations move ``step_rows``
    rows."""
    return Access(kind, t.id(name), t.addr(name, 0, first_row, head, 0), rows * width,
                  step_bytes=step_rows * t.stride(name, 1))


def _row_stats(t: Tensors, name: str, kind: int, first_row, head, rows, step_rows: int = 0
               ) -> Access:
    """The fp32 per-row statistics (B, H, N) of query head ``head`` (logsumexp, Δ)."""
    return Access(kind, t.id(name), t.addr(name, 0, head, first_row), rows * F4,
                  step_bytes=step_rows * F4)


def build_backward(d: Dims, layout: Layout) -> list[KernelProgram]:
    """FlashAttention-2 backward with its own tiles (d.backward()): the Δ kernel, the
    dQ/dK/dV kernel (one block per key tile and query head), the dQ conversion kernel
    and, under GQA, the sums of dK and dV over the query heads of each KV head.

    Dao-AILab/flash-attention (commit 765fbd9), csrc/flash_attn/src/
    flash_bwd_launch_template.h, run_flash_bwd_seqk_parallel: every kernel's grid is
    (tiles, params.b, params.h) — one block per *query* head, never the packed head
    group of the forward (flash_bwd_kernel.h reads K/V at head bidh / h_h_k_ratio); and
    csrc/flash_attn/flash_api.cpp, mha_bwd: under MQA/GQA the kernel writes dK and dV per
    query head into dk_expanded, dv_expanded (B, S, H, D) and at::sum_out sums them over
    the H/K heads of each KV head afterwards.
      dot_do_o   grid (query tiles, B, H): load O_a, dO_a; store Δ_a = rowsum(dO ∘ O)
                 and clear the fp32 dQ accumulator of the tile (Clear_dQaccum).
      dq_dk_dv   grid (key tiles, B, H): load K_j, V_j of the head's KV head; per query
                 tile a that sees j, last to first (m_block counts down): load Q_a, dO_a,
                 logsumexp_a, Δ_a; recompute P, dP, dS; atomicAdd dS K_j into
                 dQaccum_a (a read-modify-write of fp32 rows); finally store dK_j, dV_j
                 (the head's own rows of dk_expanded, dv_expanded under GQA).
      convert_dq grid (query tiles, B, H): load dQaccum_a, store dQ_a.
      sum_dk, sum_dv (GQA): per key tile, load the group's heads' rows of dk_expanded
                 (dv_expanded), store their sum into dK (dV) of the KV head.
    The template instance is a head group of hpb heads (the forward's grid, which the
    trace repeats over batch and group); its blocks are head-major, key (query) tiles
    fastest, and the three kernels launch them as the real grid does, the batch between
    two heads of a group (``grid_heads``: KernelProgram.launch_order). The sums are a
    PyTorch reduction, modelled as one block per key tile of a group; where a group spans
    part of a KV head (hpb < H/K), each group's blocks store their share 1/kv_div of the
    KV head's rows (the global bytes of one sum).
    Work per (a, j) of r rows × c keys and one head: matmul r·c·(6·D + 4·Dv) (S, dP,
    dV, dQ, dK), vector 5·r·c, exp r·c; SRAM: K/V and Q, dO staged (read by every warp).
    """
    d = d.backward()
    t = qkv_tensors(d, layout)
    add_lse(t)
    backward_tensors(t)
    hpb, e = d.hpb, d.e
    gqa = d.H != d.K
    t.add("dq_accum", (d.B, d.N, d.H, d.D), F4, "workspace", head_axis=2,
          heads_per_group=hpb)
    if gqa:
        t.add("dk_expanded", (d.B, d.S, d.H, d.D), e, "workspace", head_axis=2,
              heads_per_group=hpb)
        if not d.mla:
            t.add("dv_expanded", (d.B, d.S, d.H, d.Dv), e, "workspace", head_axis=2,
                  heads_per_group=hpb)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    T = qt.count
    # blocks h·T + a: query tile a of the group's head h
    h, a = np.repeat(np.arange(hpb), T), np.tile(np.arange(T), hpb)
    rows, first_row = qt.rows[a], qt.first_row[a]
    pre = KernelBuilder("flash2.bwd_dot_do_o", hpb * T, sram_bytes=0, grid_heads=hpb)
    pre.run(h * T + a, 0, 1, [_rows(t, "o", LOAD, first_row, h, rows, d.Dv * e),
                              _rows(t, "do", LOAD, first_row, h, rows, d.Dv * e),
                              _row_stats(t, "delta", STORE, first_row, h, rows),
                              _rows(t, "dq_accum", STORE, first_row, h, rows, d.D * F4)],
            vector_flops=rows * 2 * d.Dv)

    kt = key_tiles(qt, d.S, d.Bc)
    Tk = len(kt.j)
    # blocks h·Tk + i: key tile kt.j[i] of the group's head h
    h, i = np.repeat(np.arange(hpb), Tk), np.tile(np.arange(Tk), hpb)
    j, keys, a0, a1 = kt.j[i], kt.keys[i], kt.a0[i], kt.a1[i]
    block = h * Tk + i
    kv_bytes = keys * (d.D + d.dv_load) * e
    sram = fa2_backward_kernel_sram_bytes(d.Br, d.Bc, d.D, d.Dv, e, d.sram_limit or None)
    main = KernelBuilder("flash2.bwd", hpb * Tk, sram_bytes=int(sram), threads=32 * d.warps,
                         grid_heads=hpb)
    main.run(block, 0, 1, kv_loads(t, j * d.Bc, keys),
             sram_write_bytes=kv_bytes, sram_read_bytes=kv_bytes * d.warps)
    r_last = int(qt.rows[-1])
    ragged_q = int(r_last < d.Br)
    has_ragged = ragged_q * (a1 == T) * (a1 > a0)
    n_full = a1 - a0 - has_ragged
    # the ragged last query tile (if this key tile sees it) comes first, then the full
    # tiles from the last down to a0
    for order, q_row, n, r, step in (
            (1, (T - 1) * d.Br + 0 * block, has_ragged, r_last, 0),
            (2, (a0 + n_full - 1) * d.Br, n_full, d.Br, -d.Br)):
        staged = r * (d.D + d.Dv) * e
        main.run(block, order, n, [
            _rows(t, "q", LOAD, q_row, h, r, d.D * e, step),
            _rows(t, "do", LOAD, q_row, h, r, d.Dv * e, step),
            _row_stats(t, "lse", LOAD, q_row, h, r, step),
            _row_stats(t, "delta", LOAD, q_row, h, r, step),
            _rows(t, "dq_accum", LOAD, q_row, h, r, d.D * F4, step),
            _rows(t, "dq_accum", STORE, q_row, h, r, d.D * F4, step),
        ], matmul_flops=r * keys * (6 * d.D + 4 * d.Dv),
            vector_flops=5 * r * keys, exp_ops=r * keys,
            sram_write_bytes=staged, sram_read_bytes=staged * d.warps)
    grads = (("dk", d.D),) + ((("dv", d.Dv),) if not d.mla else ())
    main.run(block, 3, 1, [
        _rows(t, f"{name}_expanded", STORE, j * d.Bc, h, keys, width * e) if gqa else
        Access(STORE, t.id(name), t.addr(name, 0, j * d.Bc, 0, 0), keys * width * e)
        for name, width in grads])

    h, a = np.repeat(np.arange(hpb), T), np.tile(np.arange(T), hpb)
    rows, first_row = qt.rows[a], qt.first_row[a]
    conv = KernelBuilder("flash2.bwd_convert_dq", hpb * T, sram_bytes=0, grid_heads=hpb)
    conv.run(h * T + a, 0, 1, [_rows(t, "dq_accum", LOAD, first_row, h, rows, d.D * F4),
                               _rows(t, "dq", STORE, first_row, h, rows, d.D * e)])
    kernels = [pre.build(), main.build(), conv.build()]
    if gqa:
        kernels += [_sum_heads(t, name, width) for name, width in grads]
    return kernels


def _sum_heads(t: Tensors, name: str, width: int) -> KernelProgram:
    """at::sum_out of ``name``_expanded (B, S, H, width) over the query heads of each KV
    head into ``name`` (B, S, K, width): per key tile of Bc rows, the group's hpb heads'
    rows read (one unit per head, as the dq/dk/dv kernel wrote them) and its 1/kv_div
    share of the KV head's rows stored; (H/K − 1)·width additions per row of the KV
    head, 1/kv_div of them per group."""
    d = t.d
    n = d.key_tiles
    j = np.arange(n)
    keys = np.minimum(d.Bc, d.S - j * d.Bc)
    kb = KernelBuilder(f"flash2.bwd_sum_{name}", n, sram_bytes=0)
    kb.run(j, 0, 1, [_rows(t, f"{name}_expanded", LOAD, j * d.Bc, h, keys, width * d.e)
                     for h in range(d.hpb)] + [
        Access(STORE, t.id(name), t.addr(name, 0, j * d.Bc, 0, 0),
               keys * width * d.e / d.kv_div)],
        vector_flops=keys * (d.H // d.K - 1) * width / d.kv_div)
    return kb.build()
