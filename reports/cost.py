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

from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.inference import Setup, cost_curve
from memsim.models import ModelConfig, load_model

from . import data
from .page import Context, Page, axis_title, config_note, fmt_tokens, style, unavailable

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
    """DeepSeek as served: fp8 weights (V3 report §3.3) where the GPU has fp8 tensor cores,
    else bf16; bf16 latent cache; TP 1."""
    weights = "fp8" if gpu.spec.fp8_tensor_flop_per_s else "bf16"
    return Setup(load_model(name), gpu, weight_dtype=weights, usd_per_gpu_hour=price)


def curves(setup: Setup, batch: int) -> dict[str, Any]:
    """Positions and $ per million tokens of prefill and decode (memsim.inference)."""
    rows = cost_curve(setup, MAX_CONTEXT, points=POINTS, batch=batch)
    return {"setup": setup, "batch": batch, "position": [r["position"] for r in rows],
            **{phase: [r[key] for r in rows] for phase, key in PHASES}}


def _draw(fig, col: int, label: str, c: dict[str, Any], colour: str) -> None:
    setup = c["setup"]
    for phase, _key in PHASES:
        config = [f"{setup.model.name}, {phase} at position {p:,}; batch {c['batch']}, TP "
                  f"{setup.tp}, {setup.weight_dtype} weights, {setup.kv_dtype} KV, "
                  f"{setup.gpu.name} at ${setup.price:g}/GPU-hour" for p in c["position"]]
        fig.add_scatter(x=c["position"], y=c[phase], mode="lines", name=f"{label}: {phase}",
                        line={"color": colour, "dash": DASH[phase], "width": 2.5},
                        customdata=config, row=1, col=col,
                        hovertemplate="position %{x:,} tokens<br>$%{y:.3g} per million tokens"
                                      "<br>%{customdata}<extra>%{fullData.name}</extra>")


def _model_variants() -> tuple[ModelConfig, ModelConfig]:
    gqa = load_model(GQA_MODEL)
    return gqa, data.with_kv_heads(gqa, gqa.groups[0].attention.heads)


def build(ctx: Context) -> Page:
    from plotly.subplots import make_subplots

    gpu = ctx.gpu
    gqa_model, mha_model = _model_variants()
    k_gqa, k_mha = (m.groups[0].attention.kv_heads for m in (gqa_model, mha_model))
    gqa, mha = (curves(Setup(m, gpu), GQA_BATCH) for m in (gqa_model, mha_model))
    blocks: list[Any] = []
    try:
        dense, sparse = (curves(deepseek_setup(name, gpu), DEEPSEEK_BATCH)
                         for name in (DENSE, SPARSE))
    except InputError as exc:  # e.g. MLA's 128-head decode tiles exceed this GPU's SRAM
        dense = sparse = None
        blocks.append(unavailable(f"DeepSeek dense against sparse on {gpu.name}",
                                  f"memsim cannot run DeepSeek's attention here: {exc}"))
    titles = [f"MHA vs GQA ({GQA_MODEL.split('/')[1]}, batch {GQA_BATCH})"]
    if dense is not None:
        titles.insert(0, f"dense vs sparse attention (DeepSeek, batch {DEEPSEEK_BATCH})")
    fig = make_subplots(rows=1, cols=len(titles), horizontal_spacing=0.1,
                        subplot_titles=titles)
    if dense is not None:
        _draw(fig, 1, "V3.1-Terminus (dense MLA)", dense, "#d62728")
        _draw(fig, 1, "V3.2-Exp (DSA, top-2048)", sparse, "#2ca02c")
    col = len(titles)
    _draw(fig, col, f"GQA (K={k_gqa})", gqa, "#1f77b4")
    _draw(fig, col, f"MHA (K={k_mha})", mha, "#ff7f0e")
    for c in range(1, len(titles) + 1):
        fig.update_xaxes(title_text=axis_title("token position", "tokens"), row=1, col=c)
        fig.update_yaxes(type="log", title_text=axis_title("cost", "USD per million tokens"),
                         row=1, col=c)
    style(fig, f"Marginal $ per million tokens on {gpu.display_name} at "
               f"${gpu.price.usd_per_gpu_hour:g}/GPU-hour", height_px=600)
    blocks.insert(0, fig)
    gqa_clause = (f"GQA makes {GQA_MODEL.split('/')[1]}'s decode "
                  f"{mha['decode'][-1] / gqa['decode'][-1]:.1f}× cheaper than MHA while "
                  f"prefill barely changes ({mha['prefill'][-1] / gqa['prefill'][-1]:.2f}×)")
    at = f"At {fmt_tokens(MAX_CONTEXT)} tokens on {gpu.name}"
    if dense is not None:
        takeaway = (
            f"{at}, sparse attention cuts DeepSeek's decode cost from "
            f"${dense['decode'][-1]:.2f} to ${sparse['decode'][-1]:.2f} and its prefill cost "
            f"from ${dense['prefill'][-1]:.2f} to ${sparse['prefill'][-1]:.2f} per million "
            f"tokens, and {gqa_clause}.")
        weights = dense["setup"].weight_dtype
        blocks.append(config_note(
            f"DeepSeek: {weights} weights, bf16 latent cache, TP 1, a decode batch of "
            f"{DEEPSEEK_BATCH} sequences (the per-token cost of a data-parallel-attention "
            "deployment serving that batch), prefill in chunks of 2,048 tokens; V3.2-Exp runs "
            "its lightning indexer and top-2048 sparse MLA, V3.1-Terminus dense MLA."))
    else:
        takeaway = f"{at}, {gqa_clause}."
    blocks.append(config_note(
        f"{GQA_MODEL}: bf16, batch {GQA_BATCH}, TP 1, against the same model with "
        f"K = H = {k_mha} K/V heads. Price: the {gpu.name} profile's "
        f"${gpu.price.usd_per_gpu_hour:g}/GPU-hour ({gpu.price.date})."))
    summary: dict[str, Any] = {"deepseek_batch": DEEPSEEK_BATCH, "position": MAX_CONTEXT}
    for name, c in (("dense", dense), ("sparse", sparse), ("gqa", gqa), ("mha", mha)):
        if c is not None:
            summary[name] = {p: c[p][-1] for p, _ in PHASES}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
