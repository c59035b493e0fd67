"""Block-level schedules of every algorithm, generated from the Tiling and the mask geometry.

:func:`build_schedule` returns a :class:`Schedule`: the tensors (real layouts, base
addresses) and, per kernel launch, the template blocks' programs
(:class:`memsim.trace.program.KernelProgram`). The generators live one per algorithm in
``memsim/trace/sched_*.py``; each module docstring lists the global accesses of each
block in order. They walk the tiles with :func:`memsim.geometry.tile_terms` — which key
tiles each query tile visits — and never call the analytic cost formulas, so that trace
and analytic counts are two independent derivations from the same geometry.

Grid order (launch order of blocks) is that of FlashAttention-2's kernels: the template
block index varies fastest, then the batch, then the head group
(``grid = (tiles, B, H / heads_per_block)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.algorithms import get
from memsim.errors import InputError
from memsim.geometry import MaskGeometry, tile_terms
from memsim.trace.layout import Layout
from memsim.trace.program import KernelProgram
from memsim.units import ACCUM_DTYPE, DTYPE_BYTES

F4 = DTYPE_BYTES[ACCUM_DTYPE]  # fp32 accumulators, logsumexp, partials, logits
INDEX_BYTES = DTYPE_BYTES["fp32"]  # int32 top-k indices: 4 bytes


@dataclass(frozen=True)
class Dims:
    """Problem and tiling as plain ints (DESIGN.md notation). ``G``: head groups
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


def dims_of(problem, tiling) -> Dims:
    """:class:`Dims` of an AttentionProblem and its Tiling."""
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


def _split_ragged(first, rows, f_lo, f_hi, n, S, Bc) -> QueryTiles:
    last = -(-S // Bc) - 1
    ragged_keys = S - last * Bc if S % Bc else 0
    ragged = ((f_hi == last) & (ragged_keys > 0)).astype(np.int64)
    return QueryTiles(first, rows, f_lo, f_hi, n - ragged, ragged, int(ragged_keys))


@dataclass
class Schedule:
    """Tensors and kernels of one attention call; ``G_sim`` head groups are simulated
    (all ``G`` unless a heads sample was asked for)."""

    algorithm: str
    dims: Dims
    layout: Layout
    kernels: list[KernelProgram]
    G_sim: int

    def instances(self, kernel: KernelProgram, simulated: bool = True) -> int:
        """(batch, head group) instances the grid repeats the template blocks over."""
        if not kernel.per_head:
            return self.dims.B
        return self.dims.B * (self.G_sim if simulated else self.dims.G)

    def scale(self, kernel: KernelProgram) -> float:
        """Factor from the simulated head groups to all of them (1 without sampling)."""
        return 1.0 if not kernel.per_head else self.dims.G / self.G_sim

    def blocks(self, simulated: bool = True) -> int:
        return sum(k.template_blocks * self.instances(k, simulated) for k in self.kernels)

    def events(self) -> int:
        """Tile events the simulation will process (exact)."""
        return sum(k.events_per_instance() * self.instances(k) for k in self.kernels)


def builders() -> dict:
    """The schedule builders by name: what an algorithm's ``SCHEDULE`` names."""
    from memsim.trace import sched_dsa, sched_flash1, sched_flash2, sched_standard

    return {
        "standard": sched_standard.build,
        "flash1": sched_flash1.build,
        "flash2": sched_flash2.build,
        "flash2_decode": sched_flash2.build_decode,
        "dsa": sched_dsa.build,
    }


def build_schedule(problem, tiling, algorithm: str, heads_sample: int | None = None
                   ) -> Schedule:
    """Tensors and block programs of ``algorithm`` on ``problem`` with ``tiling``.

    ``heads_sample``: simulate only the first ``heads_sample`` query heads (a multiple of
    heads_per_block); counts are scaled to all heads by the caller.
    """
    if problem.pass_ != "forward":
        raise InputError("pass", problem.pass_, "is not simulated by the trace model "
                         "(forward only); use `memsim attention` for the analytic backward")
    d = dims_of(problem, tiling)
    G_sim = d.G
    if heads_sample is not None:
        if not 1 <= heads_sample <= d.H or heads_sample % d.hpb:
            raise InputError("heads_sample", heads_sample,
                             f"must be a multiple of heads_per_block={d.hpb} between "
                             f"{d.hpb} and heads={d.H}")
        G_sim = heads_sample // d.hpb
    name = get(algorithm).SCHEDULE
    if name not in builders():
        raise InputError("algorithm", algorithm,
                         f"has no trace schedule (known: {', '.join(builders())})")
    layout = Layout()
    kernels = builders()[name](d, layout)
    return Schedule(algorithm, d, layout, kernels, G_sim)


@dataclass
class Tensors:
    """The tensors of a schedule under construction: ``layout`` plus ids by name."""

    d: Dims
    layout: Layout
    ids: dict[str, int]

    def add(self, name: str, shape: tuple[int, ...], elem_bytes: float, role: str,
            **axes) -> None:
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
    t = Tensors(d, layout, {})
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
