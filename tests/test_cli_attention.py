"""`memsim attention` through typer's runner: the JSON key contract for every algorithm and
every mask it runs, bad input (exit 2, field and value named, no traceback), the human
table's takeaway, and the start-up imports of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsim.algorithms import ALGORITHMS
from memsim.cli import _register, app
from memsim.roofline import BOUND_EXPLANATIONS

_register()
RUNNER = CliRunner()

CONTRACT = {"algorithm", "gpu", "flops", "global_bytes", "hbm_read_bytes", "hbm_write_bytes",
            "hbm_bytes", "sram_bytes", "workspace_bytes", "time_s", "bound", "tiling"}

SHAPE = ["--batch", "2", "--heads", "16", "--kv-heads", "4", "--head-dim", "64"]
PREFILL = ["--seq-len", "1000", "--kv-len", "1500"]
DECODE = ["--seq-len", "1", "--kv-len", "5000"]
DENSE_MASKS = {
    "full": ["--bidirectional"],
    "causal": [],
    "window": ["--window", "256"],
    "bidirectional window": ["--window", "128", "--bidirectional"],
    "chunk": ["--chunk", "512"],
}
CASES = [(name, mask, [*SHAPE, *(DECODE if name == "flash_decode" else PREFILL), *flags])
         for name in ALGORITHMS if name != "dsa" for mask, flags in DENSE_MASKS.items()]
CASES += [("dsa", "top-k", [*SHAPE, *PREFILL, "--top-k", "256"]),
          ("dsa", "top-k mla decode", ["--heads", "128", "--kv-heads", "1", "--mla",
                                       "--head-dim", "576", "--head-dim-v", "512", *DECODE,
                                       "--top-k", "2048"])]


def run(*args: str):
    return RUNNER.invoke(app, ["attention", *args])


def test_every_algorithm_has_a_contract_case() -> None:
    assert {name for name, _, _ in CASES} == set(ALGORITHMS)


@pytest.mark.parametrize(("algorithm", "mask", "args"), CASES,
                         ids=[f"{a}-{m}" for a, m, _ in CASES])
def test_json_honours_the_key_contract(algorithm: str, mask: str, args: list[str]) -> None:
    r = run("--algorithm", algorithm, "--gpu", "a100-sxm4-80gb", *args, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert CONTRACT <= set(out)
    assert (out["algorithm"], out["gpu"]) == (algorithm, "a100-sxm4-80gb")
    for key in CONTRACT - {"algorithm", "gpu", "bound", "tiling"}:
        assert isinstance(out[key], float) and out[key] >= 0, key
    assert out["flops"] > 0 and out["time_s"] > 0
    assert out["hbm_bytes"] == out["hbm_read_bytes"] + out["hbm_write_bytes"]
    assert out["bound"] in BOUND_EXPLANATIONS
    assert out["tiling"]["algorithm"] == algorithm
    assert 0 < out["tiling"]["sram_bytes"] <= 166912            # A100's SRAM per block
    assert out["problem"]["batch"] == 2 or algorithm == "dsa"


def test_json_backward_pass_and_explicit_tiles() -> None:
    r = run("--algorithm", "flash2", "--seq-len", "2048", "--head-dim", "128", "--causal",
            "--pass", "forward+backward", "--block-q", "64", "--block-kv", "32", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["tiling"]["block_q"], out["tiling"]["block_kv"]) == (64, 32)
    assert out["problem"]["pass"] == "forward+backward"


BAD = [
    (["--seq-len", "0"], "seq_len=0"),
    (["--batch", "-1"], "batch=-1"),
    (["--heads", "10", "--kv-heads", "3"], "kv_heads=3 must divide heads=10"),
    (["--seq-len", "20", "--kv-len", "10"], "seq_len=20 must not exceed kv_len=10"),
    (["--window", "0"], "window=0"),
    (["--chunk", "-5"], "chunk=-5"),
    (["--algorithm", "dsa", "--top-k", "0"], "top_k=0"),
    (["--algorithm", "dsa"], "top_k=None is required by the dsa algorithm"),
    (["--top-k", "64"], "top_k=64 needs the dsa algorithm"),
    (["--dtype", "fp12"], "dtype='fp12'"),
    (["--window", "8", "--chunk", "16"], "window=8 cannot be combined with chunk=16"),
    (["--mla", "--kv-heads", "8"], "kv_heads=8 must be 1 with mla"),
    (["--algorithm", "flash3"], "algorithm='flash3' is not known; did you mean 'flash2'"),
    (["--algorithm", "flash_decode", "--pass", "backward", "--seq-len", "1"],
     "pass='backward' is not modelled for flash_decode"),
    (["--algorithm", "flash_decode", "--seq-len", "64", "--block-q", "16"],
     "block_q=16 must hold all seq_len=64"),
    (["--kv-splits", "4"], "kv_splits=4 applies to decoding only"),
    (["--block-q", "1024", "--block-kv", "1024"],
     "needs 786432 B of SRAM per block, more than the 232448 B available"),
    (["--matmul-unit", "gpu"], "matmul_unit='gpu' must be 'tensor' or 'fp32'"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_exits_2_naming_field_and_value(args: list[str], message: str) -> None:
    r = run(*args, "--json")
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert r.stderr.startswith("error: ")
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert isinstance(r.exception, SystemExit)


@pytest.mark.parametrize(("name", "suggested"), [
    ("h100sxm", "'h100-sxm'"), ("A100-80GB", "'a100-sxm4-80gb'"), ("mi300", "'mi300x'"),
])
def test_unknown_gpu_suggests_the_closest_names(name: str, suggested: str) -> None:
    r = run("--gpu", name)
    assert r.exit_code == 2
    assert f"gpu={name!r} is not a known GPU; did you mean" in r.stderr
    assert suggested in r.stderr.split("(known:")[0]


def test_broken_profile_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "broken"\n[spec]\nsm_count = 132\n[efficiency]\n[price]\n')
    r = run("--gpu", str(bad))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "broken.toml" in r.stderr and "spec.sm_count" in r.stderr


def test_human_table_has_units_and_a_takeaway() -> None:
    r = run("--algorithm", "flash2", "--gpu", "h100-sxm", "--heads", "32", "--kv-heads", "8",
            "--seq-len", "8192", "--head-dim", "128", "--causal")
    assert r.exit_code == 0, r.output
    assert "flash2 on h100-sxm" in r.stdout
    assert "HBM read / write" in r.stdout and " MB" in r.stdout
    takeaway = [line for line in r.stdout.splitlines() if line.startswith("Takeaway: bound by")]
    assert len(takeaway) == 1


def test_cli_start_up_imports_no_gpu_or_plotting_code() -> None:
    """DESIGN: the CLI must not import numba.cuda or plotly at start-up (cold start < 1 s)."""
    code = ("import memsim.cli, sys; memsim.cli._register(); "
            "print([m for m in ('numba.cuda', 'plotly') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
