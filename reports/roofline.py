"""Page: the roofline of one GPU, with each attention algorithm as points and PyTorch's
measured flash attention beside memsim's prediction for the same shapes.

x is arithmetic intensity, matmul FLOPs per HBM byte (memsim's analytic count); y is
attained matmul FLOP/s, FLOPs ÷ time. The roofs are min(peak FLOP/s, HBM bandwidth × x)
for the datasheet, for the profile's achievable fractions, and for the measured ceilings
(PyTorch bf16 matmul and device-to-device copy) where a measurement file exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.attention import predict
from memsim.errors import InputError
from memsim.problem import AttentionProblem, Mask

from . import data
from .page import (
    ALGORITHM_COLORS,
    ALGORITHM_LABELS,
    BOUND_NAMES,
    MEASURED_COLOR,
    Context,
    Page,
    axis_title,
    config_note,
    display_path,
    fmt_tokens,
    new_figure,
    unavailable,
)

SLUG = "roofline"
TITLE = "Roofline"
ALGORITHMS = ("standard", "flash1", "flash2", "dsa")
SEQ_LENS = (1024, 4096, 16384, 65536)
SHAPE = AttentionProblem(batch=1, seq_len=4096, heads=32, head_dim=128, dtype="bf16",
                         mask=Mask(causal=True))
INTENSITY = np.geomspace(1.0, 1e4, 200)  # FLOP/byte axis of the roofs
HOVER = ("intensity = %{x:.4s} FLOP/B<br>attained = %{y:.4s} FLOP/s<br>%{customdata}"
         "<extra>%{fullData.name}</extra>")


def _roof(fig, name: str, peak_flop_per_s: float, bytes_per_s: float, dash: str,
          colour: str, source: str) -> None:
    y = np.minimum(peak_flop_per_s, bytes_per_s * INTENSITY)
    config = [f"{source}: {peak_flop_per_s / 1e12:.0f} TFLOP/s, "
              f"{bytes_per_s / 1e12:.2f} TB/s"] * len(INTENSITY)
    fig.add_scatter(x=INTENSITY, y=y, mode="lines", name=name, customdata=config,
                    line={"dash": dash, "color": colour, "width": 2}, hovertemplate=HOVER)


def _predicted_points(fig, ctx: Context) -> dict[str, Any]:
    gpu = ctx.gpu
    out = {}
    for algorithm in ALGORITHMS:
        xs, ys, config, bounds = [], [], [], []
        for n in SEQ_LENS:
            p = data.problem_for(algorithm, SHAPE.model_copy(update={"seq_len": n}))
            r = predict(p, gpu, algorithm)
            xs.append(r.cost.flops / r.cost.hbm_bytes)
            ys.append(r.cost.flops / r.timing.time_s)
            bounds.append(r.timing.bound)
            config.append(f"{data.describe_problem(p)}<br>{r.tiling.describe()}<br>"
                          f"bound by {r.timing.bound}; memsim prediction, {gpu.name}")
        fig.add_scatter(x=xs, y=ys, mode="markers", name=ALGORITHM_LABELS[algorithm],
                        marker={"size": [7 + 3 * i for i in range(len(SEQ_LENS))],
                                "color": ALGORITHM_COLORS[algorithm], "opacity": 0.85},
                        customdata=config, hovertemplate=HOVER)
        out[algorithm] = {"intensity": xs, "flop_per_s": ys, "bound": bounds}
    return out


def _traced_points(fig, ctx: Context) -> dict[str, Any]:
    """FA-2 replayed through the L2 model (memsim.trace): FLOPs per *DRAM* byte, for the
    lengths the trace-driven model simulates within the report's event budget."""
    simulate = data.trace_simulate()
    if simulate is None:
        return {}
    lengths, xs, ys, config, bounds = [], [], [], [], []
    for n in SEQ_LENS:
        p = SHAPE.model_copy(update={"seq_len": n})
        r = predict(p, ctx.gpu, "flash2")
        try:
            t = simulate(p, ctx.gpu, "flash2", r.tiling, l2=True)
        except (NotImplementedError, InputError):
            continue
        lengths.append(n)
        xs.append(r.cost.flops / t.cost.hbm_bytes)
        ys.append(r.cost.flops / t.time_s)
        bounds.append(t.bound)
        config.append(f"{data.describe_problem(p)}<br>{r.tiling.describe()}<br>trace-driven "
                      f"(L2 hit rate {t.l2_hit_rate:.1%}), bound by {t.bound}, {ctx.gpu.name}")
    if not lengths:
        return {}
    fig.add_scatter(x=xs, y=ys, mode="markers", name="FlashAttention-2, trace-driven (L2)",
                    marker={"size": [7 + 3 * SEQ_LENS.index(n) for n in lengths],
                            "symbol": "diamond-open", "line": {"width": 2},
                            "color": ALGORITHM_COLORS["flash2"]},
                    customdata=config, hovertemplate=HOVER)
    return {"seq_len": lengths, "intensity": xs, "flop_per_s": ys, "bound": bounds}


def _measured_points(fig, ctx: Context, measured: data.Ceilings) -> int:
    """Measured PyTorch flash SDPA: measured FLOP/s at memsim's FA-2 intensity for the shape."""
    xs, ys, config = [], [], []
    for row in measured.sdpa_rows:
        p = data.sdpa_problem(row)
        r = predict(p, ctx.gpu, "flash2")
        xs.append(r.cost.flops / r.cost.hbm_bytes)
        ys.append(row["flop"] / row["time_s"])
        config.append(f"PyTorch SDPA flash, {data.describe_problem(p)}; measured "
                      f"{row['time_s'] * 1e3:.3g} ms on {measured.device} "
                      f"({measured.file.name}); x from memsim's HBM bytes; "
                      f"memsim predicts {r.timing.time_s * 1e3:.3g} ms")
    fig.add_scatter(x=xs, y=ys, mode="markers", name="measured: PyTorch flash SDPA",
                    marker={"symbol": "x", "size": 12, "color": MEASURED_COLOR},
                    customdata=config, hovertemplate=HOVER)
    return len(xs)


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    fig = new_figure(f"Roofline of {gpu.display_name} (bf16 tensor cores, HBM)", 620)
    peak = gpu.peak_flop_per_s("tensor", "bf16")
    _roof(fig, "datasheet roof", peak, gpu.spec.hbm_bandwidth_bytes_per_s, "solid", "#111",
          f"{gpu.name} profile, datasheet")
    _roof(fig, "achievable roof (profile efficiency)", gpu.achievable_flop_per_s("tensor"),
          gpu.achievable_hbm_bytes_per_s, "dash", "#6b7280",
          f"{gpu.name} profile × efficiency factors")
    measured = data.ceilings(ctx.measurements_dir, gpu.name)
    blocks: list[Any] = [fig]
    if measured and "bf16" in measured.matmul_flop_per_s and measured.hbm_bytes_per_s:
        _roof(fig, "measured roof (bf16 matmul, d2d copy)", measured.matmul_flop_per_s["bf16"],
              measured.hbm_bytes_per_s, "dot", "#b91c1c", f"measured, {measured.file.name}")
    points = _predicted_points(fig, ctx)
    traced = _traced_points(fig, ctx)
    n_measured = _measured_points(fig, ctx, measured) if measured else 0
    fig.update_xaxes(type="log", exponentformat="SI",
                     title_text=axis_title("arithmetic intensity", "FLOP per HBM byte"))
    fig.update_yaxes(type="log", exponentformat="SI",
                     title_text=axis_title("attained matmul throughput", "FLOP/s"))
    blocks.append(config_note(
        f"B={SHAPE.B}, H=K={SHAPE.H} (MHA), D={SHAPE.D}, {SHAPE.dtype}, causal, forward, "
        f"N = S ∈ {{{', '.join(map(fmt_tokens, SEQ_LENS))}}} "
        f"(larger markers for longer sequences); sparse top-k with k = {data.TOP_K}. Points "
        "are memsim's analytic FLOPs and HBM bytes over its roofline time; crosses are "
        "PyTorch's measured time for the shapes in the measurement file, placed at memsim's "
        "FA-2 intensity for that shape."))
    if not n_measured:
        blocks.append(unavailable("Measured points", f"no measurement file for {gpu.name} "
                                  f"under {display_path(ctx.measurements_dir)}."))
    ridge = gpu.ridge_flop_per_byte("tensor", "bf16")
    fa2, std = points["flash2"], points["standard"]
    i16 = SEQ_LENS.index(16384)
    if traced and 16384 in traced["seq_len"]:
        t16 = traced["seq_len"].index(16384)
        takeaway = (
            f"On {gpu.display_name} (ridge point {ridge:.0f} FLOP/byte), FlashAttention-2 at "
            f"16K tokens does only {fa2['intensity'][i16]:.0f} FLOP per byte it asks of L2, "
            f"but most of those bytes hit in L2, so it does "
            f"{traced['intensity'][t16]:.0f} FLOP per DRAM byte and is bound by "
            f"{BOUND_NAMES.get(traced['bound'][t16], traced['bound'][t16])}, while standard "
            f"attention stays near {std['intensity'][i16]:.0f} FLOP/byte, bound by "
            f"{BOUND_NAMES[std['bound'][i16]]}.")
        points["flash2_trace"] = traced
    else:
        takeaway = (
            f"On {gpu.display_name} (ridge point {ridge:.0f} FLOP/byte), FlashAttention-2 at "
            f"16K tokens reaches {fa2['intensity'][i16]:.0f} FLOP/byte and is bound by "
            f"{BOUND_NAMES[fa2['bound'][i16]]}, while standard attention stays near "
            f"{std['intensity'][i16]:.0f} FLOP/byte at every length, bound by "
            f"{BOUND_NAMES[std['bound'][i16]]}, because it writes and re-reads the N×N "
            "scores.")
    summary = {"ridge_flop_per_byte": ridge, "points": points, "measured_points": n_measured}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
