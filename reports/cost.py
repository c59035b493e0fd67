"""Page: cost — $ per million tokens against token position, prefill and decode, for dense
against sparse attention (DeepSeek-V3.1-Terminus against V3.2-Exp) and for MHA against GQA
(Qwen2.5-7B against the same model with one K/V head per query head).

Curves are :func:`memsim.inference.cost_curve`: the marginal cost of the token at position
p, prefilled in chunks of 2,048 tokens, or decoded one step at a time. DeepSeek runs as its
own service does (github.com/deepseek-ai/open-infra-index, "Day 6: DeepSeek-V3/R1 Inference
System Overview"): H800s at $2 per GPU-hour (V3 report §1), prefill and decode on separate
deployments — prefill on 4 nodes (32 GPUs, attention data-parallel 32, routed experts EP32),
decode on 18 nodes (144 GPUs, DP attention 144, EP144: two routed experts per GPU) with one
MTP draft token accepted 85 % of the time (V3 report §5.4.3) — fp8 weights and FlashMLA's fp8
latent cache, each decode position at the largest batch that fits there.
"""

from __future__ import annotations

import functools
from typing import Any

from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.inference import Setup, cost_curve
from memsim.models import ModelConfig, load_model

from . import data
from .page import Context, Page, axis_title, config_note, fmt_tokens, style, unavailable

SLUG = "cost"
TITLE = "Cost per million tokens"
MAX_CONTEXT = 131072
POINTS = 32
DENSE, SPARSE = "deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek-ai/DeepSeek-V3.2-Exp"
DEEPSEEK_GPU, DEEPSEEK_PRICE = "h800-sxm", 2.0
DEEPSEEK_PREFILL = {"gpus": 32, "dp_attention": True, "ep": 32}
DEEPSEEK_DECODE = {"gpus": 144, "dp_attention": True, "ep": 144, "mtp": 1, "acceptance": 0.85}
DEEPSEEK_PREFILL_BATCH = 32  # one prompt per attention replica
GQA_MODEL = "Qwen/Qwen2.5-7B"
GQA_BATCH = 1
PHASES = (("prefill", "prefill_usd_per_million_tokens"),
          ("decode", "decode_usd_per_million_tokens"))
DASH = {"prefill": "dot", "decode": "solid"}


def deepseek_setup(name: str, phase: str, kv_dtype: str = "fp8") -> Setup:
    """DeepSeek's prefill or decode deployment (module doc): fp8 weights (V3 report §3.3)."""
    parallel = DEEPSEEK_PREFILL if phase == "prefill" else DEEPSEEK_DECODE
    return Setup(load_model(name), load_gpu(DEEPSEEK_GPU), weight_dtype="fp8",
                 kv_dtype=kv_dtype, usd_per_gpu_hour=DEEPSEEK_PRICE, **parallel)


def deepseek_deployment_text() -> str:
    """The deployment in words, for notes and the claims page."""
    return (f"{DEEPSEEK_GPU} at ${DEEPSEEK_PRICE:g}/GPU-hour, fp8 weights, fp8 latent cache "
            "(FlashMLA format); prefill on 32 GPUs (DP attention 32, EP32, "
            f"{DEEPSEEK_PREFILL_BATCH} prompts, chunks of 2,048 tokens); decode on 144 GPUs "
            "(DP attention 144, EP144, MTP 1 at 85 % acceptance, the largest batch that "
            "fits at each position) — DeepSeek's own service (open-infra-index, Day 6)")


@functools.lru_cache(maxsize=4)
def deepseek_curves(name: str) -> dict[str, Any]:
    """Prefill and decode $/M by position under DeepSeek's deployments (the same whatever
    GPU the report is for: computed once)."""
    pre = cost_curve(deepseek_setup(name, "prefill"), MAX_CONTEXT, points=POINTS,
                     batch=DEEPSEEK_PREFILL_BATCH)
    dec = cost_curve(deepseek_setup(name, "decode"), MAX_CONTEXT, points=POINTS, batch="max")
    return {"setup": deepseek_setup(name, "decode"), "batch": "max (decode)",
            "position": [r["position"] for r in dec],
            "prefill": [r["prefill_usd_per_million_tokens"] for r in pre],
            "decode": [r["decode_usd_per_million_tokens"] for r in dec],
            "decode_batch": [r["batch"] for r in dec]}


def curves(setup: Setup, batch: int) -> dict[str, Any]:
    """Positions and $ per million tokens of prefill and decode (memsim.inference)."""
    rows = cost_curve(setup, MAX_CONTEXT, points=POINTS, batch=batch)
    return {"setup": setup, "batch": batch, "position": [r["position"] for r in rows],
            **{phase: [r[key] for r in rows] for phase, key in PHASES}}


def _draw(fig, col: int, label: str, c: dict[str, Any], colour: str) -> None:
    setup = c["setup"]
    for phase, _key in PHASES:
        config = [f"{setup.model.name}, {phase} at position {p:,}; batch {c['batch']}, "
                  f"{setup.n_gpus} GPUs, TP {setup.tp}, {setup.weight_dtype} weights, "
                  f"{setup.kv_dtype} KV, {setup.gpu.name} at ${setup.price:g}/GPU-hour"
                  for p in c["position"]]
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
        dense, sparse = (deepseek_curves(name) for name in (DENSE, SPARSE))
    except InputError as exc:  # e.g. MLA's 128-head decode tiles exceed this GPU's SRAM
        dense = sparse = None
        blocks.append(unavailable("DeepSeek dense against sparse",
                                  f"memsim cannot run DeepSeek's attention here: {exc}"))
    titles = [f"MHA vs GQA ({GQA_MODEL.split('/')[1]}, batch {GQA_BATCH})"]
    if dense is not None:
        titles.insert(0, "dense vs sparse attention (DeepSeek's service, H800)")
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
    style(fig, "Marginal $ per million tokens by position (DeepSeek: its H800 service; "
               f"{GQA_MODEL.split('/')[1]}: {gpu.display_name} at "
               f"${gpu.price.usd_per_gpu_hour:g}/GPU-hour)", height_px=600)
    blocks.insert(0, fig)
    gqa_clause = (f"GQA makes {GQA_MODEL.split('/')[1]}'s decode "
                  f"{mha['decode'][-1] / gqa['decode'][-1]:.1f}× cheaper than MHA while "
                  f"prefill barely changes ({mha['prefill'][-1] / gqa['prefill'][-1]:.2f}×)")
    at = f"At {fmt_tokens(MAX_CONTEXT)} tokens on {gpu.name}"
    if dense is not None:
        takeaway = (
            f"At {fmt_tokens(MAX_CONTEXT)} tokens under DeepSeek's own deployment, sparse "
            "attention cuts DeepSeek's decode cost from "
            f"${dense['decode'][-1]:.2f} to ${sparse['decode'][-1]:.2f} and its prefill cost "
            f"from ${dense['prefill'][-1]:.2f} to ${sparse['prefill'][-1]:.2f} per million "
            f"tokens; on {gpu.name}, {gqa_clause}.")
        blocks.append(config_note(
            f"DeepSeek: {deepseek_deployment_text()}. V3.2-Exp runs its lightning indexer and "
            "top-2048 sparse MLA, V3.1-Terminus dense MLA. Decode batch at 128K: "
            f"{dense['decode_batch'][-1]:,} (dense) and {sparse['decode_batch'][-1]:,} "
            "(sparse) sequences."))
    else:
        takeaway = f"{at}, {gqa_clause}."
    blocks.append(config_note(
        f"{GQA_MODEL}: bf16, batch {GQA_BATCH}, TP 1, against the same model with "
        f"K = H = {k_mha} K/V heads. Price: the {gpu.name} profile's "
        f"${gpu.price.usd_per_gpu_hour:g}/GPU-hour ({gpu.price.date})."))
    summary: dict[str, Any] = {"deepseek_deployment": {"prefill": DEEPSEEK_PREFILL,
                                                       "decode": DEEPSEEK_DECODE},
                               "position": MAX_CONTEXT}
    for name, c in (("dense", dense), ("sparse", sparse), ("gqa", gqa), ("mha", mha)):
        if c is not None:
            summary[name] = {p: c[p][-1] for p, _ in PHASES}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
