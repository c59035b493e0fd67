"""Exact tile geometry (memsim.geometry) against brute force.

The reference here is the mask itself, written out from memsim/problem.py's docstring as a
dense boolean matrix: query row i sits at position p = S − N + i and sees key j when

    full    always                      causal  j ≤ p
    window  p − W < j ≤ p               band    |p − j| ≤ half
    chunk   ⌊j/C⌋ = ⌊p/C⌋ and j ≤ p

Every tile count is then recomputed from that matrix by looking at each (query tile,
key tile) block, independently of geometry.key_range / tile_terms.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.geometry import (
    MaskGeometry,
    TileSums,
    capped_prefix_sum,
    floor_sum,
    tile_sums,
    tile_sums_enumerated,
    tile_terms,
    visible_pairs,
)

FIELDS = tuple(TileSums.__dataclass_fields__)


# ---- the brute-force reference ---------------------------------------------------------


def dense_mask(N: int, S: int, g: MaskGeometry) -> np.ndarray:
    """(N, S) bool: row i (position S − N + i) sees key j."""
    p = np.arange(S - N, S)[:, None]
    j = np.arange(S)[None, :]
    if g.kind == "full":
        return np.ones((N, S), dtype=bool)
    if g.kind == "causal":
        return j <= p
    if g.kind == "window":
        return (j <= p) & (j > p - g.w)
    if g.kind == "band":
        return np.abs(p - j) <= g.half
    if g.kind == "chunk":
        return (j <= p) & (j // g.c == p // g.c)
    raise AssertionError(g.kind)


def active_key_tiles(mask: np.ndarray, Br: int, Bc: int) -> list[list[int]]:
    """For each query tile, the key tiles holding at least one visible key."""
    N, S = mask.shape
    out = []
    for a in range(-(-N // Br)):
        rows = mask[a * Br:(a + 1) * Br]
        out.append([b for b in range(-(-S // Bc)) if rows[:, b * Bc:(b + 1) * Bc].any()])
    return out


def brute_tile_sums(N: int, S: int, Br: int, Bc: int, g: MaskGeometry) -> dict[str, int]:
    """Every TileSums field from the dense mask, block by block (Python ints)."""
    tiles = active_key_tiles(dense_mask(N, S, g), Br, Bc)
    size = lambda b: min(S, (b + 1) * Bc) - b * Bc  # noqa: E731 (valid keys of tile b)
    sums = dict.fromkeys(FIELDS, 0)
    union: set[int] = set()
    for a, active in enumerate(tiles):
        rows = min(Br, N - a * Br)
        keys = sum(size(b) for b in active)
        sums["q_tiles"] += 1
        sums["pairs"] += len(active)
        sums["row_pairs"] += rows * len(active)
        sums["key_loads"] += keys
        sums["area"] += rows * keys
        union.update(active)
    sums["union_tiles"] = len(union)
    sums["union_keys"] = sum(size(b) for b in union)
    return sums


def as_dict(t: TileSums) -> dict[str, float]:
    return {f: float(np.asarray(getattr(t, f))) for f in FIELDS}


# ---- strategies ------------------------------------------------------------------------


@st.composite
def geometries(draw: st.DrawFn, Bc: int) -> MaskGeometry:
    """Every mask kind; chunks both a multiple of Bc (closed form) and not (enumerated)."""
    kind = draw(st.sampled_from(["full", "causal", "window", "band", "chunk", "chunk_mult"]))
    if kind == "window":
        return MaskGeometry("window", w=draw(st.integers(1, 100)))
    if kind == "band":
        return MaskGeometry("band", half=draw(st.integers(0, 50)))
    if kind == "chunk":
        return MaskGeometry("chunk", c=draw(st.integers(1, 60)))
    if kind == "chunk_mult":
        return MaskGeometry("chunk", c=Bc * draw(st.integers(1, 6)))
    return MaskGeometry(kind)


@st.composite
def small_cases(draw: st.DrawFn, max_n: int = 60) -> tuple[int, int, int, int, MaskGeometry]:
    N = draw(st.integers(1, max_n))
    S = N + draw(st.integers(0, max_n))
    Br = draw(st.integers(1, 20))
    Bc = draw(st.integers(1, 20))
    return N, S, Br, Bc, draw(geometries(Bc))


# ---- closed form = enumeration = brute force -------------------------------------------


@given(small_cases())
def test_tile_sums_match_the_dense_mask(case: tuple) -> None:
    """Closed form and enumeration both equal the block-by-block count of the mask."""
    N, S, Br, Bc, g = case
    expected = brute_tile_sums(N, S, Br, Bc, g)
    assert as_dict(tile_sums(N, S, Br, Bc, g)) == expected
    assert as_dict(tile_sums_enumerated(N, S, Br, Bc, g)) == expected


@st.composite
def larger_cases(draw: st.DrawFn) -> tuple[int, int, int, int, MaskGeometry]:
    N = draw(st.integers(1, 3000))
    S = N + draw(st.integers(0, 3000))
    Br = draw(st.sampled_from([1, 16, 32, 64, 100, 128, 256]))
    Bc = draw(st.sampled_from([1, 16, 32, 48, 64, 128, 256]))
    kind = draw(st.sampled_from(["full", "causal", "window", "band", "chunk"]))
    if kind == "window":
        g = MaskGeometry("window", w=draw(st.integers(1, 5000)))
    elif kind == "band":
        g = MaskGeometry("band", half=draw(st.integers(0, 2500)))
    elif kind == "chunk":  # multiples of Bc: the closed-form branch
        g = MaskGeometry("chunk", c=Bc * draw(st.integers(1, 40)))
    else:
        g = MaskGeometry(kind)
    return N, S, Br, Bc, g


@given(larger_cases())
def test_closed_form_equals_enumeration_on_realistic_tiles(case: tuple) -> None:
    """Thousands of tokens, the FA-2 tile sizes and ragged ones (100, 48)."""
    N, S, Br, Bc, g = case
    assert as_dict(tile_sums(N, S, Br, Bc, g)) == as_dict(tile_sums_enumerated(N, S, Br, Bc, g))


def test_closed_form_is_vectorised_elementwise() -> None:
    """Arrays of shapes (and of window sizes) give the per-element results."""
    rng = np.random.default_rng(0)
    N = rng.integers(1, 500, 40)
    S = N + rng.integers(0, 500, 40)
    Br = rng.choice([16, 64, 128], 40)
    Bc = rng.choice([16, 64, 128], 40)
    W = rng.integers(1, 700, 40)
    got = tile_sums(N, S, Br, Bc, MaskGeometry("window", w=W))
    for i in range(40):
        one = tile_sums(N[i], S[i], Br[i], Bc[i], MaskGeometry("window", w=int(W[i])))
        for f in FIELDS:
            assert getattr(got, f)[i] == float(getattr(one, f)), (i, f)


# ---- the contiguity claim of the module docstring --------------------------------------


@given(small_cases(max_n=40))
def test_active_key_tiles_are_exactly_f_lo_to_f_hi(case: tuple) -> None:
    """Every key tile in [f_lo, f_hi] holds a visible key of the query tile; none outside."""
    N, S, Br, Bc, g = case
    tiles = active_key_tiles(dense_mask(N, S, g), Br, Bc)
    o = S - N
    for a, active in enumerate(tiles):
        lo, hi = o + a * Br, o + min((a + 1) * Br, N) - 1
        f_lo, f_hi, n, keys = (int(v) for v in tile_terms(
            np.int64(lo), np.int64(hi), np.int64(S), np.int64(Bc), g))
        assert active == list(range(f_lo, f_hi + 1)), (a, lo, hi)
        assert n == len(active)
        assert keys == min(S, (f_hi + 1) * Bc) - f_lo * Bc


# ---- untiled counts ---------------------------------------------------------------------


@given(small_cases())
def test_visible_pairs_counts_the_dense_mask(case: tuple) -> None:
    N, S, _, _, g = case
    assert float(visible_pairs(N, S, g)) == int(dense_mask(N, S, g).sum())


@given(st.integers(1, 300), st.integers(0, 300), st.integers(1, 400))
def test_capped_prefix_sum_is_the_sum_of_min_k_p_plus_1(N: int, extra: int, k: int) -> None:
    S = N + extra
    expected = sum(min(k, p + 1) for p in range(S - N, S))
    assert float(capped_prefix_sum(S - N, S, k)) == expected


@given(st.integers(0, 300), st.integers(1, 60), st.integers(0, 200), st.integers(0, 200))
def test_floor_sum_equals_the_python_loop(n: int, m: int, a: int, b: int) -> None:
    assert float(floor_sum(n, m, a, b)) == sum((a * i + b) // m for i in range(n))


def test_floor_sum_is_vectorised_elementwise() -> None:
    rng = np.random.default_rng(1)
    n, m, a, b = (rng.integers(lo, hi, 50) for lo, hi in ((0, 500), (1, 90), (0, 300), (0, 300)))
    got = floor_sum(n, m, a, b)
    for i in range(50):
        want = sum((int(a[i]) * x + int(b[i])) // int(m[i]) for x in range(int(n[i])))
        assert got[i] == want


# ---- huge sizes: no overflow ------------------------------------------------------------


def test_causal_tile_sums_at_a_billion_tokens_match_exact_integers() -> None:
    """N = S = 10⁹ + 5, Br = Bc = 128: full query tile a (of T = ⌊N/128⌋) sees key tiles
    0..a, i.e. 128·(a + 1) keys; the ragged last tile (5 rows) sees all S keys. In Python
    ints: area = 128·Σ_a 128·(a+1) + 5·S = 128²·T(T+1)/2 + 5·S, pairs = T(T+1)/2 + (T+1),
    key_loads = 128·T(T+1)/2 + S. The float64 results (≈ 5·10¹⁷, above 2⁵³) must agree
    to float64 rounding: rel 1e-12 leaves room for a few roundings, not for an overflow."""
    N = S = 10**9 + 5
    T = N // 128
    assert N - 128 * T == 5
    exact = {
        "q_tiles": T + 1,
        "pairs": T * (T + 1) // 2 + (T + 1),
        "row_pairs": 128 * T * (T + 1) // 2 + 5 * (T + 1),
        "key_loads": 128 * T * (T + 1) // 2 + S,
        "area": 128**2 * T * (T + 1) // 2 + 5 * S,
        "union_keys": S,
        "union_tiles": T + 1,
    }
    got = as_dict(tile_sums(N, S, 128, 128, MaskGeometry("causal")))
    for f in FIELDS:
        assert np.isfinite(got[f]) and got[f] > 0
        assert got[f] == pytest.approx(exact[f], rel=1e-12), f
    # untiled: N(N+1)/2 visible pairs
    assert float(visible_pairs(N, S, MaskGeometry("causal"))) == pytest.approx(
        N * (N + 1) // 2, rel=1e-12)


def test_window_and_chunk_at_a_billion_tokens_match_exact_integers() -> None:
    """W = C = 4096 (multiples of Bc = 128), Br = 128, N = S = 10⁹ (a multiple of 128).
    Window: query tile a sees key tiles max(0, a − 32)..a (its first row reaches back
    W − 1 = 4095 keys, which starts exactly 32 tiles back: 128a − 4095 lies in tile a − 32),
    so 33 tiles once a ≥ 32. Chunk: tile a sees tiles 32·⌊a/32⌋..a."""
    N = S = 10**9
    T = N // 128
    win_pairs = sum(a + 1 for a in range(32)) + (T - 32) * 33
    chunk_pairs = (T // 32) * sum(range(1, 33))  # T = 7812500 is not a multiple of 32
    chunk_pairs += sum(range(1, T % 32 + 1))
    w = as_dict(tile_sums(N, S, 128, 128, MaskGeometry("window", w=4096)))
    c = as_dict(tile_sums(N, S, 128, 128, MaskGeometry("chunk", c=4096)))
    assert w["pairs"] == pytest.approx(win_pairs, rel=1e-12)
    assert w["area"] == pytest.approx(128 * 128 * win_pairs, rel=1e-12)
    assert c["pairs"] == pytest.approx(chunk_pairs, rel=1e-12)
    assert c["area"] == pytest.approx(128 * 128 * chunk_pairs, rel=1e-12)
