"""How far off is memsim? Error statistics of the measured cases, correlator style.

Like Accel-Sim's correlator, predicted and measured are set side by side counter by
counter: for each group of cases (``sdpa/flash``, ``kernel/flash2``, ``llama/decode``...),
each model (analytic, trace) and each quantity (``time_s``, ``hbm_bytes``, ...):

- ``n``: measured cases with both numbers;
- ``median_abs`` and ``p90_abs``: median and 90th percentile of |predicted / measured − 1|;
- ``bias``: the median signed error (+0.2: memsim predicts 20 % too much);
- ``correlation``: Pearson's r of predicted against measured over the group (n ≥ 3);
- ``worst``: the cases with the largest |error|, with both numbers.

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
        errors = np.array([e for *_, e in items])
        pred = np.array([p for _, p, _, _ in items])
        meas = np.array([m for _, _, m, _ in items])
        ranked = sorted(items, key=lambda r: -abs(r[3]))[:worst]
        out.append(QuantityStats(
            group=group, model=model, quantity=quantity, n=len(items),
            median_abs=float(np.median(np.abs(errors))),
            p90_abs=float(np.quantile(np.abs(errors), 0.9)),
            bias=float(np.median(errors)), correlation=_correlation(pred, meas),
            worst=tuple(Worst(*r) for r in ranked)))
    return out


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
    lines = [f"memsim validation summary of {summary['path']}",
             "cases: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["cases"].items())),
             "",
             f"{'group':24} {'model':9} {'quantity':26} {'n':>4} {'median':>8} {'p90':>8} "
             f"{'bias':>8} {'correl':>7}"]
    for s in summary["stats"]:
        corr = "–" if s["correlation"] is None else f"{s['correlation']:.3f}"
        lines.append(f"{s['group']:24} {s['model']:9} {s['quantity']:26} {s['n']:>4} "
                     f"{_pct(s['median_abs']):>8} {_pct(s['p90_abs']):>8} "
                     f"{_pct(s['bias']):>8} {corr:>7}")
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
