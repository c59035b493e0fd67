"""Page: validation — memsim's predictions against measurements (time, DRAM and L2 bytes,
memory) from the committed measurement files of the chosen GPU, with the error tables.

Sources, in ``measurements/<gpu>/``:

- ``*.jsonl`` (``memsim validate``, :mod:`memsim.validation.records`): a header line, then
  one ``"type": "case"`` line per case with ``"group"``, ``"prediction": {"analytic":
  {...}, "trace": {...}}`` and ``"measurement": {...}``; every ``ok`` case contributes each
  quantity of :data:`QUANTITIES` that a prediction and the measurement both carry;
- ``ceilings-*.json`` (kernels/ceilings.py): PyTorch flash SDPA forward times and peak extra
  memory, compared here with memsim's FlashAttention-2 prediction (and the trace-driven
  model's time where it has landed) — used only where no validation run has SDPA cases.

Where a GPU has no files the page says so instead of drawing empty axes.

Below them, for every GPU at once, memsim against the kernel timings NVIDIA published with
aiconfigurator-core (``measurements/aiconfigurator/<date>/summary.json`` and ``points.json``,
written by ``make validate-silicon``): measured against predicted on log-log axes per op
class (colour: GPU, marker: backend; open markers: GPUs never fitted), the error against
the measured time, and the calibration's errors on the fitted GPUs (H100, H200) apart from
those on the unseen ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memsim.attention import predict
from memsim.errors import InputError

from . import data
from .page import (
    MEASURED_COLOR,
    Context,
    Page,
    axis_title,
    config_note,
    details,
    display_path,
    fmt_bytes,
    fmt_seconds,
    paragraph,
    style,
    table,
    unavailable,
)

SLUG = "validation"
TITLE = "Validation"
QUANTITIES = {  # quantity → (title, axis unit, formatter)
    "time_s": ("time", "s", fmt_seconds),
    "hbm_bytes": ("HBM traffic", "bytes", fmt_bytes),
    "l2_bytes": ("L2 traffic", "bytes", fmt_bytes),
    "peak_extra_bytes": ("memory beyond the inputs", "bytes", fmt_bytes),
    "peak_memory_bytes": ("peak memory", "bytes", fmt_bytes),
}
MODELS = {"analytic": "circle", "trace": "diamond"}  # memsim's models → marker symbol
GROUP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


@dataclass(frozen=True)
class Comparison:
    """One measured quantity of one case beside one of memsim's predictions of it."""

    case: str       # the case's id
    group: str      # e.g. "sdpa/flash", "llama/decode", "ncu/sdpa-flash"
    quantity: str   # a key of QUANTITIES
    model: str      # "analytic" or "trace"
    measured: float
    predicted: float
    source: str     # the measurement file

    @property
    def error(self) -> float:
        """Relative error of the prediction, (predicted − measured) / measured."""
        return (self.predicted - self.measured) / self.measured


def jsonl_comparisons(folder: Path) -> tuple[list[Comparison], int]:
    """Cases of ``memsim validate`` runs: (comparisons, ok cases without a prediction)."""
    out, unread = [], 0
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                case = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a crash
                continue
            if case.get("type") != "case" or case.get("status") != "ok":
                continue  # the header, failed and skipped cases
            pred, meas = case.get("prediction"), case.get("measurement")
            if not isinstance(pred, dict) or not isinstance(meas, dict):
                unread += 1
                continue
            name = str(case.get("id", "case"))
            group = str(case.get("group") or name.split(":")[0])
            for model in MODELS:
                predicted = pred.get(model)
                if not isinstance(predicted, dict):
                    continue
                for q in QUANTITIES:
                    m, p = meas.get(q), predicted.get(q)
                    if isinstance(m, int | float) and isinstance(p, int | float) and m > 0:
                        out.append(Comparison(name, group, q, model, float(m), float(p),
                                              path.name))
    return out, unread


def sdpa_comparisons(ctx: Context) -> list[Comparison]:
    """PyTorch flash SDPA rows of the ceilings file against memsim's FA-2 predictions."""
    measured = data.ceilings(ctx.measurements_dir, ctx.gpu.name)
    if measured is None:
        return []
    out = []
    simulate = data.trace_simulate()
    source = measured.file.name
    for row in measured.sdpa_rows:
        p = data.sdpa_problem(row)
        r = predict(p, ctx.gpu, "flash2")
        case = f"PyTorch SDPA flash, {data.describe_problem(p)}"
        out.append(Comparison(case, "sdpa/flash", "time_s", "analytic", row["time_s"],
                              r.timing.time_s, source))
        if isinstance(row.get("peak_extra_bytes"), int | float) and row["peak_extra_bytes"]:
            out.append(Comparison(case, "sdpa/flash", "peak_extra_bytes", "analytic",
                                  row["peak_extra_bytes"],
                                  data.extra_bytes(p, r.cost.workspace_bytes), source))
        if simulate is not None:
            try:
                traced = simulate(p, ctx.gpu, "flash2", r.tiling, l2=True)
            except (NotImplementedError, InputError):
                simulate = None
            else:
                out.append(Comparison(case, "sdpa/flash", "time_s", "trace", row["time_s"],
                                      traced.time_s, source))
    return out


def error_stats(comparisons: list[Comparison]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (group, model, quantity): cases, median and worst |error|, and the bias (median
    signed error: negative means memsim predicts too little)."""
    keys = sorted({(c.group, c.model, c.quantity) for c in comparisons},
                  key=lambda k: (k[0], list(QUANTITIES).index(k[2]), k[1]))
    stats = {}
    for key in keys:
        errs = np.array([c.error for c in comparisons if (c.group, c.model, c.quantity) == key])
        stats[key] = {"cases": int(errs.size), "median_abs_error": float(np.median(abs(errs))),
                      "max_abs_error": float(abs(errs).max()), "bias": float(np.median(errs))}
    return stats


def _figure(comparisons: list[Comparison], gpu_name: str):
    from plotly.subplots import make_subplots

    quantities = [q for q in QUANTITIES if any(c.quantity == q for c in comparisons)]
    cols = min(3, len(quantities))
    rows = -(-len(quantities) // cols)
    cells = [{} if i < len(quantities) else None for i in range(rows * cols)]
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.09, vertical_spacing=0.2,
                        specs=[cells[r * cols:(r + 1) * cols] for r in range(rows)],
                        subplot_titles=[QUANTITIES[q][0] for q in quantities])
    groups = sorted({c.group for c in comparisons})
    colour = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}
    shown: set[tuple[str, str]] = set()
    for i, q in enumerate(quantities):
        row, col = i // cols + 1, i % cols + 1
        title, unit, fmt = QUANTITIES[q]
        cs = [c for c in comparisons if c.quantity == q]
        values = [v for c in cs for v in (c.measured, c.predicted)]
        lo, hi = min(values) / 1.5, max(values) * 1.5
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="prediction = measurement",
                        line={"dash": "dash", "color": "#9ca3af"}, showlegend=i == 0,
                        customdata=["y = x"] * 2, hovertemplate="%{customdata}<extra></extra>",
                        row=row, col=col)
        for group in groups:
            for model, symbol in MODELS.items():
                mine = [c for c in cs if c.group == group and c.model == model]
                if not mine:
                    continue
                fig.add_scatter(
                    x=[c.measured for c in mine], y=[c.predicted for c in mine],
                    mode="markers", name=f"{group}, {model}", legendgroup=f"{group}{model}",
                    showlegend=(group, model) not in shown,
                    marker={"size": 10, "color": colour[group], "symbol": symbol,
                            "line": {"width": 1, "color": MEASURED_COLOR}},
                    customdata=[f"{c.case}<br>measured {fmt(c.measured)}, {model} model "
                                f"{fmt(c.predicted)} ({c.error:+.0%})<br>{c.source}"
                                for c in mine],
                    hovertemplate="%{customdata}<extra></extra>", row=row, col=col)
                shown.add((group, model))
        fig.update_xaxes(type="log", exponentformat="SI", row=row, col=col,
                         title_text=axis_title(f"measured {title}", unit))
        fig.update_yaxes(type="log", exponentformat="SI", row=row, col=col,
                         title_text=axis_title(f"memsim's {title}", unit))
    style(fig, f"Predicted against measured on {gpu_name} (circles: analytic model, "
               "diamonds: trace-driven)", height_px=430 * rows + 90)
    return fig


def _takeaway(gpu_display: str, stats: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """One sentence from the headline numbers that exist: attention time, DRAM bytes."""
    def pick(group_prefix: str, model: str, quantity: str) -> dict[str, Any] | None:
        found = [s for (g, m, q), s in stats.items()
                 if g.startswith(group_prefix) and m == model and q == quantity]
        return max(found, key=lambda s: s["cases"]) if found else None

    clauses = []
    t_a, t_t = pick("sdpa/flash", "analytic", "time_s"), pick("sdpa/flash", "trace", "time_s")
    if t_a:
        clauses.append(
            f"memsim predicts the time of {t_a['cases']} measured flash-attention calls within "
            f"a median {t_a['median_abs_error']:.0%} with its roofline"
            + (f" and {t_t['median_abs_error']:.0%} with its trace-driven model" if t_t else ""))
    b_a, b_t = pick("ncu/sdpa-flash", "analytic", "hbm_bytes"), pick("ncu/sdpa-flash",
                                                                      "trace", "hbm_bytes")
    if b_a and b_t:
        clauses.append(
            f"the trace-driven model gets flash attention's measured DRAM bytes within "
            f"{b_t['median_abs_error']:.0%}, where the analytic count, which assumes no reuse "
            f"in L2, is {1 + b_a['bias']:.1f}× the measurement")
    if not clauses:
        return (f"On {gpu_display}, {sum(s['cases'] for s in stats.values())} measured "
                "quantities are compared with memsim's predictions below.")
    return f"On {gpu_display}, " + ", and ".join(clauses) + "."


# ---- against aiconfigurator-core's published kernel timings -------------------------------

SILICON_DIR = "aiconfigurator"
BACKEND_SYMBOLS = {"trtllm": "circle", "vllm": "square", "sglang": "triangle-up",
                   "nccl": "diamond"}
POINTS_DRAWN = 30  # per group (points.json holds a seeded sample; the page stays light)


def silicon_run(measurements_dir: Path) -> Path | None:
    """The newest committed ``measurements/aiconfigurator/<date>/`` with a summary, or None."""
    root = measurements_dir / SILICON_DIR
    dated = sorted(p for p in root.glob("*/summary.json") if p.parent.name != "runs")
    return dated[-1].parent if dated else None


def _silicon_figures(points: dict[str, Any]):
    from plotly.subplots import make_subplots

    classes = sorted({g["op_class"] for g in points.values()})
    gpus = sorted({g["gpu"] for g in points.values()})
    colour = {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(gpus)}
    cols = min(3, len(classes))
    rows = -(-len(classes) // cols)
    figs = []
    for kind in ("scatter", "error"):
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=classes,
                            horizontal_spacing=0.07, vertical_spacing=0.5 / rows)
        shown: set[tuple[str, str]] = set()
        for i, op in enumerate(classes):
            row, col = i // cols + 1, i % cols + 1
            mine = [g for g in points.values() if g["op_class"] == op]
            values = [v for g in mine for v in g["measured_s"] + g["analytic_s"] if v]
            if kind == "scatter" and values:
                lo, hi = min(values) / 1.5, max(values) * 1.5
                fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", showlegend=False,
                                line={"dash": "dash", "color": "#9ca3af"},
                                customdata=["y = x"] * 2,
                                hovertemplate="%{customdata}<extra></extra>", row=row, col=col)
            for g in mine:
                meas = np.array(g["measured_s"][:POINTS_DRAWN])
                pred = np.array(g["analytic_s"][:POINTS_DRAWN])
                y = pred if kind == "scatter" else pred / meas - 1.0
                key = (g["gpu"], g["backend"])
                fig.add_scatter(
                    x=meas, y=y, mode="markers", name=f"{g['gpu']} {g['backend']}"
                    + ("" if g["fitted"] else " (unseen)"), legendgroup=f"{key}",
                    showlegend=key not in shown,
                    marker={"size": 6, "color": colour[g["gpu"]],
                            "symbol": BACKEND_SYMBOLS.get(g["backend"], "circle")
                            + ("" if g["fitted"] else "-open")},
                    customdata=[f"{op} {g['backend']} on {g['gpu']}: measured "
                                f"{fmt_seconds(m)}, memsim {fmt_seconds(p)} ({p / m - 1:+.0%})"
                                for m, p in zip(meas, pred, strict=True)],
                    hovertemplate="%{customdata}<extra></extra>", row=row, col=col)
                shown.add(key)
            fig.update_xaxes(type="log", exponentformat="SI", row=row, col=col,
                             title_text=axis_title("measured time", "s"))
            if kind == "scatter":
                fig.update_yaxes(type="log", exponentformat="SI", row=row, col=col,
                                 title_text=axis_title("memsim's time", "s"))
            else:
                fig.update_yaxes(tickformat="+.0%", row=row, col=col,
                                 title_text=axis_title("memsim / measured − 1", "%"))
        title = ("memsim (datasheet profiles) against kernel timings published in "
                 "aiconfigurator-core" if kind == "scatter" else
                 "Error against the measured time: the floor shows on the left, a wrong peak "
                 "on the right")
        style(fig, title, height_px=330 * rows + 120)
        figs.append(fig)
    return figs


def _fmt_err(e: dict[str, Any] | None) -> str:
    if not e or e.get("median_abs") is None:
        return "–"
    return f"{e['median_abs']:.0%} / {e['p90_abs']:.0%}"


def _in_or_out(group: str, fitted: list[str]) -> str:
    return f"{group} ({'fitted' if group.rsplit('/', 1)[-1] in fitted else 'unseen'})"


def _numbers(c: dict[str, Any]) -> str:
    eff = ", ".join(f"{u} {v:.2f}" for u, v in c["efficiency"].items())
    return f"{c['floor_s'] * 1e6:.1f} µs; {eff}" + (f"; row {c['row_s'] * 1e9:.3g} ns"
                                                    if c["row_s"] else "")


def _calibration_blocks(cal: dict[str, Any]) -> list[Any]:
    """The kernel classes refitted on the run's H100/H200 rows (memsim.silicon.fit), their
    in-sample and leave-one-GPU-out errors, and the unseen GPUs' errors in a table apart."""
    if any("n_fit" in c for c in cal.values()):
        return [paragraph("This summary's calibration predates the kernel-class fit "
                          "(memsim.silicon.fit); rerun `make validate-silicon` to show it.")]
    fitted_rows, unseen_rows = [], []
    for key, c in cal.items():
        if c["note"]:
            continue
        numbers = "; ".join(f"{k}: {_numbers(c['before'][k])} → {_numbers(c['after'][k])}"
                            for k in c["used"])
        for gpu, e in c["fitted"].items():
            fitted_rows.append((key, c["rows"], gpu, e["n"], numbers,
                                _fmt_err(c["fitted_before"][gpu]), _fmt_err(e),
                                _fmt_err(c["leave_one_gpu_out"].get(gpu))))
        for gpu, e in c["unseen"].items():
            if e["n"]:
                unseen_rows.append((key, gpu, e["n"], _fmt_err(c["unseen_before"][gpu]),
                                    _fmt_err(e), f"{e['bias']:+.0%}"))
    blocks: list[Any] = []
    if fitted_rows:
        blocks.append(paragraph("Kernel classes refitted on this run's H100 and H200 rows only "
                                "(the fit `make fit-classes` writes with; |error| median / "
                                "p90; 'memsim now': the committed numbers, which were fitted "
                                "on rows of the same GPUs, so in-sample):"))
        blocks.append(table(["classes", "rows", "GPU", "n", "floor; efficiency (now → refit)",
                             "memsim now", "refit", "leave this GPU out"], fitted_rows))
    if unseen_rows:
        blocks.append(paragraph("Unseen GPUs: never fitted, predicted from their datasheet "
                                "profile and the class's numbers (|error| median / p90):"))
        blocks.append(table(["classes", "GPU", "rows", "memsim now", "refit", "bias"],
                            unseen_rows))
    return blocks


def silicon_blocks(measurements_dir: Path) -> list[Any]:
    """The aiconfigurator-core section: figures, per-group table, fitted vs unseen table."""
    folder = silicon_run(measurements_dir)
    if folder is None:
        return [unavailable("Published kernel timings (aiconfigurator-core)",
                            f"no summary under {display_path(measurements_dir / SILICON_DIR)}; "
                            "run `make validate-silicon` and commit its summary.")]
    summary = json.loads((folder / "summary.json").read_text())
    points_path = folder / "points.json"
    blocks: list[Any] = []
    src = summary.get("source", {})
    blocks.append(paragraph(
        f"memsim against {sum(s['n'] for s in summary['stats'] if s['model'] == 'analytic'):,}"
        f" kernel timings measured by NVIDIA on real GPUs and published with "
        f"{src.get('package', 'aiconfigurator-core')} {src.get('version', '')} "
        f"({src.get('mode', '')} run, {display_path(folder)}); "
        f"{summary['cases'].get('outlier', 0)} rows far slower than their neighbours "
        "(fallback kernels) are excluded and listed in the summary."))
    if points_path.is_file():
        blocks += _silicon_figures(json.loads(points_path.read_text()))
    stats = [s for s in summary["stats"] if s["model"] == "analytic"]
    fitted = summary.get("fitted_gpus", ["h100-sxm", "h200"])
    header = (["op class / backend / GPU", "rows", "median |error|", "p90 |error|", "bias"]
              + [f"median {b['bucket']}" for b in (stats[0]["by_size"] if stats else [])])

    def row(s: dict[str, Any]) -> tuple:
        return (_in_or_out(s["group"], fitted), s["n"], f"{s['median_abs']:.1%}",
                f"{s['p90_abs']:.1%}", f"{s['bias']:+.1%}",
                *[("–" if b["median_abs"] is None else f"{b['median_abs']:.0%} ({b['n']})")
                  for b in s["by_size"]])

    seen = [s for s in stats if s["group"].rsplit("/", 1)[-1] in fitted]
    unseen = [s for s in stats if s["group"].rsplit("/", 1)[-1] not in fitted]
    if seen:
        blocks.append(paragraph("GPUs the kernel classes were fitted on (in-sample):"))
        blocks.append(table(header, [row(s) for s in seen]))
    if unseen:
        blocks.append(paragraph("Unseen GPUs: never fitted, predicted from their datasheet "
                                "profile and the classes' numbers:"))
        blocks.append(table(header, [row(s) for s in unseen]))
    blocks += _calibration_blocks(summary.get("calibration", {}).get("analytic", {}))
    return blocks


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    folder = ctx.measurements_dir / gpu.name
    comparisons, unread = jsonl_comparisons(folder) if folder.is_dir() else ([], 0)
    from_runs = bool(comparisons)
    if not any(c.group.startswith("sdpa/") for c in comparisons):
        comparisons += sdpa_comparisons(ctx)
    if not comparisons:
        takeaway = (f"There are no measurements for {gpu.name} yet, so memsim's predictions "
                    "for this GPU carry no measured error bar.")
        return Page(SLUG, TITLE, takeaway, [unavailable(
            f"Measurements for {gpu.name}",
            f"no measurement files under {display_path(folder)}; run `make validate-gpu` on a "
            f"{gpu.display_name} and commit the results."),
            *silicon_blocks(ctx.measurements_dir)])
    stats = error_stats(comparisons)
    blocks: list[Any] = [_figure(comparisons, gpu.display_name)]
    worst = max(comparisons, key=lambda c: abs(c.error))
    blocks.append(paragraph(
        f"Largest error: {worst.model} model, {QUANTITIES[worst.quantity][0]} of "
        f"{worst.case.replace(',', ', ')} "
        f"— measured {QUANTITIES[worst.quantity][2](worst.measured)}, predicted "
        f"{QUANTITIES[worst.quantity][2](worst.predicted)} ({worst.error:+.0%})."))
    blocks.append(table(
        ["group", "quantity", "model", "cases", "median |error|", "worst |error|", "bias"],
        [(g, QUANTITIES[q][0], m, s["cases"], f"{s['median_abs_error']:.1%}",
          f"{s['max_abs_error']:.1%}", f"{s['bias']:+.1%}")
         for (g, m, q), s in stats.items()]))
    blocks.append(config_note(
        f"Profile {gpu.name} ({'calibrated' if gpu.calibrated_from else 'datasheet'}). "
        "Bias is the median signed error: negative means memsim predicts too little. "
        + ("Cases from `memsim validate` runs; predictions as recorded in them." if from_runs
           else "Cases from the ceilings run; predictions computed now.")))
    blocks.append(details(f"Every comparison ({len(comparisons)})", table(
        ["case", "quantity", "model", "measured", "memsim", "error", "source"],
        [(c.case.replace(",", ", "), QUANTITIES[c.quantity][0], c.model,
          QUANTITIES[c.quantity][2](c.measured), QUANTITIES[c.quantity][2](c.predicted),
          f"{c.error:+.1%}", c.source) for c in comparisons])))
    if unread:
        blocks.append(unavailable("Some validation cases",
                                  f"{unread} ok cases under {display_path(folder)} carry no "
                                  "prediction this page can read."))
    if not from_runs:
        blocks.append(unavailable(
            "Kernel-level validation (DRAM and L2 bytes, memsim's own kernels)",
            f"no `memsim validate` results (*.jsonl) under {display_path(folder)} yet."))
    blocks += silicon_blocks(ctx.measurements_dir)
    summary = {"errors": {f"{g}/{q}/{m}": s for (g, m, q), s in stats.items()}}
    return Page(SLUG, TITLE, _takeaway(gpu.display_name, stats), blocks, summary)
