"""Problem and tiling as numpy arrays: the common input of every algorithm's cost function.

All fields broadcast together, so one call evaluates many configurations (docs/DESIGN.md
§"Three models that must agree": "vectorised over numpy arrays"). :func:`from_problem`
builds the size-1 case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.algorithms._tiles import INDEX_BLOCK_Q
from memsim.geometry import MaskGeometry, TileSums, tile_sums
from memsim.problem import Indexer
from memsim.units import DTYPE_BYTES, scaled_row_bytes

_INDEXER = Indexer()  # the indexer's defaults, stated once (memsim.problem.Indexer)


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
    index_heads: np.ndarray | int = _INDEXER.heads
    index_head_dim: np.ndarray | int = _INDEXER.head_dim
    index_e: np.ndarray | float = DTYPE_BYTES[_INDEXER.dtype]
    index_scale_block: int = _INDEXER.scale_block
    index_Br: np.ndarray | int = INDEX_BLOCK_Q
    index_chunk: np.ndarray | int = _INDEXER.logits_chunk
    slots: np.ndarray | None = None
    l2_bytes: float = 0.0
    bwd_Br: np.ndarray | None = None      # backward kernels' own tiles (None: the forward's)
    bwd_Bc: np.ndarray | None = None
    bwd_warps: np.ndarray | None = None
    bwd_slots: np.ndarray | None = None   # backward kernel's blocks resident at once

    def backward(self) -> Arrays:
        """These arrays with the backward kernels' tiles (Br, Bc, warps) in place of the
        forward's (FA-2's backward has its own launch templates: memsim.tiling)."""
        from dataclasses import replace

        if self.bwd_Br is None:
            return self
        return replace(self, Br=self.bwd_Br, Bc=self.bwd_Bc, warps=self.bwd_warps,
                       slots=self.slots if self.bwd_slots is None else self.bwd_slots,
                       bwd_Br=None, bwd_Bc=None, bwd_warps=None, bwd_slots=None)

    def __post_init__(self) -> None:
        # B in float64: every count is a product that starts with B (or with groups =
        # B·(H // hpb)), so it is evaluated in float64 and cannot wrap around int64 however
        # large the sizes (memsim/limits.py); exact below 2^53.
        object.__setattr__(self, "B", np.asarray(self.B, dtype=np.float64))

    @property
    def index_key_bytes(self):
        return scaled_row_bytes(self.index_head_dim, self.index_e, self.index_scale_block)

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

    def hbm_key_loads(self, t: TileSums, bytes_per_key, Br=None, geometry=None):
        """Keys whose K/V bytes reach HBM when every query tile streams its active key tiles.

        Without ``slots`` (the analytic default) every load reaches HBM: ``t.key_loads``.
        With ``slots`` (blocks resident at once, SMs × blocks per SM) and ``l2_bytes``, a
        closed-form L2 estimate: blocks launch query-tile-first, so the blocks of one head
        group in flight stream the same K/V tiles in step and L2 serves all but the first
        read of each tile — a wave of them reads the union of its tiles once, which is the
        tile sum with a query tile ``slots`` times taller. Across waves the group's K/V
        stays in L2 only if the K/V of every group in flight fits: then the group reads
        its union once. The trace-driven model checks this estimate.
        """
        if self.slots is None:
            return t.key_loads
        Br = self.Br if Br is None else Br
        geometry = self.geometry if geometry is None else geometry
        in_wave = np.minimum(np.maximum(self.slots, 1), t.q_tiles)
        per_wave = tile_sums(self.N, self.S, Br * in_wave, self.Bc, geometry).key_loads
        groups_in_flight = np.clip(self.slots // np.maximum(t.q_tiles, 1), 1,
                                   np.maximum(self.groups, 1))
        fits = groups_in_flight * t.union_keys * bytes_per_key <= self.l2_bytes
        return np.where(fits, t.union_keys, np.minimum(per_wave, t.key_loads))


    def hbm_query_rows(self, t: TileSums, bytes_per_row):
        """Query rows whose per-row bytes (Q, dO, logsumexp, Δ, the fp32 dQ accumulator)
        reach HBM when every key tile's block streams its active query tiles (FA-2's
        backward, grid = (key tiles, B, head groups)): :meth:`hbm_key_loads` with the roles
        of queries and keys exchanged.

        Without ``slots`` every load reaches HBM: ``t.row_pairs``. With them, the blocks of
        one head group in flight walk the same query tiles in step, so a wave of them reads
        the rows of the union of their query tiles once — the row sum with a key tile
        ``slots`` times wider; if the query-side rows of every group in flight fit in L2,
        each group reads its N rows once. The trace-driven model checks this estimate.
        """
        if self.slots is None:
            return t.row_pairs
        in_wave = np.minimum(np.maximum(self.slots, 1), np.maximum(t.union_tiles, 1))
        per_wave = tile_sums(self.N, self.S, self.Br, self.Bc * in_wave,
                             self.geometry).row_pairs
        groups_in_flight = np.clip(self.slots // np.maximum(t.union_tiles, 1), 1,
                                   np.maximum(self.groups, 1))
        fits = groups_in_flight * self.N * bytes_per_row <= self.l2_bytes
        return np.where(fits, self.N, np.minimum(per_wave, t.row_pairs))


def from_problem(problem, tiling, gpu=None) -> Arrays:  # (AttentionProblem, Tiling, GPU)
    """Size-1 arrays of ``problem`` under ``tiling``; with ``gpu``, HBM bytes use the L2
    reuse estimate of :meth:`Arrays.hbm_key_loads` (occupancy and L2 size from the GPU)."""
    from memsim.geometry import geometry_of

    mask = problem.mask
    geometry = geometry_of(mask) if mask.kind != "topk" else None
    idx = problem.indexer or Indexer()  # the defaults are Indexer's, stated once
    a = lambda v: np.asarray([v], dtype=np.int64)  # noqa: E731
    return Arrays(
        B=a(problem.B), N=a(problem.N), S=a(problem.S), H=a(problem.H), K=a(problem.K),
        D=a(problem.D), Dv=a(problem.Dv), e=np.asarray([DTYPE_BYTES[problem.dtype]]),
        mla=np.asarray([problem.mla]), Br=a(tiling.block_q), Bc=a(tiling.block_kv),
        hpb=a(tiling.heads_per_block), splits=a(tiling.kv_splits), warps=a(tiling.warps),
        geometry=geometry, top_k=a(mask.top_k) if mask.top_k else None,
        index_heads=idx.heads, index_head_dim=idx.head_dim, index_e=DTYPE_BYTES[idx.dtype],
        index_scale_block=idx.scale_block, index_Br=max(tiling.index_block_q, 1),
        index_chunk=idx.logits_chunk,
        slots=None if gpu is None else a(gpu.spec.sm_count * max(tiling.blocks_per_sm(gpu), 1)),
        l2_bytes=0.0 if gpu is None else gpu.l2_dram_capacity_bytes,
        **_backward_tiles(tiling, a, gpu),
    )


def _backward_tiles(tiling, a, gpu=None) -> dict:
    """bwd_Br, bwd_Bc, bwd_warps where the Tiling sets backward tiles of its own (FA-2's
    launch templates) and, with ``gpu``, bwd_slots: SMs × the resident blocks of FA-2's
    dq/dk/dv kernel (its shared memory and threads, memsim.algorithms._tiles)."""
    if not (tiling.backward_block_q or tiling.backward_block_kv or tiling.backward_threads):
        return {}
    from memsim.algorithms._tiles import blocks_per_sm, fa2_backward_kernel_sram_bytes

    br, bc, warps = tiling.backward_tiles
    out = {"bwd_Br": a(br), "bwd_Bc": a(bc), "bwd_warps": a(warps)}
    if gpu is not None:
        sram = fa2_backward_kernel_sram_bytes(br, bc, tiling.head_dim, tiling.head_dim_v,
                                              tiling.elem_bytes,
                                              gpu.spec.shared_memory_per_block_max_bytes)
        resident = blocks_per_sm(gpu, sram, warps * 32, tiling.registers_per_thread)
        out["bwd_slots"] = a(gpu.spec.sm_count * max(int(resident), 1))
    return out
