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

from memsim.algorithms._arrays import Arrays
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


def forward(x: Arrays) -> Cost:
    t = x.tiles()
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    scores = t.area * hpb * e
    qk_r, qk_w = N * hpb * D * e + t.key_loads * D * e, scores
    sm_r, sm_w = 2 * scores, scores
    pv_r, pv_w = scores + t.key_loads * Dv * e, N * hpb * Dv * e
    reads, writes = g * (qk_r + sm_r + pv_r), g * (qk_w + sm_w + pv_w)
    k_hbm, v_hbm = x.hbm_key_loads(t, D * e), x.hbm_key_loads(t, Dv * e)
    hbm_reads = reads - g * t.key_loads * (D + Dv) * e + g * (k_hbm * D + v_hbm * Dv) * e
    staged = g * (N * hpb * D * e + t.key_loads * (D + Dv) * e + scores)
    return Cost(
        matmul_flops=g * hpb * t.area * 2 * (D + Dv),
        vector_flops=g * hpb * (5 * t.area),             # scale, max, subtract, sum, divide
        # two passes over S, one exponential per element each: ℓ = Σ exp(S − m) online,
        # then P = exp(S − m)/ℓ (a row too long for chip holds no exp(S − m) in between)
        exp_ops=g * hpb * 2 * t.area,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=writes,
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
        # the closed-form L2 estimate (other masks: no reuse, not modelled yet)
        est_reads, est_writes = standard_backward_hbm(x, 0.0)
        hbm_reads = np.minimum(g * est_reads, reads)
        hbm_writes = np.minimum(g * est_writes, writes)
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
