"""Outlier rows: far slower than both neighbours on their measured curve (fallback kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from memsim.silicon import outliers, tables
from memsim.silicon.classes import CLASSES

EXTRACT = Path(__file__).parent / "data" / "aiconfigurator" / "extract.json"


def test_a_spike_is_flagged_and_a_smooth_curve_is_not() -> None:
    lat = np.array([1.0, 1.2, 30.0, 1.6, 2.0, 1.0, 2.0, 4.0, 8.0])
    curve = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    axis = np.array([1, 2, 3, 4, 5, 1, 2, 3, 4])
    assert outliers.spikes(lat, curve, axis).tolist() == [False, False, True] + [False] * 6


def test_a_spike_at_the_end_of_a_curve_and_a_curve_of_one_row() -> None:
    lat = np.array([1.0, 1.1, 9.0, 100.0])
    curve = np.array([0, 0, 0, 1])
    assert outliers.spikes(lat, curve, np.array([1, 2, 3, 1])).tolist() == [False, False, True,
                                                                            False]


def test_row_order_does_not_matter() -> None:
    lat = np.array([30.0, 1.0, 1.2, 1.6])
    axis = np.array([3, 1, 2, 4])
    assert outliers.spikes(lat, np.zeros(4, dtype=int), axis).tolist() == [True, False, False,
                                                                          False]


@given(st.lists(st.floats(1e-3, 1e3), min_size=2, max_size=30), st.integers(-20, 20))
def test_flags_depend_on_ratios_only(lat: list[float], power: int) -> None:
    """A change of unit or a uniformly faster GPU flags the same rows (a power-of-two scale
    keeps every ratio exact)."""
    lat_a = np.array(lat)
    curve = np.zeros(len(lat), dtype=int)
    axis = np.arange(len(lat))
    a = outliers.spikes(lat_a, curve, axis)
    b = outliers.spikes(lat_a * 2.0 ** power, curve, axis)
    assert (a == b).all()


def test_the_h200_decode_mla_fallback_row_is_found_in_the_extract() -> None:
    """H200 generation MLA, batch 32, 16 heads, 4 cached tokens: 2.2 ms where its neighbours
    on the same curve take about 0.03 ms (aiconfigurator-core, generation_mla_perf)."""
    op = CLASSES["generation_mla"]
    rows = next(r for r in tables.read_extract(EXTRACT)
                if r.table == op.table and r.system == "h200_sxm" and r.backend == "trtllm")
    rule = outliers.flag(rows, op.curve, op.axis)
    flagged = rule != ""
    assert flagged.sum() >= 1 and set(rule[flagged]) == {"spike"}
    i = int(np.nonzero(flagged)[0][0])
    assert rows.col("batch_size")[i] == 32 and rows.col("step")[i] == 3
    assert rows.col("latency")[i] > 2.0
    assert 0 < flagged.sum() < 0.1 * len(rows)


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("ab"), st.integers(0, 10**6)),
                min_size=1, max_size=40), st.integers(1, 12))
def test_curve_ids_are_equal_exactly_when_every_curve_column_is(rows: list, copies: int) -> None:
    """Also across many wide columns (the mixed-radix key is re-coded before it overflows)."""
    cols = {f"c{j}_{i}": np.array([r[i] for r in rows], dtype=object if i == 1 else None)
            for i in range(3) for j in range(copies)}
    table = tables.Rows("s", "f", "b", "v", "t", "file", "0", np.arange(len(rows)), cols)
    ids = outliers.curve_ids(table, tuple(cols))
    for a in range(len(rows)):
        for b in range(len(rows)):
            assert (ids[a] == ids[b]) == (rows[a] == rows[b])


def test_a_whole_curve_slower_than_its_routing_siblings_is_flagged() -> None:
    """aiconfigurator h100 trtllm bf16 moe 5120/8192, 16 experts top-1, TP1 EP1: balanced
    0.103, 0.181, 0.343 ms at 1, 2, 4 tokens; power_law_1.01 0.488, 0.954, 1.823 ms (4.7x at
    one token, where both routings send the token to one expert). A third shape's lone curve
    has no sibling and is kept; so is a sibling within the ratio."""
    lat = np.array([0.103, 0.181, 0.343, 0.488, 0.954, 1.823, 0.110, 0.20, 0.9, 2.0])
    curve = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    sibling = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    axis = np.array([1, 2, 4, 1, 2, 4, 1, 2, 1, 2])
    assert outliers.slow_curves(lat, curve, sibling, axis).tolist() == (
        [False] * 3 + [True] * 3 + [False] * 4)
    assert not outliers.slow_curves(lat[:0], curve[:0], sibling[:0], axis[:0]).any()


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(1, 64),
                          st.floats(1e-3, 1e3)), min_size=1, max_size=40),
       st.floats(0.01, 100.0))
def test_slow_curves_ignore_the_latency_unit_and_keep_each_shapes_fastest(
        rows: list, scale: float) -> None:
    """Flags depend on latency ratios only; the fastest curve of each sibling group at a
    smallest size is never flagged."""
    curve = np.array([r[0] for r in rows])
    sibling = curve % 2 + 10 * np.array([r[1] for r in rows])[0]   # a function of the curve
    axis = np.array([r[2] for r in rows])
    lat = np.array([r[3] for r in rows])
    a = outliers.slow_curves(lat, curve, sibling, axis)
    assert np.array_equal(a, outliers.slow_curves(lat * scale, curve, sibling, axis))
    firsts = {}
    for c in np.unique(curve):
        i = np.nonzero(curve == c)[0]
        j = i[np.argmin(axis[i])]
        firsts.setdefault((sibling[j], axis[j]), []).append((lat[j], c))
    for group in firsts.values():
        assert not a[curve == min(group)[1]].any()


def test_a_curve_slower_than_its_shape_split_fewer_ways_is_flagged() -> None:
    """aiconfigurator h200 trtllm bf16 moe 5120/8192, 16 experts top-1, balanced, at 1, 64 and
    1024 tokens: TP1 EP1 0.086, 0.942, 1.086 ms; TP1 EP2 0.438, 3.583, 2.710 (half the
    experts, 3.8x slower at 64 tokens); TP2 EP1 0.247, 3.303, 2.762; TP1 EP4 0.088, 0.259,
    0.308; TP2 EP2 0.065, 0.256, 0.312. The two slow curves are flagged, the others kept."""
    ways = [(1, 1), (1, 2), (2, 1), (1, 4), (2, 2)]
    lat = np.array([[0.086, 0.942, 1.086], [0.438, 3.583, 2.710], [0.247, 3.303, 2.762],
                    [0.088, 0.259, 0.308], [0.065, 0.256, 0.312]]).ravel()
    curve = np.repeat(np.arange(5), 3)
    split = np.repeat(np.array(ways), 3, axis=0)
    axis = np.tile([1, 64, 1024], 5)
    flagged = outliers.dominated_curves(lat, curve, np.zeros(15, dtype=int), split, axis)
    assert flagged.reshape(5, 3).all(axis=1).tolist() == [False, True, True, False, False]
    assert not flagged.reshape(5, 3).any(axis=1)[[0, 3, 4]].any()
    # another shape (peer) is never a reference: alone, each curve is kept
    alone = outliers.dominated_curves(lat, curve, curve, split, axis)
    assert not alone.any()
    assert not outliers.dominated_curves(lat[:0], curve[:0], curve[:0], split[:0],
                                         axis[:0]).any()


@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 8]),
                          st.floats(1.0, 1.2)), min_size=1, max_size=16,
                unique_by=lambda r: r[:2]),
       st.floats(0.0, 1.0), st.floats(1e-3, 1e3), st.floats(0.01, 100.0))
def test_dominated_curves_keep_curves_that_scale_with_their_work(
        curves: list, speedup: float, whole: float, scale: float) -> None:
    """A shape whose curves get faster the more ways its work is split (time ∝ ways^−speedup,
    each curve within 1.2x noise) is never flagged, whatever the latency unit; one curve made
    3x slower than the whole work is flagged exactly when a curve splits the work fewer
    ways."""
    sizes = np.array([1, 16, 256])
    lat, cid, split, axis = [], [], [], []
    for c, (tp, ep, noise) in enumerate(curves):
        for size in sizes:
            lat.append(whole * size * noise * (tp * ep) ** -speedup)
            cid.append(c)
            split.append((tp, ep))
            axis.append(size)
    lat, cid, split, axis = map(np.array, (lat, cid, split, axis))
    peer = np.zeros(len(lat), dtype=int)
    assert not outliers.dominated_curves(lat * scale, cid, peer, split, axis).any()
    last = cid == len(curves) - 1
    slow = np.where(last, 3.0 * lat * (split[:, 0] * split[:, 1]) ** speedup, lat)
    flagged = outliers.dominated_curves(slow, cid, peer, split, axis)
    tp, ep, _ = curves[-1]
    fewer = any(t <= tp and e <= ep and (t, e) != (tp, ep) for t, e, _ in curves)
    assert flagged[last].all() == fewer and flagged[last].any() == fewer
    assert not flagged[~last].any()


def test_flag_names_the_rule_that_flags_each_row() -> None:
    """A table of two shapes (``w`` 1 and 2), each measured whole (``ways`` 1) and split two
    ways, at 1, 2, 4, 8 tokens, ms: shape 1 whole 1, 2, 4, 8 with a 50 ms spike at 2 tokens;
    shape 1 split 3x the whole (a fallback kernel), with a 200 ms spike at 4 tokens; shape 2
    whole and split scale with the work. Each flagged row carries the first rule that flags
    it ("spike" before "split"), and every rule name has its reason; without ``split`` only
    the spikes are flagged."""
    tokens = np.tile([1, 2, 4, 8], 4)
    w = np.repeat([1, 1, 2, 2], 4)
    ways = np.repeat([1, 2, 1, 2], 4)
    lat = np.array([1.0, 50.0, 4.0, 8.0, 3.0, 6.0, 200.0, 24.0,
                    2.0, 4.0, 8.0, 16.0, 1.0, 2.0, 4.0, 8.0])
    rows = tables.Rows("s", "f", "b", "v", "t", "file", "0", np.arange(16),
                       {"w": w, "ways": ways, "tokens": tokens, "latency": lat})
    rule = outliers.flag(rows, ("w", "ways"), "tokens", split=("ways",))
    assert rule.tolist() == (["", "spike", "", "", "split", "split", "spike", "split"]
                             + [""] * 8)
    assert set(rule) - {""} <= set(outliers.REASONS)
    only_spikes = outliers.flag(rows, ("w", "ways"), "tokens")
    assert only_spikes.tolist() == ["", "spike"] + [""] * 4 + ["spike"] + [""] * 9
