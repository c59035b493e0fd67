"""The fuzzer of issue 12: random argument vectors for every subcommand of the app (listed
from the app itself, so a new subcommand is fuzzed the day it lands), each run in-process
under a time limit. The contract: exit 0 with finite, non-negative JSON, or exit 2 with one
``error:`` line — never a traceback, never a hang."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import typer
from hardening_support import check_contract, invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.cli import _register, app, app_command_names

REPO = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="memsim-fuzz-"))
atexit.register(shutil.rmtree, TMP, True)
RUN = str(sorted((REPO / "measurements/h100-sxm").glob("quick-*.jsonl"))[0])
BAD_JSON = TMP / "bad.json"
BAD_JSON.write_bytes(b"\x00\xff not json")

SIZES = ["1", "2", "4", "8", "16", "64", "128", "256"]
BAD = ["0", "-1", "nan", "inf", "x", "", "1.5", "9223372036854775808", "1e3"]
NAMED = {  # option name → (values that should work, values that should be refused)
    "gpu": (["h100-sxm", "a100-sxm4-80gb", "mi300x"], ["nosuch", str(BAD_JSON) + ".toml"]),
    "sweep gpus": (["h100-sxm", "h100-sxm,a100-sxm4-80gb"], ["nosuch", ""]),
    "model": (["llama-3-8b", "gemma-2-9b", "deepseek-v3"], ["nosuch", str(BAD_JSON)]),
    "models": (["llama-3-8b", "llama-3-8b,gemma-2-9b"], ["nosuch", ""]),
    "algorithm": (["standard", "flash1", "flash2", "flash_decode"], ["flash9"]),
    "attention": (["auto", "flash2", "flash_decode", "standard"], ["nope"]),
    "attentions": (["auto", "flash2,auto"], ["nope"]),
    "dtype": (["bf16", "fp16", "fp32", "fp8"], ["fp12"]),
    "weight_dtype": (["bf16", "fp8", "int4"], ["fp3"]),
    "kv_dtype": (["bf16", "fp8"], ["int4"]),
    "pass_": (["forward", "backward", "forward+backward"], ["sideways"]),
    "matmul_unit": (["tensor", "fp32"], ["gpu"]),
    "l2": (["on", "off"], ["maybe"]),
    "contexts": (["1024", "1,4096"], ["0", "x", ""]),
    "batches": (["1", "1,8"], ["0", "y"]),
    "batch": (SIZES + ["max"], BAD),
    "fmt": (["csv", "jsonl"], ["xml"]),
    "acceptance": (["0.5", "1"], ["nan", "2", "-1"]),
    "price": (["1", "2.5"], ["0", "-1", "inf", "nan"]),
    "budget_s": (["1"], ["nan", "-1"]),
    "suite": (["quick", "full"], ["nope"]),
    "ncu": (["auto", "on", "off"], ["x"]),
    "only": (["ceiling", "sdpa,llama"], ["nope"]),
    "profile": (["h100-sxm"], ["nosuch"]),
    "summary_dir": ([RUN], [str(TMP / "nosuch"), str(BAD_JSON)]),
    "directory": ([], [str(TMP / "nosuch"), str(BAD_JSON), str(TMP)]),
    "measurements": ([], [str(TMP / "nosuch")]),
    "out": ([str(TMP / "out.jsonl")], [str(TMP / "no" / "x.csv"), str(TMP)]),
    "save_trace": ([str(TMP / "t.npz")], [str(TMP)]),
    "event_budget": (["100000000"], BAD),
}
FORCED = {  # arguments always given (the command needs a GPU, or its success is covered
    # elsewhere and takes seconds: report builds a site, calibrate fits for ~20 s)
    "validate": ["--summary", RUN],
    "report": ["--measurements", str(TMP / "nosuch")],
}

_register()
GROUP = typer.main.get_command(app)


def _options(command: str) -> list[tuple[str, str, bool]]:
    """(name, flag, is_flag) of every option and argument of ``command`` ("op gemm")."""
    cmd = GROUP
    for part in command.split():
        cmd = cmd.commands[part]
    out = []
    for p in cmd.params:
        flag = p.opts[0] if p.opts else p.name
        out.append((p.name, flag, bool(getattr(p, "is_flag", False))))
    return out


def p_required(command: str, name: str) -> bool:
    cmd = GROUP
    for part in command.split():
        cmd = cmd.commands[part]
    return any(p.name == name and p.required for p in cmd.params)


@st.composite
def argvs(draw: st.DrawFn, command: str) -> list[str]:
    argv = [*command.split(), *FORCED.get(command, [])]
    for name, flag, is_flag in _options(command):
        if name in ("summary_dir", "measurements") and command in FORCED:
            continue
        if is_flag:
            if draw(st.integers(0, 5)) == 5:  # (hypothesis starts from 0: flags off)
                argv.append(flag)
            continue
        required = name == "directory" or (name in ("model", "gpu", "models", "gpus",
                                                    "contexts", "context", "max_context")
                                           and command in ("predict", "cost-curve", "sweep")
                                           ) or (command.startswith("op ") and p_required(
                                               command, name))
        if not required and draw(st.integers(0, 7)) != 7:  # (starts with no options)
            continue
        good, bad = NAMED.get(f"{command} {name}", NAMED.get(name, (SIZES, BAD)))
        pool = good if good and draw(st.integers(0, 9)) < 9 else bad
        value = draw(st.sampled_from(pool))
        argv += [value] if not flag.startswith("-") else [flag, value]
    if any(flag == "--json" for _, flag, _ in _options(command)) and "--json" not in argv:
        argv.append("--json")
    return argv


def test_the_fuzzer_covers_every_subcommand() -> None:
    assert set(app_command_names()) >= {"attention", "trace", "predict", "cost-curve",
                                        "sweep", "models", "gpus", "validate", "calibrate",
                                        "report"}


@pytest.mark.parametrize("command", app_command_names())
@settings(max_examples=25)
@given(data=st.data())
def test_random_arguments_keep_the_contract(command: str, data: st.DataObject) -> None:
    argv = data.draw(argvs(command))
    check_contract(invoke(argv))
