"""Schedules of standard attention: S = QKᵀ, P = softmax(S), O = PV as three kernels, S and
P materialised in HBM as dense (B, H, N, S) matrices (FlashAttention paper, Algorithm 0).
``standard`` is eager attention: every key tile, the additive mask added to S
(:func:`build`); ``standard_blockskip`` skips masked tiles (:func:`build_blockskip`).

In the block-skipping variant all three kernels have one block per (query tile a, batch,
head group) and walk the same active key tiles j as the flash kernels (masked tiles
skipped block by block); the score matrices are read and written in the same (a, j)
tiles throughout.

    QKᵀ      load Q_a; per j: load K_j, S_aj = Q_a K_jᵀ · scale, store S_aj
    softmax  pass 1, per j: load S_aj, running max m and ℓ = Σ e^{S − m} (online: when the
             max grows, ℓ is rescaled by e^{m_old − x} in place of e^{x − m})
             pass 2, per j: load S_aj, P_aj = e^{S_aj − m} / ℓ, store P_aj
    PV       per j: load P_aj and V_j, O_a += P_aj V_j; store O_a

Eager attention's QKᵀ is a cuBLAS GEMM instead (:func:`_qk_gemm`): it loads Q_a again for
every output tile of memsim.algorithms.standard.GEMM_TILE_KEYS keys.

Under MLA, V_j is the first Dv elements of the latent rows of K_j: the QKᵀ kernel reads
each latent tile as two units (V part, rope part) and the PV kernel reads the V part.

Work per (a, j) tile (r rows × c keys, hpb heads): matmul hpb·r·c·2·D (QKᵀ) and
hpb·r·c·2·Dv (PV); vector hpb·r·c (scale) + hpb·3·r·c (pass 1: max, subtract, sum) +
hpb·r·c (pass 2: divide) — memsim.algorithms.standard's five per score; exp hpb·r·c in
each pass. The softmax kernel streams S
and P through registers; the matmul kernels stage their operands in SRAM (SRAM reads:
staged bytes × warps).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from memsim.algorithms.standard import (
    SECTOR_BYTES,
    TRIL_CHUNK,
    compute_e,
    q_loads,
    q_reload_tiles,
    row_warps,
    softmax_reads,
    tril_blocks,
    tril_piece_read_sectors,
    tril_pieces,
    tril_spill_bytes,
)
from memsim.geometry import MaskGeometry
from memsim.trace.layout import Layout
from memsim.trace.program import LOAD, STORE, Access, KernelBuilder, KernelProgram
from memsim.trace.sched_flash2 import backward_tensors
from memsim.trace.tiles import (
    Dims,
    KeyTiles,
    QueryTiles,
    Tensors,
    key_tiles,
    qkv_tensors,
    query_tiles,
)


def _key_tiles(d: Dims, qt: QueryTiles):
    """(first key, keys, count, order offset) of the full and the ragged key-tile runs."""
    last = (d.key_tiles - 1) * d.Bc
    return ((qt.f_lo * d.Bc, d.Bc, qt.n_full, 0.0), (last, qt.ragged_keys, qt.ragged, 0.5))


def _k_loads(t: Tensors, first_key, keys, k: str = "k") -> list[Access]:
    """K tile loads (of tensor ``k``: K or its scaled copy); under MLA the latent tile as
    its V part and its rope part."""
    d = t.d
    step = d.Bc * t.stride(k, 1)
    addr = t.addr(k, 0, first_key, 0, 0)
    if not d.mla:
        return [Access(LOAD, t.id(k), addr, keys * d.D * d.e, step_bytes=step)]
    parts = [Access(LOAD, t.id(k), addr, keys * d.Dv * d.e, step_bytes=step)]
    if d.D > d.Dv:
        parts.append(Access(LOAD, t.id(k), addr + int(d.Dv * d.e),
                            keys * (d.D - d.Dv) * d.e, step_bytes=step))
    return parts


def _v_load(t: Tensors, first_key, keys, v: str | None = None) -> Access:
    """V tile load from tensor ``v`` (default: V, or the latent K under MLA)."""
    d = t.d
    name = v or ("k" if d.mla else "v")
    return Access(LOAD, t.id(name), t.addr(name, 0, first_key, 0, 0), keys * d.Dv * d.e,
                  step_bytes=d.Bc * t.stride(name, 1))


def _score_tile(t: Tensors, name: str, kind: int, qt: QueryTiles, first_key, keys) -> Access:
    """The (a, j) tile of a score-shaped matrix (S, P, their gradients, the isneginf(S)
    flags): hpb heads × r rows × c keys, at [b, g·hpb, a·Br, j·Bc], of the tensor's own
    element size."""
    d = t.d
    elem_bytes = t.layout[t.ids[name]].elem_bytes
    return Access(kind, t.id(name), t.addr(name, 0, 0, qt.first_row, first_key),
                  qt.rows * d.hpb * keys * elem_bytes, step_bytes=d.Bc * t.stride(name, 3))


def build_blockskip(d: Dims, layout: Layout, q: str = "q", k: str = "k",
                    pv_probs: str = "probs", softmax_reads: int = 2, v: str | None = None,
                    o: str = "o", probs: str = "probs",
                    gemm_key_tiles: int = 0) -> list[KernelProgram]:
    """Standard attention forward skipping masked tiles: QKᵀ, softmax and PV kernels.
    ``q``, ``k``, ``v``: the tensors QKᵀ and PV read; ``pv_probs``: the one PV reads;
    ``probs``: the one softmax writes; ``o``: the one PV writes (eager attention passes
    the scaled fp32 copies and the safe softmax's output, :func:`build`).
    ``softmax_reads``: times the softmax kernel reads each S tile (1 to 3): pass 1 sweeps
    the row ``softmax_reads − 1`` times, each sweep over all its tiles before the next
    (PyTorch's cunn_SoftMaxForward: max, then sum of exps; 0: the row is held on chip),
    pass 2 once. ``gemm_key_tiles``: 0, QKᵀ holds its block's Q rows across the key
    tiles (memsim's kernel); else QKᵀ is a GEMM whose output tiles span this many key
    tiles and load Q again for each (eager attention: :func:`_qk_gemm`, dense only)."""
    t = qkv_tensors(d, layout)
    for name in ("scores", probs):
        t.add(name, (d.B, d.H, d.N, d.S), d.e, "workspace", head_axis=1,
              heads_per_group=d.hpb)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    a, r, hpb, e, w = np.arange(qt.count), qt.rows, d.hpb, d.e, d.warps
    rows = hpb * d.Br

    qk = KernelBuilder("standard.qk", qt.count, sram_bytes=int((rows * d.D + d.Bc * d.D) * e))
    q_bytes = r * hpb * d.D * e
    if gemm_key_tiles:
        _qk_gemm(qk, t, qt, q, k, gemm_key_tiles)
    else:
        qk.run(a, 0, 1, [Access(LOAD, t.id(q), t.addr(q, 0, qt.first_row, 0, 0), q_bytes)],
               sram_write_bytes=q_bytes, sram_read_bytes=q_bytes * w)
        for first_key, keys, count, off in _key_tiles(d, qt):
            staged = keys * d.D * e
            qk.run(a, 1 + off, count,
                   _k_loads(t, first_key, keys, k) + [_score_tile(t, "scores", STORE, qt,
                                                                  first_key, keys)],
                   matmul_flops=hpb * r * keys * 2 * d.D, vector_flops=hpb * r * keys,
                   sram_write_bytes=staged, sram_read_bytes=staged * w)

    softmax = KernelBuilder("standard.softmax", qt.count, sram_bytes=0)
    last = max(softmax_reads - 1, 1)     # pass 1's sweeps over the row (none: held on chip)
    for first_key, keys, count, off in _key_tiles(d, qt):
        for sweep in range(last):        # the max, then the sum (PyTorch's three reads)
            softmax.run(a, sweep + off, count,
                        [_score_tile(t, "scores", LOAD, qt, first_key, keys)]
                        * (sweep < softmax_reads - 1),
                        **(dict(vector_flops=hpb * 3 * r * keys, exp_ops=hpb * r * keys)
                           if sweep == 0 else {}))
        softmax.run(a, last + off, count, [_score_tile(t, "scores", LOAD, qt, first_key,
                                                       keys),
                                           _score_tile(t, probs, STORE, qt, first_key,
                                                       keys)],
                    vector_flops=hpb * r * keys, exp_ops=hpb * r * keys)

    pv = KernelBuilder("standard.pv", qt.count,
                       sram_bytes=int((rows * d.Bc + d.Bc * d.Dv) * e))
    for first_key, keys, count, off in _key_tiles(d, qt):
        staged = r * hpb * keys * e + keys * d.Dv * e
        pv.run(a, 0 + off, count, [_score_tile(t, pv_probs, LOAD, qt, first_key, keys),
                                   _v_load(t, first_key, keys, v)],
               matmul_flops=hpb * r * keys * 2 * d.Dv,
               sram_write_bytes=staged, sram_read_bytes=staged * w)
    pv.run(a, 1, 1, [Access(STORE, t.id(o), t.addr(o, 0, qt.first_row, 0, 0),
                            r * hpb * d.Dv * e)])
    return [qk.build(), softmax.build(), pv.build()]


def _qk_gemm(qk: KernelBuilder, t: Tensors, qt: QueryTiles, q: str, k: str, m: int) -> None:
    """QKᵀ as the GEMM eager attention runs (memsim.algorithms.standard.GEMM_TILE_KEYS):
    per query tile a, one step per GEMM output tile — load Q_a, then for each of its ``m``
    key tiles load K_j and store S_aj — the full output tiles as one run (addresses
    stepping m key tiles), the last one (fewer full key tiles, or the ragged one) apart.
    Q_a is loaded ⌈key tiles / m⌉ times, which must be
    memsim.algorithms.standard.q_loads (the rule's one home; ValueError otherwise). Dense
    scores only (every query tile sees key tiles 0 … ⌈S/Bc⌉ − 1)."""
    d = t.d
    if d.geometry.kind != "full":
        raise ValueError("the GEMM QKᵀ schedule runs over dense scores only")
    a, r, hpb, e, w = np.arange(qt.count), qt.rows, d.hpb, d.e, d.warps
    q_bytes = r * hpb * d.D * e
    q_load = Access(LOAD, t.id(q), t.addr(q, 0, qt.first_row, 0, 0), q_bytes)
    n_full = int(qt.n_full[0])
    tiles = [(j * d.Bc, d.Bc) for j in range(n_full)]
    tiles += [(n_full * d.Bc, qt.ragged_keys)] * int(qt.ragged[0])
    full_steps = n_full // m
    steps = full_steps + int(len(tiles) > full_steps * m)
    if steps != int(q_loads(d.S, d.Bc)):
        raise ValueError(f"{m} key tiles per GEMM output tile load Q {steps} times, "
                         f"memsim.algorithms.standard.q_loads {int(q_loads(d.S, d.Bc))}")

    def step(order, count, first):
        part = tiles[first:first + m]
        accesses = [q_load]
        for first_key, keys in part:
            accesses += [replace(acc, step_bytes=acc.step_bytes * m) for acc in
                         _k_loads(t, first_key, keys, k)
                         + [_score_tile(t, "scores", STORE, qt, first_key, keys)]]
        keys = sum(keys for _, keys in part)
        staged = q_bytes + keys * d.D * e
        qk.run(a, order, count, accesses, matmul_flops=hpb * r * keys * 2 * d.D,
               vector_flops=hpb * r * keys, sram_write_bytes=staged,
               sram_read_bytes=staged * w)

    if full_steps:
        step(1, full_steps, 0)
    if len(tiles) > full_steps * m:
        step(2, 1, full_steps * m)


def _per_key_tile(kb: KernelBuilder, t: Tensors, qt: QueryTiles, kt: KeyTiles, order,
                  name: str, rows_name: str, width: float, matmul_per_score: float) -> None:
    """Steps of a grid over key tiles j (dV = PᵀdO, dK = dSᵀQ): per query tile a that
    sees j, ascending (the ragged last one after the full ones), load the (a, j) tile of
    score matrix ``name`` and the rows of ``rows_name`` (``width`` bytes per row and head)."""
    d = t.d
    j = np.arange(len(kt.j))
    T, r_last = qt.count, int(qt.rows[-1])
    has_ragged = int(r_last < d.Br) * (kt.a1 == T) * (kt.a1 > kt.a0)
    for off, first_row, n, r in ((0.0, kt.a0 * d.Br, kt.a1 - kt.a0 - has_ragged, d.Br),
                                 (0.5, (T - 1) * d.Br + 0 * j, has_ragged, r_last)):
        staged = r * d.hpb * kt.keys * d.e + r * d.hpb * width
        kb.run(j, order + off, n, [
            Access(LOAD, t.id(name), t.addr(name, 0, 0, first_row, kt.j * d.Bc),
                   r * d.hpb * kt.keys * d.e, step_bytes=d.Br * t.stride(name, 2)),
            Access(LOAD, t.id(rows_name), t.addr(rows_name, 0, first_row, 0, 0),
                   r * d.hpb * width, step_bytes=d.Br * t.stride(rows_name, 1))],
            matmul_flops=d.hpb * r * kt.keys * matmul_per_score,
            sram_write_bytes=staged, sram_read_bytes=staged * d.warps)


def _key_tile_store(kb: KernelBuilder, t: Tensors, kt: KeyTiles, name: str,
                    width: int) -> None:
    """Last step of a grid over key tiles j: store the ``width`` elements per key of tile
    j of ``name`` (dV, dK)."""
    d = t.d
    kb.run(np.arange(len(kt.j)), 2, 1, [Access(STORE, t.id(name),
                                               t.addr(name, 0, kt.j * d.Bc, 0, 0),
                                               kt.keys * width * d.e)])


def _bwd_dv(t: Tensors, qt: QueryTiles, kt: KeyTiles, probs: str, do: str,
            dv: str) -> KernelProgram:
    """dV = Pᵀ dO: a grid over key tiles j, per query tile a that sees j load P_aj (of
    ``probs``) and dO_a (of ``do``); store dV_j into ``dv``."""
    d = t.d
    kb = KernelBuilder("standard.bwd_dv", len(kt.j),
                       sram_bytes=int((d.hpb * d.Br * d.Bc + d.hpb * d.Br * d.Dv) * d.e))
    _per_key_tile(kb, t, qt, kt, 1, probs, do, d.Dv * d.e, 2 * d.Dv)
    _key_tile_store(kb, t, kt, dv, d.Dv)
    return kb.build()


def _bwd_dp(t: Tensors, qt: QueryTiles, do: str, v: str | None = None) -> KernelProgram:
    """dP = dO Vᵀ: a grid over query tiles a, load dO_a (of ``do``), then per key tile j
    load V_j (of ``v``, :func:`_v_load`) and store dP_aj into ``dprobs``."""
    d = t.d
    a, r, e = np.arange(qt.count), qt.rows, d.e
    kb = KernelBuilder("standard.bwd_dp", qt.count,
                       sram_bytes=int((d.hpb * d.Br * d.Dv + d.Bc * d.Dv) * e))
    do_bytes = r * d.hpb * d.Dv * e
    kb.run(a, 0, 1, [Access(LOAD, t.id(do), t.addr(do, 0, qt.first_row, 0, 0), do_bytes)],
           sram_write_bytes=do_bytes, sram_read_bytes=do_bytes * d.warps)
    for first_key, keys, count, off in _key_tiles(d, qt):
        staged = keys * d.Dv * e
        kb.run(a, 1 + off, count, [_v_load(t, first_key, keys, v),
                                   _score_tile(t, "dprobs", STORE, qt, first_key, keys)],
               matmul_flops=d.hpb * r * keys * 2 * d.Dv,
               sram_write_bytes=staged, sram_read_bytes=staged * d.warps)
    return kb.build()


def _bwd_dq(t: Tensors, qt: QueryTiles, k: str, dq: str) -> KernelProgram:
    """dQ = dS K: a grid over query tiles a, per key tile j load dS_aj and K_j (of ``k``,
    :func:`_k_loads`); store dQ_a into ``dq``."""
    d = t.d
    a, r, e = np.arange(qt.count), qt.rows, d.e
    kb = KernelBuilder("standard.bwd_dq", qt.count,
                       sram_bytes=int((d.hpb * d.Br * d.Bc + d.Bc * d.D) * e))
    for first_key, keys, count, off in _key_tiles(d, qt):
        staged = r * d.hpb * keys * e + keys * d.D * e
        kb.run(a, 0 + off, count, [_score_tile(t, "dscores", LOAD, qt, first_key, keys)]
               + _k_loads(t, first_key, keys, k), matmul_flops=d.hpb * r * keys * 2 * d.D,
               sram_write_bytes=staged, sram_read_bytes=staged * d.warps)
    kb.run(a, 1, 1, [Access(STORE, t.id(dq), t.addr(dq, 0, qt.first_row, 0, 0),
                            r * d.hpb * d.D * e)])
    return kb.build()


def _bwd_dk(t: Tensors, qt: QueryTiles, kt: KeyTiles, q: str, dk: str) -> KernelProgram:
    """dK = dSᵀ Q: a grid over key tiles j, per query tile a that sees j load dS_aj and
    Q_a (of ``q``); store dK_j into ``dk``."""
    d = t.d
    kb = KernelBuilder("standard.bwd_dk", len(kt.j),
                       sram_bytes=int((d.hpb * d.Br * d.Bc + d.hpb * d.Br * d.D) * d.e))
    _per_key_tile(kb, t, qt, kt, 1, "dscores", q, d.D * d.e, 2 * d.D)
    _key_tile_store(kb, t, kt, dk, d.D)
    return kb.build()


def build_backward_blockskip(d: Dims, layout: Layout) -> list[KernelProgram]:
    """Standard attention backward (FlashAttention paper, Appendix B.1 Algorithm 3) over
    the active tiles, five kernels over the saved P:

        dV   grid over key tiles j: per query tile a that sees j load P_aj and dO_a;
             store dV_j (dV = Pᵀ dO)
        dP   grid over query tiles a: load dO_a; per j: load V_j, store dP_aj (dO Vᵀ)
        dS   grid over query tiles a: pass 1, per j: load P_aj, dP_aj (row sums of P ∘ dP);
             pass 2, per j: load P_aj, dP_aj, store dS_aj = P ∘ (dP − rowsum)
        dQ   grid over query tiles a: per j: load dS_aj, K_j; store dQ_a (dS K)
        dK   grid over key tiles j: per a: load dS_aj, Q_a; store dK_j (dSᵀ Q)

    Work: matmul 2·Dv (dV, dP) and 2·D (dQ, dK) per score and head; vector 4 per score in
    the dS kernel (P ∘ dP, sum; subtract, multiply), which streams through registers; the
    matmul kernels stage their operands in SRAM (read by every warp).
    """
    t = qkv_tensors(d, layout)
    for name in ("probs", "dprobs", "dscores"):
        t.add(name, (d.B, d.H, d.N, d.S), d.e, "workspace", head_axis=1,
              heads_per_group=d.hpb)
    backward_tensors(t, delta=False)
    if d.mla:      # eager autograd keeps V's gradient apart from the latent's
        t.add("dv", (d.B, d.S, d.K, d.Dv), d.e, "output", head_axis=2, group_divisor=d.kv_div)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    kt = key_tiles(qt, d.S, d.Bc)
    a, r, hpb = np.arange(qt.count), qt.rows, d.hpb

    ds = KernelBuilder("standard.bwd_ds", qt.count, sram_bytes=0)
    for first_key, keys, count, off in _key_tiles(d, qt):
        pair = [_score_tile(t, "probs", LOAD, qt, first_key, keys),
                _score_tile(t, "dprobs", LOAD, qt, first_key, keys)]
        ds.run(a, 0 + off, count, pair, vector_flops=hpb * 2 * r * keys)
        ds.run(a, 1 + off, count, pair + [_score_tile(t, "dscores", STORE, qt, first_key,
                                                      keys)],
               vector_flops=hpb * 2 * r * keys)
    return [_bwd_dv(t, qt, kt, "probs", "do", "dv"), _bwd_dp(t, qt, "do"), ds.build(),
            _bwd_dq(t, qt, "k", "dq"), _bwd_dk(t, qt, kt, "q", "dk")]


def _dense(d: Dims) -> Dims:
    return replace(d, geometry=MaskGeometry("full"))


def _mask_kernel(d: Dims, layout: Layout, name: str, kernel: str, mask: str) -> KernelProgram:
    """The add of the additive (N, S) mask ``mask`` to the dense score matrix ``name``
    (``attn.add_(mask)``): per query tile, every key tile of the scores loaded and stored
    back, one vector op per score, and the mask tile read once per block for its heads."""
    d = _dense(d)
    t = qkv_tensors(d, layout)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    a, r = np.arange(qt.count), qt.rows
    kb = KernelBuilder(kernel, qt.count, sram_bytes=0)
    for first_key, keys, count, off in _key_tiles(d, qt):
        extra = [Access(LOAD, t.id(mask), t.addr(mask, qt.first_row, first_key),
                        r * keys * d.e, step_bytes=d.Bc * t.stride(mask, 1))]
        kb.run(a, off, count, [_score_tile(t, name, LOAD, qt, first_key, keys)] + extra
               + [_score_tile(t, name, STORE, qt, first_key, keys)],
               vector_flops=d.hpb * r * keys)
    return kb.build()


def _scale_kernel(t: Tensors, name: str, src: str, rows: int, Bt: int,
                  width: int, kernel: str | None = None, flops: int = 1,
                  split_at: int = 0) -> KernelProgram:
    """``src * sqrt(scale)`` into ``name`` (PyTorch scales Q and K before QKᵀ), or with
    ``flops=0`` a dtype copy (``src.to(dtype)``): per tile of ``Bt`` rows (positions) one
    block loads the tile and stores it, ``flops`` vector ops per element; each side at its
    tensor's element size. ``width``: elements per row and block (hpb·D for Q, D for K).
    ``split_at``: store each row as two units, its first ``split_at`` elements and the
    rest (MLA's scaled latent K, which QKᵀ reads as its V part and its rope part:
    :func:`_k_loads`; the L2 keys a unit by its first byte)."""
    tiles = -(-rows // Bt)
    b = np.arange(tiles)
    n = np.minimum(Bt, rows - b * Bt)
    src_e, dst_e = (t.layout[t.ids[x]].elem_bytes for x in (src, name))
    kb = KernelBuilder(kernel or f"standard.scale_{src}", tiles, sram_bytes=0)
    dst = t.addr(name, 0, b * Bt, 0, 0)
    parts = [(0, width)] if not 0 < split_at < width else [(0, split_at),
                                                          (split_at, width - split_at)]
    kb.run(b, 0, 1, [Access(LOAD, t.id(src), t.addr(src, 0, b * Bt, 0, 0), n * width * src_e)]
           + [Access(STORE, t.id(name), dst + int(first * dst_e), n * elems * dst_e)
              for first, elems in parts],
           vector_flops=n * width * flops)
    return kb.build()


def _score_copy(d: Dims, layout: Layout, src: str, dst: str, kernel: str) -> KernelProgram:
    """``src.to(dtype)`` into ``dst`` over the dense score matrix (the attention weights
    cast back): per query tile, every key tile loaded and stored, each at its tensor's
    element size; no floating-point operations."""
    t = qkv_tensors(d, layout)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    kb = KernelBuilder(kernel, qt.count, sram_bytes=0)
    for first_key, keys, count, off in _key_tiles(d, qt):
        kb.run(np.arange(qt.count), off, count,
               [_score_tile(t, src, LOAD, qt, first_key, keys),
                _score_tile(t, dst, STORE, qt, first_key, keys)])
    return kb.build()


def _safe_softmax_tail(d: Dims, layout: Layout, probs: str = "probs") -> list[KernelProgram]:
    """The rest of PyTorch's ``_safe_softmax`` after ``softmax`` (rows masked entirely
    give zeros, not NaN): ``isneginf`` of S (a bool per score), ``all`` over each row
    (a bool per row), ``where(rows, 0, P)`` into a new P — three elementwise kernels over
    the dense scores, per query tile and every key tile; no floating-point operations.
    where's row flags and zero are broadcast operands that every warp of 32 keys of a row
    loads as one 32-byte sector (memsim.algorithms.standard.broadcast_load_bytes): per
    (query tile, key tile of c keys) r·hpb·⌈c/32⌉ sectors each — the tile's r·hpb flag
    bytes 32·⌈c/32⌉ times, the zero's sector r·hpb·⌈c/32⌉ times."""
    t = qkv_tensors(d, layout)
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, d.geometry)
    a, r, hpb = np.arange(qt.count), qt.rows, d.hpb
    rows = Access(STORE, t.id("masked_rows"), t.addr("masked_rows", 0, 0, qt.first_row),
                  r * hpb * 1.0)
    zero = Access(LOAD, t.id("softmax_zero"), t.addr("softmax_zero", 0), SECTOR_BYTES)
    isneginf = KernelBuilder("standard.isneginf", qt.count, sram_bytes=0)
    reduce_all = KernelBuilder("standard.all_rows", qt.count, sram_bytes=0)
    where = KernelBuilder("standard.where", qt.count, sram_bytes=0)
    for first_key, keys, count, off in _key_tiles(d, qt):
        isneginf.run(a, off, count, [_score_tile(t, "scores", LOAD, qt, first_key, keys),
                                     _score_tile(t, "neginf", STORE, qt, first_key, keys)])
        reduce_all.run(a, off, count, [_score_tile(t, "neginf", LOAD, qt, first_key, keys)])
        warps = int(row_warps(keys))                    # per row of the tile
        where.run(a, 1 + off, count, [
            _score_tile(t, probs, LOAD, qt, first_key, keys),
            _repeated(Access(LOAD, rows.tensor, rows.address, rows.unit_bytes),
                      warps * SECTOR_BYTES),
            _repeated(zero, r * hpb * warps),
            _score_tile(t, "probs_safe", STORE, qt, first_key, keys)])
    # a warp per row, its first lane stores the flag: one sector per row
    reduce_all.run(a, 2, 1, [_repeated(rows, SECTOR_BYTES)])
    return [isneginf.build(), reduce_all.build(), where.build()]


def _repeated(acc: Access, times) -> Access:
    """``acc`` issued ``times`` times at the same address, after the first L1 / L2 hits:
    the loads of a broadcast operand's sector, one per warp, and a store narrower than
    the 32-byte sector Nsight Compute counts for it, as that many stores of its bytes
    (``all``'s flag byte 32 times, a one-element fill's element 32 / e times). With the
    L2 off every repeat reaches HBM, as the analytic no-reuse counts charge it
    (memsim.algorithms.standard._repeat_hbm_bytes: what the L2 estimate keeps from HBM)."""
    return replace(acc, units=times, unit_stride_bytes=0)


def _fill_scalar(t: Tensors, name: str, kernel: str) -> KernelProgram:
    """``scalar_tensor(value)``: one block writes one element of ``name``, once per call
    — its 32-byte sector through L1 (the element stored SECTOR_BYTES / e times)."""
    kb = KernelBuilder(kernel, 1, per_head=False, once=True, sram_bytes=0)
    e = t.layout[t.ids[name]].elem_bytes
    kb.run(0, 0, 1, [_repeated(Access(STORE, t.id(name), t.addr(name, 0), e),
                               max(1, int(SECTOR_BYTES // e)))])
    return kb.build()


def _once_per_call(d: Dims, t: Tensors, causal: bool) -> tuple[list, list]:
    """The kernels the math backend runs once per call (memsim.algorithms.standard's
    ``_once_per_call``: the same bytes): the causal mask's construction — ones, tril, the
    two one-element tensors, where into the (N, S) additive mask — and the safe softmax's
    zero. Returns (mask construction, [the zero's fill])."""
    zero = _fill_scalar(t, "softmax_zero", "standard.fill_zero")
    if not causal:
        return [], [zero]
    pieces = tril_pieces(d.N, d.S)
    ones, tril = _mask_ones_tril(d, t, pieces)
    return ([ones, tril, _fill_scalar(t, "mask_neginf", "standard.fill_neginf"),
             _fill_scalar(t, "mask_zero", "standard.fill_where_zero"),
             _mask_where(d, t, pieces)], [zero])


def _mask_ones_tril(d: Dims, t: Tensors, pieces: tuple) -> list[KernelProgram]:
    """``ones((N, S), bool)`` and its ``tril()`` (TriangularOps.cu, out of place): tril in
    PyTorch's grid, a block per 1024 elements of the row-padded matrix, each block loading
    and storing its own ``pieces`` of rows (memsim.algorithms.standard.tril_pieces),
    every element by an instruction of its own: its loaded sectors
    (memsim.algorithms.standard.tril_piece_read_sectors) loaded TRIL_CHUNK times, then
    its piece stored TRIL_CHUNK times. ones (one block per query tile) writes the pieces
    in the units tril loads them in (a piece's bools before its first whole sector, the
    rest) — a tensor's units are the same in every kernel (memsim.trace.program)."""
    block, rows, lo, hi = pieces
    n = len(rows)
    first = -(lo // -SECTOR_BYTES) * SECTOR_BYTES        # the piece's first whole sector
    ones = KernelBuilder("standard.mask_ones", -(-d.N // d.Br), per_head=False, once=True)
    for part, (start, end) in enumerate(((lo, np.minimum(first, hi)), (first, hi))):
        ones.run(rows // d.Br, np.arange(n) + part / 2, end > start,
                 [Access(STORE, t.id("causal_ones"), t.addr("causal_ones", rows, start),
                         end - start)])
    tril = KernelBuilder("standard.mask_tril", int(tril_blocks(d.N, d.S)), per_head=False,
                         once=True)
    # its sectors in its row, then what reaches past the row's end: the next row's first
    # bytes (past the last row's, outside the tensor)
    spill = tril_spill_bytes(rows, lo, hi, d.S)
    in_row = tril_piece_read_sectors(rows, lo, hi, d.S) * SECTOR_BYTES - spill
    tril.run(block, np.arange(n), TRIL_CHUNK * (in_row > 0),
             [Access(LOAD, t.id("causal_ones"), t.addr("causal_ones", rows, first), in_row)])
    tril.run(block, np.arange(n) + 0.5, TRIL_CHUNK * ((spill > 0) & (rows + 1 < d.N)),
             [Access(LOAD, t.id("causal_ones"), t.addr("causal_ones", rows + 1, 0), spill)])
    tril.run(block, n + np.arange(n), TRIL_CHUNK,
             [Access(STORE, t.id("causal_bool"), t.addr("causal_bool", rows, lo), hi - lo)])
    return [ones.build(), tril.build()]


def _mask_where(d: Dims, t: Tensors, pieces: tuple) -> KernelProgram:
    """``where(mask, 0.0, -inf)`` into the (N, S) additive mask, one block per query tile:
    its rows of tril's output first, in the ``pieces`` tril stored them in, then per key
    tile its two one-element operands, broadcast (their sector per warp of 32 keys), and
    the mask stored in the (query tile, key tile) units the mask add reads."""
    _, rows, lo, hi = pieces
    tiles = -(-d.N // d.Br)
    where = KernelBuilder("standard.mask_where", tiles, per_head=False, once=True)
    where.run(rows // d.Br, -1.0, 1,
              [Access(LOAD, t.id("causal_bool"), t.addr("causal_bool", rows, lo), hi - lo)])
    qt = query_tiles(d.N, d.S, d.Br, d.Bc, MaskGeometry("full"))
    mask_e = t.layout[t.ids["mask"]].elem_bytes
    scalars = [Access(LOAD, t.id(name), t.addr(name, 0), SECTOR_BYTES)
               for name in ("mask_zero", "mask_neginf")]
    for first_key, keys, count, off in _key_tiles(d, qt):
        warps = qt.rows * int(row_warps(keys))
        where.run(np.arange(tiles), off, count, [
            *(_repeated(acc, warps) for acc in scalars),
            Access(STORE, t.id("mask"), t.addr("mask", qt.first_row, first_key),
                   qt.rows * keys * mask_e, step_bytes=d.Bc * t.stride("mask", 1))])
    return where.build()


def build(d: Dims, layout: Layout) -> list[KernelProgram]:
    """Eager standard attention forward as PyTorch's math backend runs it
    (``_scaled_dot_product_attention_math``, aten/src/ATen/native/transformers/
    attention.cpp, PyTorch 2.5–2.11): for 2-byte storage Q, K, V copied to fp32 first
    (memsim.algorithms.standard.compute_e), Q and K scaled by √scale into copies, QKᵀ over
    every key tile, the additive mask added to S (masks other than full), softmax (reading
    S as often as PyTorch's kernel for rows of S keys does:
    :func:`memsim.algorithms.standard.softmax_reads`), the safe softmax's isneginf / all /
    where, PV on its output — the kernels of :func:`build_blockskip` over the dense scores
    and the elementwise kernels between, all at the compute width — then for 2-byte
    storage O and the attention weights cast back (memsim.algorithms.standard's
    ``_dtype_copies``: the same kernels and bytes).

    Once per call, in PyTorch's order: the causal mask's construction after scaling Q
    (ones, tril, two one-element tensors, where) and the safe softmax's zero before its
    where (:func:`_once_per_call`). Not here: under GQA the repeat_interleave of K and V
    (modelled as the copy and scale kernels run per head group on its KV head)."""
    up = d.e == 2
    dc = replace(d, e=float(compute_e(d.e)))     # the compute width (fp32 for 16-bit)
    dd, ddc = _dense(d), _dense(dc)
    t = qkv_tensors(dd, layout)
    src = {"q": "q", "k": "k", "v": None, "o": "o", "probs": "probs"}
    if up:
        t.add("q32", (d.B, d.N, d.H, d.D), dc.e, "workspace", head_axis=2,
              heads_per_group=d.hpb)
        t.add("k32", (d.B, d.S, d.K, d.D), dc.e, "workspace", head_axis=2,
              group_divisor=d.kv_div)
        if not d.mla:
            t.add("v32", (d.B, d.S, d.K, d.Dv), dc.e, "workspace", head_axis=2,
                  group_divisor=d.kv_div)
        t.add("o32", (d.B, d.N, d.H, d.Dv), dc.e, "workspace", head_axis=2,
              heads_per_group=d.hpb)
        t.add("attn", (d.B, d.H, d.N, d.S), d.e, "workspace", head_axis=1,
              heads_per_group=d.hpb)
        src = {"q": "q32", "k": "k32", "v": "k32" if d.mla else "v32", "o": "o32",
               "probs": "probs32"}
    t.add("q_scaled", (d.B, d.N, d.H, d.D), dc.e, "workspace", head_axis=2,
          heads_per_group=d.hpb)
    t.add("k_scaled", (d.B, d.S, d.K, d.D), dc.e, "workspace", head_axis=2,
          group_divisor=d.kv_div)
    for name, e in (("probs_safe", dc.e), ("neginf", 1.0)):
        t.add(name, (d.B, d.H, d.N, d.S), e, "workspace", head_axis=1,
              heads_per_group=d.hpb)
    t.add("masked_rows", (d.B, d.H, d.N), 1.0, "workspace", head_axis=1,
          heads_per_group=d.hpb)
    masked = d.geometry.kind != "full"
    if masked:
        t.add("mask", (d.N, d.S), dc.e, "workspace", batch_axis=None)
    causal = d.geometry.kind == "causal"
    # the one-element tensors as the 32-byte sector a warp loads them in (the caching
    # allocator gives each a block of its own: nothing else shares that sector)
    sector = (max(1, int(SECTOR_BYTES // dc.e)),)
    for name, shape, e in (("causal_ones", (d.N, d.S), 1.0), ("causal_bool", (d.N, d.S), 1.0),
                           ("mask_neginf", sector, dc.e), ("mask_zero", sector, dc.e)):
        if causal:
            t.add(name, shape, e, "workspace", batch_axis=None)
    t.add("softmax_zero", sector, dc.e, "workspace", batch_axis=None)
    build_mask, zero = _once_per_call(d, t, causal)
    scale_q = _scale_kernel(t, "q_scaled", src["q"], d.N, d.Br, d.hpb * d.D, "standard.scale_q")
    scale_k = _scale_kernel(t, "k_scaled", src["k"], d.S, d.Bc, d.D, "standard.scale_k",
                            split_at=d.Dv if d.mla else 0)
    qk, softmax, pv = build_blockskip(ddc, layout, q="q_scaled", k="k_scaled",
                                      pv_probs="probs_safe", v=src["v"], o=src["o"],
                                      probs=src["probs"],
                                      softmax_reads=int(softmax_reads(d.S, dc.e)),
                                      gemm_key_tiles=int(q_reload_tiles(d.Bc)))
    add = [_mask_kernel(dc, layout, "scores", "standard.add_mask", mask="mask")] if masked \
        else []
    isneginf, reduce_all, where = _safe_softmax_tail(ddc, layout, src["probs"])
    kernels = ([scale_q] + build_mask + [scale_k, qk] + add + [softmax, isneginf, reduce_all]
               + zero + [where, pv])
    if not up:
        return kernels
    to_fp32 = [_scale_kernel(t, "q32", "q", d.N, d.Br, d.hpb * d.D, "standard.to_fp32_q", 0),
               _scale_kernel(t, "k32", "k", d.S, d.Bc, d.D, "standard.to_fp32_k", 0)]
    if not d.mla:
        to_fp32.append(_scale_kernel(t, "v32", "v", d.S, d.Bc, d.Dv, "standard.to_fp32_v", 0))
    to_storage = [_scale_kernel(t, "o", "o32", d.N, d.Br, d.hpb * d.Dv, "standard.to_storage_o",
                                0),
                  _score_copy(ddc, layout, "probs_safe", "attn", "standard.to_storage_p")]
    return to_fp32 + kernels + to_storage


def build_backward(d: Dims, layout: Layout) -> list[KernelProgram]:
    """Eager standard attention backward as autograd runs it through the math backend
    (memsim.algorithms.standard.backward: the same kernels and bytes), at the compute
    width over the dense scores: for 2-byte storage dO copied to fp32 first; dP = dO Vᵀ
    and dV = Pᵀ dO over the saved fp32 P (the safe softmax's output); tmp = dP ∘ P; the
    softmax backward (tmp read once for rows PyTorch's kernel holds on chip, else twice:
    the row sum, then the output pass; P once; dS written); dQ' = dS K' and dK' = dSᵀ Q'
    over the scaled copies QKᵀ saved; the two scale gradients (dK = dK'·√scale, dQ =
    dQ'·√scale); for 2-byte storage dV, dK, dQ cast back. No kernel for the mask (the
    additive mask's gradient is the identity)."""
    from memsim.algorithms.standard import softmax_backward_reads

    up = d.e == 2
    dc = _dense(replace(d, e=float(compute_e(d.e))))
    ts = qkv_tensors(_dense(d), layout)                 # q, k, v, o at the storage width
    backward_tensors(ts, delta=False)                   # do, dq, dk, dv at the storage width
    if d.mla:      # eager autograd keeps V's gradient apart from the latent's
        ts.add("dv", (d.B, d.S, d.K, d.Dv), d.e, "output", head_axis=2,
               group_divisor=d.kv_div)
    t = qkv_tensors(dc, layout)                         # the compute-width view
    q_shape, k_shape = (d.B, d.N, d.H, d.D), (d.B, d.S, d.K, d.D)
    q_axes = dict(head_axis=2, heads_per_group=d.hpb)
    k_axes = dict(head_axis=2, group_divisor=d.kv_div)
    n = {"do": "do", "v": "k" if d.mla else "v", "dq": "dq", "dk": "dk", "dv": "dv"}
    if up:
        n = {"do": "do32", "v": "k32" if d.mla else "v32", "dq": "dq32", "dk": "dk32",
             "dv": "dv32"}
        t.add("do32", (d.B, d.N, d.H, d.Dv), dc.e, "workspace", **q_axes)
        t.add("k32", k_shape, dc.e, "workspace", **k_axes)
        if not d.mla:
            t.add("v32", (d.B, d.S, d.K, d.Dv), dc.e, "workspace", **k_axes)
        t.add("dq32", q_shape, dc.e, "workspace", **q_axes)
        t.add("dk32", k_shape, dc.e, "workspace", **k_axes)
        t.add("dv32", (d.B, d.S, d.K, d.Dv), dc.e, "workspace", **k_axes)
    t.add("q_scaled", q_shape, dc.e, "workspace", **q_axes)
    t.add("k_scaled", k_shape, dc.e, "workspace", **k_axes)
    t.add("dq_scaled", q_shape, dc.e, "workspace", **q_axes)
    t.add("dk_scaled", k_shape, dc.e, "workspace", **k_axes)
    for name in ("probs_safe", "dprobs", "dtmp", "dscores"):
        t.add(name, (d.B, d.H, d.N, d.S), dc.e, "workspace", head_axis=1,
              heads_per_group=d.hpb)
    qt = query_tiles(dc.N, dc.S, dc.Br, dc.Bc, dc.geometry)
    kt = key_tiles(qt, dc.S, dc.Bc)
    a, r, hpb, e = np.arange(qt.count), qt.rows, dc.hpb, dc.e

    tmp = KernelBuilder("standard.bwd_tmp", qt.count, sram_bytes=0)
    sbw = KernelBuilder("standard.bwd_softmax", qt.count, sram_bytes=0)
    tmp_reads = int(softmax_backward_reads(dc.S, e))
    for first_key, keys, count, off in _key_tiles(dc, qt):
        tmp.run(a, off, count, [_score_tile(t, "dprobs", LOAD, qt, first_key, keys),
                                _score_tile(t, "probs_safe", LOAD, qt, first_key, keys),
                                _score_tile(t, "dtmp", STORE, qt, first_key, keys)],
                vector_flops=hpb * r * keys)
        if tmp_reads == 2:     # cunn_SoftMaxBackward: the row sum over tmp first
            sbw.run(a, off, count, [_score_tile(t, "dtmp", LOAD, qt, first_key, keys)],
                    vector_flops=hpb * r * keys)
        sbw.run(a, 1 + off, count, [_score_tile(t, "dtmp", LOAD, qt, first_key, keys),
                                    _score_tile(t, "probs_safe", LOAD, qt, first_key, keys),
                                    _score_tile(t, "dscores", STORE, qt, first_key, keys)],
                vector_flops=hpb * r * keys * (3 if tmp_reads == 1 else 2))

    kernels = [_bwd_dp(t, qt, n["do"], n["v"]),
               _bwd_dv(t, qt, kt, "probs_safe", n["do"], n["dv"]),
               tmp.build(), sbw.build(), _bwd_dq(t, qt, "k_scaled", "dq_scaled"),
               _bwd_dk(t, qt, kt, "q_scaled", "dk_scaled"),
               _scale_kernel(t, n["dk"], "dk_scaled", d.S, d.Bc, d.D, "standard.bwd_scale_k"),
               _scale_kernel(t, n["dq"], "dq_scaled", d.N, d.Br, d.hpb * d.D,
                             "standard.bwd_scale_q")]
    if not up:
        return kernels
    to_fp32 = [_scale_kernel(t, "do32", "do", d.N, d.Br, d.hpb * d.Dv, "standard.bwd_to_fp32_do",
                             0)]
    to_storage = ([] if d.mla else [_scale_kernel(t, "dv", "dv32", d.S, d.Bc, d.Dv,
                                                  "standard.bwd_to_storage_dv", 0)])
    to_storage += [_scale_kernel(t, "dk", "dk32", d.S, d.Bc, d.D, "standard.bwd_to_storage_dk",
                                 0),
                   _scale_kernel(t, "dq", "dq32", d.N, d.Br, d.hpb * d.D,
                                 "standard.bwd_to_storage_dq", 0)]
    return to_fp32 + kernels + to_storage
