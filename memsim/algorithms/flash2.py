"""FlashAttention-2 (Dao 2023, arXiv 2307.08691): one block per (query tile, head group,
batch), inner loop over the active K/V tiles, online softmax, O written once.

Forward (FA-2 Algorithm 1), per (batch, head group of ``hpb`` heads sharing a KV head):
    read  Q                 N·hpb·D·e                    (line 4, once per block)
    read  K_j, V_j          key_loads·(D + Dv')·e        (line 6, per active tile)
    write O, L (logsumexp)  N·hpb·(Dv·e + 4)             (lines 12–14)
    matmul FLOPs            area·hpb·2·(D + Dv)          (S = QKᵀ, O += P·V)
    exp                     hpb·(area + row_pairs)       (P = exp(S − m), rescale e^{m_old−m_new})
Backward (FA-2 Algorithm 2: one block per K/V tile and *query head* — the backward packs
no heads: flash_bwd_launch_template.h launches grids (tiles, B, H) — inner loop over active
query tiles, with the backward kernels' own tiles: memsim.tiling.fa2_backward_tiles), after
a pre-processing kernel Δ = rowsum(dO ∘ O) that also zeroes the fp32 dQ accumulator
(flash_bwd_preprocess_kernel.h, Clear_dQaccum), and before converting the fp32 dQ
accumulator: per active pair Q, dO, L, Δ are read and dQ is read-modified-written in fp32
(atomicAdd); K, V of the head's KV head are read and dK, dV of the head written once per
tile. Under GQA/MQA the heads' dK, dV go to dk_expanded, dv_expanded (B, S, H, D) and
at::sum_out sums them over the H/K heads of each KV head (flash_api.cpp, mha_bwd;
Dao-AILab/flash-attention 765fbd9): S·(D + Dv) more bytes read per query head, S·(D + Dv)
per KV head written. Five matmuls (S, dV, dP, dQ, dK) against two forward: 2.5× the
forward FLOPs at D = Dv (FA-2 §4.1 benchmark convention).

``area``, ``row_pairs``, ``key_loads`` are exact tile sums (memsim.geometry); masked tiles
are skipped block by block (FlashAttention Prop. 4), diagonal tiles computed whole.
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import Arrays
from memsim.algorithms._l2_backward import fa2_backward_hbm
from memsim.algorithms._tiles import (
    FA2_FORWARD_REGISTERS,
    fa2_backward_tiles,
    flash_sram_bytes,
    never_splits,
    no_extra_fields,
    no_first_shrink,
    no_kv_splits,
    packed_block_q,
)
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS
from memsim.units import ACCUM_BYTES as F4

NAME = "flash2"
PASSES = ("forward", "backward", "forward+backward")

# What the rest of memsim asks of flash2 (docs/DESIGN.md §"The algorithm registry").
LABEL = "FlashAttention-2"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = False  # query tiles of Br rows; the key range is never split
SCHEDULE = "flash2"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = "flash2"  # Numba kernels: kernels/flash2.py
UPCASTS_16BIT = False  # computes in its inputs' dtype
sram_bytes = flash_sram_bytes
default_block_q = packed_block_q
kv_splits = no_kv_splits
splits_keys = never_splits
extra_fields = no_extra_fields
shrink_first = no_first_shrink
backward_tiling = fa2_backward_tiles
REGISTERS_PER_THREAD = FA2_FORWARD_REGISTERS  # ptxas counts: memsim.algorithms._tiles

# the online softmax's FP32 work per score: scale, running max, subtract, row sum (FA-2
# Alg. 1 lines 8–12); memsim.ops.encoder counts the production kernels' loop with it
SOFTMAX_FLOPS_PER_SCORE = 4


def forward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv = x.groups, x.hpb, x.e, x.D, x.Dv
    q_bytes = x.N * hpb * D * e
    per_key = (D + x.dv_load) * e
    kv_bytes = t.key_loads * per_key
    out_bytes = x.N * hpb * (Dv * e + F4)
    reads, writes = g * (q_bytes + kv_bytes), g * out_bytes
    stream = x.Br * hpb * (D * e + Dv * e + F4)           # a block's Q, O and logsumexp
    # FA-2 walks each query tile's key tiles from the diagonal down (flash_fwd_kernel.h,
    # compute_attn_1rowblock: "We iterate over the blocks in reverse order")
    keys = x.hbm_key_loads(t, per_key, stream_bytes=stream, walk_down=True)
    hbm_reads = g * (q_bytes + keys * per_key)
    return Cost(
        matmul_flops=g * hpb * t.area * 2 * (D + Dv),
        # per score (SOFTMAX_FLOPS_PER_SCORE); per row and tile: rescale O (Dv) and update
        # m, ℓ (2); per row: O / ℓ (Dv)  — FA-2 Alg. 1 lines 8–12
        vector_flops=g * hpb * (SOFTMAX_FLOPS_PER_SCORE * t.area + t.row_pairs * (Dv + 2)
                                + x.N * Dv),
        exp_ops=g * hpb * (t.area + t.row_pairs),
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=writes,
        sram_write_bytes=reads,
        # each warp reads its slice of Q per K/V tile and the whole K and V tiles
        sram_read_bytes=g * (t.row_pairs * hpb * D * e + t.key_loads * (D + Dv) * e * x.warps),
        workspace_bytes=x.B * x.H * x.N * F4,            # L, kept for the backward pass
        launches=1.0 + 0 * g, blocks=g * t.q_tiles,
    )


def _per_query_head(x: Arrays) -> Arrays:
    """``x`` seen from FA-2's backward grid, one block per query head (heads_per_block
    1): Dao-AILab/flash-attention (commit 765fbd9) flash_bwd_launch_template.h,
    run_flash_bwd_seqk_parallel, grids (tiles, params.b, params.h)."""
    from dataclasses import replace

    return replace(x, hpb=np.ones_like(x.hpb))


def backward(x: Arrays) -> Cost:
    hpb = x.hpb                                          # the forward's packed heads
    x = _per_query_head(x.backward())                    # FA-2's backward launch tiles
    t = x.tiles()
    g, e, D, Dv, N, S = x.groups, x.e, x.D, x.Dv, x.N, x.S   # g = B·H (batch, head) pairs
    gqa = x.H != x.K
    # kernel 1: Δ = rowsum(dO ∘ O), and the fp32 dQ accumulator cleared (Clear_dQaccum)
    pre_read, pre_write = g * N * 2 * Dv * e, g * N * (F4 + D * F4)
    # kernel 2: per K/V tile of the head's KV head, loop over active query tiles; dK, dV
    # of the head (into dk_expanded, dv_expanded under GQA)
    kv = t.union_keys * (D + x.dv_load) * e
    per_row = D * e + Dv * e + 2 * F4 + D * F4            # Q, dO, L, Δ, dQ accumulator read
    main_read = g * (kv + t.row_pairs * per_row)
    main_write = g * (kv + t.row_pairs * D * F4)          # dK, dV; dQ accumulator write
    # kernel 3: dQ fp32 → storage dtype
    conv_read, conv_write = g * N * D * F4, g * N * D * e
    # GQA: at::sum_out of dk_expanded (dv_expanded) over the H/K heads of a KV head
    grad_row = (D + x.dv_load) * e
    sum_read, sum_write = gqa * g * S * grad_row, gqa * g * S * grad_row * x.K / x.H
    reads = pre_read + main_read + conv_read + sum_read
    writes = pre_write + main_write + conv_write + sum_write
    hbm_reads, hbm_writes = reads, writes
    if x.slots is not None:                               # the closed-form L2 estimate
        hbm_reads, hbm_writes = (g * b for b in fa2_backward_hbm(x, t))
    staged = g * (kv + t.row_pairs * (D + Dv) * e)
    sums = gqa * (1 + (x.dv_load > 0))                    # sum_out launches
    return Cost(
        matmul_flops=g * t.area * (6 * D + 4 * Dv),
        # at::sum_out: H/K − 1 additions per KV-head element, 1 − K/H per query head
        vector_flops=g * (5 * t.area + N * 2 * Dv) + gqa * g * S * (D + x.dv_load)
        * (1 - x.K / x.H),
        exp_ops=g * t.area,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=hbm_writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        # saved L + Δ + fp32 dQ accumulator (+ dk_expanded, dv_expanded under GQA)
        workspace_bytes=x.B * x.H * N * (2 * F4 + D * F4) + gqa * g * S * grad_row,
        launches=3.0 + sums + 0 * g,
        blocks=g * (2 * t.q_tiles + t.union_tiles) + g / hpb * sums * np.ceil(S / x.Bc),
    )
