"""memsim's own Numba-CUDA kernels against the predictions for the Tiling they ran with.

The kernels and their bench runner live in :mod:`memsim.kernels.bench` (``run_case(kernel,
problem, tiling)``: validate against the float64 reference, then time with CUDA events, L2
flushed; a dict of measured quantities only: ``time_s``, the matmul FLOPs and exponentials
the kernel's threads tallied, its registers and shared memory). This module only builds the
case's problem and Tiling, calls it, and predicts the same Tiling with matmuls on the CUDA
cores (``matmul_unit="fp32"``: Numba has no tensor cores). When the bench reports the
registers per thread the compiler chose, the prediction is redone with them, so the
occupancy in the model is the kernel's.

Numba kernels use static shared memory, at most 48 KiB per block
(:data:`STATIC_SHARED_LIMIT_BYTES`), so the default Tiling is shrunk to fit that.
"""

from __future__ import annotations

from typing import Any

from memsim.hardware import GPU
from memsim.kernels.tiles import STATIC_SHARED_LIMIT_BYTES as STATIC_SHARED_LIMIT_BYTES
from memsim.kernels.tiles import kernel_tiling
from memsim.tiling import Tiling
from memsim.validation.predictions import attention_problem, predict_case

_REGISTER_KEYS = ("registers_per_thread", "registers", "regs_per_thread")


class BenchUnavailableError(RuntimeError):
    """memsim.kernels.bench is not installed (or cannot run here)."""


class SimulatedError(BenchUnavailableError):
    """Under the CUDA simulator the kernel ran and was validated, but nothing is measured:
    the case is recorded as skipped with what was checked."""


def simulated() -> bool:
    """Whether Numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    import os

    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def tiling_for(params: dict[str, Any], gpu: GPU) -> Tiling:
    """The Tiling a kernel case runs with (:func:`memsim.kernels.tiles.kernel_tiling`: the
    rule the bench and the GPU smoke run use)."""
    return kernel_tiling(attention_problem(params), gpu, params["algorithm"])


def _bench() -> Any:
    try:
        from memsim.kernels import bench
    except ImportError as exc:
        raise BenchUnavailableError(f"memsim.kernels.bench is not installed: {exc}") from None
    if not hasattr(bench, "run_case"):
        raise BenchUnavailableError("memsim.kernels.bench has no run_case(kernel, problem, tiling)")
    return bench


def registers_of(measurement: dict[str, Any]) -> int | None:
    """Registers per thread reported by the bench, if any."""
    for key in _REGISTER_KEYS:
        value = measurement.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def run(params: dict[str, Any], gpu: GPU) -> dict[str, Any]:
    """Validate, time and predict one kernel case."""
    bench = _bench()
    problem = attention_problem(params)
    tiling = tiling_for(params, gpu)
    if simulated():   # a rehearsal of the GPU run: compile, launch, validate; no time
        *_, errors = bench.launch_and_validate(params["algorithm"], problem, tiling)
        checked = ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
        raise SimulatedError(f"CUDA simulator: launched and matched the float64 reference "
                             f"(relative errors {checked}); not compiled for a GPU, nothing "
                             "timed")
    raw = bench.run_case(params["algorithm"], problem, tiling)
    measurement = {k: v for k, v in dict(raw).items()
                   if isinstance(v, int | float | str | bool) or v is None}
    if not isinstance(measurement.get("time_s"), int | float):
        raise RuntimeError(f"bench.run_case returned no time_s: keys {sorted(raw)}")
    registers = registers_of(measurement)
    if registers is not None:
        tiling = tiling.model_copy(update={"registers_per_thread": registers})
    prediction = predict_case(problem, gpu, params["algorithm"], tiling, matmul_unit="fp32")
    return {"prediction": prediction, "measurement": measurement}
