"""Closed-form L2 estimate of the backward passes: HBM reads and writes of FA-1's, FA-2's
and eager standard attention's backward kernels when re-reads can hit in L2.

Every function takes the :class:`~memsim.algorithms._arrays.Arrays` of one call (with
``slots`` and ``l2_bytes`` set: :func:`memsim.algorithms._arrays.from_problem` with a GPU)
and returns per-(batch, head group) or whole-call byte arrays that broadcast with the
arrays' shapes. The L2 is the forward's: one LRU of ``l2_bytes``
(:attr:`memsim.hardware.GPU.l2_dram_capacity_bytes`, the whole L2), write-back and
write-allocate, kept across the kernels of one pass (the trace-driven model,
:mod:`memsim.trace.l2`, plays the same schedules through the same cache and is the
reference: tests/test_l2_backward.py holds the two together).

Two rules recur:

- **Within a kernel**, a re-read hits iff the distinct bytes touched between the two
  reads — by every block in flight — fit in L2 (an LRU misses every time past that).
- **Across kernels**, the grid walks the (batch, head group) pairs in the same order in
  every kernel, so kernel k + 1 asks first for what kernel k touched first, i.e. for the
  least recently used bytes: a unit kernel k touched at fraction f of the order is
  re-touched after kernel k's bytes past f and kernel k + 1's before f, and hits iff
  they fit (:func:`~memsim.algorithms._arrays.handoff_hit_fraction`, the rule the
  forward's eager kernels use too; :func:`carried_fraction` states it per group). Past
  the capacity a loop over the same data in the same order keeps only the part that
  kernel k + 1 reaches before its own new bytes push it out.
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import handoff_hit_fraction
from memsim.geometry import TileSums
from memsim.units import ACCUM_BYTES as F4


def flash1_backward_hbm(x, t: TileSums) -> tuple[np.ndarray, np.ndarray]:
    """HBM (read, write) bytes per (batch, head group) of FA-1's backward (Dao et al.
    2022, Algorithm 4): one block per group; per key tile j (K_j, V_j read, dK_j, dV_j
    written once) the query tiles that see j load Q, O, dO, ℓ, m and, unless j is their
    first key tile, dQ, and store dQ (lines 8, 21).

    Between two touches of a query tile (key tiles j − 1 and j) the groups in flight
    touch the rows active at j once each, K/V tile j (read) and dK/dV tile j − 1
    (stored after j − 1's inner loop, Alg. 4 line 24; memsim/trace/sched_flash1.py:
    151–155; a full Bc tile): :meth:`Arrays.hbm_state_rereads` with the backward's
    per-row bytes (Q, O, dO, ℓ, m, dQ), (Bc + keys of tile j)·(D + Dv)·e. A
    re-touch that misses reads Q, O, dO, ℓ, m and dQ again, and its dQ was written back
    when evicted; one that hits reads nothing, and dQ is written back once at the end.
    """
    hpb, e, D, Dv, N = x.hpb, x.e, x.D, x.Dv, x.N
    kv = t.union_keys * (D + x.dv_load) * e
    inputs = hpb * (D * e + 2 * Dv * e + 2 * F4)         # Q, O, dO, ℓ, m per row
    dq = hpb * D * e
    kv_key = (D + x.dv_load) * e
    again = x.hbm_state_rereads(t, inputs + dq, kv_key, stored_key_bytes=kv_key)
    return kv + (N + again) * inputs + again * dq, kv + (N + again) * dq


def carried_fraction(footprint, old_per_group, new_per_group, groups, l2_bytes):
    """Fraction of the (batch, head group) pairs whose bytes X kernel k touched are still
    in L2 when kernel k + 1 asks for them: :func:`~memsim.algorithms._arrays.
    handoff_hit_fraction`, the one hand-off rule, with the kernels' bytes per group.

    ``footprint``: distinct bytes kernel k touched (all groups, X + Z per group);
    ``old_per_group``: Z, kernel k's bytes per group that kernel k + 1 does not touch;
    ``new_per_group``: Y, the bytes kernel k + 1 brings in per group besides X (its
    misses and new writes). Both walk the groups in the same order, so X of group g is
    re-touched after kernel k's bytes past g and kernel k + 1's X and Y before g:
    kernel k + 1 touches footprint + groups·(Y − Z) bytes in all, in proportion."""
    footprint = np.asarray(footprint, float)
    return handoff_hit_fraction(footprint, footprint + np.maximum(groups, 1)
                                * (np.asarray(new_per_group, float) - old_per_group),
                                l2_bytes)


def _swapped(x):
    """The dense arrays seen from a grid over key tiles (dV, dK kernels): queries and
    keys exchanged, so :meth:`Arrays.hbm_key_loads` counts the query rows those kernels'
    blocks re-read (the full mask is symmetric under the exchange)."""
    from dataclasses import replace

    return replace(x, N=x.S, S=x.N, Br=x.Bc, Bc=x.Br)


def standard_backward_hbm(x, masked) -> tuple[np.ndarray, np.ndarray]:
    """HBM (read, write) bytes per (batch, head group) of standard attention's backward
    (memsim.algorithms.standard_blockskip.backward over ``x``'s active tiles — eager
    attention passes the dense scores — and masked_fill's gradient where ``masked`` is
    1), kernel by kernel in autograd's order:

        dV  (grid: key tiles)    P column, dO rows re-read per key tile; dV once
        dP  (grid: query tiles)  dO rows once, V re-read per query tile; dP row written
        dS  (grid: query tiles)  P, dP rows twice (two passes); dS row written
        masked_fill              dS read and written back (``masked``)
        dQ  (grid: query tiles)  dS row, K re-read per query tile; dQ once
        dK  (grid: key tiles)    dS column, Q rows re-read per key tile; dK once

    - The small operand each matmul kernel re-reads (dO, V, K, Q) is the forward's K/V
      re-read with the roles named by the grid: :meth:`Arrays.hbm_key_loads` with the
      block's score row or column (and output) as its streamed bytes, which pass through
      L2 between two waves' reads of a tile.
    - dS's second pass re-reads key tile j of P and dP after each block in flight has
      touched the rest of its rows in pass 1 and the first j tiles in pass 2 (2·S + j·Bc
      scores of Br rows, dS's writes included): those within the L2 hit.
    - A score matrix or operand kernel k touched is read by kernel k + 1 from L2 in the
      share :func:`carried_fraction` gives; dS's masked_fill rewrites lines still dirty
      where its read hits, so dS is written back once.
    Score matrices are read in whole tiles and written once per kernel; the tensors
    touched two kernels back (P in the dS kernel) are taken as evicted.
    """
    cap = x.l2_bytes
    t = x.tiles()
    hpb, e, D, Dv, N, S = x.hpb, x.e, x.D, x.Dv, x.N, x.S
    g = np.maximum(x.groups, 1)
    scores = t.area * hpb * e                             # one score matrix, one group
    row_keys = t.area / np.maximum(N, 1)                  # mean keys per query row
    do_b, dq_b = N * hpb * Dv * e, N * hpb * D * e
    k_b, v_b = S * D * e, S * Dv * e
    xs = _swapped(x)
    ts = xs.tiles()
    # re-read operands: HBM loads per group within each kernel (first read included)
    do_dv = xs.hbm_key_loads(ts, hpb * Dv * e, stream_bytes=x.Bc * (N * hpb * e + Dv * e)) \
        * hpb * Dv * e
    v_dp = x.hbm_key_loads(t, Dv * e, stream_bytes=x.Br * hpb * (S * e + Dv * e)) * Dv * e
    k_dq = x.hbm_key_loads(t, D * e, stream_bytes=x.Br * hpb * (S * e + D * e)) * D * e
    q_dk = xs.hbm_key_loads(ts, hpb * D * e, stream_bytes=x.Bc * (N * hpb * e + D * e)) \
        * hpb * D * e
    # dS pass 2: key tile j hits iff W·Br·hpb·e·(2·S + j·Bc) ≤ L2 (W blocks in flight)
    in_flight = np.minimum(np.maximum(x.slots, 1), g * np.maximum(t.q_tiles, 1))
    hit_keys = np.clip(cap / (in_flight * x.Br * hpb * e) - 2 * row_keys, 0, row_keys)
    pass2 = 2 * scores * (1 - hit_keys / np.maximum(row_keys, 1))
    # kernels' footprints (all groups) and what each carries to the next
    f_dv = g * (scores + do_b + v_b)
    f_dp = g * (do_b + v_b + scores)
    f_ds = g * 3 * scores
    f_mf = g * scores
    f_dq = g * (scores + k_b + dq_b)
    c_do = carried_fraction(f_dv, scores + v_b, v_dp + scores, g, cap)   # dO into dP
    c_dp = carried_fraction(f_dp, do_b + v_b, scores + pass2 + scores, g, cap)  # dP → dS
    c_ds = carried_fraction(f_ds, 2 * scores, 0 * scores, g, cap)       # dS → masked_fill
    prev = np.where(masked, f_mf, f_ds)
    y_dq = k_dq + dq_b
    c_dsq = np.where(masked, carried_fraction(prev, 0 * scores, y_dq, g, cap),
                     carried_fraction(prev, 2 * scores, y_dq, g, cap))  # dS → dQ
    c_dsk = carried_fraction(f_dq, k_b + dq_b, q_dk + k_b, g, cap)      # dS → dK
    reads = (scores + do_dv                                # dV kernel (cold)
             + do_b * (1 - c_do) + v_dp                    # dP
             + scores + scores * (1 - c_dp) + pass2        # dS: P, dP pass 1, pass 2
             + masked * scores * (1 - c_ds)                # masked_fill
             + scores * (1 - c_dsq) + k_dq                 # dQ
             + scores * (1 - c_dsk) + q_dk)                # dK
    writes = (v_b + scores + scores + masked * scores * (1 - c_ds)
              + dq_b + k_b)
    return reads, writes


#: generations of a head group's FA-2 backward blocks summed one by one; past this many
#: every ⌈generations / MAX_GENERATIONS⌉-th pair is summed, weighted by the stride
MAX_GENERATIONS = 1024


def _staggered_misses(m, n, n_fit, c, first):
    """Query tiles read from HBM by one staggered generation of FA-2's backward blocks
    (see :func:`fa2_query_tile_loads`): ``n`` blocks started ``c`` tile-steps apart, the
    first walking ``m`` query tiles (of which it misses ``first``) and each next one c
    fewer; a re-read hits iff the tiles the blocks in flight sweep in one gap, c per
    block started so far, fit in the L2's ``n_fit``·c tiles.

    Block i reads position p when i + 1 + ⌊p/c⌋ blocks have started: it misses iff
    min(n, i + 1 + p/c) > n_fit, i.e. from p = (n_fit − 1 − i)·c on."""
    i0 = np.maximum(1, np.ceil(n_fit - 1))                 # first block missing all
    ramp = (np.minimum(n, i0) - 1) * np.maximum(0.0, m - (n_fit - 1) * c)
    i_end = np.minimum(n - 1, np.ceil(m / c) - 1)          # last block with m − i·c > 0
    k = np.maximum(0.0, i_end - i0 + 1)
    tail = k * m - c * (i0 + i_end) * k / 2
    return np.where(n <= n_fit, first, first + ramp + np.maximum(tail, 0.0))


def fa2_query_tile_loads(x, t: TileSums, tile_bytes, kv_block_bytes):
    """Query tiles (Q, dO, logsumexp, Δ, dQ accumulator of Br·hpb rows) that FA-2's
    dq/dk/dv kernel reads from HBM for each (batch, head group) of the grid under a
    causal mask, when a group has at least as many key-tile blocks as the GPU has slots
    (with fewer, the caller's rules apply: :func:`fa2_backward_hbm`). The first group
    runs on an idle GPU; list scheduling gives each later group's block j the slot the
    previous group's block j freed, so its generations repeat the first group's.

    The grid runs key tile j's block over the query tiles that see it, last to first:
    m_j = T − a0(j) tiles, c = Bc/Br fewer per block. W = ``slots`` blocks start at once
    (generation 0, lock-step: one read of each tile); as they end, shortest first,
    block W + i starts when block W − 1 − i ends, c steps after block W + i − 1
    (generation 1, staggered), and all of generation 1 ends at once
    (s_{W+i} + m_{W+i} = 2·T − (2·W − 1)·c), so generation 2 is lock-step again, and so
    on: even generations read the union of their tiles once, odd ones lose the re-reads
    that :func:`_staggered_misses` counts, with ``n_fit`` = fit/c + 1, fit the query
    tiles the L2 holds beside a block's K, V, dK, dV (the trace, one group, 8, 16 and 32
    slots: thrashing sets in between fit = slots − 2 and slots). A generation's first
    block re-reads what the previous generation's blocks swept since (their first walk
    and their K, V, dK, dV): all from HBM if that overflows, else none. Generations are
    summed one by one (past :data:`MAX_GENERATIONS`, every stride-th pair, weighted);
    the trace-driven model places the same blocks by list scheduling.
    """
    T = np.maximum(t.q_tiles, 1).astype(np.float64)
    Tk = np.maximum(t.union_tiles, 1).astype(np.float64)
    W = np.maximum(x.slots, 1).astype(np.float64)
    c = x.Bc / x.Br
    o = (x.S - x.N).astype(np.float64)
    fit = (x.l2_bytes - kv_block_bytes) / np.maximum(tile_bytes, 1e-30)
    kv_tiles = kv_block_bytes / np.maximum(tile_bytes, 1e-30)
    n_fit = fit / c + 1                                  # see _staggered_misses
    gens = np.ceil(Tk / W)
    stride = np.maximum(1.0, np.ceil(np.max(gens) / MAX_GENERATIONS))

    def walk(j):  # m_j: query tiles of key tile j's block
        return np.clip(T - (j * x.Bc - o) / x.Br, 0, T)

    total = np.zeros(np.broadcast(T, W, c, fit).shape)
    k = 0.0
    while np.any(k < gens):
        # generations k (lock-step) and k + 1 (staggered), standing for ``stride`` pairs
        weight = np.maximum(np.minimum(stride, np.ceil((gens - k) / 2)), 0)
        for kk, staggered in ((k, False), (k + 1, True)):
            m, m_prev = walk(kk * W), walk((kk - 1) * W)
            # a generation's first block re-reads tile X after the previous generation's
            # last one: in between, everything that generation swept (its first block's
            # walk) and the new blocks' K, V, dK, dV
            first = m if kk == 0 else np.where(m_prev + W * kv_tiles > fit + kv_tiles,
                                               m, 0.0)
            n = np.clip(Tk - kk * W, 0, W)
            reads = _staggered_misses(m, n, n_fit, c, first) if staggered else first
            total = total + np.where(kk < gens, reads, 0.0) * weight
        k += 2 * stride
    return total


def fa2_backward_hbm(x, t: TileSums) -> tuple[np.ndarray, np.ndarray]:
    """HBM (read, write) bytes per (batch, query head) of FA-2's backward, its kernels
    (memsim.algorithms.flash2.backward; ``x`` with the backward's own tiles and one head
    per block, ``t`` their tile sums):

        dot_do_o    O, dO read; Δ and the cleared fp32 dQ accumulator written
        dq_dk_dv    K, V of the head's KV head read and dK, dV written once per key tile;
                    per (key tile, query tile) pair Q, dO, logsumexp, Δ read and the dQ
                    accumulator read-modified-written
        convert_dq  the dQ accumulator read, dQ written
        sum_out     (GQA) dk_expanded, dv_expanded read, dK, dV written:
                    :func:`fa2_head_sums_hbm`

    Query-side loads of the main kernel, in query rows: every head reads its N rows
    once when the heads in flight hold their rows in L2; under a causal mask with at
    least ``slots`` key tiles per head, :func:`fa2_query_tile_loads` (staggered
    generations); under the full mask the lock-step waves of
    :meth:`Arrays.hbm_key_loads` with queries and keys exchanged (a wave's K, V, dK,
    dV streamed between two reads); otherwise one read of the rows of each wave's key
    tiles (:meth:`Arrays.hbm_query_rows`). A row loaded from HBM reads its Q, dO,
    logsumexp, Δ and accumulator; the accumulator is written back once per stay in L2.
    K and V: read by the first of the H/K heads of a KV head, by the next ones in the
    share :func:`fa2_kv_next_head_hit_fraction` leaves in L2. The first loads of dO, Δ
    and the accumulator come from L2 in the share of heads :func:`carried_fraction`
    gives after dot_do_o, and convert_dq's reads in the share the main kernel leaves.
    """
    e, D, Dv, N = x.e, x.D, x.Dv, x.N
    cap = x.l2_bytes
    g = np.maximum(x.groups, 1)                            # B·H (batch, query head) pairs
    kv = t.union_keys * (D + x.dv_load) * e
    acc = D * F4                                           # accumulator bytes per row
    row = D * e + Dv * e + 2 * F4 + acc                    # a query row's L2 bytes
    kv_block = 2 * x.Bc * (D + x.dv_load) * e              # K, V read; dK, dV written
    # the main kernel's query-row loads per head
    per_wave = x.hbm_query_rows(t, row)
    if x.geometry.kind == "causal":
        # every head pays the generations of fa2_query_tile_loads, not only the first:
        # list scheduling hands head h + 1's block j the slot head h's block j left,
        # so each head's blocks start in the same pattern relative to its own first
        # block, and block W, 2·W, ... of every head re-reads the walk the previous
        # generation's sweep evicted (a tile-level LRU of this schedule, A100 32K:
        # misses at blocks 108 and 216 of every head, 1.29–1.42 N rows per head; the
        # trace 1.37 N per later head, which the per-wave rule, 1.0 N, missed)
        tiles = fa2_query_tile_loads(x, t, x.Br * row, kv_block)
        staggered = np.maximum(tiles * N / np.maximum(t.q_tiles, 1), N)
        # a head's blocks fill about one generation (Tk ≤ slots < 2·Tk): the heads
        # alternate, one starting at once, the next staggered in the slots the first
        # frees one by one, which pays the staggered ramp over its Tk blocks (measured
        # with four heads per block, before bwdl2: H100, H 32, K 8, N 16K — groups 0, 2,
        # 4, 6 read 256 query tiles, groups 1, 3, 5, 7 6,250, 5,504, 5,164, 4,730; one
        # head per block, H 32 MHA and K 8 at 16K: estimate / trace 1.000, 0.997)
        fit = (cap - kv_block) / (x.Br * row)
        c = x.Bc / x.Br
        ramp = _staggered_misses(t.q_tiles, t.union_tiles, fit / c + 1, c, 0.0)
        alternate = per_wave + np.floor(g / 2) / g * ramp * N / np.maximum(t.q_tiles, 1)
        one_gen = (t.union_tiles <= x.slots) & (x.slots < 2 * t.union_tiles)
        rows = np.where(t.union_tiles >= x.slots, staggered,
                        np.where(one_gen, alternate, per_wave))
    elif x.geometry.kind == "full":
        xs = _swapped(x)
        rows = xs.hbm_key_loads(xs.tiles(), row, stream_bytes=kv_block)
    else:
        rows = per_wave
    # heads whose rows share the L2: ``slots`` consecutive blocks of the launch order
    # straddle ⌊(slots − 1)/Tk⌋ + 2 heads unless they align with a head's first block,
    # so the previous head's rows compete with the next one's (A100 32K, one head's
    # rows fit and two do not: the trace with the L2 at 30, 40, 48, 56, 64, 72 MiB
    # reads 1.56, 1.36, 1.10, 1.06, 1.01, 1.00 N rows per later head: one read once two fit)
    in_flight = np.clip((np.maximum(x.slots, 1) - 1) // np.maximum(t.union_tiles, 1) + 2,
                        1, g)
    # (the full mask's lock-step waves of at least ``slots`` blocks per head state their
    # own fit, waves straddling two heads included: Arrays.hbm_key_loads)
    fits = (in_flight * N * row <= cap) & ((x.geometry.kind != "full")
                                           | (t.union_tiles < x.slots))
    rows = np.where(fits, N, np.minimum(rows, t.row_pairs))
    # K, V: read by the first head of each KV head, by the next ones where still in L2
    heads_per_kv = x.H / x.K                               # query heads per KV head
    kv_reads = kv * (1 + (heads_per_kv - 1) * (1 - fa2_kv_next_head_hit_fraction(x, t, row, kv)))
    kv_reads = kv_reads / heads_per_kv
    kv_touched = kv / heads_per_kv + kv                    # distinct K, V; own dK, dV
    # kernel 1 → 2: dO, Δ, accumulator carried (O is not read again)
    pre = N * (2 * Dv * e + F4) + N * acc
    c1 = carried_fraction(g * pre, N * Dv * e, kv_touched + N * (D * e + F4), g, cap)
    carried = c1 * N * (Dv * e + F4 + D * F4)
    main_reads = kv_reads + rows * row - carried
    acc_writes = N * (1 - c1) * acc + rows * acc            # one write-back per stay
    # kernel 2 → 3: the accumulator carried when the main kernel's footprint fits
    main_fp = g * (N * row + kv_touched)
    c2 = carried_fraction(main_fp, N * (row - acc) + kv_touched, N * D * e, g, cap)
    reads = N * 2 * Dv * e + main_reads + N * acc * (1 - c2)
    writes = N * F4 + acc_writes + kv + N * D * e
    sum_reads, sum_writes = fa2_head_sums_hbm(x, main_fp, g * N * D * e, g * N * acc)
    return reads + sum_reads, writes + sum_writes


def fa2_kv_next_head_hit_fraction(x, t: TileSums, row, kv):
    """Share of a KV head's K, V tiles that the next query head's dq/dk/dv blocks find in
    L2 (FA-2's backward grid (key tiles, B, H), flash_bwd_launch_template.h
    run_flash_bwd_seqk_parallel, grid_n(num_n_block, params.b, params.h): blockIdx.x the
    key tile, fastest, then the batch, then the query head — every batch of head h runs
    before head h + 1; flash_bwd_kernel.h reads K/V at head bidh / h_h_k_ratio).

    Tile j of batch b, at fraction f of the walk, is re-touched by head h + 1 after head
    h's blocks past j and head h + 1's before j: all the K, V tiles (``kv`` bytes) once,
    both heads' dK, dV (``kv``) and the query rows (``row`` bytes each) those blocks
    walk — the rows at or after j's (1 − f)·N, plus, for head h + 1, those the key tiles
    up to j see: under a causal mask all N (:func:`handoff_hit_fraction` between 2·N
    rows at f = 0 and N at f = 1), under the full, window, band and chunk masks f·N
    and the rows a key sees past its own position, about a key's mean rows
    (``t.area`` / S: all N; a window's W; a band's W; half a chunk), so N + area / S
    rows at every f — and, in between, the B − 1 other batches' whole walks (head h's
    after b, head h + 1's before b), each its own K, V and dK, dV (2·kv) and its N
    query rows: (B − 1)·(2·kv + N·row) more at both ends."""
    N = x.N
    if x.geometry.kind == "causal":
        rows_at_0, rows_at_1 = 2 * N, N
    else:
        rows_at_0 = rows_at_1 = N + t.area / np.maximum(x.S, 1)
    both = 2 * kv + (x.B - 1) * (2 * kv + N * row)
    return handoff_hit_fraction(both + rows_at_0 * row, both + rows_at_1 * row, x.l2_bytes)


def fa2_head_sums_hbm(x, main_bytes, new_bytes, old_bytes):
    """HBM (read, write) bytes per query head of at::sum_out over dk_expanded and
    dv_expanded (flash_api.cpp, mha_bwd, GQA only): each reads the expanded gradient,
    S rows of D (Dv) per head, and writes the KV head's, K/H of that per head.

    The dq/dk/dv kernel wrote the expanded rows in the same order of heads (``main_bytes``
    distinct bytes in all), so a row at fraction f is re-read after that kernel's bytes
    past f, the bytes the kernels in between bring in (``new_bytes``: convert_dq's dQ;
    before the dV sum the dK sum's writes too), the share f of those they re-touch of the
    main kernel's (``old_bytes``: the accumulator; the dK sum's expanded rows too) and the
    sum's own bytes before f: :func:`handoff_hit_fraction` between the two ends."""
    gqa = x.H != x.K
    g = np.maximum(x.groups, 1)
    reads = writes = 0.0
    for width in (x.D, x.dv_load):
        expanded = x.S * width * x.e                       # per head
        written = expanded * x.K / x.H
        own = g * (expanded + written)
        hit = handoff_hit_fraction(main_bytes + new_bytes,
                                   new_bytes + old_bytes + own, x.l2_bytes)
        reads = reads + gqa * expanded * (1 - hit)
        writes = writes + gqa * written
        new_bytes, old_bytes = new_bytes + g * written, old_bytes + g * expanded
    return reads, writes
