"""Split-KV decoding (Flash-Decoding, Dao, Haziza, Massa & Sizov 2023; FlashAttention-2's
``flash_fwd_splitkv`` kernels): a few query tokens (N ≤ Br) against a long KV cache.

All N query tokens and the ``hpb`` heads sharing a KV head form one query tile. Its active
K/V tiles (per the mask) are split into ``kv_splits`` contiguous ranges, one block each, so
that even batch 1 fills the GPU. Each block writes an fp32 partial output and logsumexp;
a second kernel reads the partials and writes O.

Per (batch, head group), with n active K/V tiles and s' = ⌈n / ⌈n/s⌉⌉ non-empty splits:
    split kernel   read Q s'·N·hpb·D·e, K/V keys·(D + Dv')·e   write s'·N·hpb·(Dv + 1)·4
    reduce kernel  read s'·N·hpb·(Dv + 1)·4                     write O N·hpb·Dv·e
The warps of a block split the keys of each K/V tile between them (FlashAttention-2's
split-KV kernel, TensorRT-LLM's XQA, FlashMLA), so each staged K/V byte is read from shared
memory once. Under the L2 estimate (``Arrays.slots`` set) the fp32 partials, written by the
split kernel and read right after by the reduce kernel, stay in L2 when they fit in it and
never reach HBM. Forward only: decoding is inference.
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import Arrays
from memsim.algorithms._tiles import (
    flash_sram_bytes,
    forward_tiles_backward,
    no_extra_fields,
    no_first_shrink,
    sm_filling_splits,
)
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS, tile_terms
from memsim.units import ACCUM_BYTES as F4

NAME = "flash_decode"
PASSES = ("forward",)

# What the rest of memsim asks of flash_decode (docs/DESIGN.md §"The algorithm registry").
LABEL = "split-KV decode"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = True  # one query tile holds all N queries; keys split over blocks
SCHEDULE = "flash2_decode"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = "decode"  # Numba kernels: kernels/decode.py
UPCASTS_16BIT = False  # computes in its inputs' dtype
sram_bytes = flash_sram_bytes
extra_fields = no_extra_fields
shrink_first = no_first_shrink
backward_tiling = forward_tiles_backward


def default_block_q(heads_per_block: int, N: int) -> int:
    """All N query tokens form one query tile (the query tile never shrinks)."""
    return N


def splits_keys(t, N) -> bool:
    """Split-KV always: that is the algorithm."""
    return True


def kv_splits(gpu, B, N, S, H, t, geometry):
    """Enough blocks to fill every SM once, at most one split per active key tile (empty
    splits are dropped by :func:`active_splits` as well); numpy-broadcasting."""
    B, N, S = (np.asarray(v, dtype=np.int64) for v in (B, N, S))
    n_tiles = tile_terms(S - N, S - 1, S, np.int64(t.block_kv), geometry)[2]
    want = sm_filling_splits(gpu, B, H, t.heads_per_block)
    return np.maximum(1, np.minimum(n_tiles, want))


def active_splits(n_tiles, splits):
    """Non-empty splits when n_tiles tiles are cut into ranges of ⌈n/s⌉ tiles."""
    per = -(-n_tiles // np.maximum(splits, 1))
    return -(-n_tiles // per)


def forward(x: Arrays) -> Cost:
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    _, _, n_tiles, keys = tile_terms(x.S - N, x.S - 1, x.S, x.Bc, x.geometry)
    s = active_splits(n_tiles, x.splits)
    area, row_pairs = N * keys, N * n_tiles
    partial = s * N * hpb * (Dv + 1) * F4
    kv = keys * (D + x.dv_load) * e
    reads = g * (s * N * hpb * D * e + kv + partial)
    writes = g * (partial + N * hpb * Dv * e)
    staged = g * (s * N * hpb * D * e + kv)
    in_l2 = (x.slots is not None) & (g * partial <= x.l2_bytes)
    hbm_partial = np.where(in_l2, 0, g * partial)
    return Cost(
        matmul_flops=g * hpb * area * 2 * (D + Dv),
        vector_flops=g * hpb * (4 * area + row_pairs * (Dv + 2) + s * N * (2 * Dv + 2)),
        exp_ops=g * hpb * (area + row_pairs + s * N),
        global_read_bytes=reads.astype(float), global_write_bytes=writes.astype(float),
        hbm_read_bytes=(reads - g * partial + hbm_partial).astype(float),
        hbm_write_bytes=(writes - g * partial + hbm_partial).astype(float),
        sram_write_bytes=staged.astype(float),
        sram_read_bytes=(g * (row_pairs * hpb * D * e + keys * (D + Dv) * e)).astype(float),
        workspace_bytes=(x.B * x.H * N * s * (Dv + 1) * F4).astype(float),
        # the split kernel's blocks set the waves (the reduce kernel's g blocks are tiny)
        launches=2.0 + 0 * g, blocks=(g * s).astype(float),
    )
