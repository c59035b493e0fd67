"""`python -m benchmarks`: discovery, the one-JSON-line-per-row contract, and a failing
benchmark reported as an error row while the others still run. Times are not asserted."""

from __future__ import annotations

import json
import types

import pytest

from benchmarks import __main__ as runner


def fake_module(run: object) -> types.ModuleType:
    module = types.ModuleType("fake")
    if run is not None:
        module.run = run  # type: ignore[attr-defined]
    return module


def test_discovers_every_bench_module() -> None:
    names = runner.bench_modules([])
    assert "bench_attention" in names and names == sorted(names)
    assert runner.bench_modules(["attention"]) == ["bench_attention"]
    assert runner.bench_modules(["no-such-benchmark"]) == []


def boom() -> list[dict]:
    raise RuntimeError("kaput")


@pytest.mark.parametrize(("run", "error"), [
    (boom, "RuntimeError: kaput"),
    (None, "defines no run()"),
    (lambda: [1, 2], "must return a list of dicts"),
])
def test_a_broken_benchmark_becomes_an_error_row(monkeypatch: pytest.MonkeyPatch, run: object,
                                                 error: str) -> None:
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: fake_module(run))
    (row,) = runner.run_one("bench_broken")
    assert row["name"] == "bench_broken" and error in row["error"]


def test_the_others_still_run_and_each_row_is_one_json_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    modules = {"benchmarks.bench_a": fake_module(boom),
               "benchmarks.bench_b": fake_module(lambda: [{"name": "b1", "seconds": 0.5},
                                                          {"name": "b2", "evals_per_s": 3e6}])}
    monkeypatch.setattr(runner, "bench_modules", lambda filters: ["bench_a", "bench_b"])
    monkeypatch.setattr(runner.importlib, "import_module", modules.__getitem__)
    assert runner.main([]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["bench_a", "b1", "b2"]
    assert "error" in rows[0] and rows[2]["evals_per_s"] == 3e6


def test_attention_benchmark_rows_have_the_contract() -> None:
    """A small run of the real benchmark: names and fields, not speed."""
    from benchmarks import bench_attention

    row = bench_attention.vectorised(n=1000, repeats=1)
    assert row["name"] == "attention_vectorised" and row["evals_per_s"] > 0
    assert set(row["per_algorithm_evals_per_s"]) == set(bench_attention.SWEEPS)
    cold = bench_attention.cold_start(repeats=1)
    assert cold["name"] == "cli_attention_cold_start" and cold["seconds"] > 0
