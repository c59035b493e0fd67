"""FlashAttention (Dao et al. 2022, arXiv 2205.14135), Algorithm 1: one block per
(batch, head group), outer loop over K/V tiles, inner loop over query tiles; O, ℓ, m
live in HBM and are re-read and re-written for every active (K/V tile, query tile) pair.

Forward, per (batch, head group of ``hpb`` heads):
    read  K_j, V_j          union_keys·(D + Dv')·e       (line 6, once per tile)
    read  Q_i               row_pairs·hpb·D·e            (line 8, per active pair)
    read  O_i, ℓ_i, m_i     (row_pairs − N)·hpb·(Dv·e + 2·4)  (line 8; not on first touch)
    write O_i, ℓ_i, m_i     row_pairs·hpb·(Dv·e + 2·4)   (lines 12–13)
Theorem 2 gives Θ(N²D²/M) HBM accesses: row_pairs ≈ N·S/Bc with Bc = Θ(M/D).
Backward (Algorithm 4): same loop order; per active pair Q, O, dO, dQ, ℓ, m are read and dQ
written (Δ = rowsum(dO ∘ O) is recomputed from O, line 19); K, V read and dK, dV written
once per tile. The first touch of a query tile does not read dQ (initialised on chip).
"""

from __future__ import annotations

from memsim.algorithms._arrays import Arrays
from memsim.algorithms._l2_backward import flash1_backward_hbm
from memsim.algorithms._tiles import (
    flash1_sram_bytes,
    forward_tiles_backward,
    never_splits,
    no_extra_fields,
    no_first_shrink,
    no_kv_splits,
    packed_block_q,
)
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS
from memsim.units import ACCUM_BYTES as F4

NAME = "flash1"
PASSES = ("forward", "backward", "forward+backward")

# What the rest of memsim asks of flash1 (docs/DESIGN.md §"The algorithm registry").
LABEL = "FlashAttention-1"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = False
SCHEDULE = "flash1"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = "flash1"  # Numba kernels: kernels/flash1.py
UPCASTS_16BIT = False  # computes in its inputs' dtype
sram_bytes = flash1_sram_bytes
default_block_q = packed_block_q
kv_splits = no_kv_splits
splits_keys = never_splits
extra_fields = no_extra_fields
shrink_first = no_first_shrink
backward_tiling = forward_tiles_backward


def forward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    kv = t.union_keys * (D + x.dv_load) * e
    state = hpb * (Dv * e + 2 * F4)                       # O row, ℓ, m
    reads = g * (kv + t.row_pairs * hpb * D * e + (t.row_pairs - N) * state)
    writes = g * t.row_pairs * state
    # re-touches of Q and the state that reach HBM (all of them without the L2 estimate)
    again = x.hbm_state_rereads(t, hpb * D * e + state, (D + x.dv_load) * e)
    hbm_reads = g * (kv + (N + again) * hpb * D * e + again * state)
    hbm_writes = g * (N + again) * state
    return Cost(
        matmul_flops=g * hpb * t.area * 2 * (D + Dv),
        vector_flops=g * hpb * (4 * t.area + t.row_pairs * (2 * Dv + 4)),
        exp_ops=g * hpb * (t.area + 2 * t.row_pairs),      # line 10: e^{m_i − m_new}, e^{m̃ − m_new}
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=hbm_writes,
        sram_write_bytes=reads,
        # Q, O, ℓ, m rows read per pair; each warp reads the whole K and V tile per pair
        sram_read_bytes=g * (t.row_pairs * (hpb * D * e + state)
                             + t.key_loads * (D + Dv) * e * x.warps),
        workspace_bytes=x.B * x.H * N * 2 * F4,           # ℓ and m in HBM
        launches=1.0 + 0 * g, blocks=g,
    )


def backward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    kv = t.union_keys * (D + x.dv_load) * e
    per_pair_read = hpb * (D * e + 2 * Dv * e + 2 * F4)   # Q, O, dO, ℓ, m
    reads = g * (kv + t.row_pairs * per_pair_read + (t.row_pairs - N) * hpb * D * e)
    writes = g * (kv + t.row_pairs * hpb * D * e)         # dK, dV once; dQ per pair
    staged = g * (kv + t.row_pairs * hpb * (2 * D + 2 * Dv) * e)
    hbm_reads, hbm_writes = flash1_backward_hbm(x, t)     # = reads, writes without the L2
    return Cost(
        matmul_flops=g * hpb * t.area * (6 * D + 4 * Dv),
        vector_flops=g * hpb * (5 * t.area + t.row_pairs * 2 * Dv),
        exp_ops=g * hpb * t.area,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=g * hbm_reads, hbm_write_bytes=g * hbm_writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        workspace_bytes=x.B * x.H * N * 2 * F4,           # saved ℓ, m
        launches=1.0 + 0 * g, blocks=g,
    )
