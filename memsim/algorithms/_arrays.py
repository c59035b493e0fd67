"""Problem and tiling as numpy arrays: the common input of every algorithm's cost function.

All fields broadcast together, so one call evaluates many configurations (DESIGN.md:
"vectorised over numpy arrays"). :func:`from_problem` builds the size-1 case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.geometry import MaskGeometry, TileSums, tile_sums
from memsim.units import DTYPE_BYTES


@dataclass(frozen=True)
class Arrays:
    """Shapes (B, N, S, H, K, D, Dv), storage width ``e`` in bytes, MLA flag, tiles
    (Br, Bc, heads per block, KV splits, warps), top-k and the indexer's (H_I, D_I, e_I)."""

    B: np.ndarray
    N: np.ndarray
    S: np.ndarray
    H: np.ndarray
    K: np.ndarray
    D: np.ndarray
    Dv: np.ndarray
    e: np.ndarray
    mla: np.ndarray
    Br: np.ndarray
    Bc: np.ndarray
    hpb: np.ndarray
    splits: np.ndarray
    warps: np.ndarray
    geometry: MaskGeometry
    top_k: np.ndarray | None = None
    index_heads: np.ndarray | int = 64
    index_head_dim: np.ndarray | int = 128
    index_e: np.ndarray | float = 1.0
    index_scale_block: int = 128
    index_Br: np.ndarray | int = 16
    index_chunk: np.ndarray | int = 8192

    @property
    def index_key_bytes(self):
        from memsim.tiling import index_key_bytes

        return index_key_bytes(self.index_head_dim, self.index_e, self.index_scale_block)

    @property
    def groups(self) -> np.ndarray:
        """(batch, head group) pairs: one per set of heads_per_block heads."""
        return self.B * (self.H // self.hpb)

    @property
    def dv_load(self) -> np.ndarray:
        """V elements loaded per key beside K: 0 under MLA (V is a slice of the latent)."""
        return np.where(self.mla, 0, self.Dv)

    def tiles(self) -> TileSums:
        return tile_sums(self.N, self.S, self.Br, self.Bc, self.geometry)


def from_problem(problem, tiling) -> Arrays:  # (AttentionProblem, Tiling)
    from memsim.algorithms.masks import geometry_of

    mask = problem.mask
    geometry = geometry_of(mask) if mask.kind != "topk" else None
    idx = problem.indexer
    a = lambda v: np.asarray([v], dtype=np.int64)  # noqa: E731
    return Arrays(
        B=a(problem.B), N=a(problem.N), S=a(problem.S), H=a(problem.H), K=a(problem.K),
        D=a(problem.D), Dv=a(problem.Dv), e=np.asarray([DTYPE_BYTES[problem.dtype]]),
        mla=np.asarray([problem.mla]), Br=a(tiling.block_q), Bc=a(tiling.block_kv),
        hpb=a(tiling.heads_per_block), splits=a(tiling.kv_splits), warps=a(tiling.warps),
        geometry=geometry, top_k=a(mask.top_k) if mask.top_k else None,
        index_heads=idx.heads if idx else 64, index_head_dim=idx.head_dim if idx else 128,
        index_e=DTYPE_BYTES[idx.dtype] if idx else DTYPE_BYTES["fp8"],
        index_scale_block=idx.scale_block if idx else 128,
        index_Br=max(tiling.index_block_q, 1),
        index_chunk=idx.logits_chunk if idx else 8192,
    )
