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
    flagged = outliers.flag(rows, op.curve, op.axis)
    assert flagged.sum() >= 1
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
