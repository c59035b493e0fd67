"""`memsim trace` through typer's runner: the JSON contract, --compare, --l2 off,
--heads-sample, --save-trace, and bad input (exit 2, field and value named)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from memsim.cli import _register, app

_register()
RUNNER = CliRunner()

CONTRACT = {"hbm_read_bytes", "hbm_write_bytes", "hbm_bytes", "global_bytes", "l2_hit_rate",
            "waves", "events", "time_s", "blocks_per_sm", "flops", "bound", "kernels",
            "achieved_hbm_bytes_per_s", "achieved_l2_bytes_per_s", "heads_sample"}
SMALL = ["--seq-len", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "64"]


def run(*args: str):
    return RUNNER.invoke(app, ["trace", *args])


def test_json_carries_the_contract_and_agrees_with_attention() -> None:
    result = run(*SMALL, "--causal", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert CONTRACT <= out.keys()
    assert out["hbm_bytes"] == out["hbm_read_bytes"] + out["hbm_write_bytes"]
    assert 0 < out["hbm_bytes"] < out["global_bytes"] and 0 < out["l2_hit_rate"] < 1
    attention = json.loads(RUNNER.invoke(app, ["attention", *SMALL, "--causal",
                                               "--json"]).output)
    assert out["global_bytes"] == attention["global_bytes"]
    assert out["flops"] == attention["flops"]


def test_one_trace_skips_the_analytic_model_it_does_not_show() -> None:
    """`memsim trace --json` (and its own table) print the trace alone: a fresh process
    never imports memsim.attention (issue 13: the 128K trace's start-up); --compare does."""
    import subprocess
    import sys
    from pathlib import Path

    def loaded(*flags: str) -> bool:
        probe = ("import contextlib, io, sys, memsim.cli\n"
                 "with contextlib.redirect_stdout(io.StringIO()):\n"
                 f"    memsim.cli.run({['trace', *SMALL, *flags]!r})\n"
                 "print('memsim.attention' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        return out.stdout.split()[-1] == "True"

    assert not loaded("--json")
    assert loaded("--compare", "--json")


def test_cached_engine_loads_without_numba_target_refresh() -> None:
    """A process that loads the trace's numba functions from the on-disk cache does not
    set numba's whole CPU target up (memsim.trace.jit_setup: no lowering registries, so
    neither ``numba.np.arraymath`` nor, through its BLAS probe, ``scipy.linalg`` is
    imported; ~0.15-0.25 s of the 128K trace's start-up, issue 13), and its trace gives
    the same bytes as a process whose target was refreshed first. Afterwards numba
    still compiles a new function (its pipeline refreshes the target itself)."""
    import subprocess
    import sys
    from pathlib import Path

    def trace_process(first: str) -> list[str]:
        probe = (f"{first}\n"
                 "import contextlib, io, json, sys, memsim.cli\n"
                 "out = io.StringIO()\n"
                 "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
                 f"    memsim.cli.main({['trace', *SMALL, '--causal', '--json']!r})\n"
                 "print('numba.np.arraymath' in sys.modules)\n"
                 "from numba import njit\n"
                 "print(njit(lambda x: x.sum())(__import__('numpy').arange(4.0)))\n"
                 "print(json.loads(out.getvalue())['hbm_bytes'])")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        return out.stdout.split()[-3:]

    trace_process("")                       # fills numba's cache if it was empty
    loaded, compiled, hbm_bytes = trace_process("")
    assert (loaded, compiled) == ("False", "6.0")
    refresh = "from numba.core.registry import cpu_target; cpu_target.target_context.refresh()"
    refreshed, _, refreshed_hbm = trace_process(refresh)
    assert refreshed == "True"
    assert float(hbm_bytes) == float(refreshed_hbm)


def test_l2_off_sends_every_byte_to_hbm() -> None:
    out = json.loads(run(*SMALL, "--l2", "off", "--json").output)
    assert out["l2"] == "off" and out["l2_hit_rate"] == 0
    assert out["hbm_bytes"] == out["global_bytes"]


def test_compare_prints_both_models() -> None:
    result = run(*SMALL, "--compare")
    assert result.exit_code == 0, result.output
    assert "analytic" in result.output and "trace/analytic" in result.output
    assert "Takeaway" in result.output
    both = json.loads(run(*SMALL, "--compare", "--json").output)
    assert both["trace"]["hbm_bytes"] <= both["analytic"]["hbm_bytes"]
    assert both["compulsory_bytes"] <= both["trace"]["hbm_bytes"]


def test_table_lists_every_kernel() -> None:
    result = run(*SMALL, "--algorithm", "standard")
    assert result.exit_code == 0, result.output
    for kernel in ("standard.qk", "standard.softmax", "standard.pv"):
        assert kernel in result.output


@pytest.mark.parametrize("algorithm", ["flash1", "flash2", "standard"])
def test_forward_and_backward_are_simulated(algorithm: str) -> None:
    """Done-when of issue 13: `memsim trace --pass forward+backward` for the three
    algorithms; the table lists the backward kernels and the bytes agree with
    `memsim attention` at the L2 (global) level."""
    args = [*SMALL, "--causal", "--algorithm", algorithm, "--pass", "forward+backward"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert f"{algorithm}." in result.output or algorithm in result.output
    out = json.loads(run(*args, "--json").output)
    names = [k["name"] for k in out["kernels"]]
    assert any("bwd" in n for n in names), names
    attention = json.loads(RUNNER.invoke(app, ["attention", *args[:-2], "--pass",
                                               "forward+backward", "--json"]).output)
    assert out["global_bytes"] == attention["global_bytes"]
    assert out["hbm_bytes"] < attention["hbm_bytes"]


def test_heads_sample_is_reported() -> None:
    out = json.loads(run(*SMALL, "--heads-sample", "2", "--json").output)
    assert out["heads_sample"] == 2 and out["heads_scale"] == 2


def test_save_trace_writes_an_npz(tmp_path) -> None:
    path = tmp_path / "trace.npz"
    result = run(*SMALL, "--save-trace", str(path))
    assert result.exit_code == 0, result.output
    with np.load(path) as z:
        summary = json.loads(str(z["summary_json"]))
        assert summary["events"] > len(z["event_address"]) > 0


@pytest.mark.parametrize("args,field", [
    (["--l2", "maybe"], "l2='maybe'"),
    (["--event-budget", "100"], "event_budget=100"),
    (["--heads-sample", "3"], "heads_sample=3"),
    (["--pass", "sideways"], "pass"),
    (["--pass", "backward", "--algorithm", "flash_decode", "--seq-len", "1"], "pass='backward'"),
    (["--matmul-unit", "cuda"], "matmul_unit='cuda'"),
    (["--gpu", "h101"], "gpu='h101'"),
    (["--kv-heads", "3"], "kv_heads"),
])
def test_bad_input_exits_2_naming_the_field(args, field) -> None:
    result = run(*SMALL, *args)
    assert result.exit_code == 2
    assert field in result.output and "Traceback" not in result.output


def test_event_budget_error_suggests_heads_sample() -> None:
    result = run(*SMALL, "--event-budget", "100")
    assert "--heads-sample" in result.output and "tile events" in result.output


def test_lists_give_one_table_and_json_lines() -> None:
    """Issue 13 item 5: `--algorithm standard,flash2 --seq-len 256,512` is one command;
    JSON Lines (one object per algorithm × length, algorithm outer) with --json, in both
    `memsim trace` and `memsim attention`."""
    args = ["--heads", "4", "--head-dim", "64", "--causal", "--algorithm", "standard,flash2",
            "--seq-len", "256,512"]
    for command in ("trace", "attention"):
        lines = RUNNER.invoke(app, [command, *args, "--json"]).output.strip().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [(r["algorithm"], r["problem"]["seq_len"]) for r in rows] == [
            ("standard", 256), ("standard", 512), ("flash2", 256), ("flash2", 512)]
        table = RUNNER.invoke(app, [command, *args], env={"COLUMNS": "80"})
        assert table.exit_code == 0, table.output
        assert table.output.count("standard") >= 2 and "L2 est." in table.output
        assert "…" not in table.output                  # nothing truncated at 80 columns
    single = json.loads(run(*SMALL, "--json").output)          # one value: one object
    assert single["problem"]["seq_len"] == 512


@pytest.mark.parametrize("args,field", [
    (["--seq-len", "256,x"], "seq_len='256,x'"),
    (["--algorithm", "flash2,"], "algorithm='flash2,'"),
    (["--algorithm", "flash2,flash9"], "algorithm='flash9'"),
])
def test_bad_lists_exit_2_naming_the_field(args, field) -> None:
    for command in ("trace", "attention"):
        result = RUNNER.invoke(app, [command, "--heads", "4", *args])
        assert result.exit_code == 2, result.output
        assert field in result.output and "Traceback" not in result.output


def test_the_console_entry_freezes_the_collector_before_exit() -> None:
    """memsim.cli.main (the console script) calls gc.freeze() once the command has run,
    so the interpreter's teardown skips the collector's passes over numba's and LLVM's
    objects (~0.09 s of the 128K trace's CPU); memsim.cli.run leaves the collector
    alone."""
    import subprocess
    import sys
    from pathlib import Path

    def frozen_at_exit(call: str) -> str:
        probe = ("import atexit, contextlib, gc, io, memsim.cli\n"
                 "atexit.register(lambda: print(gc.get_freeze_count() > 0))\n"
                 "with contextlib.redirect_stdout(io.StringIO()), "
                 "contextlib.suppress(SystemExit):\n"
                 f"    memsim.cli.{call}(['--help'])\n")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        return out.stdout.split()[-1]

    assert frozen_at_exit("main") == "True"
    assert frozen_at_exit("run") == "False"
