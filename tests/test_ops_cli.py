"""memsim op gemm | all-reduce | moe: JSON contract and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from memsim.cli import main


def _json(capsys, *argv: str) -> dict:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--json"])
    assert exc.value.code in (0, None)
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv", [
    ("op", "gemm", "--m", "16", "--n", "4096", "--k", "4096", "--dtype", "fp8"),
    ("op", "all-reduce", "--bytes", "1048576", "--gpus", "8", "--backend", "vllm"),
    ("op", "moe", "--tokens", "64", "--hidden", "4096", "--inter", "14336", "--experts", "8",
     "--top-k", "2", "--tp", "2"),
])
def test_json_has_the_promised_keys(capsys, argv) -> None:
    out = _json(capsys, *argv)
    for key in ("time_s", "bound", "flops", "hbm_bytes", "backend"):
        assert key in out
    assert out["time_s"] > 0 and out["backend"] in ("trtllm", "vllm")


def test_bad_input_is_one_line_and_exit_2() -> None:
    run = subprocess.run([sys.executable, "-m", "memsim", "op", "moe", "--tokens", "1",
                          "--hidden", "8", "--inter", "8", "--experts", "4", "--top-k", "5"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "error: top_k=5 must not exceed experts=4"
