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


def test_predict_backend_times_the_all_reduce_with_that_librarys_kernels(capsys) -> None:
    """Llama-3-70B decode at TP 8: 160 all-reduces of one token's 16 KiB, each the backend's
    one-shot custom all-reduce (a few µs), not 2(G−1) launch constants (56 µs)."""
    from memsim.ops.comm import all_reduce

    out = {}
    for backend in ("trtllm", "vllm"):
        d = _json(capsys, "predict", "--model", "llama-3-70b", "--gpu", "h100-sxm",
                  "--context", "2048", "--tp", "8", "--backend", backend)
        out[backend] = d["decode"]["operators_s"]["all_reduce"]
        one = all_reduce(8192 * 2, 8, gpu="h100-sxm", backend=backend)
        assert one.detail["algorithm"] == "oneshot"
        assert out[backend] == pytest.approx(160 * one.time_s)
    assert out["trtllm"] < out["vllm"] < 160 * 10e-6
