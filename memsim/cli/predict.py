"""``memsim predict``, ``memsim cost-curve``, ``memsim sweep`` and ``memsim models``.

Whole-model predictions (memsim.inference) for the presets of memsim/presets or any
compatible config.json. Imports of numpy-heavy modules happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.limits import CountParser, float_option, size_option

GIB = 2**30

_MODEL = typer.Option(..., "--model", help="preset name, alias (llama-3-70b) or config.json path")
_GPU = typer.Option(..., "--gpu", help="GPU profile name (memsim gpus) or a .toml path")
_BATCH = typer.Option("1", "--batch", help="B, sequences decoded together (all replicas), "
                                            "or max: the largest batch that fits")
_TP = size_option(1, "--tp", ceiling=limits.MAX_TP,
                  help="tensor-parallel GPUs (attention, and MLPs without DP attention)")
_GPUS = size_option(None, "--gpus", ceiling=limits.MAX_TP, help="GPUs in total (default tp·pp)")
_PP = size_option(1, "--pp", ceiling=limits.MAX_TP, help="pipeline stages")
_EP = size_option(1, "--ep", ceiling=limits.MAX_TP,
                  help="expert-parallel GPUs: 1 or gpus/pp (MoE models)")
_DPA = typer.Option(False, "--dp-attention",
                    help="attention data-parallel over gpus/(tp·pp) replicas, each holding "
                         "only its own sequences' KV cache")
_CP = typer.Option(False, "--context-parallel",
                   help="prefill: split each prompt over the DP attention replicas")
_MTP = typer.Option(0, "--mtp", parser=CountParser(limits.MAX_DRAFT_TOKENS),
                    help="draft tokens per decode step (multi-token prediction)")
_ACCEPT = float_option(None, "--acceptance",
                       help="probability a draft token is accepted (default 0.85, "
                            "DeepSeek-V3 §5.4.3)")
_ATTN = typer.Option("auto", "--attention",
                     help="standard|flash1|flash2|flash_decode|dsa|auto (auto: FA-2 prefill, "
                          "split-KV decode, dsa on DeepSeek Sparse Attention layers)")
_WDTYPE = typer.Option("bf16", "--weight-dtype", help="weights: fp32|bf16|fp16|fp8|int8|int4")
_KVDTYPE = typer.Option("bf16", "--kv-dtype",
                        help="KV cache: fp32|bf16|fp16|fp8 (fp8: one fp32 scale per 128)")
_PRICE = float_option(None, "--price", help="USD per GPU-hour (default: the profile's price)")
_JSON = typer.Option(False, "--json", help="print JSON")
_BACKEND = typer.Option(None, "--backend",
                        help="trtllm|vllm|sglang: the framework whose fitted kernel classes time "
                             "GEMMs, MoE, collectives and attention (default trtllm)")


def _setup(model: str, gpu: str, tp: int, attention: str, weight_dtype: str, kv_dtype: str,
           price: float | None, **extra: Any):
    from memsim.hardware import load_gpu
    from memsim.inference import Setup
    from memsim.models import load_model

    if extra.get("acceptance") is None:
        extra.pop("acceptance", None)
    return Setup(load_model(model), load_gpu(gpu), tp=tp, attention=attention,
                 weight_dtype=weight_dtype, kv_dtype=kv_dtype, usd_per_gpu_hour=price, **extra)


def _batch(text: str) -> int | str:
    """``--batch``: a positive integer or ``max``."""
    from memsim.errors import InputError

    if text == "max":
        return "max"
    try:
        value = int(text)
    except ValueError:
        raise InputError("batch", text, "must be a positive integer or max") from None
    if value <= 0:
        raise InputError("batch", value, "must be a positive integer or max")
    return limits.check_size("batch", value, limits.MAX_BATCH)


def _warn(messages: list[str]) -> None:
    for m in messages:
        typer.echo(f"warning: {m}", err=True)


@app.command("predict")
@user_errors
def predict_cmd(
    model: str = _MODEL, gpu: str = _GPU,
    context: int = size_option(..., "--context", ceiling=limits.MAX_CONTEXT,
                               help="L, tokens of context"),
    batch: str = _BATCH, tp: int = _TP, gpus: int | None = _GPUS, pp: int = _PP,
    ep: int = _EP, dp_attention: bool = _DPA, context_parallel: bool = _CP, mtp: int = _MTP,
    acceptance: float | None = _ACCEPT, attention: str = _ATTN,
    weight_dtype: str = _WDTYPE, kv_dtype: str = _KVDTYPE, price: float | None = _PRICE,
    prefill_chunk: int | None = size_option(None, "--prefill-chunk", ceiling=limits.MAX_TOKENS,
                                            help="chunked prefill: tokens per chunk"),
    all_global: bool = typer.Option(False, "--all-global",
                                    help="treat windowed/chunked layers as global"),
    backend: str | None = _BACKEND, as_json: bool = _JSON,
) -> None:
    """VRAM, prefill and decode time and $ per million tokens of a whole model."""
    from memsim.inference import predict
    from memsim.ops import check_backend

    setup = _setup(model, gpu, tp, attention, weight_dtype, kv_dtype, price,
                   prefill_chunk=prefill_chunk, all_global=all_global, gpus=gpus, pp=pp,
                   ep=ep, dp_attention=dp_attention, context_parallel=context_parallel,
                   mtp=mtp, acceptance=acceptance, backend=check_backend(backend))
    result = predict(setup, context, _batch(batch))
    _warn(result["warnings"])
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_prediction(result)


def _parallelism(r: dict[str, Any]) -> str:
    """'TP 8, EP 32, DP attention 32, PP 2, MTP 1' — the parts that are not 1."""
    parts = [f"TP {r['tp']}"]
    if r["dp_attention"]:
        parts.append(f"DP attention {r['attention_replicas']}")
    if r["context_parallel"]:
        parts.append("context-parallel prefill")
    parts += [f"{k.upper()} {r[k]}" for k in ("ep", "pp", "mtp") if r[k] > 1 or
              (k == "mtp" and r[k])]
    return ", ".join(parts)


def _print_prediction(r: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    v = r["vram"]
    console = Console()
    title = (f"{r['model']} on {r['gpus']} × {r['gpu']} ({_parallelism(r)}): context "
             f"{r['context']:,}, batch {r['batch']}, attention {r['attention']}")
    console.print(f"[bold]{title}[/bold]")
    table = Table(title="VRAM per GPU", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("part", "GiB", "share"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for part in ("weights", "kv_cache", "activation", "workspace", "reserve"):
        b = v[f"{part}_bytes"]
        table.add_row(part.replace("_", " "), f"{b / GIB:,.2f}", f"{b / v['total_bytes']:.1%}")
        if part == "kv_cache" and len(v["kv_cache_by_layer_kind"]) > 1:
            for kind, kb in v["kv_cache_by_layer_kind"].items():
                table.add_row(f"  {kind} layers", f"{kb / GIB:,.2f}",
                              f"{kb / v['total_bytes']:.1%}")
    table.add_row("total", f"{v['total_bytes'] / GIB:,.2f}", "100%")
    table.add_row("capacity", f"{v['capacity_bytes'] / GIB:,.2f}",
                  "fits" if v["fits"] else f"short {v['shortfall_bytes'] / GIB:,.2f} GiB")
    console.print(table)

    # light borders and one operator per line: the table reads at 80 columns
    t = Table(title="Time and cost", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("phase", "time", "tokens/s", "$ / M tokens", "dominated by"):
        t.add_column(col, justify="left" if col in ("phase", "dominated by") else "right")
    p, d = r["prefill"], r["decode"]
    dom = lambda ph: "\n".join(f"{x['operator']} {x['share']:.0%}" for x in ph["dominant"])  # noqa: E731
    t.add_row(f"prefill {p['tokens']:,} tokens", f"{p['time_s']:.4g} s",
              f"{p['tokens_per_s']:,.0f}", f"{p['usd_per_million_tokens']:.4g}", dom(p))
    if d["time_per_token_s"] is not None:
        t.add_row(f"decode at {r['context']:,}", f"{d['time_per_token_s'] * 1e3:.4g} ms",
                  f"{d['tokens_per_s']:,.1f}", f"{d['usd_per_million_tokens']:.4g}", dom(d))
    else:
        t.add_row("decode", "–", "–", "–", d["note"])
    console.print(t)
    console.print(f"[bold]{r['takeaway']}[/bold]  (price ${r['usd_per_gpu_hour']:.2f}/GPU-h)")


@app.command("cost-curve")
@user_errors
def cost_curve_cmd(
    model: str = _MODEL, gpu: str = _GPU,
    max_context: int = size_option(..., "--max-context", ceiling=limits.MAX_CONTEXT,
                                   help="largest token position"),
    points: int = size_option(16, "--points", ceiling=limits.MAX_POINTS,
                              help="positions on the curve"),
    batch: str = _BATCH, tp: int = _TP, gpus: int | None = _GPUS, pp: int = _PP,
    ep: int = _EP, dp_attention: bool = _DPA, context_parallel: bool = _CP, mtp: int = _MTP,
    acceptance: float | None = _ACCEPT, attention: str = _ATTN,
    weight_dtype: str = _WDTYPE, kv_dtype: str = _KVDTYPE, price: float | None = _PRICE,
    chunk: int = size_option(2048, "--chunk", ceiling=limits.MAX_TOKENS,
                             help="prefill chunk, tokens"),
    as_json: bool = _JSON,
) -> None:
    """$ per million tokens at each position: marginal (the token at p) and average (over a
    request of p tokens), prefill and decode; each point says whether its batch fits."""
    from memsim.inference import cost_curve, warnings_for

    setup = _setup(model, gpu, tp, attention, weight_dtype, kv_dtype, price, gpus=gpus,
                   pp=pp, ep=ep, dp_attention=dp_attention, context_parallel=context_parallel,
                   mtp=mtp, acceptance=acceptance)
    _warn(warnings_for(setup, max_context))
    curve = cost_curve(setup, max_context, points, _batch(batch), chunk)
    if as_json:
        typer.echo(json.dumps(curve, indent=2))
        return
    _print_curve(setup, curve, batch)


def _print_curve(setup: Any, curve: list[dict[str, Any]], batch: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def usd(x: float | None) -> str:
        return "–" if x is None else f"{x:.4g}"

    table = Table(title=f"$ per million tokens by position — {setup.model.name} on "
                        f"{setup.n_gpus} × {setup.gpu.name}, batch {batch}, "
                        f"${setup.price:.2f}/GPU-h")
    for col in ("position", "batch", "fits", "prefill", "prefill avg", "decode",
                "decode avg"):
        table.add_column(col, justify="right")
    for r in curve:
        table.add_row(f"{r['position']:,}", f"{r['batch']:,}", "yes" if r["fits"] else "NO",
                      usd(r["prefill_usd_per_million_tokens"]),
                      usd(r["prefill_average_usd_per_million_tokens"]),
                      usd(r["decode_usd_per_million_tokens"]),
                      usd(r["decode_average_usd_per_million_tokens"]))
    console = Console()
    console.print(table)
    console.print("marginal: the token at that position; avg: averaged over a request of "
                  "that many tokens.")
    if not all(r["fits"] for r in curve):
        console.print("[bold red]Points marked NO do not fit in memory: their prices are "
                      "not achievable with this deployment (try --batch max).[/bold red]")
    first, last = curve[0], curve[-1]
    if first["prefill_usd_per_million_tokens"] and last["prefill_usd_per_million_tokens"]:
        growth = (last["prefill_usd_per_million_tokens"]
                  / first["prefill_usd_per_million_tokens"])
        console.print(f"[bold]The token at position {last['position']:,} costs {growth:.1f}× "
                      f"the prefill price of the one at {first['position']:,}.[/bold]")


def _csv_list(text: str, cast: Any = str, field: str = "list") -> list[Any]:
    from memsim.errors import InputError

    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise InputError(field, text, "must name at least one item (comma-separated)")
    if len(items) > limits.MAX_SWEEP_VALUES:
        raise InputError(field, f"{len(items)} values", f"must list at most "
                         f"{limits.MAX_SWEEP_VALUES} (memsim's ceiling)")
    if cast is int:
        parse = limits.SizeParser(limits.MAX_CONTEXT if field == "contexts"
                                  else limits.MAX_BATCH)
        out = []
        for x in items:
            try:
                out.append(parse(x))
            except Exception as exc:  # the parser's one-line rule, under this list's name
                raise InputError(field, x, getattr(exc, "rule", str(exc))) from None
        return out
    return items


@app.command("sweep")
@user_errors
def sweep_cmd(
    models: str = typer.Option(..., "--models", help="comma-separated model names"),
    gpus: str = typer.Option(..., "--gpus", help="comma-separated GPU profiles"),
    contexts: str = typer.Option(..., "--contexts", help="comma-separated context lengths"),
    batches: str = typer.Option("1", "--batches", help="comma-separated batch sizes"),
    attentions: str = typer.Option("auto", "--attentions", help="comma-separated algorithms"),
    tp: int = _TP, weight_dtype: str = _WDTYPE, kv_dtype: str = _KVDTYPE,
    out: str = typer.Option("-", "--out", help="output file (.csv or .jsonl); - = stdout"),
    fmt: str | None = typer.Option(None, "--format", help="csv|jsonl (default from --out)"),
    workers: int = typer.Option(0, "--workers", parser=CountParser(limits.MAX_WORKERS),
                                help="processes (0: run in this process)"),
) -> None:
    """Grid of predictions, written row by row as CSV or JSON Lines with a progress bar."""
    import contextlib

    from memsim.errors import InputError
    from memsim.files import atomic_open, check_writable

    model_list, gpu_list = _csv_list(models, field="models"), _csv_list(gpus, field="gpus")
    ctx_list = _csv_list(contexts, int, field="contexts")
    batch_list = _csv_list(batches, int, field="batches")
    attn_list = _csv_list(attentions, field="attentions")
    fmt = fmt or ("csv" if out.endswith(".csv") else "jsonl")
    if fmt not in ("csv", "jsonl"):
        raise InputError("format", fmt, "must be csv or jsonl")
    # validate names up front so a typo fails before any work is done
    from memsim.hardware import load_gpu
    from memsim.models import load_model

    for m in model_list:
        load_model(m)
    for g in gpu_list:
        load_gpu(g)
    if out != "-":
        check_writable(out, "out")
    with contextlib.ExitStack() as stack:
        stream = sys.stdout if out == "-" else stack.enter_context(
            atomic_open(out, "out", "w", newline=""))
        _write_sweep(stream, fmt, workers, model_list, gpu_list, ctx_list, batch_list,
                     attn_list, tp=tp, weight_dtype=weight_dtype, kv_dtype=kv_dtype)


def _write_sweep(stream: Any, fmt: str, workers: int, model_list: list[str],
                 gpu_list: list[str], ctx_list: list[int], batch_list: list[int],
                 attn_list: list[str], **options: Any) -> None:
    """Stream the sweep's rows into ``stream`` as they are produced (memory per cell)."""
    import csv

    from memsim.inference import SWEEP_FIELDS, sweep

    writer = csv.DictWriter(stream, fieldnames=SWEEP_FIELDS) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    cells = len(model_list) * len(gpu_list) * len(attn_list)
    executor = None
    if workers > 0:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=workers)
    from rich.progress import Progress

    try:
        with Progress(transient=True, console=_stderr_console(),
                      disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("sweep", total=cells)

            def write(rows: list[dict[str, Any]]) -> None:
                for row in rows:
                    if writer:
                        writer.writerow(row)
                    else:
                        stream.write(json.dumps(row) + "\n")
                stream.flush()
                progress.advance(task, len(rows) / (len(ctx_list) * len(batch_list)))

            for _ in sweep(model_list, gpu_list, ctx_list, batch_list, attn_list,
                           executor=executor, on_rows=write, **options):
                pass
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@app.command("models")
@user_errors
def models_cmd(as_json: bool = _JSON) -> None:
    """List the bundled model presets with their parameter counts and KV bytes per token."""
    from memsim.models import load_model, preset_names

    rows = [load_model(n).describe() for n in preset_names()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Model presets (memsim/presets, named by Hugging Face id)")
    for col in ("name", "params", "active", "KV B/token", "layers by kind"):
        table.add_column(col, justify="left" if col in ("name", "layers by kind") else "right",
                         overflow="fold")
    for r in rows:
        kinds = ", ".join(f"{g['count']}× {g['kind']} {g['layout']}" for g in r["layer_groups"])
        table.add_row(f"{r['name']}\n({', '.join(r['aliases'][:1])})",
                      f"{r['params'] / 1e9:,.2f}B", f"{r['params_active'] / 1e9:,.2f}B",
                      f"{r['kv_bytes_per_token_bf16']:,.0f}", kinds)
    Console(width=max(Console().width, 120)).print(table)
