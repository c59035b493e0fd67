"""The kernels on a real GPU (marker ``gpu``): run with ``MEMSIM_REAL_GPU=1``; without a GPU
these tests skip. The bench validates before it times; here every kernel runs one small
case through it, and the compiled code is checked for float64 arithmetic."""

from __future__ import annotations

import argparse
import os

import pytest


def _gpu_available() -> bool:
    if os.environ.get("MEMSIM_REAL_GPU") != "1":
        return False
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:  # noqa: BLE001 — a broken driver is "no GPU" here
        return False


needs_gpu = pytest.mark.skipif(not _gpu_available(),
                               reason="needs an NVIDIA GPU and MEMSIM_REAL_GPU=1")

SMALL = {
    "flash2": dict(seq_len=300, head_dim=64, causal=True),
    "standard_blockskip": dict(seq_len=300, head_dim=64, causal=True),
    "flash1": dict(seq_len=200, head_dim=40, causal=False),
    "flash_decode": dict(seq_len=2, kv_len=5000, heads=8, kv_heads=2, head_dim=128,
                         causal=True),
    "dsa": dict(seq_len=97, heads=4, kv_heads=1, mla=True, head_dim=72, head_dim_v=64,
                top_k=33, index_heads=4, index_head_dim=32, dtype="fp16"),
}


def _case(kernel: str) -> dict:
    from memsim.kernels.gpu_smoke import _case as case

    return case(kernel, **SMALL[kernel])


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("kernel", sorted(SMALL))
def test_bench_validates_and_times_every_kernel(kernel: str) -> None:
    from memsim.kernels.bench import problem_from, run_case, tiling_from

    problem = problem_from(argparse.Namespace(**_case(kernel)))
    tiling = tiling_from(problem, kernel, "h100-sxm")
    row = run_case(kernel, problem, tiling, repeats=5, warmup=1)
    assert all(err <= row["tolerance"] for err in row["validation"].values())
    assert row["time_s"] > 0 and row["registers_per_thread"] > 0
    # counted by the kernel's own tally, never memsim's prediction
    assert row["matmul_flops"] > 0 and "global_bytes" not in row and "prediction" not in row
    assert all(k["shared_mem_per_block_bytes"] <= 48 * 1024 for k in row["kernels"].values())


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("kernel", sorted(SMALL))
def test_no_float64_arithmetic_in_the_compiled_kernels(kernel: str) -> None:
    """Float literals are float32 constants: the PTX holds no .f64 instruction."""
    import numpy as np
    from memsim.kernels.bench import problem_from, tiling_from
    from memsim.kernels.common import OPS_SLOTS
    from memsim.kernels.registry import family
    from numba import cuda

    problem = problem_from(argparse.Namespace(**_case(kernel)))
    tiling = tiling_from(problem, kernel, "h100-sxm")
    module = family(kernel)
    bufs = {n: cuda.to_device(a) for n, a in module.buffers(
        problem, tiling, np.random.default_rng()).items()}
    ops = cuda.to_device(np.zeros(OPS_SLOTS, np.int64))
    for launch in module.launches(problem, tiling):
        args = [bufs[n] for n in launch.args] + list(launch.scalars) + [ops]
        ptx = launch.kernel.specialize(*args).inspect_asm()
        ptx = next(iter(ptx.values())) if isinstance(ptx, dict) else ptx
        assert ".f64" not in ptx, launch.name


def test_bench_refuses_the_simulator() -> None:
    """Under the CUDA simulator (every CPU-only test run) the bench will not time."""
    from memsim.kernels.bench import require_gpu
    from numba import config

    if not config.ENABLE_CUDASIM:
        pytest.skip("runs on a real GPU here")
    with pytest.raises(RuntimeError, match="simulator"):
        require_gpu()


def test_bench_validation_passes_a_right_run_and_catches_a_wrong_row() -> None:
    """The check run_case makes before timing, on a simulated run: sampled rows against the
    textbook formula. One corrupted value of a sampled row, or one unwritten element, fails."""
    import numpy as np
    from memsim.kernels.bench import sample_rows, validate
    from memsim.kernels.registry import explicit_tiling, run_once

    from memsim.problem import AttentionProblem, Mask

    p = AttentionProblem(batch=1, seq_len=37, kv_len=45, heads=4, kv_heads=2, head_dim=24,
                         dtype="fp32", mask=Mask(window=9))
    t = explicit_tiling(p, "flash2", block_q=16, block_kv=16, threads=32)
    bufs, _ = run_once(p, t, np.random.default_rng())
    assert max(validate(p, t, bufs, bufs).values()) < 1e-4
    wrong = dict(bufs, o=bufs["o"].copy())
    wrong["o"][0, sample_rows(p.N)[3], 1, 5] += 0.1
    assert validate(p, t, bufs, wrong)["o"] > 1e-3
    wrong["o"][0, 1, 0, 0] = np.nan                         # an element left unwritten
    assert validate(p, t, bufs, wrong)["o_written"] == float("inf")
