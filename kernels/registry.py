"""The kernel families, one per memsim algorithm, and how a run is checked.

Every family module exposes ``ALGORITHM``, ``OUTPUTS``, ``launches(problem, tiling,
count=False) -> list[Launch]``, ``buffers(problem, tiling, rng, logit_scale=1.0)`` (random
inputs, poisoned outputs; host numpy arrays) and ``expected(problem, tiling, buffers)`` (the
float64 reference of its outputs, from kernels/reference.py); dsa adds
``selection_errors`` (its top-k is checked for validity, not against one ordering).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from memsim.algorithms import ALGORITHMS, get
from memsim.errors import InputError, closest
from memsim.tiling import Tiling
from memsim.units import dtype_bytes

from . import decode, dsa, flash1, flash2, standard
from .common import OPS_SLOTS, run_launches

#: The kernel families by module name: what an algorithm's ``KERNEL_FAMILY`` names.
KERNELS: dict[str, ModuleType] = {
    m.__name__.rsplit(".", 1)[-1]: m for m in (standard, flash1, flash2, decode, dsa)}

#: Largest accepted error relative to the largest reference value, per storage dtype:
#: fp32 arithmetic over ≤ 10³ terms; fp16 storage rounds inputs' products, S and P (standard)
#: and O to 11 bits (2⁻¹¹ ≈ 4.9e-4 each).
RELATIVE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


def family(algorithm: str) -> ModuleType:
    """The kernel module of a memsim algorithm name (its ``KERNEL_FAMILY``)."""
    try:
        return KERNELS[get(algorithm).KERNEL_FAMILY]
    except (KeyError, InputError):
        known = [a for a in ALGORITHMS if ALGORITHMS[a].KERNEL_FAMILY in KERNELS]
        raise InputError("kernel", algorithm, "has no Numba kernels" + closest(
            algorithm, known) + f" (known: {', '.join(known)})") from None


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual − expected| / max |expected| over the finite reference entries, after
    checking that NaN (never written) and ±∞ (masked, or a row that saw no key) sit at
    exactly the same places. Returns ∞ when they do not."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        return float("inf")
    if not np.array_equal(np.isnan(a), np.isnan(e)):
        return float("inf")
    inf = np.isinf(e)
    if not np.array_equal(a[inf], e[inf]) or np.isinf(a[~inf & ~np.isnan(e)]).any():
        return float("inf")
    finite = np.isfinite(e)
    if not finite.any():
        return 0.0
    scale = max(float(np.abs(e[finite]).max()), np.finfo(np.float32).tiny)
    return float(np.abs(a[finite] - e[finite]).max() / scale)


def output_errors(problem, tiling, bufs: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative error of every checked output of a finished run against its reference."""
    module = family(tiling.algorithm)
    want = module.expected(problem, tiling, bufs)
    errors = {name: relative_error(_checked(bufs, name), want[name]) for name in want}
    if hasattr(module, "selection_errors"):                 # dsa: any valid top-k passes
        errors.update(module.selection_errors(problem, tiling, bufs))
    return errors


def _checked(bufs: dict, name: str) -> np.ndarray:
    value = bufs[name]
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


def explicit_tiling(problem, algorithm: str, *, block_q: int, block_kv: int,
                    heads_per_block: int | None = None, threads: int = 32,
                    kv_splits: int = 1, index_block_q: int = 0) -> Tiling:
    """A Tiling with the given sizes for ``problem`` (no GPU profile, no SRAM check): the
    tiny tiles the simulator tests use."""
    p = problem
    index = get(algorithm).extra_fields(p, index_block_q=index_block_q)
    return Tiling(algorithm=algorithm, block_q=block_q, block_kv=block_kv,
                  heads_per_block=heads_per_block or p.H // p.K, kv_splits=kv_splits,
                  threads=threads, head_dim=p.D, head_dim_v=p.Dv,
                  elem_bytes=dtype_bytes(p.dtype), mla=p.mla, **index)


def run_once(problem, tiling, rng: np.random.Generator, *, logit_scale: float = 1.0,
             count: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fresh random inputs and poisoned outputs, every launch run once (on host arrays:
    the simulator, or a GPU through Numba's implicit copies); (buffers, op tally)."""
    module = family(tiling.algorithm)
    bufs = module.buffers(problem, tiling, rng, logit_scale)
    ops = np.zeros(OPS_SLOTS, np.int64)
    run_launches(module.launches(problem, tiling, count), bufs, ops)
    return bufs, ops


def mismatches(problem, tiling, bufs: dict, tolerance: float | None = None) -> dict[str, float]:
    """The outputs whose relative error exceeds ``tolerance`` (default: the dtype's)."""
    tol = RELATIVE_TOLERANCE[problem.dtype] if tolerance is None else tolerance
    return {k: v for k, v in output_errors(problem, tiling, bufs).items() if not v <= tol}
