"""Tiling: block sizes, threads and SRAM per block — one object shared by the analytic
model, the trace-driven model and the Numba-CUDA kernels, so a prediction is always of the
kernel that ran. No GPU imports here.

- ``block_q`` (Br): query tokens per tile. ``heads_per_block`` query heads that share one
  KV head are packed into the same block (FlashAttention-2's GQA packing), so a block holds
  ``rows = heads_per_block × block_q`` query rows and loads each K/V tile once for all of them.
- ``block_kv`` (Bc): keys per K/V tile.
- ``kv_splits``: split-KV decoding (Flash-Decoding) splits the key range of each
  (batch, head group) over this many blocks.
- ``threads``: threads per block; ``registers_per_thread`` feeds the occupancy model.

SRAM footprint per block (storage dtype, element width ``e``; ``Dv'`` = 0 under MLA, whose
V is a slice of the latent K tile):

- flash2, flash_decode: Q tile rows·D + K tile Bc·D + V tile Bc·Dv'  (FA-2 Alg. 1; S and P
  stay in registers);
- flash1: the same + O tile rows·Dv + ℓ, m (fp32) (FA-1 Alg. 1 lines 8–13);
- standard: max(QKᵀ kernel: rows·D + Bc·D, PV kernel: rows·Bc + Bc·Dv);
- dsa: max(sparse attention: rows·D + Bc·(D + Dv'), indexer: Br_I·H_I·D_I·e_I + Bc·(D_I·e_I + 4)),
  where the indexer's query tile has its own size Br_I (``index_block_q``): a sparse
  attention block holds one query token's heads, an indexer block many tokens.

Default tiles follow FlashAttention-2's launch templates (Br = 128 rows, Bc = 128 for
D ≤ 64, 64 for D ≤ 128, 32 above; 4 warps), halving Br then Bc until the footprint fits the
GPU's shared memory per block. ``policy="fa1"`` uses FlashAttention-1 Alg. 1 line 1 instead:
Bc = ⌈M / 4D⌉, Br = min(Bc, D).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from memsim.errors import InputError
from memsim.units import ACCUM_DTYPE, DTYPE_BYTES

FP32_BYTES = DTYPE_BYTES[ACCUM_DTYPE]
INDEX_SCALE_BYTES = DTYPE_BYTES["fp32"]  # one fp32 scale per fp8 indexer key block


def index_key_bytes(head_dim, elem_bytes, scale_block=128):
    """Bytes of one indexer key: D_I elements, plus one fp32 scale per ``scale_block``
    elements when stored in fp8 (DeepSeek-V3.2-Exp model.py: 128 + 4 = 132 B at D_I = 128)."""
    scales = np.where(np.asarray(elem_bytes) == DTYPE_BYTES["fp8"],
                      -(-np.asarray(head_dim) // scale_block), 0)
    return head_dim * elem_bytes + scales * INDEX_SCALE_BYTES
ALGORITHM_NAMES = ("standard", "standard_blockskip", "flash1", "flash2", "flash_decode",
                   "dsa")


def indexer_sram_bytes(index_block_q, block_kv, index_heads, index_head_dim,
                       index_elem_bytes):
    """SRAM of a DSA indexer block: its query tile Br_I·H_I·D_I and one key tile."""
    return (index_block_q * index_heads * index_head_dim * index_elem_bytes
            + block_kv * index_key_bytes(index_head_dim, index_elem_bytes))


def sram_footprint_bytes(algorithm: str, rows, block_q, block_kv, D, Dv, mla, elem_bytes,
                         index_heads=0, index_head_dim=0, index_elem_bytes=0.0,
                         index_block_q=0):
    """SRAM bytes one block holds (see module docstring); numpy-broadcasting."""
    e = elem_bytes
    dv_load = np.where(mla, 0, Dv)
    flash = (rows * D + block_kv * D + block_kv * dv_load) * e
    if algorithm in ("flash2", "flash_decode"):
        return flash
    if algorithm == "flash1":
        return flash + rows * Dv * e + rows * 2 * FP32_BYTES
    if algorithm in ("standard", "standard_blockskip"):
        return np.maximum(rows * D + block_kv * D, rows * block_kv + block_kv * Dv) * e
    if algorithm == "dsa":
        sparse = (rows * D + block_kv * (D + dv_load)) * e
        indexer = indexer_sram_bytes(index_block_q, block_kv, index_heads, index_head_dim,
                                     index_elem_bytes)
        return np.maximum(sparse, indexer)
    raise InputError("algorithm", algorithm, f"must be one of {ALGORITHM_NAMES}")


class Tiling(BaseModel):
    """Block sizes, threads and SRAM of one kernel configuration (see module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str
    block_q: int = Field(gt=0, description="Br, query tokens per tile")
    block_kv: int = Field(gt=0, description="Bc, keys per tile")
    heads_per_block: int = Field(default=1, gt=0, description="query heads packed per block")
    kv_splits: int = Field(default=1, gt=0, description="split-KV blocks per head group")
    threads: int = Field(default=128, gt=0, description="threads per block")
    registers_per_thread: int = Field(default=128, gt=0)
    head_dim: int = Field(gt=0)
    head_dim_v: int = Field(gt=0)
    elem_bytes: float = Field(gt=0, description="storage width of Q, K, V, O")
    mla: bool = False
    index_heads: int = 0
    index_head_dim: int = 0
    index_elem_bytes: float = 0.0
    index_block_q: int = 0
    backward_block_q: int = Field(default=0, ge=0, description="backward kernel's Br "
                                  "(0: the forward's)")
    backward_block_kv: int = Field(default=0, ge=0, description="backward kernel's Bc "
                                   "(0: the forward's)")
    backward_threads: int = Field(default=0, ge=0, description="backward kernel's threads "
                                  "(0: the forward's)")

    @property
    def backward_tiles(self) -> tuple[int, int, int]:
        """(Br, Bc, warps) of the backward kernels: FA-2's own where set, else the forward's."""
        threads = self.backward_threads or self.threads
        return (self.backward_block_q or self.block_q, self.backward_block_kv or self.block_kv,
                max(1, threads // 32))

    @property
    def rows(self) -> int:
        """Query rows per block: heads_per_block × block_q."""
        return self.heads_per_block * self.block_q

    @property
    def warps(self) -> int:
        return max(1, self.threads // 32)

    @property
    def sram_bytes(self) -> int:
        return int(sram_footprint_bytes(
            self.algorithm, self.rows, self.block_q, self.block_kv, self.head_dim,
            self.head_dim_v, self.mla, self.elem_bytes, self.index_heads,
            self.index_head_dim, self.index_elem_bytes, self.index_block_q))

    def describe(self) -> str:
        return (f"Br={self.block_q} Bc={self.block_kv} heads/block={self.heads_per_block} "
                f"splits={self.kv_splits} threads={self.threads} sram={self.sram_bytes} B")

    def check_fits(self, sram_limit_bytes: int, where: str = "") -> Tiling:
        """Raise :class:`InputError` naming the sizes if the footprint exceeds the limit."""
        if self.sram_bytes > sram_limit_bytes:
            raise InputError(
                "tiling", self.describe(),
                f"needs {self.sram_bytes} B of SRAM per block, more than the "
                f"{sram_limit_bytes} B available{where}; choose smaller --block-q/--block-kv")
        return self

    def blocks_per_sm(self, gpu) -> int:  # gpu: memsim.hardware.GPU
        """Resident blocks per SM, limited by SRAM, threads, registers and the block cap."""
        return int(blocks_per_sm(gpu, self.sram_bytes, self.threads, self.registers_per_thread))


def blocks_per_sm(gpu, sram_bytes, threads, registers_per_thread):
    """Occupancy: min over SRAM, threads, registers and the hardware block limit (arrays ok)."""
    s = gpu.spec
    by_sram = s.shared_memory_per_sm_bytes // np.maximum(sram_bytes, 1)
    by_threads = s.max_threads_per_sm // threads
    by_regs = s.registers_per_sm // (np.asarray(threads) * registers_per_thread)
    return np.maximum(np.minimum(np.minimum(by_sram, by_threads),
                                 np.minimum(by_regs, s.max_blocks_per_sm)), 0)


FA2_BACKWARD_THREADS = 256   # Flash_bwd_kernel_traits<..., kNWarps = 8, ...> for every hdim


def fa2_backward_sram_bytes(block_q, block_kv, D, Dv, elem_bytes, double_buffer=True):
    """Shared memory of FA-2's dq/dk/dv kernel (flash_bwd kernel traits kSmemSize1colblock,
    V not in registers): Q (double-buffered unless ``double_buffer`` is False) and dO
    tiles, K and V tiles, the dS and P tiles of Br × Bc."""
    q_bufs = 2 if double_buffer else 1
    return (block_q * (q_bufs * D + Dv) + block_kv * (D + Dv) + 2 * block_q * block_kv) \
        * elem_bytes


def fa2_backward_tiles(D: int, Dv: int, elem_bytes: float, sram_limit_bytes: int
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


def fa2_block_kv(head_dim: int) -> int:
    """FlashAttention-2's key tile for a head dimension (flash_fwd_launch_template.h,
    A100/H100, no dropout): hdim ≤ 64 → 128, ≤ 128 → 64, 160 → 32, 192 and 256 → 64.
    Larger heads (MLA's absorbed 576) start at 32 and shrink to fit."""
    if head_dim <= 64:
        return 128
    if head_dim <= 128:
        return 64
    if head_dim <= 160:
        return 32
    return 64 if head_dim <= 256 else 32


def default_tiling(problem, gpu, algorithm: str, *, block_q: int | None = None,
                   block_kv: int | None = None, heads_per_block: int | None = None,
                   kv_splits: int | None = None, threads: int | None = None,
                   sram_limit_bytes: int | None = None, policy: str = "fa2") -> Tiling:
    """The Tiling memsim uses for ``problem`` on ``gpu`` unless told otherwise.

    Explicit sizes are kept as given and must fit; defaults shrink until they fit.
    """
    from memsim.units import dtype_bytes

    if algorithm not in ALGORITHM_NAMES:
        raise InputError("algorithm", algorithm, f"must be one of {', '.join(ALGORITHM_NAMES)}")
    limit = sram_limit_bytes or gpu.spec.shared_memory_per_block_max_bytes
    group = problem.H // problem.K
    hpb = heads_per_block if heads_per_block is not None else group
    if group % hpb:
        raise InputError("heads_per_block", hpb,
                         f"must divide the query heads per KV head ({group})")
    indexer = problem.indexer
    common = dict(
        algorithm=algorithm, heads_per_block=hpb, head_dim=problem.D, head_dim_v=problem.Dv,
        elem_bytes=dtype_bytes(problem.dtype), mla=problem.mla,
        threads=threads or 128,
    )
    if algorithm == "dsa":
        idx = indexer or _default_indexer()
        common.update(index_heads=idx.heads, index_head_dim=idx.head_dim,
                      index_elem_bytes=dtype_bytes(idx.dtype), index_block_q=128)
    if policy == "fa1":
        m = limit
        bc = block_kv or math.ceil(m / (4 * problem.D * common["elem_bytes"]))
        br = block_q or min(bc, problem.D)
    else:
        bc = block_kv or fa2_block_kv(problem.D)
        # a dsa sparse-attention block holds one query token's packed heads
        br = block_q or (1 if algorithm == "dsa" else max(1, 128 // hpb))
    if algorithm == "flash_decode":
        if block_q is not None and block_q < problem.N:
            raise InputError("block_q", block_q,
                             f"must hold all seq_len={problem.N} query tokens for flash_decode")
        br = problem.N
    tiling = Tiling(block_q=br, block_kv=bc, **common)
    where = f" per block on {gpu.name}"
    # Shrink defaults (never explicit sizes) until the footprint fits: the larger of the
    # query rows and the key tile first (tiles stay about square; FA-1's policy keeps its
    # Bc = Θ(M/D) and shrinks Br), then fewer packed heads.
    while tiling.sram_bytes > limit:
        t = tiling
        can_q = block_q is None and algorithm != "flash_decode" and t.block_q > 1
        can_kv = block_kv is None and t.block_kv > 16
        if algorithm == "dsa" and t.index_block_q > 1 and _indexer_over(t, limit):
            update = {"index_block_q": t.index_block_q // 2}
        elif can_q and (policy == "fa1" or t.rows > t.block_kv or not can_kv):
            update = {"block_q": t.block_q // 2}
        elif can_kv:
            update = {"block_kv": t.block_kv // 2}
        elif heads_per_block is None and t.heads_per_block > 1:
            update = {"heads_per_block": max(d for d in range(1, t.heads_per_block)
                                             if group % d == 0)}
        else:
            break
        tiling = t.model_copy(update=update)
    tiling.check_fits(limit, where)
    if algorithm == "flash2" and policy == "fa2" and problem.pass_ != "forward":
        br_b, bc_b = fa2_backward_tiles(problem.D, problem.Dv, tiling.elem_bytes, limit)
        tiling = tiling.model_copy(update={"backward_block_q": br_b, "backward_block_kv": bc_b,
                                           "backward_threads": FA2_BACKWARD_THREADS})
    decoding = algorithm == "flash_decode" or (
        algorithm == "dsa" and tiling.index_block_q >= problem.N)
    if decoding:
        from memsim.algorithms.masks import geometry_of

        geometry = geometry_of(problem.mask) if algorithm == "flash_decode" else None
        splits = kv_splits or int(decode_splits(
            algorithm, gpu, problem.B, problem.N, problem.S, problem.H,
            tiling.heads_per_block, tiling.block_kv, tiling.index_block_q, geometry))
        tiling = tiling.model_copy(update={"kv_splits": splits})
    elif kv_splits not in (None, 1):
        raise InputError("kv_splits", kv_splits, "applies to decoding only: flash_decode, "
                         "or dsa with seq_len ≤ the indexer's query tile")
    return tiling


def _indexer_over(t: Tiling, limit: int) -> bool:
    """Whether the indexer's tiles alone exceed the SRAM limit."""
    return indexer_sram_bytes(t.index_block_q, t.block_kv, t.index_heads, t.index_head_dim,
                              t.index_elem_bytes) > limit


def _default_indexer():
    from memsim.problem import Indexer

    return Indexer()


def decode_splits(algorithm, gpu, B, N, S, H, heads_per_block, block_kv, index_block_q=0,
                  geometry=None):
    """Flash-Decoding's split count (numpy-broadcasting): enough blocks to fill every SM
    once; for flash_decode at most one split per active key tile (the algorithms also drop
    empty splits). dsa splits only when decoding (N ≤ the indexer's query tile)."""
    from memsim.geometry import tile_terms

    B, N, S = (np.asarray(v, dtype=np.int64) for v in (B, N, S))
    want = np.maximum(1, -(-gpu.spec.sm_count // (B * (H // heads_per_block))))
    if algorithm == "flash_decode":
        n_tiles = tile_terms(S - N, S - 1, S, np.int64(block_kv), geometry)[2]
        return np.maximum(1, np.minimum(n_tiles, want))
    if algorithm == "dsa":
        return np.where(N <= index_block_q, want, 1)
    return np.ones_like(B)
