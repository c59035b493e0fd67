"""Page: serving — the Pareto front of decode deployments, tokens/s per GPU against
tokens/s per user, and the cheapest deployment under a latency target (``memsim plan``).

Every point is a deployment :func:`memsim.planning.plan` evaluated (GPU count, TP, DP
attention, EP, PP, batch); the front keeps those no other deployment beats on both axes.
"""

from __future__ import annotations

from typing import Any

from memsim.planning import Query, plan

from .page import Context, Page, axis_title, config_note, new_figure, table, unavailable

SLUG = "serving"
TITLE = "Serving: throughput against speed"
MODEL = "meta-llama/Meta-Llama-3-70B"
ISL, OSL = 31_744, 1_024   # a 32K context: prompt + output
TPOT_MS = 50.0             # the latency target of the README's first journey
MAX_GPUS = 16


def _label(r: dict[str, Any]) -> str:
    parts = [f"{r['gpus']} GPU{'s' if r['gpus'] > 1 else ''}", f"TP {r['tp']}"]
    if r["dp_attention"]:
        parts.append(f"DP attention {r['gpus'] // (r['tp'] * r['pp'])}")
    parts += [f"{k.upper()} {r[k]}" for k in ("ep", "pp") if r[k] > 1]
    return ", ".join(parts) + f", batch {r['batch']:,}"


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    q = Query(MODEL, gpu.name, ISL, OSL, tpot_ms=TPOT_MS, max_gpus=MAX_GPUS)
    result = plan(q)
    front, best = result["front"], result["decode"]
    name = MODEL.split("/")[1]
    if not front:
        why = f"{name} does not fit on {MAX_GPUS} × {gpu.name} at {ISL + OSL:,} tokens"
        return Page(SLUG, TITLE, f"No deployment of up to {MAX_GPUS} GPUs serves {name} "
                    f"on {gpu.name}.", [unavailable("Pareto front", why)], {"front": []})
    fig = new_figure(f"Decode deployments of {name} on {gpu.display_name}: the Pareto front")
    for n in sorted({r["gpus"] for r in front}):
        rows = [r for r in front if r["gpus"] == n]
        fig.add_scatter(
            x=[r["tokens_per_s_per_user"] for r in rows],
            y=[r["tokens_per_s_per_gpu"] for r in rows], mode="markers+lines",
            name=f"{n} GPUs", customdata=[
                f"{_label(r)}; TPOT {r['tpot_s'] * 1e3:.1f} ms; "
                f"${r['usd_per_million_tokens']:.3g} per million tokens" for r in rows],
            hovertemplate="%{x:.1f} tokens/s per user, %{y:,.0f} tokens/s per GPU<br>"
                          "%{customdata}<extra>%{fullData.name}</extra>")
    fig.add_vline(x=1e3 / TPOT_MS, line={"dash": "dash", "color": "#111"},
                  annotation_text=f"TPOT {TPOT_MS:g} ms")
    fig.update_xaxes(title_text=axis_title("speed of one user", "tokens/s per user"))
    fig.update_yaxes(title_text=axis_title("throughput", "tokens/s per GPU"))
    blocks: list[Any] = [fig]
    if best is not None:
        takeaway = (f"The cheapest deployment of {name} that decodes a {ISL + OSL:,}-token "
                    f"context within {TPOT_MS:g} ms per token on {gpu.name} is {_label(best)}: "
                    f"{best['tokens_per_s_per_gpu']:,.0f} tokens/s per GPU at "
                    f"${best['usd_per_million_tokens']:.2f} per million tokens.")
    else:
        takeaway = (f"No deployment of up to {MAX_GPUS} × {gpu.name} decodes {name} at "
                    f"{ISL + OSL:,} tokens within {TPOT_MS:g} ms per token.")
    blocks.append(table(("tokens/s per user", "tokens/s per GPU", "$ / M tokens", "deployment"),
                        [(f"{r['tokens_per_s_per_user']:.1f}", f"{r['tokens_per_s_per_gpu']:,.0f}",
                          f"{r['usd_per_million_tokens']:.3g}", _label(r))
                         for r in front[:: max(1, len(front) // 12)]]))
    blocks.append(config_note(
        f"memsim plan --model {MODEL} --gpu {gpu.name} --context {ISL + OSL} --osl {OSL} "
        f"--tpot-ms {TPOT_MS:g} --max-gpus {MAX_GPUS}: {result['evaluated']:,} deployments "
        f"({result['structures']} structures), {result['query']['weight_dtype']} weights, "
        f"bf16 KV cache, ${result['query']['usd_per_gpu_hour']:.2f}/GPU-hour; time at the "
        "mean decode position, memory at the full context."))
    summary = {"decode": best, "front": front}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
