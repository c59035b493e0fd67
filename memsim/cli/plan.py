"""``memsim plan``: the cheapest deployment that meets latency targets (memsim.planning)."""

from __future__ import annotations

import json
from typing import Any

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.limits import CountParser, float_option, size_option

DEFAULT_OSL = 1024  # output tokens when only --context is given


@app.command("plan")
@user_errors
def plan_cmd(
    model: str = typer.Option(..., "--model", help="preset name, alias or config.json path"),
    gpu: str = typer.Option(..., "--gpu", help="GPU profile name or .toml path; several, "
                                               "comma-separated, are compared"),
    context: int = size_option(..., "--context", ceiling=limits.MAX_CONTEXT,
                               help="tokens per sequence (prompt + output)"),
    isl: int | None = size_option(None, "--isl", ceiling=limits.MAX_CONTEXT,
                                  help="prompt tokens (default context − osl)"),
    osl: int | None = size_option(None, "--osl", ceiling=limits.MAX_CONTEXT,
                                  help=f"output tokens (default {DEFAULT_OSL}, at most "
                                       "context/2)"),
    ttft_ms: float | None = float_option(None, "--ttft-ms", help="time to first token, ms"),
    tpot_ms: float | None = float_option(None, "--tpot-ms", help="time per output token, ms"),
    max_gpus: int = size_option(64, "--max-gpus", ceiling=limits.MAX_TP,
                                help="largest deployment searched"),
    price: float | None = float_option(None, "--price", help="USD per GPU-hour"),
    max_mtp: int = typer.Option(0, "--max-mtp", parser=CountParser(limits.MAX_DRAFT_TOKENS),
                                help="search multi-token prediction depths 0..K"),
    acceptance: float | None = float_option(None, "--acceptance", positive=False,
                                            help="draft acceptance (default 0.85)"),
    weight_dtype: str = typer.Option("auto", "--weight-dtype",
                                     help="auto (fp8 where the GPU has fp8 tensor cores)"),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV cache: bf16|fp16|fp8"),
    workers: int = typer.Option(0, "--workers", parser=CountParser(limits.MAX_WORKERS),
                                help="processes (0: this process)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Search GPU count, TP/EP/DP/PP, batch and MTP: the cheapest prefill and decode
    deployments meeting --ttft-ms / --tpot-ms, $ per million tokens, the Pareto front."""
    from memsim.planning import Query, plan

    isl, osl = _lengths(context, isl, osl)
    gpus = [g.strip() for g in gpu.split(",") if g.strip()]
    executor = None
    if workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=workers)
    try:
        results = {g: plan(Query(model, g, isl, osl, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
                                 max_gpus=max_gpus, price=price, weight_dtype=weight_dtype,
                                 kv_dtype=kv_dtype, acceptance=acceptance, max_mtp=max_mtp,
                                 max_context=context), executor)
                   for g in gpus}
    finally:
        if executor is not None:
            executor.shutdown()
    if as_json:
        out: Any = next(iter(results.values())) if len(results) == 1 else {
            "plans": results, **_cheapest_gpus(results)}
        typer.echo(json.dumps(out, indent=2))
        return
    for result in results.values():
        _print_plan(result)
    if len(results) > 1:
        _print_comparison(results)


def _cheapest_gpus(results: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """Which GPU serves each phase cheapest (None where no GPU meets the target)."""
    out: dict[str, str | None] = {}
    for phase in ("prefill", "decode"):
        priced = {g: r[phase]["usd_per_million_tokens"] for g, r in results.items()
                  if r[phase] is not None}
        out[f"cheapest_{phase}"] = min(priced, key=priced.get) if priced else None
    return out


def _print_comparison(results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="$ per million tokens by GPU (the cheapest deployment of each)")
    for col in ("GPU", "prefill", "decode", "decode deployment"):
        table.add_column(col, justify="left" if col in ("GPU", "decode deployment")
                         else "right")
    for g, r in results.items():
        pre, dec = r["prefill"], r["decode"]
        table.add_row(g, "–" if pre is None else f"{pre['usd_per_million_tokens']:.3g}",
                      "–" if dec is None else f"{dec['usd_per_million_tokens']:.3g}",
                      "–" if dec is None else _deployment(dec))
    console = Console()
    console.print(table)
    best = _cheapest_gpus(results)
    console.print(f"[bold]Cheapest: prefill on {best['cheapest_prefill']}, decode on "
                  f"{best['cheapest_decode']}.[/bold]")


def _lengths(context: int, isl: int | None, osl: int | None) -> tuple[int, int]:
    from memsim.errors import InputError

    if context <= 1:
        raise InputError("context", context, "must be an integer ≥ 2 (prompt + output)")
    for name, value in (("isl", isl), ("osl", osl)):
        if value is not None and value >= context:
            raise InputError(name, value, f"must be less than context={context} "
                             "(prompt + output)")
    if osl is None:
        osl = context - isl if isl is not None else min(DEFAULT_OSL, context // 2)
    if isl is None:
        isl = context - osl
    return isl, osl


def _deployment(r: dict[str, Any]) -> str:
    parts = [f"{r['gpus']} GPU{'s' if r['gpus'] > 1 else ''}", f"TP {r['tp']}"]
    if r["dp_attention"]:
        parts.append(f"DP attention {r['gpus'] // (r['tp'] * r['pp'])}")
    if r.get("context_parallel"):
        parts.append("CP")
    if r["ep"] > 1:
        parts.append(f"EP {r['ep']}")
    if r["pp"] > 1:
        parts.append(f"PP {r['pp']}")
    if r.get("mtp"):
        parts.append(f"MTP {r['mtp']}")
    return ", ".join(parts) + f", batch {r['batch']:,}"


def _print_plan(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    q = result["query"]
    console = Console()
    table = Table(title=f"Cheapest deployments — {q['model']} on {q['gpu']}, prompt "
                        f"{q['isl']:,} + output {q['osl']:,} tokens")
    for col in ("phase", "deployment", "latency", "tok/s/GPU", "$/M tokens"):
        table.add_column(col, justify="left" if col in ("phase", "deployment") else "right")
    for phase, key, target in (("prefill", "ttft_s", q["ttft_ms"]),
                               ("decode", "tpot_s", q["tpot_ms"])):
        r = result[phase]
        if r is None:
            why = ("an encoder: no decode" if phase == "decode" and not q["decoder"] else
                   f"nothing meets {target:g} ms" if target else
                   f"nothing fits on ≤ {q['max_gpus']} GPUs")
            table.add_row(phase, why, "–", "–", "–")
            continue
        name = "TTFT" if phase == "prefill" else "TPOT"
        table.add_row(phase, _deployment(r), f"{name} {r[key] * 1e3:,.1f} ms",
                      f"{r['tokens_per_s_per_gpu']:,.0f}",
                      f"{r['usd_per_million_tokens']:.3g}")
    console.print(table)
    if result["front"]:
        _print_front(console, result["front"])
    console.print(f"{q['weight_dtype']} weights, {q['kv_dtype']} KV cache, "
                  f"${q['usd_per_gpu_hour']:.2f}/GPU-hour. "
                  f"{result['evaluated']:,} deployments ({result['structures']} structures) "
                  f"evaluated in {result['seconds']:.2f} s; prefill and decode are separate "
                  "deployments (disaggregated serving).")


def _print_front(console: Any, rows: list[dict[str, Any]]) -> None:
    """Eight rows of the decode Pareto front, its two ends included."""
    from rich.table import Table

    front = Table(title="Decode Pareto front: tokens/s per GPU against tokens/s per user")
    for col in ("tok/s/user", "tok/s/GPU", "$/M tokens", "deployment"):
        front.add_column(col, justify="left" if col == "deployment" else "right")
    for i in sorted({round(i * (len(rows) - 1) / 7) for i in range(8)}):
        r = rows[i]
        front.add_row(f"{r['tokens_per_s_per_user']:,.1f}", f"{r['tokens_per_s_per_gpu']:,.0f}",
                      f"{r['usd_per_million_tokens']:.3g}", _deployment(r))
    console.print(front)
