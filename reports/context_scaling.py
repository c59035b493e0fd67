"""Page: context scaling — FLOPs, HBM bytes, memory and time against context length for
each algorithm (log-log), with PyTorch's flash SDPA measurements on the same axes, and the
KV cache of the presets against context.

Memory here is what a call allocates beyond its inputs: the output O (B·N·H·Dv elements)
plus the algorithm's workspace (standard attention: dense S and P, B·H·N·S each; FA-2: the
fp32 logsumexp, B·H·N). That is what ``torch.cuda.max_memory_allocated`` measures, so the
measured points sit on the same axes as the prediction.
"""

from __future__ import annotations

import numpy as np

from memsim.hardware import GPU
from memsim.inference import Setup, kv_cache_bytes
from memsim.models import load_model
from memsim.problem import AttentionProblem, Mask

from . import data
from .page import (
    ALGORITHM_COLORS,
    ALGORITHM_LABELS,
    MEASURED_COLOR,
    Context,
    Page,
    axis_title,
    config_note,
    fmt_tokens,
    hover,
    paragraph,
    style,
)

SLUG = "context-scaling"
TITLE = "Context scaling"
ALGORITHMS = ("standard", "flash1", "flash2", "dsa")
SEQ_LENS = 2 ** np.arange(9, 21)  # 512 … 1M tokens
# The shape of the measured PyTorch SDPA runs (measurements/h100-sxm): one Llama-2-7B layer.
SHAPE = AttentionProblem(batch=1, seq_len=4096, heads=32, head_dim=128, dtype="bf16",
                         mask=Mask(causal=True))
DEFAULT_PRESETS = (
    "meta-llama/Llama-2-7b-hf",            # MHA
    "meta-llama/Meta-Llama-3-70B",         # GQA 8
    "deepseek-ai/DeepSeek-V3",             # MLA
    "mistralai/Mistral-7B-v0.1",           # sliding window 4096
    "google/gemma-2-27b",                  # local/global 1:1
    "google/gemma-3-27b-pt",               # local/global 5:1
    "meta-llama/Llama-4-Scout-17B-16E",    # chunked local 3:1
)
KV_CONTEXTS = 2 ** np.arange(10, 21)       # 1K … 1M tokens
PANELS = (  # (quantity, unit, what it is)
    ("matmul FLOPs", "FLOP", "flops"),
    ("HBM traffic", "bytes", "hbm"),
    ("memory beyond the inputs", "bytes", "memory"),
    ("time", "s", "time"),
)


def _scaling_figure(gpu: GPU, ctx: Context):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[0] for p in PANELS],
                        horizontal_spacing=0.1, vertical_spacing=0.14)
    results = {}
    for algorithm in ALGORITHMS:
        cost, timing, tiling = data.attention_curve(SHAPE, gpu, algorithm, SEQ_LENS)
        problem = data.problem_for(algorithm, SHAPE)
        memory = data.extra_bytes(problem, cost.workspace_bytes, SEQ_LENS)
        values = {"flops": cost.flops, "hbm": cost.hbm_bytes, "memory": memory,
                  "time": timing.time_s}
        results[algorithm] = values
        config = [f"{data.describe_problem(problem.model_copy(update={'seq_len': int(n)}))}"
                  f"<br>{tiling.describe()}<br>{gpu.name}, memsim roofline" for n in SEQ_LENS]
        for i, (quantity, unit, key) in enumerate(PANELS):
            fig.add_scatter(
                x=SEQ_LENS, y=np.broadcast_to(values[key], SEQ_LENS.shape), mode="lines+markers",
                name=ALGORITHM_LABELS[algorithm], legendgroup=algorithm, showlegend=i == 0,
                line={"color": ALGORITHM_COLORS[algorithm]}, marker={"size": 5},
                customdata=config, hovertemplate=hover("N", f"{quantity} [{unit}]"),
                row=i // 2 + 1, col=i % 2 + 1)
    _add_measured(fig, gpu, ctx)
    for i, (quantity, unit, _key) in enumerate(PANELS):
        fig.update_xaxes(type="log", title_text=axis_title("context length N", "tokens"),
                         row=i // 2 + 1, col=i % 2 + 1)
        fig.update_yaxes(type="log", title_text=axis_title(quantity, unit),
                         exponentformat="SI", row=i // 2 + 1, col=i % 2 + 1)
    style(fig, f"One causal attention layer (B={SHAPE.B}, H={SHAPE.H}, D={SHAPE.D}, "
               f"{SHAPE.dtype}) on {gpu.display_name}", height_px=820)
    return fig, results


def _add_measured(fig, gpu: GPU, ctx: Context) -> int:
    """PyTorch flash SDPA time and peak extra memory (causal rows of SHAPE's heads and D)."""
    measured = data.ceilings(ctx.measurements_dir, gpu.name)
    if measured is None:
        return 0
    rows = [r for r in measured.sdpa_rows if r["causal"] and r["heads"] == SHAPE.H
            and r["head_dim"] == SHAPE.D and r["batch"] == SHAPE.B]
    if not rows:
        return 0
    n = [r["seq_len"] for r in rows]
    config = [f"PyTorch SDPA flash backend, B={r['batch']} N={r['seq_len']:,} H={r['heads']} "
              f"D={r['head_dim']} {r.get('dtype', 'bf16')} causal<br>{measured.device}, "
              f"{measured.file.name}" for r in rows]
    for key, row, col, label in (("peak_extra_bytes", 2, 1, "memory [bytes]"),
                                 ("time_s", 2, 2, "time [s]")):
        fig.add_scatter(x=n, y=[r[key] for r in rows], mode="markers",
                        name="measured: PyTorch flash SDPA", legendgroup="measured",
                        showlegend=key == "time_s",
                        marker={"symbol": "x", "size": 11, "color": MEASURED_COLOR},
                        customdata=config, hovertemplate=hover("N", label), row=row, col=col)
    return len(rows)


def _kv_figure(gpu: GPU, presets: tuple[str, ...]):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=1)
    kv_at = {}
    for name in presets:
        model = load_model(name)
        if not model.decoder:
            continue
        setup = Setup(model, gpu)
        kv = sum(kv_cache_bytes(setup, KV_CONTEXTS, 1).values())
        kv_at[model.name] = kv
        layouts = sorted({f"{g.count}× {g.attention.layout.upper()} {g.kind}"
                          for g in model.groups})
        config = [f"{model.name}: {', '.join(layouts)}; batch 1, bf16 KV, per sequence;"
                  f" trained up to {fmt_tokens(model.max_position_embeddings)} tokens"
                  for _ in KV_CONTEXTS]
        fig.add_scatter(x=KV_CONTEXTS, y=kv, mode="lines+markers", name=model.name,
                        customdata=config, hovertemplate=hover("context", "KV cache [bytes]"))
    fig.add_hline(y=gpu.spec.hbm_bytes, line={"dash": "dot", "color": "#555"},
                  annotation_text=f"{gpu.display_name} HBM capacity")
    fig.update_xaxes(type="log", title_text=axis_title("context length", "tokens"))
    fig.update_yaxes(type="log", title_text=axis_title("KV cache, all layers", "bytes"),
                     exponentformat="SI")
    style(fig, "KV cache per sequence against context (bf16)")
    return fig, kv_at


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    scaling, r = _scaling_figure(gpu, ctx)
    presets = ctx.models or DEFAULT_PRESETS
    kv, kv_at = _kv_figure(gpu, presets)
    i8, i128 = int(np.searchsorted(SEQ_LENS, 8192)), int(np.searchsorted(SEQ_LENS, 131072))
    growth = {a: {k: float(r[a][k][i128] / r[a][k][i8]) for k in ("flops", "memory")}
              for a in ("standard", "flash2")}
    takeaway = (
        f"From 8K to 128K tokens (16× the context) one attention layer's FLOPs grow "
        f"{growth['flash2']['flops']:.0f}× for every exact algorithm, but the memory it "
        f"allocates grows {growth['standard']['memory']:.0f}× for standard attention and "
        f"only {growth['flash2']['memory']:.0f}× for FlashAttention-2, which never "
        f"materialises the N×N scores.")
    blocks = [
        scaling,
        config_note(f"B={SHAPE.B}, H=K={SHAPE.H} (MHA), D={SHAPE.D}, {SHAPE.dtype}, causal, "
                    f"forward, N = S from {fmt_tokens(int(SEQ_LENS[0]))} to "
                    f"{fmt_tokens(int(SEQ_LENS[-1]))} (one layer of Llama-2-7B); "
                    f"sparse top-k: k={data.TOP_K} with DeepSeek's indexer (64 heads × 128, "
                    "fp8), which scores every earlier key: on this 32-head layer it does as "
                    "many FLOPs as dense attention, at the fp8 rate. Lines: memsim's analytic "
                    f"model and roofline on the {gpu.name} profile; crosses: measured PyTorch "
                    "flash SDPA where measurement files exist for this GPU."),
        kv,
        config_note("KV cache of every layer for one sequence, bf16; sliding-window and "
                    "chunked layers keep at most W (or C) tokens, MLA caches one latent per "
                    "token, DSA adds its fp8 indexer key."),
    ]
    if kv_at:
        largest = max(kv_at, key=lambda m: kv_at[m][-1])
        smallest = min(kv_at, key=lambda m: kv_at[m][-1])
        blocks.append(paragraph(
            f"At {fmt_tokens(int(KV_CONTEXTS[-1]))} tokens the KV cache ranges from "
            f"{kv_at[smallest][-1] / 1e9:.3g} GB ({smallest}) to "
            f"{kv_at[largest][-1] / 1e9:.3g} GB ({largest}) per sequence."))
    return Page(SLUG, TITLE, takeaway, blocks)
