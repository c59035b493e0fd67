"""Tile rules that several algorithm modules declare as theirs: SRAM footprints, default
query tiles, split-KV counts. :mod:`memsim.tiling` asks each algorithm module for these
through the registry (docs/DESIGN.md §"The algorithm registry") and never branches on an
algorithm's name.

A tile rule receives ``t``, anything with the attributes of :class:`memsim.tiling.Tiling`
(``rows``, ``block_kv``, ``head_dim``, ``head_dim_v``, ``mla``, ``elem_bytes`` and the
indexer's ``index_*``), scalars or numpy arrays that broadcast together.
"""

from __future__ import annotations

import numpy as np

from memsim.units import ACCUM_BYTES

#: Query rows per block of FlashAttention-2's forward launch templates
#: (flash_fwd_launch_template.h: kBlockM = 128 for every head dimension on sm80/sm90).
FA2_BLOCK_ROWS = 128


def flash_sram_bytes(t):
    """Q tile rows·D + K tile Bc·D + V tile Bc·Dv' (Dv' = 0 under MLA: V is a slice of the
    latent K tile), at the storage width; S and P stay in registers (FA-2 Alg. 1)."""
    dv_load = np.where(t.mla, 0, t.head_dim_v)
    return (t.rows * t.head_dim + t.block_kv * (t.head_dim + dv_load)) * t.elem_bytes


def flash1_sram_bytes(t):
    """FA-1 Alg. 1 lines 8–13: the flash tiles plus the O tile rows·Dv and ℓ, m (fp32)."""
    return (flash_sram_bytes(t) + t.rows * t.head_dim_v * t.elem_bytes
            + t.rows * 2 * ACCUM_BYTES)


def packed_block_q(heads_per_block: int, N: int) -> int:
    """Br = 128 rows per block shared by the packed heads (FA-2 GQA packing)."""
    return max(1, FA2_BLOCK_ROWS // heads_per_block)


def sm_filling_splits(gpu, B, H, heads_per_block):
    """Flash-Decoding's split count: enough blocks to fill every SM once,
    ⌈SMs / (B · H / heads_per_block)⌉ (numpy-broadcasting)."""
    B = np.asarray(B, dtype=np.int64)
    return np.maximum(1, -(-gpu.spec.sm_count // (B * (H // heads_per_block))))


def no_kv_splits(gpu, B, N, S, H, t, geometry):
    """One block per query tile and head group: the key range is never split."""
    return np.ones_like(np.broadcast_arrays(np.asarray(B), np.asarray(N), np.asarray(S))[0],
                        dtype=np.int64)


def never_splits(t, N) -> bool:
    """Whether a call splits its key range over blocks (decoding): never."""
    return False


def no_extra_fields(problem, index_block_q: int | None = None) -> dict:
    """Tiling fields beyond the query/key tiles: none."""
    return {}


def no_first_shrink(t, limit_bytes: int) -> dict | None:
    """A Tiling update to try before shrinking the query/key tiles: none."""
    return None
