"""What every memsim kernel shares: storage dtypes, float32 literals, the mask as
compile-time constants, the key range a query sees, launches, buffers and the op tally.

Conventions of every kernel in this package (docs/DESIGN.md §"Notation"):

- ``q: (B, N, H, D)``, ``k: (B, S, K, D)``, ``v: (B, S, K, Dv)``, ``o: (B, N, H, Dv)`` at the
  storage dtype (fp32 or fp16); softmax statistics (logsumexp, ℓ, m) are fp32 ``(B, H, N)``.
- Query row i sits at position p = S − N + i (memsim.problem). Every mask of memsim shows
  one row a contiguous key range [jlo(p), jhi(p)] (:func:`row_key_range`); the keys seen by
  a query tile with positions lo..hi are [jlo(lo), jhi(hi)] (memsim.geometry.key_range).
- Arithmetic is fp32 on CUDA cores; every float literal is a float32 constant so the inner
  loops do not silently run in float64.
- Each kernel takes a trailing ``ops`` argument, an int64 array of :data:`OPS_SLOTS`; when
  built with ``count=True`` every thread tallies the multiply-adds and exponentials it
  executes, inside the loops that execute them, and adds its tally to ``ops`` once at the
  end. Built with ``count=False`` the tally is compiled away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32
from numba.core.types import float16

from memsim.errors import InputError
from memsim.geometry import geometry_of
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import Tiling
from memsim.units import DTYPE_BYTES

# ---- dtypes and literals --------------------------------------------------------------

#: Storage dtypes the kernels support: numpy has no bfloat16 and Numba no fp8.
STORAGE_DTYPES: dict[str, np.dtype] = {"fp32": np.dtype(np.float32),
                                       "fp16": np.dtype(np.float16)}
F32 = np.dtype(np.float32)   # accumulators, softmax statistics, partials, logits
I32 = np.dtype(np.int32)     # top-k indices

ZERO = float32(0.0)
ONE = float32(1.0)
NEG_INF = float32(-math.inf)

#: Slots of the ``ops`` tally array.
OPS_MATMUL_FLOPS, OPS_EXP = 0, 1
OPS_SLOTS = 2


def storage_dtype(dtype: str) -> np.dtype:
    """The numpy storage dtype of a memsim dtype name; fp32 and fp16 only."""
    try:
        return STORAGE_DTYPES[dtype]
    except KeyError:
        raise InputError("dtype", dtype, "must be fp32 or fp16 for memsim's Numba kernels "
                         "(numpy has no bfloat16, Numba no fp8)") from None


def numba_storage(elem_bytes: float):
    """The Numba type of shared tiles for a storage width in bytes (4 → float32, 2 → float16)."""
    if elem_bytes == DTYPE_BYTES["fp32"]:
        return float32
    if elem_bytes == DTYPE_BYTES["fp16"]:
        return float16
    raise InputError("elem_bytes", elem_bytes, "must be 4 (fp32) or 2 (fp16) for the kernels")


def softmax_scale(head_dim: int):
    """1/√D as a float32 literal."""
    return float32(1.0 / math.sqrt(head_dim))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def rows_per_thread(tiling: Tiling) -> int:
    """Rows each thread owns when one thread owns whole query rows: ⌈rows / threads⌉."""
    return ceil_div(tiling.rows, tiling.threads)


# ---- masks ----------------------------------------------------------------------------

FULL, CAUSAL, WINDOW, BAND, CHUNK = range(5)
_KIND_CODES = {"full": FULL, "causal": CAUSAL, "window": WINDOW, "band": BAND, "chunk": CHUNK}


@dataclass(frozen=True)
class MaskSpec:
    """A dense mask as compile-time integers: ``kind`` (FULL … CHUNK), causal window ``w``,
    bidirectional half-width ``half``, chunk ``c`` (tokens)."""

    kind: int
    w: int = 0
    half: int = 0
    c: int = 1


def mask_spec(mask: Mask) -> MaskSpec:
    """The :class:`MaskSpec` of a dense memsim mask (top-k masks use the causal one)."""
    if mask.kind == "topk":
        return MaskSpec(CAUSAL)
    g = geometry_of(mask)
    return MaskSpec(_KIND_CODES[g.kind], w=int(g.w), half=int(g.half), c=int(g.c))


@cuda.jit(device=True)
def row_key_range(kind, w, half, c, p, n_kv):
    """[jlo, jhi] of the keys a query at position ``p`` sees among ``n_kv`` keys."""
    if kind == FULL:
        return 0, n_kv - 1
    if kind == CAUSAL:
        return 0, p
    if kind == WINDOW:
        return max(0, p - w + 1), p
    if kind == BAND:
        return max(0, p - half), min(n_kv - 1, p + half)
    return (p // c) * c, p


@cuda.jit(device=True)
def skewed_dot(a, row_a, b, row_b, n, start):
    """Σ_d a[row_a, d]·b[row_b, d] over d < n in fp32, starting at d = ``start`` and wrapping
    round, so that the threads of a warp (different rows or keys) hit different banks of
    shared memory: every kernel's S = QKᵀ and the DSA indexer's q·k."""
    dot = ZERO
    d = start
    for _ in range(n):
        dot += float32(a[row_a, d]) * float32(b[row_b, d])
        d += 1
        if d == n:
            d = 0
    return dot


@cuda.jit(device=True)
def online_softmax_step(m_old, m_tile):
    """The online-softmax update of the running max, shared by flash1, flash2 and the DSA
    sparse kernel (FA-2 Alg. 1 lines 8–10; FA-1 Alg. 1 line 11): returns ``(m_new, m_use,
    alpha)`` with m_new = max(m_old, m_tile), the shift m_use to subtract before every
    exponential, and alpha = exp(m_old − m_use), the factor that rescales what was summed
    under m_old. While every score seen is −∞ (a row whose visible keys lie in later
    tiles) m_use is 0, not −∞: exp(−∞ − 0) = 0, where exp(−∞ − (−∞)) would be NaN."""
    m_new = max(m_old, m_tile)
    m_use = m_new if m_new != NEG_INF else ZERO
    return m_new, m_use, float32(math.exp(m_old - m_use))


@cuda.jit(device=True)
def online_softmax_update(acc, m, ell, slot, s, nk, m_tile, pv_sh, dv_count):
    """FA-2 Alg. 1 lines 8–10 for one query row (``slot``) and one tile of ``nk`` scores
    ``s`` whose max is ``m_tile``: rescale the row's fp32 accumulator O and sum ℓ by alpha,
    add exp(s − m)·V, store the new m and ℓ (flash2 and the DSA sparse kernel). ``pv_sh``:
    the V tile, or under MLA the K tile, whose first ``dv_count`` columns are V. The caller
    tallies nk·Dv multiply-adds and nk + 1 exponentials."""
    m_new, m_use, alpha = online_softmax_step(m[slot], m_tile)
    l_new = ell[slot] * alpha
    for dv in range(dv_count):
        acc[slot, dv] *= alpha
    for c in range(nk):
        pc = float32(math.exp(s[c] - m_use))
        l_new += pc
        for dv in range(dv_count):
            acc[slot, dv] += pc * float32(pv_sh[c, dv])
    m[slot] = m_new
    ell[slot] = l_new


@cuda.jit(device=True)
def tile_key_range(kind, w, half, c, lo, hi, n_kv):
    """[kmin, kmax] of the keys query positions lo..hi see (ranges are monotone in p)."""
    kmin, _ = row_key_range(kind, w, half, c, lo, n_kv)
    _, kmax = row_key_range(kind, w, half, c, hi, n_kv)
    return kmin, kmax


def key_range_host(spec: MaskSpec, lo: int, hi: int, n_kv: int) -> tuple[int, int]:
    """Host twin of :func:`tile_key_range` (launch sizes, references)."""
    def one(p):
        if spec.kind == FULL:
            return 0, n_kv - 1
        if spec.kind == CAUSAL:
            return 0, p
        if spec.kind == WINDOW:
            return max(0, p - spec.w + 1), p
        if spec.kind == BAND:
            return max(0, p - spec.half), min(n_kv - 1, p + spec.half)
        return (p // spec.c) * spec.c, p
    return one(lo)[0], one(hi)[1]


# ---- launches and buffers --------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel[grid, threads](*buffers[args], *scalars, ops)``."""

    name: str
    kernel: Callable
    grid: tuple[int, ...]
    threads: int
    args: tuple[str, ...]
    scalars: tuple[int, ...] = ()

    def __call__(self, buffers: dict, ops) -> None:
        arrays = [buffers[n] for n in self.args]
        self.kernel[self.grid, self.threads](*arrays, *self.scalars, ops)


def run_launches(launches: list[Launch], buffers: dict, ops=None) -> None:
    """Run the launches in order; ``ops`` defaults to a scratch tally."""
    ops = np.zeros(OPS_SLOTS, np.int64) if ops is None else ops
    for launch in launches:
        launch(buffers, ops)


def random_tensor(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype,
                  scale: float = 1.0) -> np.ndarray:
    """Standard normal × ``scale`` at ``dtype``, with no exact zeros (an unread element
    must not pass for a read one)."""
    x = rng.standard_normal(shape) * scale
    x = np.where(np.abs(x) < 1e-3, np.copysign(1e-3, x), x)
    return x.astype(dtype)


def poisoned(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An output buffer every element of which fails a check until it is written:
    NaN for floats, −1 for integers (an invalid key index)."""
    fill = -1 if np.issubdtype(dtype, np.integer) else np.nan
    return np.full(shape, fill, dtype=dtype)


def attention_inputs(problem: AttentionProblem, rng: np.random.Generator,
                     logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random q, k, v at the storage dtype (``v`` omitted under MLA: V = K[..., :Dv]).

    ``logit_scale`` multiplies q and k, so the logits grow by its square.
    """
    p = problem
    dt = storage_dtype(p.dtype)
    out = {"q": random_tensor(rng, (p.B, p.N, p.H, p.D), dt, logit_scale),
           "k": random_tensor(rng, (p.B, p.S, p.K, p.D), dt, logit_scale)}
    if not p.mla:
        out["v"] = random_tensor(rng, (p.B, p.S, p.K, p.Dv), dt)
    return out


def check_tiling(problem: AttentionProblem, tiling: Tiling, algorithm: str) -> None:
    """Raise :class:`InputError` if ``tiling`` was not made for ``problem``."""
    p = problem
    if tiling.algorithm != algorithm:
        raise InputError("tiling.algorithm", tiling.algorithm, f"must be {algorithm!r}")
    if (tiling.head_dim, tiling.head_dim_v, tiling.mla) != (p.D, p.Dv, p.mla):
        raise InputError("tiling", tiling.describe(),
                         f"was made for D={tiling.head_dim}, Dv={tiling.head_dim_v}, "
                         f"mla={tiling.mla}, not this problem's D={p.D}, Dv={p.Dv}, "
                         f"mla={p.mla}")
    if tiling.elem_bytes != storage_dtype(p.dtype).itemsize:
        raise InputError("tiling.elem_bytes", tiling.elem_bytes,
                         f"must be the width of dtype={p.dtype}")
    if (p.H // p.K) % tiling.heads_per_block:
        raise InputError("heads_per_block", tiling.heads_per_block,
                         f"must divide the query heads per KV head ({p.H // p.K})")
    if tiling.threads > 1024:
        raise InputError("threads", tiling.threads, "must be at most 1024 per block")
