"""The one CUDA-event timer of memsim's GPU measurements (docs/DESIGN.md §"Measurements").

:func:`event_times_s` runs a sequence of steps (one callable per kernel launch, or one for a
whole PyTorch call): ``warmup`` untimed runs, then timed runs, each preceded by ``flush``
outside the timed region (an L2 flush: inputs come from HBM every time, as the models
assume), with one CUDA event before the first step and one after every step. The number
of runs adapts to the call's length: at least ``min_repeats``, about ``target_s`` of timed
work, at most ``max_repeats``. Events come from PyTorch (``backend="torch"``) or Numba
(``backend="numba"``); both time on the GPU's clock, not the host's.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventTimes:
    """Seconds of every timed run: ``runs_s[i]`` the whole run, ``steps_s[i][j]`` step j."""

    runs_s: list[float]
    steps_s: list[list[float]]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    def quantile_s(self, q: float) -> float:
        ordered = sorted(self.runs_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def step_medians_s(self) -> list[float]:
        return [statistics.median(run[j] for run in self.steps_s)
                for j in range(len(self.steps_s[0]))]

    def summary(self) -> dict[str, float]:
        """``time_s`` (median), ``p10_s``, ``p90_s``, ``min_s``, ``max_s``, ``repeats``."""
        return {"time_s": self.median_s, "p10_s": self.quantile_s(0.1),
                "p90_s": self.quantile_s(0.9), "min_s": min(self.runs_s),
                "max_s": max(self.runs_s), "repeats": len(self.runs_s)}


def _events(backend) -> tuple[Callable[[], Any], Callable[[], None], Callable]:
    """(new event, synchronize, elapsed seconds between two events) of ``backend``: "torch",
    "numba", or such a triple itself (the tests time a fake clock with it)."""
    if isinstance(backend, tuple):
        return backend
    if backend == "torch":
        import torch

        return (lambda: torch.cuda.Event(enable_timing=True), torch.cuda.synchronize,
                lambda a, b: a.elapsed_time(b) * 1e-3)
    if backend == "numba":
        from numba import cuda

        return (lambda: cuda.event(timing=True), cuda.synchronize,
                lambda a, b: cuda.event_elapsed_time(a, b) * 1e-3)
    raise ValueError(f"backend={backend!r} must be torch or numba")


def event_times_s(steps: Sequence[Callable[[], Any]] | Callable[[], Any], *,
                  backend: str | tuple = "torch", flush: Callable[[], None] | None = None,
                  warmup: int = 3, min_repeats: int = 5, max_repeats: int = 50,
                  target_s: float = 0.5) -> EventTimes:
    """CUDA-event times of running ``steps`` in order (module docstring)."""
    steps = [steps] if callable(steps) else list(steps)
    new_event, synchronize, elapsed_s = _events(backend)
    for _ in range(warmup):
        for step in steps:
            step()
    synchronize()
    runs_s: list[float] = []
    steps_s: list[list[float]] = []
    budget = max_repeats
    while len(runs_s) < budget:
        if flush is not None:
            flush()
        events = [new_event() for _ in range(len(steps) + 1)]
        events[0].record()
        for step, end in zip(steps, events[1:], strict=True):
            step()
            end.record()
        events[-1].synchronize()
        per = [elapsed_s(a, b) for a, b in zip(events, events[1:], strict=False)]
        steps_s.append(per)
        runs_s.append(sum(per))
        if len(runs_s) == 1:   # size the run to about target_s of timed work
            budget = int(min(max_repeats, max(min_repeats, target_s / max(runs_s[0], 1e-7))))
    return EventTimes(runs_s, steps_s)
