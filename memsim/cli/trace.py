"""``memsim trace``: play an attention kernel's schedule through SMs, SRAM, L2 and HBM.

Takes the options of ``memsim attention`` (validated by the same
:func:`memsim.cli.attention.build`) plus ``--l2 on|off``, ``--compare`` (analytic and
trace side by side), ``--heads-sample``, ``--event-budget`` and ``--save-trace FILE``.
The simulator (numba) is imported inside the command, so ``memsim --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from memsim.cli import app, user_errors
from memsim.cli.attention import ALGORITHM_HELP, _fmt_bytes, _fmt_s, build

DEFAULT_EVENT_BUDGET = 1_000_000_000  # = memsim.trace.DEFAULT_EVENT_BUDGET (not imported here)


def _title(d: dict[str, Any]) -> str:
    p = d["problem"]
    return (f"{d['algorithm']} on {d['gpu']}: B={p['batch']} N={p['seq_len']} "
            f"S={p['kv_len'] or p['seq_len']} H={p['heads']} K={p['kv_heads'] or p['heads']} "
            f"D={p['head_dim']} {p['dtype']} {d['mask']}")


def _sample_note(d: dict[str, Any]) -> str:
    if d["heads_scale"] == 1:
        return ""
    return (f" (simulated {d['heads_sample']} of {d['problem']['heads']} heads, "
            f"scaled ×{d['heads_scale']:g})")


def print_trace(d: dict[str, Any]) -> None:
    """The trace result as a table, one line per kernel, and a one-sentence takeaway."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trace: {_title(d)}, L2 {d['l2']}{_sample_note(d)}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("matmul FLOPs", f"{d['flops']:.4g}"),
        ("global (L2) bytes", _fmt_bytes(d["global_bytes"])),
        ("HBM read / write", f"{_fmt_bytes(d['hbm_read_bytes'])} / "
                             f"{_fmt_bytes(d['hbm_write_bytes'])}"),
        ("L2 hit rate (read bytes)", f"{d['l2_hit_rate']:.2%}"),
        ("blocks / slots / waves", f"{d['blocks']:.0f} / {d['slots']} "
                                   f"({d['blocks_per_sm']} per SM) / {d['waves']}"),
        ("tile events simulated", f"{d['events']:,}"),
        ("time", _fmt_s(d["time_s"])),
        ("achieved HBM / L2", f"{d['achieved_hbm_bytes_per_s'] / 1e12:.3g} / "
                              f"{d['achieved_l2_bytes_per_s'] / 1e12:.3g} TB/s"),
        ("achieved matmul", f"{d['achieved_flop_per_s'] / 1e12:.3g} TFLOP/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for k in d["kernels"]:
        table.add_row(f"  kernel {k['name']}",
                      f"{_fmt_s(k['time_s'])}, {k['bound']}-bound, {k['blocks']} blocks, "
                      f"{k['waves']} waves, busy {k['wave_efficiency']:.0%}")
    console = Console()
    console.print(table)
    console.print(f"Takeaway: {_fmt_bytes(d['hbm_bytes'])} reach HBM of "
                  f"{_fmt_bytes(d['global_bytes'])} asked of L2; bound by {d['bound']}.")


def print_compare(analytic: dict[str, Any], trace: dict[str, Any], compulsory: float) -> None:
    """Analytic and trace side by side, with trace/analytic ratios."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"analytic vs trace: {_title(trace)}, L2 {trace['l2']}"
                        f"{_sample_note(trace)}")
    for col, justify in (("quantity", "left"), ("analytic", "right"), ("trace", "right"),
                         ("trace/analytic", "right")):
        table.add_column(col, justify=justify)

    def ratio(a: float, t: float) -> str:
        return f"{t / a:.3f}" if a else "–"

    for name, key, fmt in (
        ("matmul FLOPs", "flops", lambda v: f"{v:.4g}"),
        ("global (L2) bytes", "global_bytes", _fmt_bytes),
        ("HBM read bytes", "hbm_read_bytes", _fmt_bytes),
        ("HBM write bytes", "hbm_write_bytes", _fmt_bytes),
        ("HBM bytes", "hbm_bytes", _fmt_bytes),
        ("time", "time_s", _fmt_s),
    ):
        a, t = analytic[key], trace[key]
        table.add_row(name, fmt(a), fmt(t), ratio(a, t))
    table.add_row("L2 hit rate", "0% (no reuse)", f"{trace['l2_hit_rate']:.2%}", "")
    table.add_row("compulsory HBM bytes", _fmt_bytes(compulsory), "", "")
    table.add_row("waves", f"{analytic['waves']:.0f}", f"{trace['waves']}", "")
    table.add_row("bound", analytic["bound"], trace["bound"], "")
    console = Console()
    console.print(table)
    console.print(
        f"Takeaway: the trace sends {trace['hbm_bytes'] / analytic['hbm_bytes']:.1%} of the "
        f"analytic HBM bytes to DRAM ({trace['hbm_bytes'] / compulsory:.2f}× the compulsory "
        f"traffic); the rest hit in L2.")


@app.command("trace")
@user_errors
def trace(
    algorithm: str = typer.Option("flash2", help=ALGORITHM_HELP),
    gpu: str = typer.Option("h100-sxm", help="GPU profile name (memsim gpus) or a .toml"),
    batch: int = typer.Option(1, help="B, sequences"),
    heads: int = typer.Option(32, help="H, query heads"),
    kv_heads: int = typer.Option(None, help="K, key/value heads (default H)"),
    seq_len: int = typer.Option(4096, help="N, query tokens"),
    kv_len: int = typer.Option(None, help="S, key/value tokens (default N)"),
    head_dim: int = typer.Option(128, help="D, head dimension of Q and K"),
    head_dim_v: int = typer.Option(None, help="Dv, head dimension of V (default D)"),
    dtype: str = typer.Option("bf16", help="fp32 | fp16 | bf16 | fp8"),
    causal: bool = typer.Option(False, "--causal", help="causal mask"),
    bidirectional: bool = typer.Option(False, "--bidirectional",
                                       help="window is symmetric (encoders)"),
    window: int = typer.Option(None, help="sliding window W (implies causal)"),
    chunk: int = typer.Option(None, help="chunked local attention C (implies causal)"),
    top_k: int = typer.Option(None, "--top-k", help="keys per query (dsa)"),
    mla: bool = typer.Option(False, "--mla", help="V is a slice of the shared latent K"),
    index_heads: int = typer.Option(64, help="dsa indexer heads H_I"),
    index_head_dim: int = typer.Option(128, help="dsa indexer head dim D_I"),
    pass_: str = typer.Option("forward", "--pass", help="forward (the trace simulates "
                                                        "forward passes)"),
    block_q: int = typer.Option(None, "--block-q", help="Br, query tokens per tile"),
    block_kv: int = typer.Option(None, "--block-kv", help="Bc, keys per tile"),
    heads_per_block: int = typer.Option(None, help="query heads packed per block"),
    kv_splits: int = typer.Option(None, help="flash_decode splits"),
    threads: int = typer.Option(None, help="threads per block (default 128)"),
    sram_limit: int = typer.Option(None, help="SRAM bytes per block (default: the GPU's)"),
    matmul_unit: str = typer.Option("tensor", help="tensor | fp32 (Numba kernels)"),
    l2: str = typer.Option("on", "--l2", help="on | off: the L2 model (off: every access "
                                              "goes to HBM)"),
    compare: bool = typer.Option(False, "--compare", help="analytic and trace side by side"),
    heads_sample: int = typer.Option(None, "--heads-sample",
                                     help="simulate this many heads and scale to all"),
    event_budget: int = typer.Option(DEFAULT_EVENT_BUDGET, "--event-budget",
                                     help="refuse traces needing more tile events"),
    save_trace: str = typer.Option(None, "--save-trace", help="write the trace as .npz"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Simulate the kernel's schedule: blocks on SMs, tiles in SRAM, L2 hits, HBM bytes."""
    from memsim.errors import InputError

    if l2 not in ("on", "off"):
        raise InputError("l2", l2, "must be 'on' or 'off'")
    if matmul_unit not in ("tensor", "fp32"):
        raise InputError("matmul_unit", matmul_unit, "must be 'tensor' or 'fp32'")
    problem, profile, tiling = build(
        algorithm=algorithm, gpu=gpu, batch=batch, heads=heads, kv_heads=kv_heads,
        seq_len=seq_len, kv_len=kv_len, head_dim=head_dim, head_dim_v=head_dim_v,
        dtype=dtype, causal=causal, bidirectional=bidirectional, window=window, chunk=chunk,
        top_k=top_k, mla=mla, index_heads=index_heads, index_head_dim=index_head_dim,
        pass_=pass_, block_q=block_q, block_kv=block_kv, heads_per_block=heads_per_block,
        kv_splits=kv_splits, threads=threads, sram_limit=sram_limit)
    from memsim.trace import simulate

    result = simulate(problem, profile, algorithm, tiling, l2=l2 == "on",
                      heads_sample=heads_sample, event_budget=event_budget,
                      matmul_unit=matmul_unit, record=save_trace is not None)
    if save_trace is not None:
        result.save(save_trace)
    out = result.to_dict()
    if compare:
        from memsim.algorithms import compulsory_bytes
        from memsim.attention import predict

        analytic = predict(problem, profile, algorithm, tiling, matmul_unit=matmul_unit)
        compulsory = compulsory_bytes(problem)
        if as_json:
            typer.echo(json.dumps({"analytic": analytic.to_dict(), "trace": out,
                                   "compulsory_bytes": compulsory}))
        else:
            print_compare(analytic.to_dict(), out, compulsory)
    elif as_json:
        typer.echo(json.dumps(out))
    else:
        print_trace(out)
