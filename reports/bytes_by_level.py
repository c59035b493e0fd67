"""Page: where the bytes go — traffic at each level of the memory hierarchy (HBM, L2, SRAM)
for standard attention, FlashAttention-1, FlashAttention-2 and sparse top-k attention on
one shape, the analytic count beside the trace-driven one.

The analytic model counts every byte a kernel asks of global memory and assumes none of it
is served again by L2 (HBM = L2 traffic). The trace-driven model (:mod:`memsim.trace`)
replays the schedule through an L2 and counts only what reaches DRAM; where it has not
landed yet the page says so.
"""

from __future__ import annotations

from typing import Any

from memsim.algorithms import compulsory_bytes
from memsim.attention import AttentionPrediction, predict
from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.problem import AttentionProblem, Mask

from . import data, validation
from .page import (
    ALGORITHM_LABELS,
    MEASURED_COLOR,
    Context,
    Page,
    axis_title,
    config_note,
    fmt_bytes,
    new_figure,
    unavailable,
)

SLUG = "bytes"
TITLE = "Where the bytes go"
ALGORITHMS = ("standard", "flash1", "flash2", "dsa")
# One layer of Llama-3-8B (H = 32, K = 8, D = 128) prefilling 8K tokens.
SHAPE = AttentionProblem(batch=1, seq_len=8192, heads=32, kv_heads=8, head_dim=128,
                         dtype="bf16", mask=Mask(causal=True))
LEVELS = (  # (label, colour, Cost attribute)
    ("HBM read", "#1d4ed8", "hbm_read_bytes"),
    ("HBM write", "#60a5fa", "hbm_write_bytes"),
    ("L2 ↔ SM (global)", "#f59e0b", "global_bytes"),
    ("SRAM (shared memory)", "#10b981", "sram_bytes"),
)
TRACE_COLOR = "#7c3aed"


def _predictions(gpu: GPU) -> dict[str, AttentionPrediction]:
    return {a: predict(data.problem_for(a, SHAPE), gpu, a) for a in ALGORITHMS}


def _traced(preds: dict[str, AttentionPrediction], gpu: GPU) -> dict[str, Any]:
    """Trace-driven results (L2 on) per algorithm the trace model runs; {} without it."""
    simulate = data.trace_simulate()
    if simulate is None:
        return {}
    out = {}
    for a, p in preds.items():
        try:
            out[a] = simulate(p.problem, gpu, a, p.tiling, l2=True)
        except (NotImplementedError, InputError):  # not (yet) simulated for this algorithm
            continue
    return out


def _takeaway(preds: dict, traced: dict, floor: float) -> str:
    """The page's one-sentence finding: trace-driven HBM bytes where the trace ran, else the
    analytic (no-reuse) counts, against the compulsory ``floor`` (bytes)."""
    std, fa1, fa2 = (preds[a].cost for a in ("standard", "flash1", "flash2"))
    head = f"For one causal Llama-3-8B layer at {SHAPE.N // 1024}K tokens"
    if "standard" in traced and "flash2" in traced:
        std_t, fa2_t = (float(traced[a].cost.hbm_bytes) for a in ("standard", "flash2"))
        takeaway = (
            f"{head}, FlashAttention-2's blocks ask L2 for {fmt_bytes(fa2.global_bytes)} but "
            f"only {fmt_bytes(fa2_t)} reaches HBM once the schedule is replayed through L2 "
            f"({fa2_t / floor:.2f}× the compulsory traffic), while standard attention still "
            f"moves {fmt_bytes(std_t)}, {std_t / fa2_t:.0f}× as much, because its N×N scores "
            "do not fit in L2.")
    else:
        takeaway = (
            f"{head}, standard attention moves {std.hbm_bytes / fa2.hbm_bytes:.1f}× the HBM "
            f"bytes of FlashAttention-2 ({fmt_bytes(std.hbm_bytes)} against "
            f"{fmt_bytes(fa2.hbm_bytes)}, {fa2.hbm_bytes / floor:.1f}× the compulsory "
            f"{fmt_bytes(floor)}), and FlashAttention-1 moves "
            f"{fa1.hbm_bytes / fa2.hbm_bytes:.1f}× because it re-reads and re-writes the "
            "output for every K/V tile.")
    return takeaway


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    preds = _predictions(gpu)
    traced = _traced(preds, gpu)
    labels = [ALGORITHM_LABELS[a] for a in ALGORITHMS]
    fig = new_figure(f"Bytes moved per level: one causal layer, N = S = {SHAPE.N:,} "
                     f"on {gpu.display_name}")
    for label, colour, attr in LEVELS:
        values = [float(getattr(preds[a].cost, attr)) for a in ALGORITHMS]
        config = [f"{data.describe_problem(preds[a].problem)}<br>{preds[a].tiling.describe()}"
                  f"<br>analytic model (no L2 reuse), {gpu.name}" for a in ALGORITHMS]
        fig.add_bar(x=labels, y=values, name=f"{label} (analytic)", marker_color=colour,
                    customdata=config,
                    hovertemplate="%{x}<br>bytes = %{y:.4s}<br>%{customdata}"
                                  "<extra>%{fullData.name}</extra>")
    if traced:
        done = [a for a in ALGORITHMS if a in traced]
        values = [float(traced[a].cost.hbm_bytes) for a in done]
        config = [f"{data.describe_problem(preds[a].problem)}<br>trace-driven, L2 model on, "
                  f"L2 hit rate {traced[a].l2_hit_rate:.1%}, {gpu.name}" for a in done]
        fig.add_bar(x=[ALGORITHM_LABELS[a] for a in done], y=values,
                    name="HBM read + write (trace, L2 model)",
                    marker_color=TRACE_COLOR, customdata=config,
                    hovertemplate="%{x}<br>bytes = %{y:.4s}<br>%{customdata}"
                                  "<extra>%{fullData.name}</extra>")
    floor = compulsory_bytes(SHAPE)
    fig.add_hline(y=floor, line={"dash": "dot", "color": "#444"},
                  annotation_text=f"compulsory: read Q, K, V and write O once "
                                  f"({fmt_bytes(floor)})",
                  annotation_position="top left")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=axis_title("algorithm", "kernel schedule"))
    fig.update_yaxes(type="log", exponentformat="SI",
                     title_text=axis_title("traffic", "bytes"))

    takeaway = _takeaway(preds, traced, floor)
    blocks: list[Any] = [
        fig,
        config_note(f"{data.describe_problem(SHAPE)}; sparse top-k uses k = {data.TOP_K} "
                    "with DeepSeek's lightning indexer on the same layer; tiles are memsim's "
                    "defaults (hover)."),
    ]
    missing = [ALGORITHM_LABELS[a] for a in ALGORITHMS if a not in traced]
    if missing:
        blocks.append(unavailable(
            "Trace-driven HBM bytes (L2 model) for " + ", ".join(missing),
            "memsim.trace (the trace-driven simulator) does not run these in this checkout, "
            f"or would need more than the report's {data.TRACE_EVENT_BUDGET:,} tile events; "
            "their bars show the analytic count only, which assumes no reuse in L2."))
    measured = _measured_figure(ctx)
    if measured is None:
        blocks.append(unavailable(
            "Measured bytes", "no Nsight Compute DRAM/L2 byte counts are committed under "
            f"measurements/{gpu.name}/ yet (they come with `memsim validate --ncu on`)."))
    else:
        blocks += [measured, config_note(
            "Nsight Compute DRAM and L2 bytes of PyTorch SDPA kernels from the committed "
            "`memsim validate` run, beside the analytic and trace-driven predictions recorded "
            "in that run for the same kernels; hover a bar for its exact configuration.")]
    summary = {a: {"hbm_bytes": float(preds[a].cost.hbm_bytes),
                   "global_bytes": float(preds[a].cost.global_bytes),
                   "sram_bytes": float(preds[a].cost.sram_bytes)} for a in ALGORITHMS}
    summary["compulsory_bytes"] = floor
    return Page(SLUG, TITLE, takeaway, blocks, summary)


MEASURED_LEVELS = {"hbm_bytes": "HBM", "l2_bytes": "L2"}
BAR_COLORS = {"measured": MEASURED_COLOR, "analytic": "#f59e0b", "trace": TRACE_COLOR}


def _measured_figure(ctx: Context):
    """Nsight Compute's HBM and L2 bytes of the committed `memsim validate` runs beside both
    of memsim's predictions for the same kernels; None where no such measurement exists."""
    folder = ctx.measurements_dir / ctx.gpu.name
    found = validation.jsonl_comparisons(folder)[0] if folder.is_dir() else []
    found = [c for c in found if c.group.startswith("ncu/") and c.quantity in MEASURED_LEVELS]
    if not found:
        return None
    fig = new_figure(f"Measured with Nsight Compute on {ctx.gpu.display_name}: bytes per "
                     "level against memsim's two models", 480)
    keys = sorted({(c.group, c.quantity, c.case) for c in found})
    labels = [f"{g.split('/', 1)[1]}: {MEASURED_LEVELS[q]}" for g, q, _ in keys]
    for series in ("measured", "analytic", "trace"):
        values, config = [], []
        for g, q, case in keys:
            c = next((c for c in found if (c.group, c.quantity, c.case) == (g, q, case)
                      and c.model == (series if series != "measured" else c.model)), None)
            value = None if c is None else c.measured if series == "measured" else c.predicted
            values.append(value)
            config.append(f"{case.replace(',', ', ')}<br>{c.source if c else ''}")
        fig.add_bar(x=labels, y=values, name=series if series == "measured"
                    else f"memsim {series}", marker_color=BAR_COLORS[series],
                    customdata=config, hovertemplate="%{x}<br>bytes = %{y:.4s}<br>"
                                                     "%{customdata}<extra>%{fullData.name}"
                                                     "</extra>")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=axis_title("kernel and level", "PyTorch SDPA backend"))
    fig.update_yaxes(type="log", exponentformat="SI", title_text=axis_title("traffic", "bytes"))
    return fig
