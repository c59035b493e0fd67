"""Timing a fresh ``memsim`` process, shared by the benchmarks."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time


def memsim_command() -> list[str]:
    """The ``memsim`` console script beside this interpreter, or the module as a fallback."""
    exe = shutil.which("memsim", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "memsim"]


def wall_times_s(args: list[str], repeats: int) -> list[float]:
    """Wall time of ``memsim *args`` in a new process, ``repeats`` times (seconds)."""
    return times_s(args, repeats)[0]


def times_s(args: list[str], repeats: int, env: dict[str, str] | None = None
            ) -> tuple[list[float], list[float]]:
    """Wall and CPU time (user + system, every thread) of ``memsim *args`` in a new
    process, ``repeats`` times each (seconds). CPU time is the work done, whatever else
    the machine runs; wall time also counts waiting for a core. ``env``: variables set
    for the process on top of this one's."""
    import resource

    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([*memsim_command(), *args], check=True, capture_output=True,
                       env={**os.environ, **env} if env else None)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return walls, cpus


def cold_start(name: str, args: list[str], target_s: float, repeats: int = 5) -> dict:
    """Median and minimum cold-start time of ``memsim *args``, as a benchmark record."""
    times = wall_times_s(args, repeats)
    return {"name": name, "seconds": statistics.median(times), "min_seconds": min(times),
            "repeats": repeats, "target_seconds": target_s,
            "command": " ".join(["memsim", *args])}
