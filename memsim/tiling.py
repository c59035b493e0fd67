"""Tiling: block sizes, threads and SRAM per block — one object shared by the analytic
model, the trace-driven model and the Numba-CUDA kernels, so a prediction is always of the
kernel that ran. No GPU imports here.

- ``block_q`` (Br): query tokens per tile. ``heads_per_block`` query heads that share one
  KV head are packed into the same block (FlashAttention-2's GQA packing), so a block holds
  ``rows = heads_per_block × block_q`` query rows and loads each K/V tile once for all of them.
- ``block_kv`` (Bc): keys per K/V tile.
- ``kv_splits``: split-KV decoding (Flash-Decoding) splits the key range of each
  (batch, head group) over this many blocks.
- ``threads``: threads per block; ``registers_per_thread`` feeds the occupancy model:
  the algorithm module's ``REGISTERS_PER_THREAD`` where its kernel's register count is
  sourced (flash2: 255, ptxas output, :data:`memsim.algorithms._tiles.FA2_FORWARD_REGISTERS`),
  else :data:`UNSOURCED_REGISTERS_PER_THREAD`.

SRAM footprint per block, default query tile and split-KV count are the algorithm's own
rules, declared in its module (``sram_bytes``, ``default_block_q``, ``kv_splits``: see
:mod:`memsim.algorithms` and docs/DESIGN.md §"The algorithm registry"); this module applies
them and never branches on an algorithm's name.

Default tiles follow FlashAttention-2's launch templates (Br = 128 rows, Bc = 128 for
D ≤ 64, 64 for D ≤ 128, 32 above; 4 warps), halving Br then Bc until the footprint fits the
GPU's shared memory per block. ``policy="fa1"`` uses FlashAttention-1 Alg. 1 line 1 instead:
Bc = ⌈M / 4D⌉, Br = min(Bc, D).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict, Field

from memsim.algorithms import get
from memsim.algorithms._tiles import (  # noqa: F401  (re-exported: FA-2 backward tiles)
    DEFAULT_THREADS,
    FA2_BACKWARD_THREADS,
    blocks_per_sm,
    fa2_backward_sram_bytes,
)
from memsim.algorithms._tiles import fa2_backward_block_sizes as fa2_backward_tiles  # noqa: F401
from memsim.errors import InputError
from memsim.units import dtype_bytes

#: UNSOURCED: registers per thread of the kernels no ptxas or ncu record gives memsim —
#: FA-1 (``flash1``), split-KV decoding (``flash_decode``), ``dsa`` and the standard
#: kernels. With 128 threads it leaves occupancy to shared memory up to 4 blocks per SM.
UNSOURCED_REGISTERS_PER_THREAD = 128


def sram_footprint_bytes(algorithm: str, rows, block_q, block_kv, D, Dv, mla, elem_bytes,
                         index_heads=0, index_head_dim=0, index_elem_bytes=0.0,
                         index_block_q=0):
    """SRAM bytes one block of ``algorithm`` holds (its module's ``sram_bytes``);
    numpy-broadcasting."""
    t = SimpleNamespace(rows=rows, block_q=block_q, block_kv=block_kv, head_dim=D,
                        head_dim_v=Dv, mla=mla, elem_bytes=elem_bytes,
                        index_heads=index_heads, index_head_dim=index_head_dim,
                        index_elem_bytes=index_elem_bytes, index_block_q=index_block_q)
    return get(algorithm).sram_bytes(t)


class Tiling(BaseModel):
    """Block sizes, threads and SRAM of one kernel configuration (see module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str
    block_q: int = Field(gt=0, description="Br, query tokens per tile")
    block_kv: int = Field(gt=0, description="Bc, keys per tile")
    heads_per_block: int = Field(default=1, gt=0, description="query heads packed per block")
    kv_splits: int = Field(default=1, gt=0, description="split-KV blocks per head group")
    threads: int = Field(default=DEFAULT_THREADS, gt=0, description="threads per block")
    registers_per_thread: int = Field(default=UNSOURCED_REGISTERS_PER_THREAD, gt=0)
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
        return int(get(self.algorithm).sram_bytes(self))

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
    module = get(algorithm)
    from memsim.limits import check_tiling_limits

    check_tiling_limits(gpu, block_q=block_q, block_kv=block_kv,
                        heads_per_block=heads_per_block, kv_splits=kv_splits, threads=threads,
                        sram_limit_bytes=sram_limit_bytes)
    limit = (gpu.spec.shared_memory_per_block_max_bytes if sram_limit_bytes is None
             else sram_limit_bytes)
    group = problem.H // problem.K
    hpb = heads_per_block if heads_per_block is not None else group
    if group % hpb:
        raise InputError("heads_per_block", hpb,
                         f"must divide the query heads per KV head ({group})")
    common = dict(
        algorithm=algorithm, heads_per_block=hpb, head_dim=problem.D, head_dim_v=problem.Dv,
        elem_bytes=dtype_bytes(problem.dtype), mla=problem.mla,
        threads=DEFAULT_THREADS if threads is None else threads,
        registers_per_thread=getattr(module, "REGISTERS_PER_THREAD",
                                     UNSOURCED_REGISTERS_PER_THREAD),
        **module.extra_fields(problem),
    )
    if policy == "fa1":
        m = limit
        bc = block_kv if block_kv is not None else math.ceil(
            m / (4 * problem.D * common["elem_bytes"]))
        br = block_q if block_q is not None else min(bc, problem.D)
    else:
        bc = block_kv if block_kv is not None else fa2_block_kv(problem.D)
        br = block_q if block_q is not None else int(module.default_block_q(hpb, problem.N))
    if module.DECODES:   # one query tile holds every query token
        if block_q is not None and block_q < problem.N:
            raise InputError("block_q", block_q,
                             f"must hold all seq_len={problem.N} query tokens for {algorithm}")
        br = problem.N
    tiling = Tiling(block_q=br, block_kv=bc, **common)
    where = f" per block on {gpu.name}"
    # Shrink defaults (never explicit sizes) until the footprint fits: the algorithm's own
    # first step (dsa: the indexer's query tile), then the larger of the query rows and the
    # key tile (tiles stay about square; FA-1's policy keeps its Bc = Θ(M/D) and shrinks
    # Br), then fewer packed heads.
    while tiling.sram_bytes > limit:
        t = tiling
        can_q = block_q is None and not module.DECODES and t.block_q > 1
        can_kv = block_kv is None and t.block_kv > 16
        update = module.shrink_first(t, limit)
        if update is not None:
            pass
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
    if policy == "fa2" and problem.pass_ != "forward":
        tiling = tiling.model_copy(update=module.backward_tiling(tiling, limit))
    if module.splits_keys(tiling, problem.N):
        splits = kv_splits if kv_splits is not None else int(decode_splits(
            algorithm, gpu, problem.B, problem.N, problem.S, problem.H, tiling, problem.mask))
        tiling = tiling.model_copy(update={"kv_splits": splits})
    elif kv_splits not in (None, 1):
        raise InputError("kv_splits", kv_splits, "applies to decoding only (a decode kernel, "
                         "or dsa with seq_len ≤ the indexer's query tile)")
    return tiling


def decode_splits(algorithm, gpu, B, N, S, H, tiling, mask):
    """Split-KV count of ``algorithm`` (its module's ``kv_splits``; 1 for algorithms that
    never split), numpy-broadcasting over B, N, S."""
    from memsim.geometry import geometry_of

    geometry = None if mask.kind == "topk" else geometry_of(mask)
    return get(algorithm).kv_splits(gpu, B, N, S, H, tiling, geometry)
