"""How far off is memsim? Error statistics of the measured cases, correlator style.

Like Accel-Sim's correlator, predicted and measured are set side by side counter by
counter: for each group of cases (``sdpa/flash``, ``kernel/flash2``, ``llama/decode``...),
each model (analytic, trace) and each quantity (``time_s``, ``hbm_bytes``, ...):

- ``n``: measured cases with both numbers;
- ``median_abs`` and ``p90_abs``: median and 90th percentile of |predicted / measured − 1|;
- ``bias``: the median signed error (+0.2: memsim predicts 20 % too much);
- ``correlation``: Pearson's r of predicted against measured over the group (n ≥ 3);
- ``worst``: the cases with the largest |error|, with both numbers;
- ``by_size`` (``time_s`` only): n, median |error| and bias per bucket of *measured* time
  (< 50 µs, 50–200 µs, 0.2–1 ms, 1–5 ms, > 5 ms): a floor that is missing shows in the
  first bucket, a wrong peak in the last.

Failed and skipped cases are listed with their reasons, never silently dropped.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memsim.validation.records import read_cases


@dataclass(frozen=True)
class Worst:
    id: str
    predicted: float
    measured: float
    error: float


@dataclass(frozen=True)
class QuantityStats:
    """Error statistics of one (group, model, quantity); errors are fractions (0.1 = 10 %)."""

    group: str
    model: str
    quantity: str
    n: int
    median_abs: float
    p90_abs: float
    bias: float
    correlation: float | None
    worst: tuple[Worst, ...]
    by_size: tuple[dict[str, Any], ...] | None = None


# Buckets of measured time (s) for ``by_size``: (label, lower edge, upper edge).
SIZE_BUCKETS = (("<50us", 0.0, 50e-6), ("50-200us", 50e-6, 200e-6), ("0.2-1ms", 200e-6, 1e-3),
                ("1-5ms", 1e-3, 5e-3), (">5ms", 5e-3, math.inf))


def size_bucket(measured_s: np.ndarray) -> np.ndarray:
    """Index into :data:`SIZE_BUCKETS` of each measured time (s)."""
    edges = np.array([b[2] for b in SIZE_BUCKETS[:-1]])
    return np.searchsorted(edges, np.asarray(measured_s, dtype=float), side="right")


def by_size(errors: np.ndarray, measured_s: np.ndarray) -> tuple[dict[str, Any], ...]:
    """Per bucket of measured time: n, median |error|, p90 |error| and bias (signed median)."""
    bucket = size_bucket(measured_s)
    out = []
    for i, (label, _, _) in enumerate(SIZE_BUCKETS):
        e = errors[bucket == i]
        out.append({"bucket": label, "n": int(len(e)),
                    "median_abs": float(np.median(np.abs(e))) if len(e) else None,
                    "p90_abs": float(np.quantile(np.abs(e), 0.9)) if len(e) else None,
                    "bias": float(np.median(e)) if len(e) else None})
    return tuple(out)


def _correlation(predicted: np.ndarray, measured: np.ndarray) -> float | None:
    if len(predicted) < 3 or np.std(predicted) == 0 or np.std(measured) == 0:
        return None
    return float(np.corrcoef(predicted, measured)[0, 1])


def statistics(cases: list[dict[str, Any]], worst: int = 3) -> list[QuantityStats]:
    """Per (group, model, quantity) statistics over the ``ok`` cases (see module docstring)."""
    rows: dict[tuple[str, str, str], list[tuple[str, float, float, float]]] = defaultdict(list)
    for case in cases:
        if case.get("status") != "ok":
            continue
        measured = case.get("measurement", {})
        for model, errors in (case.get("errors") or {}).items():
            predicted = (case.get("prediction") or {}).get(model) or {}
            for quantity, error in errors.items():
                if error is None or not math.isfinite(error):
                    continue
                rows[(case["group"], model, quantity)].append(
                    (case["id"], float(predicted[quantity]), float(measured[quantity]),
                     float(error)))
    out = []
    for (group, model, quantity), items in sorted(rows.items()):
        out.append(stats_of(group, model, quantity, [i for i, *_ in items],
                            np.array([p for _, p, _, _ in items]),
                            np.array([m for _, _, m, _ in items]), worst))
    return out


def stats_of(group: str, model: str, quantity: str, ids: list[str], predicted: np.ndarray,
             measured: np.ndarray, worst: int = 3) -> QuantityStats:
    """Statistics of one (group, model, quantity) from arrays of predicted and measured."""
    errors = predicted / measured - 1.0
    ranked = np.argsort(-np.abs(errors), kind="stable")[:worst]
    return QuantityStats(
        group=group, model=model, quantity=quantity, n=len(errors),
        median_abs=float(np.median(np.abs(errors))),
        p90_abs=float(np.quantile(np.abs(errors), 0.9)),
        bias=float(np.median(errors)), correlation=_correlation(predicted, measured),
        worst=tuple(Worst(ids[i], float(predicted[i]), float(measured[i]), float(errors[i]))
                    for i in ranked),
        by_size=by_size(errors, measured) if quantity == "time_s" else None)


def summarise(path: Path | str, worst: int = 3) -> dict[str, Any]:
    """The summary of every run file at ``path`` (a run file or a folder) as JSON data."""
    bad_lines: list = []
    cases = read_cases(path, bad_lines)
    if not cases:
        from memsim.errors import InputError

        raise InputError("summary", str(path), "holds no case records (*.jsonl)")
    by_status: dict[str, int] = defaultdict(int)
    for c in cases:
        by_status[c.get("status", "?")] += 1
    problems = [{"id": c["id"], "status": c["status"], "reason": c.get("reason", "")}
                for c in cases if c.get("status") != "ok"]
    return {"path": str(path), "runs": sorted({c["run_file"] for c in cases}),
            "cases": dict(by_status), "stats": [asdict(s) for s in statistics(cases, worst)],
            "not_measured": problems,
            "bad_lines": [{"file": f, "line": n, "reason": r} for f, n, r in bad_lines]}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def format_text(summary: dict[str, Any]) -> str:
    """A plain-text report: one line per (group, model, quantity), then the worst cases."""
    w = max([24] + [len(s["group"]) for s in summary["stats"]])
    lines = [f"memsim validation summary of {summary['path']}",
             "cases: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["cases"].items())),
             "",
             f"{'group':{w}} {'model':9} {'quantity':26} {'n':>4} {'median':>8} {'p90':>8} "
             f"{'bias':>8} {'correl':>7}"]
    for s in summary["stats"]:
        corr = "–" if s["correlation"] is None else f"{s['correlation']:.3f}"
        lines.append(f"{s['group']:{w}} {s['model']:9} {s['quantity']:26} {s['n']:>4} "
                     f"{_pct(s['median_abs']):>8} {_pct(s['p90_abs']):>8} "
                     f"{_pct(s['bias']):>8} {corr:>7}")
    sized = [s for s in summary["stats"] if s.get("by_size")]
    if sized:
        labels = [b["bucket"] for b in sized[0]["by_size"]]
        lines += ["", "time_s median |error| (n) by measured time:",
                  f"{'group':{w}} {'model':9} " + " ".join(f"{lb:>15}" for lb in labels)]
        for s in sized:
            cells = [("–" if b["median_abs"] is None else f"{_pct(b['median_abs'])} ({b['n']})")
                     for b in s["by_size"]]
            lines.append(f"{s['group']:{w}} {s['model']:9} "
                         + " ".join(f"{c:>15}" for c in cells))
    worst = [(s, w) for s in summary["stats"] for w in s["worst"][:1] if s["quantity"] == "time_s"]
    if worst:
        lines += ["", "worst time_s case of each group (predicted vs measured):"]
        for s, w in worst:
            lines.append(f"  {s['group']:22} {s['model']:9} {w['predicted']:.4g} vs "
                         f"{w['measured']:.4g} ({w['error']:+.0%})  {w['id']}")
    if summary["not_measured"]:
        lines += ["", "not measured:"]
        lines += [f"  {p['status']:8} {p['id']}: {p['reason']}" for p in summary["not_measured"]]
    return "\n".join(lines)


def write(summary: dict[str, Any], folder: Path | str) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.txt`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, text_path = folder / "summary.json", folder / "summary.txt"
    from memsim.files import write_text

    write_text(json_path, json.dumps(summary, indent=1) + "\n", "summary")
    write_text(text_path, format_text(summary) + "\n", "summary")
    return json_path, text_path
