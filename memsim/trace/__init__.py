"""Trace-driven model: the algorithm's real schedule played out on the GPU.

Thread blocks are placed on SMs in waves, their tiles loaded into SRAM, and every global
access passed through an L2 model before it reaches HBM (docs/DESIGN.md §"Three models
that must agree").

    simulate(problem, gpu, algorithm, tiling=None, l2=True, heads_sample=None,
             event_budget=...) -> TraceResult

Modules, one job each: ``layout`` (tensors, addresses), ``program`` (block programs as
flat run-length event arrays), ``schedule`` + ``sched_*`` (one generator per algorithm),
``l2`` (the LRU cache; ``l2_lines``: sectors, sets, ways), ``engine`` (the numba hot
loop: block scheduler and steps, in integer ticks), ``jit_setup`` (numba's ``njit``,
its cache loaded without setting numba's whole CPU target up), ``timing`` (step and
kernel time, ticks), ``simulate`` (the public API and result).
"""

from __future__ import annotations

from memsim.trace.simulate import DEFAULT_EVENT_BUDGET, KernelTrace, TraceResult, simulate

__all__ = ["DEFAULT_EVENT_BUDGET", "KernelTrace", "TraceResult", "simulate"]
