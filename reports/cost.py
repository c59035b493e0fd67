"""Page: cost — $ per million tokens against token position, prefill and decode, for dense
against sparse attention (DeepSeek-V3.1-Terminus against V3.2-Exp) and for MHA against GQA
(Qwen2.5-7B against the same model with one K/V head per query head).

Curves are :func:`memsim.inference.cost_curve`: the marginal cost of the token at position
p, prefilled in chunks of 2,048 tokens, or decoded one step at a time. DeepSeek runs with
tensor parallelism 1 and a large batch: with data-parallel attention and experts spread
over many GPUs, the cost per token equals that of one GPU serving the whole batch (weights
read once per step for all of it), which is what memsim computes at TP 1.
"""

from __future__ import annotations

from typing import Any

from memsim.hardware import GPU
from memsim.inference import Setup, cost_curve
from memsim.models import ModelConfig, load_model

from . import data
from .page import Context, Page, axis_title, config_note, fmt_tokens, style

SLUG = "cost"
TITLE = "Cost per million tokens"
MAX_CONTEXT = 131072
POINTS = 32
DENSE, SPARSE = "deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek-ai/DeepSeek-V3.2-Exp"
DEEPSEEK_BATCH = 256     # sequences decoded together, cluster-wide (see module doc)
GQA_MODEL = "Qwen/Qwen2.5-7B"
GQA_BATCH = 1
PHASES = (("prefill", "prefill_usd_per_million_tokens"),
          ("decode", "decode_usd_per_million_tokens"))
DASH = {"prefill": "dot", "decode": "solid"}


def deepseek_setup(name: str, gpu: GPU, price: float | None = None) -> Setup:
    """DeepSeek as served: fp8 weights (V3 report §3.3), bf16 MLA cache, TP 1."""
    return Setup(load_model(name), gpu, weight_dtype="fp8", usd_per_gpu_hour=price)


def curves(setup: Setup, batch: int) -> dict[str, list[float]]:
    """Positions and $ per million tokens of prefill and decode (memsim.inference)."""
    rows = cost_curve(setup, MAX_CONTEXT, points=POINTS, batch=batch)
    return {"position": [r["position"] for r in rows],
            **{phase: [r[key] for r in rows] for phase, key in PHASES}}


def _panel(fig, col: int, label: str, setup: Setup, batch: int, colour: str
           ) -> dict[str, list[float]]:
    c = curves(setup, batch)
    for phase, _key in PHASES:
        config = [f"{setup.model.name}, {phase} at position {p:,}; batch {batch}, TP "
                  f"{setup.tp}, {setup.weight_dtype} weights, {setup.kv_dtype} KV, "
                  f"{setup.gpu.name} at ${setup.price:g}/GPU-hour" for p in c["position"]]
        fig.add_scatter(x=c["position"], y=c[phase], mode="lines", name=f"{label}: {phase}",
                        line={"color": colour, "dash": DASH[phase], "width": 2.5},
                        customdata=config, row=1, col=col,
                        hovertemplate="position %{x:,} tokens<br>$%{y:.3g} per million tokens"
                                      "<br>%{customdata}<extra>%{fullData.name}</extra>")
    return c


def _model_variants() -> tuple[ModelConfig, ModelConfig]:
    gqa = load_model(GQA_MODEL)
    return gqa, data.with_kv_heads(gqa, gqa.groups[0].attention.heads)


def build(ctx: Context) -> Page:
    from plotly.subplots import make_subplots

    gpu = ctx.gpu
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"dense vs sparse attention (DeepSeek, batch {DEEPSEEK_BATCH})",
        f"MHA vs GQA ({GQA_MODEL.split('/')[1]}, batch {GQA_BATCH})"))
    dense = _panel(fig, 1, "V3.1-Terminus (dense MLA)", deepseek_setup(DENSE, gpu),
                   DEEPSEEK_BATCH, "#d62728")
    sparse = _panel(fig, 1, "V3.2-Exp (DSA, top-2048)", deepseek_setup(SPARSE, gpu),
                    DEEPSEEK_BATCH, "#2ca02c")
    gqa_model, mha_model = _model_variants()
    gqa = _panel(fig, 2, f"GQA (K={gqa_model.groups[0].attention.kv_heads})",
                 Setup(gqa_model, gpu), GQA_BATCH, "#1f77b4")
    mha = _panel(fig, 2, f"MHA (K={mha_model.groups[0].attention.kv_heads})",
                 Setup(mha_model, gpu), GQA_BATCH, "#ff7f0e")
    for col in (1, 2):
        fig.update_xaxes(title_text=axis_title("token position", "tokens"), row=1, col=col)
        fig.update_yaxes(type="log", title_text=axis_title("cost", "USD per million tokens"),
                         row=1, col=col)
    style(fig, f"Marginal $ per million tokens on {gpu.display_name} at "
               f"${gpu.price.usd_per_gpu_hour:g}/GPU-hour", height_px=600)
    at = fmt_tokens(MAX_CONTEXT)
    takeaway = (
        f"At {at} tokens on {gpu.name}, sparse attention cuts DeepSeek's decode cost from "
        f"${dense['decode'][-1]:.2f} to ${sparse['decode'][-1]:.2f} and its prefill cost "
        f"from ${dense['prefill'][-1]:.2f} to ${sparse['prefill'][-1]:.2f} per million tokens, "
        f"and GQA makes {GQA_MODEL.split('/')[1]}'s decode "
        f"{mha['decode'][-1] / gqa['decode'][-1]:.1f}× cheaper than MHA while prefill barely "
        f"changes ({mha['prefill'][-1] / gqa['prefill'][-1]:.2f}×).")
    blocks: list[Any] = [
        fig,
        config_note(
            f"DeepSeek: fp8 weights, bf16 latent cache, TP 1, a decode batch of "
            f"{DEEPSEEK_BATCH} sequences (the per-token cost of a data-parallel-attention "
            "deployment serving that batch), prefill in chunks of 2,048 tokens; V3.2-Exp runs "
            "its lightning indexer and top-2048 sparse MLA, V3.1-Terminus dense MLA. "
            f"{GQA_MODEL}: bf16, batch {GQA_BATCH}, TP 1, against the same model with "
            f"K = H = {mha_model.groups[0].attention.heads} K/V heads. Price: the "
            f"{gpu.name} profile's ${gpu.price.usd_per_gpu_hour:g}/GPU-hour "
            f"({gpu.price.date})."),
    ]
    summary = {"deepseek_batch": DEEPSEEK_BATCH, "position": MAX_CONTEXT,
               "dense": {p: dense[p][-1] for p, _ in PHASES},
               "sparse": {p: sparse[p][-1] for p, _ in PHASES},
               "gqa": {p: gqa[p][-1] for p, _ in PHASES},
               "mha": {p: mha[p][-1] for p, _ in PHASES}}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
