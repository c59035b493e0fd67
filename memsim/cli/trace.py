"""``memsim trace``: play an attention kernel's schedule through SMs, SRAM, L2 and HBM.

Takes the options of ``memsim attention`` (validated by the same
:func:`memsim.cli.attention.build`; lists of algorithms and lengths give one table, or JSON
Lines with ``--json``) plus ``--l2 on|off``, ``--l2-model tiles|lines``, ``--compare`` (analytic and
trace side by side), ``--heads-sample``, ``--event-budget`` and ``--save-trace FILE``.
The simulator (numba) is imported inside the command, so ``memsim --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.cli.attention import (
    Opt,
    _list_title,
    build_from,
    check_matmul_unit,
    expand,
    print_rows,
)
from memsim.limits import size_option
from memsim.units import format_bytes as _fmt_bytes
from memsim.units import format_seconds as _fmt_s

DEFAULT_EVENT_BUDGET = 1_000_000_000  # = memsim.trace.DEFAULT_EVENT_BUDGET (not imported here)
L2_MODELS = ("tiles", "lines")         # = memsim.trace.simulate.L2_MODELS (not imported here)


def _title(d: dict[str, Any]) -> str:
    p = d["problem"]
    return (f"{d['algorithm']} on {d['gpu']}: B={p['batch']} N={p['seq_len']} "
            f"S={p['kv_len'] or p['seq_len']} H={p['heads']} K={p['kv_heads'] or p['heads']} "
            f"D={p['head_dim']} {p['dtype']} {d['mask']}")


def _model_note(d: dict[str, Any]) -> str:
    return " (lines: sectors, sets, ways)" if d.get("l2_model") == "lines" else ""


def _sample_note(d: dict[str, Any]) -> str:
    if d["heads_scale"] == 1:
        return ""
    return (f" (L2 replay of {d['heads_sample']} of {d['problem']['heads']} heads, "
            f"bytes scaled ×{d['heads_scale']:g}; time from every block)")


def print_trace(d: dict[str, Any]) -> None:
    """The trace result as a table, one line per kernel, and a one-sentence takeaway."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trace: {_title(d)}, L2 {d['l2']}{_model_note(d)}{_sample_note(d)}")
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
                        f"{_model_note(trace)}"
                        f"{_sample_note(trace)}")
    for col, justify in (("quantity", "left"), ("analytic", "right"), ("trace", "right"),
                         ("trace/analytic", "right")):
        table.add_column(col, justify=justify)

    def ratio(a: float, t: float) -> str:
        return f"{t / a:.3f}" if a else "–"

    # the analytic column is the no-reuse count: its timing, not memsim attention's
    # L2-aware headline, stands beside its bytes
    analytic = {**analytic, **{k: analytic["no_reuse"][k] for k in ("time_s", "bound")}}
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
    algorithm: str = Opt.algorithm, gpu: str = Opt.gpu, batch: int = Opt.batch,
    heads: int = Opt.heads, kv_heads: int = Opt.kv_heads, seq_len: str = Opt.seq_len,
    kv_len: int = Opt.kv_len, head_dim: int = Opt.head_dim, head_dim_v: int = Opt.head_dim_v,
    dtype: str = Opt.dtype, causal: bool = Opt.causal, bidirectional: bool = Opt.bidirectional,
    window: int = Opt.window, chunk: int = Opt.chunk, top_k: int = Opt.top_k,
    mla: bool = Opt.mla, index_heads: int = Opt.index_heads,
    index_head_dim: int = Opt.index_head_dim,
    pass_: str = typer.Option("forward", "--pass", help="forward | backward | "
                              "forward+backward (backward: flash1, flash2, standard)"),
    block_q: int = Opt.block_q, block_kv: int = Opt.block_kv,
    heads_per_block: int = Opt.heads_per_block, kv_splits: int = Opt.kv_splits,
    threads: int = Opt.threads, sram_limit: int = Opt.sram_limit,
    matmul_unit: str = Opt.matmul_unit,
    l2: str = typer.Option("on", "--l2", help="on | off: the L2 model (off: every access "
                                              "goes to HBM)"),
    l2_model: str = typer.Option("tiles", "--l2-model", help="tiles | lines: an LRU of "
                                 "whole tiles (fast), or 32 B sectors of 128 B lines in "
                                 "the profile's set-associative L2 (slower)"),
    compare: bool = typer.Option(False, "--compare", help="analytic and trace side by side"),
    heads_sample: int = size_option(None, "--heads-sample", ceiling=limits.MAX_HEADS,
                                    help="replay this many consecutive heads through "
                                         "their share of the L2 and scale their "
                                         "bytes to all; time is from every block"),
    event_budget: int = size_option(DEFAULT_EVENT_BUDGET, "--event-budget",
                                    ceiling=limits.MAX_EVENT_BUDGET,
                                    help="refuse traces needing more tile events"),
    save_trace: str = typer.Option(None, "--save-trace", help="write the trace as .npz"),
    as_json: bool = Opt.as_json,
) -> None:
    """Simulate the kernel's schedule: blocks on SMs, tiles in SRAM, L2 hits, HBM bytes."""
    from memsim.errors import InputError

    if l2 not in ("on", "off"):
        raise InputError("l2", l2, "must be 'on' or 'off'")
    if l2_model not in L2_MODELS:
        raise InputError("l2_model", l2_model, f"must be one of {', '.join(L2_MODELS)}")
    check_matmul_unit(matmul_unit)
    cases = expand(locals())
    if len(cases) > 1 and save_trace is not None:
        raise InputError("save_trace", save_trace, "takes one case, not a list of "
                         f"{len(cases)} (algorithm × seq_len)")
    if save_trace is not None:  # fail before simulating, not after
        from memsim.files import check_writable

        check_writable(save_trace, "save_trace")
    from memsim.trace import simulate

    # the analytic prediction only where it is shown (--compare, a table of several
    # cases): one trace as JSON or as its own table needs neither it nor its imports
    analytic_shown = compare or (len(cases) > 1 and not as_json)
    rows = []
    for options in cases:
        problem, profile, tiling = build_from(options)
        algorithm = options["algorithm"]
        result = simulate(problem, profile, algorithm, tiling, l2=l2 == "on",
                          heads_sample=heads_sample, event_budget=event_budget,
                          matmul_unit=matmul_unit, record=save_trace is not None,
                          l2_model=l2_model)
        if save_trace is not None:
            result.save(save_trace)
        row = {"trace": result.to_dict()}
        if analytic_shown:
            from memsim.algorithms import compulsory_bytes
            from memsim.attention import predict

            analytic = predict(problem, profile, algorithm, tiling, matmul_unit=matmul_unit)
            row.update(analytic=analytic.to_dict(), compulsory_bytes=compulsory_bytes(problem))
        rows.append(row)
    if as_json:                       # one object; JSON Lines for a list
        for row in rows:
            typer.echo(json.dumps(row if compare else row["trace"]))
    elif len(rows) > 1:
        print_rows(f"HBM bytes (no reuse, closed-form L2 estimate, trace, compulsory "
                   f"minimum) on {rows[0]['trace']['gpu']}: {_list_title(rows[0]['analytic'])}"
                   f", L2 {l2}{_model_note(rows[0]['trace'])}", rows, TRACE_COLUMNS)
    elif compare:
        print_compare(rows[0]["analytic"], rows[0]["trace"], rows[0]["compulsory_bytes"])
    else:
        print_trace(rows[0]["trace"])


TRACE_COLUMNS = (
    ("algorithm", lambda r: r["trace"]["algorithm"]),
    ("N", lambda r: str(r["trace"]["problem"]["seq_len"])),
    ("no reuse", lambda r: _fmt_bytes(r["analytic"]["hbm_bytes"])),
    ("L2 est.", lambda r: _fmt_bytes(r["analytic"]["l2_estimate"]["hbm_bytes"])),
    ("trace", lambda r: _fmt_bytes(r["trace"]["hbm_bytes"])),
    ("minimum", lambda r: _fmt_bytes(r["compulsory_bytes"])),
    ("time", lambda r: _fmt_s(r["trace"]["time_s"])),
)
