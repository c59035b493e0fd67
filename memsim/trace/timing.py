"""Timing of a simulated kernel: step durations per resource, and the kernel's time.

Assumptions (kept simple so that every number can be explained):

1. **Slots share an SM evenly and statically.** A kernel runs R resident blocks per SM,
   R = min(blocks_per_sm from occupancy, ⌈grid blocks / SMs⌉) — a grid too small to reach
   the occupancy limit leaves fewer blocks on each SM. Each block slot gets 1/R of its
   SM's tensor cores, CUDA cores, special-function units and shared-memory bandwidth, and
   1/R of the SM's share (1/SMs) of the L2 bandwidth, whether or not the other slots are
   busy (so the tail of a multi-wave kernel is not sped up). Rates are the profile's
   *achievable* ones (peak × efficiency), as in :mod:`memsim.roofline`.
2. **A step takes the longest of its resources.** compute = matmul + vector + exp (issued
   by the same warps, as in the roofline), L2 = the step's global bytes at the slot's L2
   share, SRAM = its shared-memory bytes at the slot's SRAM share; loads of a tile overlap
   the math on it (software pipelining), so the step lasts max(compute, L2, SRAM). The
   largest of these names the step's binding resource.
3. **HBM is a chip-wide limit applied per kernel.** Step durations do not depend on hits
   or misses (so the order in which the L2 sees accesses does not depend on its size); a
   kernel then takes max(makespan of its blocks, global bytes / chip L2 bandwidth, HBM
   bytes / chip HBM bandwidth) plus one launch overhead. When HBM binds, every resident
   block is slowed alike, which keeps their relative order.
4. Waves and the tail effect come from the block scheduler (:mod:`memsim.trace.engine`),
   not from a formula.

Rates, the fp8 fallback (DSA's indexer at the fp8 tensor rate where the GPU has one) and
the compute-sum rule are the roofline's own (:func:`memsim.roofline.achievable_rates`,
:func:`memsim.roofline.compute_s`), not a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.roofline import Rates, achievable_rates, compute_s

STEP_TERMS = ("matmul", "vector", "exp", "l2", "sram")
#: The trace's unit of time: 2^16 ticks per cycle of the profile's SM clock
#: (``boost_clock_hz``). Integer time makes sums of durations exact (ties between SM slots
#: are decided by durations, not by float rounding: :mod:`memsim.trace.engine`); 2^16 per
#: cycle keeps even sub-cycle steps (0.1 cycle: the eager-standard elementwise kernels)
#: within 1e-4 of their float duration, and int64 ticks last 2^63 / (2^16 · 2 GHz) ≈ 7e4 s.
TICKS_PER_CYCLE = 1 << 16


def resident_blocks_per_sm(gpu, blocks_per_sm: int, grid_blocks: int) -> int:
    """R of assumption 1: min(occupancy limit, ⌈grid blocks / SMs⌉), at least 1."""
    return max(1, min(blocks_per_sm, -(-grid_blocks // gpu.spec.sm_count)))


def slot_rates(gpu, dtype: str, blocks_per_sm: int, matmul_unit: str = "tensor") -> Rates:
    """Each slot's 1/(SMs × blocks_per_sm) of the chip's achievable rates
    (:func:`memsim.roofline.achievable_rates`, fp8 fallback included)."""
    return achievable_rates(gpu, dtype, matmul_unit).share(
        1.0 / (gpu.spec.sm_count * blocks_per_sm))


def ticks_per_s(gpu) -> float:
    """Ticks per second on ``gpu`` (:data:`TICKS_PER_CYCLE` × its SM clock; an integer)."""
    return float(gpu.spec.boost_clock_hz) * TICKS_PER_CYCLE


def to_ticks(seconds: np.ndarray, gpu) -> np.ndarray:
    """Durations in seconds as int64 ticks, rounded to the nearest (equal durations give
    equal ticks)."""
    return np.rint(np.asarray(seconds, np.float64) * ticks_per_s(gpu)).astype(np.int64)


def step_durations(run_work: np.ndarray, rates: Rates) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per iteration of each run, and the index in :data:`STEP_TERMS` of the
    resource that sets it. ``run_work``: [R, 7] per iteration (see program.WORK_FIELDS)."""
    w = run_work
    terms = np.stack([
        w[:, 0] / rates.matmul_flop_per_s + w[:, 1] / rates.fp8_matmul_flop_per_s,
        w[:, 2] / rates.vector_flop_per_s,
        w[:, 3] / rates.exp_per_s,
        w[:, 6] / rates.l2_bytes_per_s,
        (w[:, 4] + w[:, 5]) / rates.sram_bytes_per_s,
    ], axis=1)
    compute = compute_s(terms[:, 0], terms[:, 1], terms[:, 2])
    duration = np.maximum(compute, np.maximum(terms[:, 3], terms[:, 4]))
    memory_term = np.where(terms[:, 3] >= terms[:, 4], 3, 4)
    term = np.where(compute >= np.maximum(terms[:, 3], terms[:, 4]),
                    np.argmax(terms[:, :3], axis=1), memory_term)
    return duration, term.astype(np.int64)


@dataclass(frozen=True)
class KernelTime:
    """A kernel's time and what set it: ``bound`` is 'hbm' or 'l2' when the chip-wide byte
    limit exceeds the blocks' makespan, else the step resource with the most busy time."""

    time_s: float
    makespan_s: float
    hbm_s: float
    l2_s: float
    launch_s: float
    bound: str


def kernel_time(gpu, makespan_s: float, global_bytes: float, hbm_bytes: float,
                busy_s: np.ndarray) -> KernelTime:
    """Assumption 3 of the module docstring."""
    chip = achievable_rates(gpu)
    hbm_s = hbm_bytes / chip.hbm_bytes_per_s
    l2_s = global_bytes / chip.l2_bytes_per_s
    launch_s = gpu.spec.kernel_launch_overhead_s
    body = max(makespan_s, l2_s, hbm_s)
    if hbm_s >= body and hbm_s > makespan_s:
        bound = "hbm"
    elif l2_s >= body and l2_s > makespan_s:
        bound = "l2"
    else:
        bound = STEP_TERMS[int(np.argmax(busy_s))] if np.any(busy_s > 0) else "launch"
    return KernelTime(body + launch_s, makespan_s, hbm_s, l2_s, launch_s, bound)
