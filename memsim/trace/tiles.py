"""What every schedule generator shares: the problem and tiling as plain ints (:class:`Dims`),
the query tiles with their active key tiles (:func:`query_tiles`, from
:func:`memsim.geometry.tile_terms`), and the tensors under construction (:class:`Tensors`:
q, k, v, o and the logsumexp with their real layouts).

Imported by :mod:`memsim.trace.schedule` and by every ``memsim/trace/sched_*.py``; it
imports none of them (one-way: tiles ← sched_* ← schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.geometry import MaskGeometry, tile_terms
from memsim.trace.layout import Layout
from memsim.units import ACCUM_DTYPE, DTYPE_BYTES

F4 = DTYPE_BYTES[ACCUM_DTYPE]  # fp32 accumulators, logsumexp, partials, logits
INDEX_BYTES = DTYPE_BYTES["fp32"]  # int32 top-k indices: 4 bytes


@dataclass(frozen=True)
class Dims:
    """Problem and tiling as plain ints (docs/DESIGN.md §"Notation"). ``G``: head groups
    (H / heads_per_block); ``kv_div``: head groups per KV head; ``o = S − N``."""

    B: int
    N: int
    S: int
    H: int
    K: int
    D: int
    Dv: int
    e: float
    mla: bool
    Br: int
    Bc: int
    hpb: int
    splits: int
    warps: int
    top_k: int
    index_heads: int
    index_head_dim: int
    index_e: float
    index_scale_block: int
    index_Br: int
    geometry: MaskGeometry | None
    bwd_Br: int = 0          # the backward kernels' tiles (memsim.tiling.Tiling.backward_tiles)
    bwd_Bc: int = 0
    bwd_warps: int = 0
    sram_limit: int = 0      # the GPU's shared memory per block (0: not known)

    def backward(self) -> Dims:
        """These dims with the backward kernels' tiles in place of the forward's."""
        from dataclasses import replace

        return replace(self, Br=self.bwd_Br or self.Br, Bc=self.bwd_Bc or self.Bc,
                       warps=self.bwd_warps or self.warps)

    @property
    def G(self) -> int:
        return self.H // self.hpb

    @property
    def kv_div(self) -> int:
        return (self.H // self.K) // self.hpb

    @property
    def o(self) -> int:
        return self.S - self.N

    @property
    def dv_load(self) -> int:
        """V elements loaded per key beside K: 0 under MLA (V is a slice of the latent)."""
        return 0 if self.mla else self.Dv

    @property
    def key_tiles(self) -> int:
        return -(-self.S // self.Bc)


def dims_of(problem, tiling, sram_limit: int = 0) -> Dims:
    """:class:`Dims` of an AttentionProblem and its Tiling (``sram_limit``: the GPU's
    shared memory per block, where a kernel's own footprint depends on it)."""
    from memsim.geometry import geometry_of
    from memsim.problem import Indexer

    mask = problem.mask
    idx = problem.indexer or Indexer()  # the defaults are Indexer's, stated once
    return Dims(
        B=problem.B, N=problem.N, S=problem.S, H=problem.H, K=problem.K, D=problem.D,
        Dv=problem.Dv, e=DTYPE_BYTES[problem.dtype], mla=problem.mla, Br=tiling.block_q,
        Bc=tiling.block_kv, hpb=tiling.heads_per_block, splits=tiling.kv_splits,
        warps=tiling.warps, top_k=mask.top_k or 0,
        index_heads=idx.heads, index_head_dim=idx.head_dim, index_e=DTYPE_BYTES[idx.dtype],
        index_scale_block=idx.scale_block,
        index_Br=max(tiling.index_block_q, 1),
        geometry=geometry_of(mask) if mask.kind != "topk" else None,
        **dict(zip(("bwd_Br", "bwd_Bc", "bwd_warps"), tiling.backward_tiles, strict=True)),
        sram_limit=int(sram_limit),
    )


@dataclass(frozen=True)
class QueryTiles:
    """Per query tile a (arrays over a): first row, rows, and its active key tiles
    [f_lo, f_hi], split into ``n_full`` full tiles and at most one ragged last tile."""

    first_row: np.ndarray
    rows: np.ndarray
    f_lo: np.ndarray
    f_hi: np.ndarray
    n_full: np.ndarray
    ragged: np.ndarray        # 1 if the last active key tile has fewer than Bc keys
    ragged_keys: int          # keys of the ragged last key tile (S mod Bc), 0 if none

    @property
    def count(self) -> int:
        return len(self.rows)


def query_tiles(N: int, S: int, Br: int, Bc: int, g: MaskGeometry) -> QueryTiles:
    """The query tiles of N queries (the last N of S positions) and their key tiles."""
    a = np.arange(-(-N // Br), dtype=np.int64)
    first = a * Br
    rows = np.minimum(Br, N - first)
    lo = (S - N) + first
    f_lo, f_hi, n, _ = tile_terms(lo, lo + rows - 1, np.int64(S), np.int64(Bc), g)
    return _split_ragged(first, rows, f_lo, f_hi, n, S, Bc)


@dataclass(frozen=True)
class KeyTiles:
    """The key tiles j that some query tile visits (arrays over j, ascending), with the
    query tiles that visit each: ``a0 ≤ a < a1`` (contiguous: every mask's active key range
    moves forward with the query tile); tiles ``a ≥ first`` start at j (their first visit)."""

    j: np.ndarray
    keys: np.ndarray          # keys in tile j: Bc, or S mod Bc for the ragged last tile
    a0: np.ndarray
    a1: np.ndarray
    first: np.ndarray


def key_tiles(qt: QueryTiles, S: int, Bc: int) -> KeyTiles:
    """Invert :func:`query_tiles`: per key tile, the range of query tiles that visit it."""
    j = np.arange(int(qt.f_lo.min()), int(qt.f_hi.max()) + 1)
    a0 = np.searchsorted(qt.f_hi, j, "left")     # first tile whose range reaches j
    a1 = np.searchsorted(qt.f_lo, j, "right")    # one past the last tile starting ≤ j
    first = np.searchsorted(qt.f_lo, j, "left")  # tiles ≥ first start at j: first touch
    last = -(-S // Bc) - 1
    keys = np.where((j == last) & (S % Bc > 0), S - j * Bc, Bc)
    return KeyTiles(j, keys, a0, a1, first)


def _split_ragged(first, rows, f_lo, f_hi, n, S, Bc) -> QueryTiles:
    last = -(-S // Bc) - 1
    ragged_keys = S - last * Bc if S % Bc else 0
    ragged = ((f_hi == last) & (ragged_keys > 0)).astype(np.int64)
    return QueryTiles(first, rows, f_lo, f_hi, n - ragged, ragged, int(ragged_keys))


@dataclass
class Tensors:
    """The tensors of a schedule under construction: ``layout`` plus ids by name."""

    d: Dims
    layout: Layout
    ids: dict[str, int]

    def add(self, name: str, shape: tuple[int, ...], elem_bytes: float, role: str,
            **axes) -> None:
        """Allocate tensor ``name`` unless the layout holds it already (a forward and a
        backward pass share q, k, v, o and the logsumexp)."""
        if name not in self.ids:
            self.ids[name] = self.layout.add(name, shape, elem_bytes, role, **axes)

    def id(self, name: str) -> int:
        return self.ids[name]

    def addr(self, name: str, *index) -> np.ndarray:
        """Byte address of an element of tensor ``name`` in the template instance."""
        return self.layout[self.ids[name]].address(*index)

    def stride(self, name: str, axis: int) -> int:
        """Bytes between consecutive indices of ``axis``."""
        t = self.layout[self.ids[name]]
        return int(t.strides_elems[axis] * t.elem_bytes)


def qkv_tensors(d: Dims, layout: Layout) -> Tensors:
    """q (B, N, H, D), k (B, S, K, D), v (B, S, K, Dv) — no v under MLA, whose V is the
    first Dv elements of each latent row of k — and o (B, N, H, Dv)."""
    t = Tensors(d, layout, {x.name: i for i, x in enumerate(layout.tensors)})
    t.add("q", (d.B, d.N, d.H, d.D), d.e, "input", head_axis=2, heads_per_group=d.hpb)
    t.add("k", (d.B, d.S, d.K, d.D), d.e, "input", head_axis=2, group_divisor=d.kv_div)
    if not d.mla:
        t.add("v", (d.B, d.S, d.K, d.Dv), d.e, "input", head_axis=2, group_divisor=d.kv_div)
    t.add("o", (d.B, d.N, d.H, d.Dv), d.e, "output", head_axis=2, heads_per_group=d.hpb)
    return t


def add_lse(t: Tensors, name: str = "lse", role: str = "workspace") -> None:
    """Logsumexp (B, H, N) fp32 (kept for the backward pass)."""
    d = t.d
    t.add(name, (d.B, d.H, d.N), F4, role, head_axis=1, heads_per_group=d.hpb)
