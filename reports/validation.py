"""Page: validation — memsim's prediction against measurement (time, HBM bytes, workspace)
from the committed measurement files of the chosen GPU, with the error table.

Sources, in ``measurements/<gpu>/``:

- ``ceilings-*.json`` (kernels/ceilings.py): PyTorch flash SDPA forward times and peak extra
  memory, compared with memsim's FlashAttention-2 prediction for the same shapes (tensor
  cores, bf16), extra memory = output + workspace;
- ``*.jsonl`` (``memsim validate``, :mod:`memsim.validation.records`): a header line, then
  one ``"type": "case"`` line per case with ``"prediction": {"analytic": {...},
  "trace": {...}}`` and ``"measurement": {...}``; every ``ok`` case contributes the
  quantities a prediction and the measurement both name.

Where the trace-driven model (:mod:`memsim.trace`) has landed, its time for each SDPA shape
is compared too, beside the analytic roofline's.

Where a GPU has no files the page says so instead of drawing empty axes.
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
    display_path,
    fmt_bytes,
    fmt_seconds,
    style,
    table,
    unavailable,
)

SLUG = "validation"
TITLE = "Validation"
QUANTITIES = {  # quantity → (axis unit, formatter)
    "time_s": ("s", fmt_seconds),
    "hbm_bytes": ("bytes", fmt_bytes),
    "workspace_bytes": ("bytes", fmt_bytes),
    "extra_bytes": ("bytes", fmt_bytes),
}
MODELS = {"analytic": "circle", "trace": "diamond"}  # memsim's models → marker symbol
COLORS = {"time_s": "#1f77b4", "hbm_bytes": "#2ca02c", "workspace_bytes": "#7c3aed",
          "extra_bytes": "#9467bd"}


@dataclass(frozen=True)
class Comparison:
    """One measured quantity of one case beside memsim's prediction of it."""

    case: str
    quantity: str
    measured: float
    predicted: float
    source: str
    short: str = ""  # a few words naming the case in sentences
    model: str = "analytic"  # which of memsim's models predicted: "analytic" or "trace"

    @property
    def error(self) -> float:
        """Relative error of the prediction, (predicted − measured) / measured."""
        return (self.predicted - self.measured) / self.measured


def sdpa_comparisons(ctx: Context) -> list[Comparison]:
    """PyTorch flash SDPA rows of the ceilings file against memsim's FA-2 prediction."""
    measured = data.ceilings(ctx.measurements_dir, ctx.gpu.name)
    if measured is None:
        return []
    out = []
    simulate = data.trace_simulate()
    for row in measured.sdpa_rows:
        p = data.sdpa_problem(row)
        r = predict(p, ctx.gpu, "flash2")
        case = f"PyTorch SDPA flash, {data.describe_problem(p)}"
        short = f"N={p.N:,} {p.mask.describe()}"
        source = f"{measured.file.name} ({measured.device})"
        out.append(Comparison(case, "time_s", row["time_s"], r.timing.time_s, source, short))
        if simulate is not None:
            try:
                traced = simulate(p, ctx.gpu, "flash2", r.tiling, l2=True)
            except (NotImplementedError, InputError):
                simulate = None
            else:
                out.append(Comparison(case, "time_s", row["time_s"], traced.time_s, source,
                                      short, model="trace"))
        if isinstance(row.get("peak_extra_bytes"), int | float) and row["peak_extra_bytes"]:
            out.append(Comparison(case, "extra_bytes", row["peak_extra_bytes"],
                                  data.extra_bytes(p, r.cost.workspace_bytes), source, short))
    return out


def jsonl_comparisons(folder: Path) -> tuple[list[Comparison], int]:
    """Cases of ``memsim validate`` JSONL files: (comparisons, lines that had none)."""
    out, unread = [], 0
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                case = json.loads(line)
            except json.JSONDecodeError:
                unread += 1
                continue
            if case.get("type") != "case" or case.get("status") != "ok":
                continue  # the header, failed and skipped cases
            pred, meas = case.get("prediction"), case.get("measurement")
            if not isinstance(pred, dict) or not isinstance(meas, dict):
                unread += 1
                continue
            name = str(case.get("id", "case"))
            for model in ("analytic", "trace"):
                predicted = pred.get(model)
                if not isinstance(predicted, dict):
                    continue
                for q in QUANTITIES:
                    m, p = meas.get(q), predicted.get(q)
                    if isinstance(m, int | float) and isinstance(p, int | float) and m > 0:
                        out.append(Comparison(name[:120], q, float(m), float(p), path.name,
                                              name[:40], model))
    return out, unread


def _figure(comparisons: list[Comparison], gpu_name: str):
    from plotly.subplots import make_subplots

    quantities = [q for q in QUANTITIES if any(c.quantity == q for c in comparisons)]
    fig = make_subplots(rows=1, cols=len(quantities), horizontal_spacing=0.12,
                        subplot_titles=[_title(q) for q in quantities])
    for col, q in enumerate(quantities, start=1):
        cs = [c for c in comparisons if c.quantity == q]
        unit, fmt = QUANTITIES[q]
        values = [v for c in cs for v in (c.measured, c.predicted)]
        lo, hi = min(values) / 1.5, max(values) * 1.5
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="prediction = measurement",
                        line={"dash": "dash", "color": "#9ca3af"}, showlegend=col == 1,
                        customdata=["y = x"] * 2, hovertemplate="%{customdata}<extra></extra>",
                        row=1, col=col)
        for model in MODELS:
            mine = [c for c in cs if c.model == model]
            if not mine:
                continue
            fig.add_scatter(x=[c.measured for c in mine], y=[c.predicted for c in mine],
                            mode="markers", name=f"{_title(q)}, {model} model",
                            marker={"size": 10, "color": COLORS[q], "symbol": MODELS[model],
                                    "line": {"width": 1, "color": MEASURED_COLOR}},
                            customdata=[f"{c.case}<br>measured {fmt(c.measured)}, {model} "
                                        f"model {fmt(c.predicted)} ({c.error:+.0%})"
                                        f"<br>{c.source}" for c in mine],
                            hovertemplate="%{customdata}<extra></extra>", row=1, col=col)
        fig.update_xaxes(type="log", exponentformat="SI", row=1, col=col,
                         title_text=axis_title(f"measured {_title(q)}", unit))
        fig.update_yaxes(type="log", exponentformat="SI", row=1, col=col,
                         title_text=axis_title(f"memsim's {_title(q)}", unit))
    style(fig, f"Predicted against measured on {gpu_name}", height_px=520)
    return fig


def _title(q: str) -> str:
    return {"time_s": "time", "hbm_bytes": "HBM bytes", "workspace_bytes": "workspace",
            "extra_bytes": "memory beyond inputs"}[q]


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    folder = ctx.measurements_dir / gpu.name
    comparisons = sdpa_comparisons(ctx)
    from_jsonl, unread = jsonl_comparisons(folder) if folder.is_dir() else ([], 0)
    comparisons += from_jsonl
    if not comparisons:
        takeaway = (f"There are no measurements for {gpu.name} yet, so memsim's predictions "
                    "for this GPU carry no measured error bar.")
        return Page(SLUG, TITLE, takeaway, [unavailable(
            f"Measurements for {gpu.name}",
            f"no measurement files under {display_path(folder)}; run `make validate-gpu` on a "
            f"{gpu.display_name} and commit the results.")])
    blocks: list[Any] = [_figure(comparisons, gpu.display_name)]
    rows = [(c.case, _title(c.quantity), c.model, QUANTITIES[c.quantity][1](c.measured),
             QUANTITIES[c.quantity][1](c.predicted), f"{c.error:+.1%}", c.source)
            for c in comparisons]
    stats = error_stats(comparisons)
    blocks.append(table(["quantity", "model", "cases", "median |error|", "90th percentile",
                         "worst"],
                        [(_title(q), model, s["cases"], f"{s['median_abs_error']:.1%}",
                          f"{s['p90_abs_error']:.1%}", f"{s['max_abs_error']:.1%}")
                         for (q, model), s in stats.items()]))
    blocks.append(table(["case", "quantity", "model", "measured", "memsim", "error",
                         "source"], rows))
    blocks.append(config_note(
        "Prediction: memsim's analytic FlashAttention-2 cost and roofline (and, where it has "
        f"landed, the trace-driven model's time) on the {gpu.name} profile "
        f"({'calibrated' if gpu.calibrated_from else 'datasheet'}); "
        "memory beyond inputs = output + workspace, what torch.cuda.max_memory_allocated "
        "adds to the inputs."))
    if unread:
        blocks.append(unavailable("Some validation cases",
                                  f"{unread} lines of the JSONL files under {display_path(folder)}"
                                  " carry no "
                                  "predicted/measured pair this page can read."))
    if not from_jsonl:
        blocks.append(unavailable(
            "Kernel-level validation (HBM and L2 bytes, memsim's own kernels)",
            f"no `memsim validate` results (*.jsonl) under {display_path(folder)} yet."))
    t = stats.get(("time_s", "analytic"))
    worst = max((c for c in comparisons if c.quantity == "time_s" and c.model == "analytic"),
                key=lambda c: abs(c.error), default=None)
    trace = stats.get(("time_s", "trace"))
    memory = stats.get(("extra_bytes", "analytic"))
    if t and worst:
        takeaway = (f"On {gpu.display_name}, memsim's roofline predicts the measured time of "
                    f"{t['cases']} attention calls within a median {t['median_abs_error']:.0%}"
                    f" (worst {worst.error:+.0%} at {worst.short})"
                    + (f", its trace-driven model within a median "
                       f"{trace['median_abs_error']:.0%} (worst {trace['max_abs_error']:.0%})"
                       if trace else "")
                    + (f", and their memory within {memory['max_abs_error']:.2%}"
                       if memory else "") + ".")
    else:
        takeaway = (f"On {gpu.display_name}, {len(comparisons)} measured quantities are "
                    "compared with memsim's predictions below.")
    summary = {"errors": {f"{q}/{model}": s for (q, model), s in stats.items()}}
    return Page(SLUG, TITLE, takeaway, blocks, summary)


def error_stats(comparisons: list[Comparison]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (quantity, model): cases, median, 90th percentile and worst |relative error|."""
    stats = {}
    for q in QUANTITIES:
        for model in MODELS:
            errs = np.abs([c.error for c in comparisons
                           if c.quantity == q and c.model == model])
            if errs.size:
                stats[(q, model)] = {"cases": int(errs.size),
                                     "median_abs_error": float(np.median(errs)),
                                     "p90_abs_error": float(np.percentile(errs, 90)),
                                     "max_abs_error": float(errs.max())}
    return stats
