"""Standard attention as eager PyTorch runs it (the math backend of
``scaled_dot_product_attention``, and autograd through it): S = QKᵀ, P = softmax(S), O = PV
with S and P materialised in HBM over **all** N × S scores whatever the mask — the mask is
applied to the dense S afterwards (``masked_fill``), no tile is skipped.

Forward, per (batch, head group of ``hpb`` heads), dense (area = N·S):
    QKᵀ, softmax, PV    as memsim.algorithms.standard_blockskip over the full mask
    masked_fill         (masks other than full) read S, write S: area·hpb·e each,
                        one vector op per score
Backward: the five autograd kernels of standard_blockskip over the dense scores, and for
masks other than full the gradient of masked_fill (dS zeroed where masked: read and write
dS once more).

Not modelled (yet): the boolean mask tensor itself (tril of ones, N × S bytes, shared by
every batch and head), the scale multiply and the fp32 upcast copies PyTorch launches for
bf16 inputs (Nsight Compute lists about 20 kernels for one causal call); the upcast is
a choice of dtype (fp32) the caller makes, as memsim.validation.sdpa does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from memsim.algorithms import standard_blockskip
from memsim.algorithms._arrays import Arrays
from memsim.algorithms._l2_backward import standard_backward_hbm
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS, MaskGeometry

NAME = "standard"
PASSES = standard_blockskip.PASSES

# What the rest of memsim asks of standard (docs/DESIGN.md §"The algorithm registry"):
# the block-skipping variant's tile rules (same kernels, same tiles).
LABEL = "standard, eager (S, P in HBM, every score)"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = False
SCHEDULE = "standard"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = None  # memsim's Numba kernels skip masked tiles: standard_blockskip's
sram_bytes = standard_blockskip.sram_bytes
default_block_q = standard_blockskip.default_block_q
kv_splits = standard_blockskip.kv_splits
splits_keys = standard_blockskip.splits_keys
extra_fields = standard_blockskip.extra_fields
shrink_first = standard_blockskip.shrink_first
backward_tiling = standard_blockskip.backward_tiling


def dense(x: Arrays) -> Arrays:
    """The same arrays under the full mask: eager attention computes every score."""
    return replace(x, geometry=MaskGeometry("full"))


def _mask_kernel(x: Arrays) -> Cost:
    """One elementwise pass over the dense (B, H, N, S) scores for any mask but full:
    read and write each score, one vector op per score."""
    m = np.asarray(0.0 if x.geometry.kind == "full" else 1.0)
    scores = m * np.asarray(x.B, dtype=np.float64) * x.H * x.N * x.S
    return Cost(vector_flops=scores, global_read_bytes=scores * x.e,
                global_write_bytes=scores * x.e, hbm_read_bytes=scores * x.e,
                hbm_write_bytes=scores * x.e, launches=m + 0 * scores,
                blocks=m * x.groups * -(-x.N // x.Br))


def forward(x: Arrays) -> Cost:
    cost = standard_blockskip.forward(dense(x)) + _mask_kernel(x)
    if x.slots is None:
        return cost
    # the L2 estimate over the four kernels: S may stay in L2 from QKᵀ to masked_fill
    # to softmax (standard_blockskip.forward_hbm_bytes)
    d = dense(x)
    reads, writes = standard_blockskip.forward_hbm_bytes(
        d, d.tiles(), masked_fill=x.geometry.kind != "full")
    return replace(cost, hbm_read_bytes=reads, hbm_write_bytes=writes)


def backward(x: Arrays) -> Cost:
    cost = standard_blockskip.backward(dense(x)) + _mask_kernel(x)
    if x.slots is None:
        return cost
    # the closed-form L2 estimate, kernel by kernel (memsim.algorithms._l2_backward)
    masked = np.asarray(0.0 if x.geometry.kind == "full" else 1.0)
    reads, writes = standard_backward_hbm(dense(x), masked)
    return replace(cost, hbm_read_bytes=x.groups * reads, hbm_write_bytes=x.groups * writes)
