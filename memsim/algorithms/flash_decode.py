"""Split-KV decoding (Flash-Decoding, Dao, Haziza, Massa & Sizov 2023; FlashAttention-2's
``flash_fwd_splitkv`` kernels): a few query tokens (N ≤ Br) against a long KV cache.

All N query tokens and the ``hpb`` heads sharing a KV head form one query tile. Its n active
K/V tiles (per the mask) are cut into ``kv_splits`` = s contiguous ranges of ⌈n/s⌉ tiles,
one block each, so that even batch 1 fills the GPU; s' = ⌈n/⌈n/s⌉⌉ of them hold a tile.
Each non-empty block writes an fp32 partial output and logsumexp; a second kernel reads the
partials and writes O. Per (batch, head group), in units of N·hpb rows:
    split kernel   read Q s'·D·e, K/V keys·(D + Dv')·e   write partials (Dv·s_o + s_l)·4
    reduce kernel  read partials (Dv·s_o + s_l)·4        write O Dv·e
where s_o and s_l count the O partials and logsumexps written, the kernel's own rule for
a launched block left without a tile (:data:`EMPTY_SPLITS`, ``Arrays.empty_splits``):

- ``"fa2"`` (this algorithm: FlashAttention-2's ``compute_attn_1rowblock_splitkv``,
  flash_fwd_kernel.h: "We exit early and write 0 to gOaccum and -inf to gLSEaccum", before
  loading Q; ``combine_attn_seqk_parallel`` reads all ``params.num_splits`` partials):
  s_o = s_l = s. FA-2's own split heuristic (flash_api.cpp ``num_splits_heuristic``,
  ``is_split_eligible``) never picks a count with an empty split, so the default
  :func:`kv_splits` has none either; an explicit ``--kv-splits`` may.
- ``"fa3"`` (FlashAttention-3, vllm-project/flash-attention @617264c1: the mainloop
  returns before loading Q when ``n_block_max <= n_block_min``, mainloop_fwd_sm90_tma_gmma_ws
  .hpp; ``epilogue_fwd.hpp`` ``store_zero`` writes only LSE = −∞ for a split, "we don't have
  to write 0 to mOpartial"; ``flash_fwd_combine_kernel.h`` reads every split's LSE and the
  O partials up to the last valid split): s_o = s', s_l = s.
- ``"none"``: no block without a tile writes or is read (s_o = s_l = s'): the count
  TensorRT-LLM's XQA decode is charged with here (its GMMA kernel's sub-sequences beyond
  ``nbSubSeq`` return at once, mha_sm90.cu; :func:`memsim.attention.xqa_sub_sequences`).

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
    """Enough blocks to fill every SM once, at most one split per active key tile, cut
    back to the non-empty splits ⌈n/⌈n/s⌉⌉ (FA-2's ``is_split_eligible``: a count whose
    ⌈n/s⌉ equals ⌈n/(s − 1)⌉ launches an empty split); numpy-broadcasting."""
    B, N, S = (np.asarray(v, dtype=np.int64) for v in (B, N, S))
    n_tiles = tile_terms(S - N, S - 1, S, np.int64(t.block_kv), geometry)[2]
    want = sm_filling_splits(gpu, B, H, t.heads_per_block)
    return active_splits(n_tiles, np.maximum(1, np.minimum(n_tiles, want)))


def active_splits(n_tiles, splits):
    """Non-empty splits when n_tiles tiles are cut into ranges of ⌈n/s⌉ tiles."""
    per = -(-n_tiles // np.maximum(splits, 1))
    return -(-n_tiles // per)


#: What a launched block left without a key tile writes (module docstring): rule →
#: (writes its O partial, writes its logsumexp, counts as a block of the split grid); the
#: reduce kernel reads what was written. FA-2 launches a grid of s blocks; FA-3's decode
#: runs a persistent grid whose work tiles an empty split barely touches, and XQA's CTAs
#: without a tile return at once, so there only the s' working splits count as blocks.
EMPTY_SPLITS = {"fa2": (True, True, True), "fa3": (False, True, False),
                "none": (False, False, False)}


def partial_counts(n_tiles, splits, rule: str = "fa2"):
    """(s', s_o, s_l, blocks): non-empty splits, O partials and logsumexps written, and
    split-kernel blocks, per (batch, head group), for ``splits`` launched over ``n_tiles``
    tiles under ``rule`` (:data:`EMPTY_SPLITS`)."""
    used = active_splits(n_tiles, splits)
    launched = np.maximum(splits, used)
    return (used,) + tuple(launched if flag else used for flag in EMPTY_SPLITS[rule])


def forward(x: Arrays) -> Cost:
    g, hpb, e, D, Dv, N = x.groups, x.hpb, x.e, x.D, x.Dv, x.N
    _, _, n_tiles, keys = tile_terms(x.S - N, x.S - 1, x.S, x.Bc, x.geometry)
    s, s_o, s_l, blocks = partial_counts(n_tiles, x.splits, x.empty_splits)
    area, row_pairs = N * keys, N * n_tiles
    partial = N * hpb * (s_o * Dv + s_l) * F4
    kv = keys * (D + x.dv_load) * e
    reads = g * (s * N * hpb * D * e + kv + partial)
    writes = g * (partial + N * hpb * Dv * e)
    staged = g * (s * N * hpb * D * e + kv)
    in_l2 = (x.slots is not None) & (g * partial <= x.l2_bytes)
    hbm_partial = np.where(in_l2, 0, g * partial)
    return Cost(
        matmul_flops=g * hpb * area * 2 * (D + Dv),
        vector_flops=g * hpb * (4 * area + row_pairs * (Dv + 2)
                                + N * ((s + s_o) * Dv + s_l * 2)),
        exp_ops=g * hpb * (area + row_pairs + s_l * N),
        global_read_bytes=reads.astype(float), global_write_bytes=writes.astype(float),
        hbm_read_bytes=(reads - g * partial + hbm_partial).astype(float),
        hbm_write_bytes=(writes - g * partial + hbm_partial).astype(float),
        sram_write_bytes=staged.astype(float),
        sram_read_bytes=(g * (row_pairs * hpb * D * e + keys * (D + Dv) * e)).astype(float),
        workspace_bytes=(x.B * x.H * N * s_l * (Dv + 1) * F4).astype(float),
        # the split kernel's blocks set the waves (the reduce kernel's g blocks are tiny)
        launches=2.0 + 0 * g, blocks=(g * blocks).astype(float),
    )
