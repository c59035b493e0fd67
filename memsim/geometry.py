"""Exact counts of the tiles a mask leaves active, in closed form and vectorised.

A block-sparse attention kernel (FlashAttention Prop. 4) walks, for each query tile, the
key/value tiles that hold at least one visible key, and skips the rest. Every algorithm's
traffic and FLOPs are sums over those (query tile, key tile) pairs. This module gives the
sums exactly — diagonal and ragged tiles included — without a loop over tiles, so that
N = 10⁹ costs the same as N = 97.

Set-up (docs/DESIGN.md §"Notation"). Query row i (0 ≤ i < N) sits at position p = o + i with
o = S − N. Query tile a holds rows [a·Br, min((a+1)·Br, N)); key tile b holds keys
[b·Bc, min((b+1)·Bc, S)). For every mask the keys visible to the rows of one query tile
form one contiguous range [kmin, kmax] (each row sees a contiguous range, and consecutive
rows' ranges overlap or touch), so the active key tiles of query tile a are
b ∈ [⌊kmin/Bc⌋, ⌊kmax/Bc⌋], all of them active.

Sums over the full query tiles reduce to sums of ⌊(α·a + β)/m⌋, which
:func:`floor_sum` evaluates in O(log) vectorised steps (the Euclid-like algorithm of
AtCoder Library's ``floor_sum``). The ragged last tile is added on its own. Chunked masks
whose chunk is not a multiple of Bc have no such closed form; they fall back to an exact
per-tile sum (:func:`tile_sums_enumerated`), which is also the reference the tests hold the
closed form to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from memsim.problem import Mask

I64 = np.int64

#: Mask kinds with a tile geometry (every key range contiguous); "topk" has none.
DENSE_MASKS = ("full", "causal", "window", "chunk")


def _i(x: object) -> np.ndarray:
    return np.asarray(x, dtype=I64)


def floor_sum(n: object, m: object, a: object, b: object) -> np.ndarray:
    """Σ_{i=0}^{n-1} ⌊(a·i + b) / m⌋ for n ≥ 0, m ≥ 1, a ≥ 0, b ≥ 0, elementwise.

    Returns float64 (exact while the result is below 2⁵³); intermediates stay in int64.
    """
    n, m, a, b = np.broadcast_arrays(_i(n), _i(m), _i(a), _i(b))
    n, m, a, b = n.copy(), m.copy(), a.copy(), b.copy()
    ans = np.zeros(n.shape, dtype=np.float64)
    active = n > 0
    while np.any(active):
        q = np.where(active, a // m, 0)
        ans += np.where(active, (n.astype(np.float64) * (n - 1) / 2) * q, 0.0)
        a = np.where(active, a % m, a)
        q = np.where(active, b // m, 0)
        ans += np.where(active, n.astype(np.float64) * q, 0.0)
        b = np.where(active, b % m, b)
        y_max = a * n + b
        active &= y_max >= m
        n_next, b_next = y_max // m, y_max % m
        n = np.where(active, n_next, n)
        b = np.where(active, b_next, b)
        m, a = np.where(active, a, m), np.where(active, m, a)
    return ans


def _ceil_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -((-x) // y)


@dataclass(frozen=True)
class MaskGeometry:
    """Mask parameters in the form the counting needs (arrays broadcast together).

    ``kind``: 'full', 'causal', 'window' (causal sliding window ``w``), 'band'
    (bidirectional window: |p − j| ≤ ``half``), 'chunk' (chunk ``c``).
    """

    kind: str
    w: np.ndarray | int = 0
    half: np.ndarray | int = 0
    c: np.ndarray | int = 1


def geometry_of(mask: Mask) -> MaskGeometry:
    """The :class:`MaskGeometry` of a dense mask (top-k masks have none: see dsa)."""
    from memsim.errors import InputError

    kind = mask.kind
    if kind == "window":
        if mask.causal:
            return MaskGeometry("window", w=mask.window)
        return MaskGeometry("band", half=mask.window // 2)
    if kind == "chunk":
        return MaskGeometry("chunk", c=mask.chunk)
    if kind in ("full", "causal"):
        return MaskGeometry(kind)
    raise InputError("mask", mask.describe(), "is a top-k mask: only the dsa algorithm runs it")


@dataclass(frozen=True)
class TileSums:
    """Sums over query tiles a of per-tile quantities, per (batch, head group).

    - ``q_tiles``: T_r = ⌈N/Br⌉.
    - ``pairs``: Σ n_a, active (query tile, key tile) pairs.
    - ``row_pairs``: Σ r_a·n_a, rows × active key tiles (re-reads of Q, O in FA-1).
    - ``key_loads``: Σ keys_a, valid keys in the active key tiles of every query tile.
    - ``area``: Σ r_a·keys_a, score entries computed (masked entries of active tiles too).
    - ``union_keys``: valid keys in the union of all active key tiles (read once).
    - ``union_tiles``: key tiles in that union.
    """

    q_tiles: np.ndarray
    pairs: np.ndarray
    row_pairs: np.ndarray
    key_loads: np.ndarray
    area: np.ndarray
    union_keys: np.ndarray
    union_tiles: np.ndarray


def key_range(lo: np.ndarray, hi: np.ndarray, S: np.ndarray, g: MaskGeometry):
    """[kmin, kmax] of keys visible to query positions lo..hi (contiguous, see module doc)."""
    zero = np.zeros_like(lo)
    last = S - 1
    if g.kind == "full":
        return zero, np.broadcast_to(last, lo.shape).copy()
    if g.kind == "causal":
        return zero, hi
    if g.kind == "window":
        return np.maximum(zero, lo - (_i(g.w) - 1)), hi
    if g.kind == "band":
        h = _i(g.half)
        return np.maximum(zero, lo - h), np.minimum(last, hi + h)
    if g.kind == "chunk":
        c = _i(g.c)
        return (lo // c) * c, hi
    raise ValueError(f"unknown mask kind {g.kind!r}")


def tile_terms(lo, hi, S, Bc, g: MaskGeometry):
    """Per query tile with positions lo..hi: (first key tile, last key tile, n, keys)."""
    kmin, kmax = key_range(lo, hi, S, g)
    f_lo, f_hi = kmin // Bc, kmax // Bc
    keys = np.minimum(S, (f_hi + 1) * Bc) - f_lo * Bc
    return f_lo, f_hi, f_hi - f_lo + 1, keys


def tile_sums(N, S, Br, Bc, g: MaskGeometry) -> TileSums:
    """Exact :class:`TileSums` in closed form, elementwise over broadcast arrays."""
    N, S, Br, Bc = np.broadcast_arrays(_i(N), _i(S), _i(Br), _i(Bc))
    if g.kind == "chunk" and np.any(_i(g.c) % Bc != 0):
        return tile_sums_enumerated(N, S, Br, Bc, g)
    o = S - N
    Tc = _ceil_div(S, Bc)
    Tf = N // Br                     # full query tiles
    r_last = N - Tf * Br             # rows of the ragged last tile (0 if none)

    # Σ over full tiles of f_hi(a) = ⌊kmax_a / Bc⌋, kmax_a = min(S−1, x0 + a·Br).
    if g.kind == "full":
        sum_f_hi = Tf * (Tc - 1).astype(np.float64)
        n_last_tile = Tf.astype(np.float64)
    else:
        h_right = _i(g.half) if g.kind == "band" else _i(0)
        x0 = o + h_right + Br - 1
        a_star = np.clip((S - 1 - x0) // Br + 1, 0, Tf)
        sum_f_hi = floor_sum(a_star, Bc, Br, x0) + (Tf - a_star) * ((S - 1) // Bc)
        # tiles whose last active key tile is the ragged last key tile
        a_tc = np.clip(_ceil_div((Tc - 1) * Bc - x0, Br), 0, Tf)
        n_last_tile = (Tf - a_tc).astype(np.float64)

    # Σ over full tiles of f_lo(a) = ⌊kmin_a / Bc⌋.
    if g.kind in ("full", "causal"):
        sum_f_lo = np.zeros(N.shape)
    elif g.kind in ("window", "band"):
        h_left = (_i(g.w) - 1) if g.kind == "window" else _i(g.half)
        a0 = np.clip(_ceil_div(h_left - o, Br), 0, Tf)
        sum_f_lo = floor_sum(Tf - a0, Bc, Br, o - h_left + a0 * Br)
    else:  # chunk with C a multiple of Bc: f_lo = (C/Bc)·⌊(o + a·Br)/C⌋
        c = _i(g.c)
        sum_f_lo = (c // Bc) * floor_sum(Tf, c, Br, o)

    pairs_full = sum_f_hi - sum_f_lo + Tf
    keys_full = Bc * (sum_f_hi + Tf) - n_last_tile * (Tc * Bc - S) - Bc * sum_f_lo

    # The ragged last tile: positions o + Tf·Br .. S − 1.
    has_last = r_last > 0
    lo_l, hi_l = o + Tf * Br, S - 1
    f_lo_l, f_hi_l, n_l, keys_l = tile_terms(lo_l, hi_l, S, Bc, g)
    n_l = np.where(has_last, n_l, 0)
    keys_l = np.where(has_last, keys_l, 0)

    # Union of active key tiles: from the first tile's f_lo to the last tile's f_hi.
    first_lo, first_hi = o, o + np.minimum(Br, N) - 1
    f_lo_first = tile_terms(first_lo, first_hi, S, Bc, g)[0]
    f_hi_final = tile_terms(np.maximum(o, S - 1 - ((N - 1) % Br)), S - 1, S, Bc, g)[1]
    union_keys = np.minimum(S, (f_hi_final + 1) * Bc) - f_lo_first * Bc

    f = np.float64
    return TileSums(
        q_tiles=(Tf + has_last).astype(f),
        pairs=(pairs_full + n_l).astype(f),
        row_pairs=(Br * pairs_full + r_last * n_l).astype(f),
        key_loads=(keys_full + keys_l).astype(f),
        area=(Br * keys_full + r_last * keys_l).astype(f),
        union_keys=union_keys.astype(f),
        union_tiles=(f_hi_final - f_lo_first + 1).astype(f),
    )


def tile_sums_enumerated(N, S, Br, Bc, g: MaskGeometry) -> TileSums:
    """The same sums by walking every query tile (exact reference; slow for huge N)."""
    N, S, Br, Bc = np.broadcast_arrays(_i(N), _i(S), _i(Br), _i(Bc))
    params = {k: np.broadcast_to(_i(getattr(g, k)), N.shape) for k in ("w", "half", "c")}
    out = {k: np.zeros(N.shape) for k in TileSums.__dataclass_fields__}
    from memsim.errors import InputError
    from memsim.limits import MAX_ENUMERATED_TILES

    for idx in np.ndindex(N.shape):
        n, s, br, bc = int(N[idx]), int(S[idx]), int(Br[idx]), int(Bc[idx])
        gi = MaskGeometry(g.kind, **{k: int(v[idx]) for k, v in params.items()})
        q_tiles = -(-n // br)
        if q_tiles > MAX_ENUMERATED_TILES:  # O(N/Br) time: refuse rather than hang
            raise InputError("chunk", int(params["c"][idx]), f"is not a multiple of the key "
                             f"tile Bc={bc}, so memsim walks all {q_tiles} query tiles, more "
                             f"than its ceiling {MAX_ENUMERATED_TILES}; choose a chunk that is "
                             "a multiple of --block-kv, or a larger --block-q")
        f_lo_min, f_hi_max = None, None
        for a0 in range(0, q_tiles, 1 << 20):  # blocks of 2^20 tiles: bounded memory
            a = np.arange(a0, min(q_tiles, a0 + (1 << 20)), dtype=I64)
            lo = s - n + a * br
            rows = np.minimum(br, n - a * br)
            hi = lo + rows - 1
            f_lo, f_hi, cnt, keys = tile_terms(lo, hi, _i(s), _i(bc), gi)
            out["pairs"][idx] += cnt.sum()
            out["row_pairs"][idx] += (rows * cnt).sum()
            out["key_loads"][idx] += keys.sum()
            out["area"][idx] += (rows * keys).sum()
            f_lo_min = int(f_lo.min()) if f_lo_min is None else min(f_lo_min, int(f_lo.min()))
            f_hi_max = int(f_hi.max()) if f_hi_max is None else max(f_hi_max, int(f_hi.max()))
        out["q_tiles"][idx] = q_tiles
        out["union_keys"][idx] = min(s, (f_hi_max + 1) * bc) - f_lo_min * bc
        out["union_tiles"][idx] = f_hi_max - f_lo_min + 1
    return TileSums(**out)


def visible_pairs(N, S, g: MaskGeometry) -> np.ndarray:
    """Σ over query rows of the number of visible keys (the exact, untiled count)."""
    N, S = np.broadcast_arrays(_i(N), _i(S))
    o = S - N
    f = np.float64
    if g.kind == "full":
        return (N * S).astype(f)
    if g.kind == "causal":
        return capped_prefix_sum(o, S, S)
    if g.kind == "window":
        return capped_prefix_sum(o, S, _i(g.w))
    if g.kind == "band":
        return _band_pairs(o, S, _i(g.half))
    if g.kind == "chunk":
        c = _i(g.c)
        # Σ_{p=o}^{S−1} (p mod C + 1) = Σ_{p} (p + 1) − C·Σ ⌊p/C⌋
        return (_arith(o + 1, S) - c * floor_sum(N, c, 1, o)).astype(f)
    raise ValueError(g.kind)


def _arith(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Σ_{x=first}^{last} x (0 when last < first), float64."""
    first, last = first.astype(np.float64), last.astype(np.float64)
    count = np.maximum(last - first + 1, 0)
    return count * (first + last) / 2


def capped_prefix_sum(o: np.ndarray, S: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Σ_{p=o}^{S−1} min(k, p + 1): keys per query under causal + cap k (top-k, window)."""
    o, S, k = np.broadcast_arrays(_i(o), _i(S), _i(k))
    split = np.clip(k - 1, o - 1, S - 1)          # last p with p + 1 ≤ k
    below = _arith(o + 1, split + 1)                # Σ (p + 1) for p ≤ split
    above = np.maximum(S - 1 - split, 0).astype(np.float64) * k
    return below + above


def _band_pairs(o: np.ndarray, S: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Σ_{p=o}^{S−1} (min(S−1, p+h) − max(0, p−h) + 1)."""
    o, S, h = np.broadcast_arrays(o, S, h)
    f = np.float64
    n = (S - o).astype(f)
    # Σ min(S−1, p+h) = Σ (p+h) − Σ max(0, p+h−(S−1))
    sum_hi = _arith(o + h, S - 1 + h) - _arith(np.maximum(o + h - (S - 1), 1),
                                               np.maximum(h, 0))
    sum_lo = _arith(np.maximum(o - h, 1), S - 1 - h)  # Σ max(0, p−h) over p−h ≥ 1
    return sum_hi - sum_lo + n
