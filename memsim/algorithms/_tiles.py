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

from memsim.errors import InputError
from memsim.units import ACCUM_BYTES

#: Query rows per block of FlashAttention-2's forward launch templates
#: (flash_fwd_launch_template.h: kBlockM = 128 for every head dimension on sm80/sm90).
FA2_BLOCK_ROWS = 128
#: Query tokens per DSA indexer block before shrinking to fit: the indexer is tiled like
#: FA-2 (all H_I heads of a token in one block), so FA-2's 128 rows.
INDEX_BLOCK_Q = FA2_BLOCK_ROWS
#: Threads per block of the forward kernels (FA-2 launch templates: kNWarps = 4).
DEFAULT_THREADS = 128
#: Registers per thread of FA-2's forward kernel (``flash_fwd_kernel``, 4 warps, 128 query
#: rows). It is declared without ``__launch_bounds__`` (flash_fwd_launch_template.h,
#: ``DEFINE_FLASH_FORWARD_KERNEL``), so ptxas may spend up to the architecture's 255, and
#: it does: for sm_80, ``Flash_fwd_kernel_traits<128, 128, 64, 4>`` (hdim 128, the
#: A100/H100 choice) uses 255 and spills 172 B, ``<64, 128, 64, 4>`` uses 250
#: (Dao-AILab/flash-attention issue #1630, ptxas output, causal, no dropout);
#: ``<256, 128, 64, 8>`` uses 240 and 255 (issue #340). hdim 64's default
#: ``<64, 128, 128, 4>`` holds twice the score fragment of the 250-register variant and hdim
#: 96's ``<96, 128, 64, 4>`` an output fragment between hdim 64's and 128's, so both sit at
#: the cap too (inferred, not compiled here). With 128 threads any count in 171..255 leaves
#: 2 blocks per SM of 65536 registers, so the 180 of the 64-row variant
#: ``<128, 64, 64, 4>`` (issue #1630), where memsim shrinks Br to 64, gives the same
#: occupancy. Counts are sm_80's; PyTorch's flash backend runs this template on H100 too
#: (ncu kernel name in measurements/h100-sxm, ncu/sdpa-flash), whose sm_90 count is not
#: recorded anywhere memsim has found.
FA2_FORWARD_REGISTERS = 255


def blocks_per_sm(gpu, sram_bytes, threads, registers_per_thread):
    """Occupancy: min over SRAM, threads, registers and the hardware block limit (arrays ok)."""
    s = gpu.spec
    by_sram = s.shared_memory_per_sm_bytes // np.maximum(sram_bytes, 1)
    by_threads = s.max_threads_per_sm // threads
    by_regs = s.registers_per_sm // (np.asarray(threads) * registers_per_thread)
    return np.maximum(np.minimum(np.minimum(by_sram, by_threads),
                                 np.minimum(by_regs, s.max_blocks_per_sm)), 0)


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
    """Br = 128 rows per block shared by the packed heads (FA-2 GQA packing);
    numpy-broadcasting."""
    return np.maximum(1, FA2_BLOCK_ROWS // np.asarray(heads_per_block))


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


FA2_BACKWARD_THREADS = 256   # Flash_bwd_kernel_traits<..., kNWarps = 8, ...> for every hdim


def fa2_backward_sram_bytes(block_q, block_kv, D, Dv, elem_bytes, double_buffer=True):
    """Shared memory of FA-2's dq/dk/dv kernel (flash_bwd kernel traits kSmemSize1colblock,
    V not in registers): Q (double-buffered unless ``double_buffer`` is False) and dO
    tiles, K and V tiles, the dS and P tiles of Br × Bc."""
    q_bufs = 2 if double_buffer else 1
    return (block_q * (q_bufs * D + Dv) + block_kv * (D + Dv) + 2 * block_q * block_kv) \
        * elem_bytes


def fa2_backward_kernel_sram_bytes(block_q, block_kv, D, Dv, elem_bytes,
                                   limit_bytes: int | None = None):
    """What FA-2's dq/dk/dv kernel holds: Q double-buffered where that fits the GPU's
    shared memory per block (``limit_bytes``; None: assume it does), else single
    (the template's No_double_buffer variants, e.g. hdim 256 on A100)."""
    double = fa2_backward_sram_bytes(block_q, block_kv, D, Dv, elem_bytes)
    if limit_bytes is None or double <= limit_bytes:
        return double
    return fa2_backward_sram_bytes(block_q, block_kv, D, Dv, elem_bytes, False)


def fa2_backward_block_sizes(D: int, Dv: int, elem_bytes: float, sram_limit_bytes: int
                       ) -> tuple[int, int]:
    """FA-2's backward launch tiles (kBlockM, kBlockN) for a head dimension and the GPU's
    shared memory per block (flash_bwd_launch_template.h, FlashAttention 2.5 as vendored
    by PyTorch): start from (128, 128) for D ≤ 64, (64, 128) for D ≤ 128, (64, 64) above;
    drop Q's double buffer, then halve the larger tile (Br on a tie) until the kernel fits.
    This reproduces the template's choices on A100 and H100: hdim 64 → (128, 128) with
    ≥ 144 KB, hdim 128 → (64, 128) with ≥ 144 KB else (64, 64), hdim 256 → (64, 64) (double
    buffer from 176 KB). Raises :class:`InputError` if not even 16 × 16 tiles fit."""
    br, bc = (128, 128) if D <= 64 else (64, 128) if D <= 128 else (64, 64)
    while fa2_backward_sram_bytes(br, bc, D, Dv, elem_bytes, False) > sram_limit_bytes:
        if br <= 16 and bc <= 16:
            raise InputError("sram_limit", sram_limit_bytes, "is too small for FA-2's "
                             f"backward kernel at D={D} (needs "
                             f"{fa2_backward_sram_bytes(br, bc, D, Dv, elem_bytes, False)} B)")
        if br >= bc and br > 16:
            br //= 2
        else:
            bc //= 2
    return br, bc


def fa2_backward_tiles(t, limit_bytes: int) -> dict:
    """Tiling update with FA-2's backward kernels' own launch tiles and threads."""
    br, bc = fa2_backward_block_sizes(t.head_dim, t.head_dim_v, t.elem_bytes, limit_bytes)
    return {"backward_block_q": br, "backward_block_kv": bc,
            "backward_threads": FA2_BACKWARD_THREADS}


def forward_tiles_backward(t, limit_bytes: int) -> dict:
    """The backward kernels walk the forward's tiles (no update)."""
    return {}
