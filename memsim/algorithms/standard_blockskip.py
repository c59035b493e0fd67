"""Standard attention that skips masked tiles (FlashAttention paper, Algorithm 0 and
Appendix B.1 Algorithm 3): S = QKᵀ, P = softmax(S), O = PV as separate kernels, S and P
materialised in HBM — what memsim's own Numba kernels (kernels/standard.py) run. Eager
frameworks compute every score instead: that is :mod:`memsim.algorithms.standard`.

Each kernel walks the same query tiles and active K/V tiles as the flash kernels (fully
masked tiles are skipped block by block, FlashAttention Prop. 4), but the score tiles make
a round trip through HBM. S and P are allocated dense (B·H·N·S elements each): that
allocation is where "8× the tokens needs 64× the memory" comes from.

Forward, per (batch, head group of ``hpb`` heads):
    QKᵀ kernel   read Q N·hpb·D·e, K key_loads·D·e        write S area·hpb·e
    softmax      read S twice (online max+sum, then normalise)   write P area·hpb·e
    PV kernel    read P area·hpb·e, V key_loads·Dv·e       write O N·hpb·Dv·e
Algorithm 0 counts one read of S; a row of up to S elements does not fit on chip, so the
softmax kernel that runs reads it twice (as PyTorch's does for long rows).
Backward (Algorithm 3): dV = PᵀdO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)),
dQ = dS·K, dK = dSᵀ·Q, five kernels; dP and dS are materialised too, and P is not
recomputed, so the backward does 2× the forward's matmul FLOPs (FlashAttention's 2.5×
includes recomputing S).
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import Arrays, handoff_hit_fraction
from memsim.algorithms._l2_backward import standard_backward_hbm
from memsim.algorithms._tiles import (
    forward_tiles_backward,
    never_splits,
    no_extra_fields,
    no_first_shrink,
    no_kv_splits,
    packed_block_q,
)
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS

NAME = "standard_blockskip"
PASSES = ("forward", "backward", "forward+backward")

# What the rest of memsim asks of standard (docs/DESIGN.md §"The algorithm registry").
LABEL = "standard, masked tiles skipped (S, P in HBM)"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = False
SCHEDULE = "standard_blockskip"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = "standard"  # Numba kernels: kernels/standard.py
UPCASTS_16BIT = False  # computes in its inputs' dtype
default_block_q = packed_block_q
kv_splits = no_kv_splits
splits_keys = never_splits
extra_fields = no_extra_fields
shrink_first = no_first_shrink
backward_tiling = forward_tiles_backward


def sram_bytes(t):
    """max(QKᵀ kernel: Q tile rows·D + K tile Bc·D, PV kernel: P tile rows·Bc + V tile
    Bc·Dv) at the storage width: the two kernels never hold their tiles at once."""
    return np.maximum(t.rows * t.head_dim + t.block_kv * t.head_dim,
                      t.rows * t.block_kv + t.block_kv * t.head_dim_v) * t.elem_bytes


def _dense_scores_bytes(x: Arrays):
    """One dense B·H·N·S score matrix at the storage width (float64: N·S overflows int64)."""
    return np.asarray(x.B, dtype=np.float64) * x.H * x.N * x.S * x.e


def forward_hbm_bytes(x: Arrays, t, masked_fill: bool = False, softmax_reads=2):
    """HBM (read, write) bytes of the forward's kernels — QKᵀ, ``masked_fill`` over S
    when ``masked_fill`` (eager attention, memsim.algorithms.standard), softmax, PV — per
    call (all batches and head groups).

    Without ``slots`` (the analytic default) every global access reaches HBM. With them,
    the closed-form L2 estimate of the schedule memsim.trace.sched_standard plays (query
    tiles fastest, then batch, then head group; kernels back to back in one L2):

    - K in QKᵀ and V in PV: :meth:`Arrays.hbm_key_loads`, each block streaming its Q
      (or O) rows and its row of S (or P) tiles between two waves' reads of a tile.
    - S written by QKᵀ and read by the next kernel, S re-written by masked_fill, P
      written by softmax and read by PV: :func:`handoff_hit_fraction` of the two kernels'
      distinct bytes (QKᵀ: Q, K, S; masked_fill: S; softmax: S, P; PV: P, V, O).
    - Softmax's second pass re-reads its block's S row: between the two reads of tile j
      each of the G blocks in flight (lock-step waves of ``slots``, the last wave holding
      what is left) touches its whole S row and the first j tiles of its P row, so tile
      j hits iff G·S_row·(1 + j/n) ≤ L2.
    - ``softmax_reads`` (eager attention: PyTorch's kernel reads S once or three times,
      memsim.algorithms.standard.softmax_reads): with three, pass 1 sweeps the row twice
      (max, then sum): the second sweep's reads hit iff the rows in flight fit, G·S_row ≤
      L2; the output pass as the second pass above.
    - Writes: each dirty unit is written back once (on eviction or at the end of the
      call, as the trace flushes); S twice where masked_fill re-dirties an evicted unit.
    """
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    scores = t.area * hpb * e                              # S (and P) bytes per group
    q_bytes, o_bytes = N * hpb * D * e, N * hpb * Dv * e
    fill = float(masked_fill)
    reads = q_bytes + t.key_loads * (D + Dv) * e + (1 + softmax_reads + fill) * scores
    writes = (1 + fill) * scores + scores + o_bytes
    if x.slots is None:
        return g * reads, g * writes
    cap = x.l2_bytes
    q_tiles = np.maximum(t.q_tiles, 1)
    s_row = scores / q_tiles                               # one block's row of S tiles
    k_hbm = x.hbm_key_loads(t, D * e, stream_bytes=(q_bytes + scores) / q_tiles)
    v_hbm = x.hbm_key_loads(t, Dv * e, stream_bytes=(o_bytes + scores) / q_tiles)
    # distinct bytes each kernel touches (all groups) after (first kernel) or before
    # (second kernel) a unit of S or P. A block reads its Q rows first and writes its O
    # rows last, and softmax writes P only in its second pass, after the first pass read
    # the block's S row: in a kernel of w waves the lock-step blocks of the unit's own
    # wave have not touched them yet, so (1 − 1/w) of them count — none in one wave
    waves = np.ceil(g * q_tiles / np.maximum(x.slots, 1))
    spread = 1 - 1 / np.maximum(waves, 1)
    qk = g * (spread * q_bytes + t.union_keys * D * e + scores)
    pv = g * (scores + t.union_keys * Dv * e + spread * o_bytes)
    if masked_fill:
        to_fill = handoff_hit_fraction(qk, g * scores, cap)
        to_softmax = handoff_hit_fraction(g * scores, g * (1 + spread) * scores, cap)
    else:
        to_fill = 1.0
        to_softmax = handoff_hit_fraction(qk, g * (1 + spread) * scores, cap)
    second_pass = _in_block_hit_fraction(x, t, s_row, cap)
    sweep = _in_block_hit_fraction(x, t, s_row, cap, writes_p=False)
    to_pv = handoff_hit_fraction(g * 2 * scores, pv, cap)
    rereads = (np.where(softmax_reads >= 2, 1 - second_pass, 0.0)
               + np.where(softmax_reads >= 3, 1 - sweep, 0.0))
    hbm_reads = (q_bytes + (k_hbm * D + v_hbm * Dv) * e
                 + scores * (fill * (1 - to_fill) + (1 - to_softmax) + rereads
                             + (1 - to_pv)))
    hbm_writes = scores * (1 + fill * (1 - to_fill)) + scores + o_bytes
    return g * hbm_reads, g * hbm_writes


def _in_block_hit_fraction(x: Arrays, t, s_row, cap, writes_p: bool = True):
    """Fraction of softmax's second-pass reads of S that hit (see
    :func:`forward_hbm_bytes`): waves of ``slots`` lock-step blocks, the last one with
    the blocks left over; of a block's n key tiles, tile j hits iff G·S_row·(1 + j/n)
    ≤ L2. Without ``writes_p`` (the sum sweep after the max sweep of PyTorch's
    three-read softmax: between two reads of tile j each block reads its row once and
    writes nothing) every tile hits iff G·S_row ≤ L2."""
    blocks = np.maximum(x.groups * t.q_tiles, 1)
    slots = np.maximum(x.slots, 1)
    full = np.floor(blocks / slots) * slots
    last = blocks - full
    n = np.maximum(t.pairs / np.maximum(t.q_tiles, 1), 1)   # key tiles per block

    def hits(in_flight):
        room = cap / (np.maximum(in_flight, 1) * np.maximum(s_row, 1e-30)) - 1
        if not writes_p:
            return (room >= 0) * 1.0
        return np.clip(np.floor(n * room) + 1, 0, n) / n

    return (full * hits(np.minimum(slots, blocks)) + last * hits(last)) / blocks


def forward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    scores = t.area * hpb * e
    qk_r, qk_w = N * hpb * D * e + t.key_loads * D * e, scores
    sm_r, sm_w = 2 * scores, scores
    pv_r, pv_w = scores + t.key_loads * Dv * e, N * hpb * Dv * e
    reads, writes = g * (qk_r + sm_r + pv_r), g * (qk_w + sm_w + pv_w)
    hbm_reads, hbm_writes = forward_hbm_bytes(x, t)
    staged = g * (N * hpb * D * e + t.key_loads * (D + Dv) * e + scores)
    return Cost(
        matmul_flops=g * hpb * t.area * 2 * (D + Dv),
        vector_flops=g * hpb * (5 * t.area),             # scale, max, subtract, sum, divide
        # two passes over S, one exponential per element each: ℓ = Σ exp(S − m) online,
        # then P = exp(S − m)/ℓ (a row too long for chip holds no exp(S − m) in between)
        exp_ops=g * hpb * 2 * t.area,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=hbm_writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        workspace_bytes=2 * _dense_scores_bytes(x),      # S and P
        launches=3.0 + 0 * g, blocks=3 * g * t.q_tiles,
    )


def backward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    scores = t.area * hpb * e
    # dV = PᵀdO (per K/V tile: P tile and dO rows of every active pair)
    k1_r, k1_w = scores + t.row_pairs * hpb * Dv * e, t.union_keys * Dv * e
    # dP = dO Vᵀ
    k2_r, k2_w = N * hpb * Dv * e + t.key_loads * Dv * e, scores
    # dS = P ∘ (dP − rowsum(P ∘ dP)): two passes over P and dP
    k3_r, k3_w = 4 * scores, scores
    # dQ = dS K
    k4_r, k4_w = scores + t.key_loads * D * e, N * hpb * D * e
    # dK = dSᵀ Q
    k5_r, k5_w = scores + t.row_pairs * hpb * D * e, t.union_keys * D * e
    reads = g * (k1_r + k2_r + k3_r + k4_r + k5_r)
    writes = g * (k1_w + k2_w + k3_w + k4_w + k5_w)
    staged = reads - g * k3_r                            # the dS pass streams, no staging
    hbm_reads, hbm_writes = reads, writes
    if x.slots is not None and x.geometry.kind in ("full", "causal"):
        # the closed-form L2 estimate. It reads the key-tile kernels (dV, dK) as the
        # query-tile grid with queries and keys exchanged, which is the same mask only for
        # full masks and for causal masks without a key offset (S = N); elsewhere (and for
        # window, chunk masks) the count stays at no reuse: not modelled yet
        est_reads, est_writes = standard_backward_hbm(x, 0.0)
        exchangeable = (x.geometry.kind == "full") | (np.asarray(x.S) == np.asarray(x.N))
        hbm_reads = np.where(exchangeable, np.minimum(g * est_reads, reads), reads)
        hbm_writes = np.where(exchangeable, np.minimum(g * est_writes, writes), writes)
    return Cost(
        matmul_flops=g * hpb * t.area * (4 * D + 4 * Dv),
        vector_flops=g * hpb * (4 * t.area),
        exp_ops=0.0 * g,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=hbm_writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        workspace_bytes=3 * _dense_scores_bytes(x),      # saved P, dP, dS
        launches=5.0 + 0 * g, blocks=g * (3 * t.q_tiles + 2 * t.union_tiles),
    )
