"""Speed and memory of the trace simulator (issues 4 and 13).

FlashAttention-2 forward, N = S = 32,768 and 131,072, H = 32, D = 128, bf16, on h100-sxm
with the L2 model on (full mask: `memsim attention`'s default; the causal case is reported
too). Memory must not grow with N² (tracemalloc sees every numpy allocation, and the numba
loops allocate nothing); it is measured in a second call of its own, so that tracemalloc's
allocation hook does not slow the timed one.

Issue 13's targets, as ratios measured in one run (``trace_128k_vs_cold_start``): the
net trace rate (tile events per second of ``simulate`` once compiled) ≥ 100 M events/s
on 2 cores, and the 128K causal GQA case (H 32, K 8, D 128) end to end — a fresh
``memsim trace`` process — within 8× the CLI's cold start (a fresh ``memsim --help``).
"Net": :func:`warm_up` compiles (or loads from numba's cache) every engine function
first, and each timed row says whether anything was compiled while it ran
(``compiled_while_timed``, from the dispatchers' signature counts: must be false).
The end-to-end rows say what a fresh process finds cached (numba's on-disk cache,
memsim's bytecode); ``trace_128k_cold_numba_cache`` is the same trace with an empty numba
cache. ``trace_128k_cpu_breakdown`` splits a fresh process's CPU time into interpreter,
imports, numba's cache loads, the simulation and the exit (2026-12-02, 2 cores, load ~8:
0.03, 0.05, 0.31-0.33, 0.05, 0.53-0.63 and 0.11-0.12 s without the ``gc.freeze`` that
``memsim.cli.main`` now does before exit, ~0.02 s with it;
the imports are numpy ~0.05, numba ~0.14, memsim's problem/algorithms ~0.08 and the
trace package ~0.03). The first call loads three engine functions from numba's cache
(``schedule_blocks``, ``walk``, ``drain``; the L2's functions are compiled into
``drain``): ``trace_first_call`` 0.46–0.53 s in four fresh processes (2026-12-02, load
~9, :func:`warm_up` after ``import benchmarks.bench_trace``). ``run()`` returns
JSON-able dicts; nothing asserts on time.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from typing import Any

CASES = (("trace_flash2", 32768, False), ("trace_flash2", 131072, False),
         ("trace_flash2_causal", 32768, True), ("trace_flash2_causal", 131072, True))


def _problem(n: int, causal: bool):
    from memsim.problem import AttentionProblem, Mask

    return AttentionProblem(batch=1, seq_len=n, heads=32, head_dim=128, dtype="bf16",
                            mask=Mask(causal=causal))


def warm_up() -> dict[str, Any]:
    """First call in the process: numba compiles (or loads its on-disk cache)."""
    from memsim.trace import simulate

    t0 = time.perf_counter()
    simulate(_problem(256, True), "h100-sxm", "flash2")
    return {"name": "trace_first_call", "seconds": time.perf_counter() - t0,
            "note": "numba compile, or cache load when memsim/trace/__pycache__ has it"}


def _compiled_signatures() -> int:
    """Signatures compiled (or loaded) so far by the engine's and the L2's numba functions."""
    from numba.core.registry import CPUDispatcher

    from memsim.trace import engine
    from memsim.trace import l2 as l2_model

    return sum(len(f.signatures) for module in (engine, l2_model)
               for f in vars(module).values() if isinstance(f, CPUDispatcher))


def _peak_traced_bytes(problem) -> int:
    """Peak bytes tracemalloc sees allocated during one more ``simulate(problem)``."""
    from memsim.trace import simulate

    tracemalloc.start()
    simulate(problem, "h100-sxm", "flash2")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def measure(name: str, n: int, causal: bool) -> dict[str, Any]:
    """One case, timed without tracemalloc (its allocation hook slowed the timed call's
    Python side: FA-2 causal N 32768, 2026-12-02, CPU 0.104 → 0.138 s, min of 8
    interleaved pairs), then its memory peak measured in a second, untimed call."""
    from memsim.trace import simulate

    problem = _problem(n, causal)
    compiled = _compiled_signatures()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = simulate(problem, "h100-sxm", "flash2")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = _peak_traced_bytes(problem)
    return {
        "name": name, "seq_len": n, "causal": causal, "events": result.events,
        "seconds": seconds, "events_per_s": result.events / seconds,
        "cpu_seconds": cpu, "events_per_cpu_s": result.events / cpu,
        "tracemalloc_peak_bytes": peak,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "l2_hit_rate": result.l2_hit_rate, "hbm_bytes": result.cost.hbm_bytes,
        "global_bytes": result.cost.global_bytes, "time_s": result.time_s,
        "compiled_while_timed": _compiled_signatures() != compiled,
        "targets": "events_per_s >= 1e8 (issue 13); seconds < 10 at seq_len 131072",
    }


GQA_128K_ARGS = ["trace", "--seq-len", "131072", "--heads", "32", "--kv-heads", "8",
                 "--head-dim", "128", "--causal", "--json"]


def _cache_state() -> dict[str, bool]:
    """Whether a fresh process finds numba's on-disk cache of every engine function
    (``cache=True``: an index per function beside its source, keyed by the source file's
    modification time and size) and memsim's modules compiled to bytecode — as an
    installed wheel has them — or compiles them (``PYTHONDONTWRITEBYTECODE`` keeps a source
    checkout's from being written)."""
    import importlib.util
    import pathlib

    from numba.core.registry import CPUDispatcher

    import memsim.cli
    from memsim.trace import engine
    from memsim.trace import l2 as l2_model

    # the functions warm_up compiled or loaded (the inlined ones have no entry of their own)
    functions = [f for module in (engine, l2_model) for f in vars(module).values()
                 if isinstance(f, CPUDispatcher) and f.signatures]
    cached = bool(functions) and all(f._cache._cache_file._load_index() for f in functions)
    pyc = pathlib.Path(importlib.util.cache_from_source(memsim.cli.__file__)).exists()
    return {"numba_cache_warm": cached, "memsim_bytecode_cached": pyc}


def end_to_end_ratio(repeats: int = 5) -> dict[str, Any]:
    """The 128K causal GQA trace as a fresh process against the CLI's cold start, both
    timed in this run, interleaved (a cold start, then a trace, ``repeats`` times: both
    see the same load), as medians and minima (wall and CPU time); the numba cache warm
    (:func:`warm_up` has filled it), and the net rate of that trace in-process."""
    import statistics

    from benchmarks import _cli
    from memsim.problem import AttentionProblem, Mask
    from memsim.trace import simulate

    cold_all, cold_cpu, trace_all, trace_cpu = [], [], [], []
    for _ in range(repeats):
        for args, walls, cpus in ((["--help"], cold_all, cold_cpu),
                                  (GQA_128K_ARGS, trace_all, trace_cpu)):
            wall, cpu = _cli.times_s(args, 1)
            walls += wall
            cpus += cpu
    cold, trace = statistics.median(cold_all), statistics.median(trace_all)
    problem = AttentionProblem(batch=1, seq_len=131072, heads=32, kv_heads=8, head_dim=128,
                               dtype="bf16", mask=Mask())
    compiled = _compiled_signatures()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = simulate(problem, "h100-sxm", "flash2")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"name": "trace_128k_vs_cold_start", "cold_start_seconds": cold,
            "trace_end_to_end_seconds": trace, "ratio": trace / cold,
            # fastest of each: on a shared machine the least disturbed runs
            "ratio_of_minima": min(trace_all) / min(cold_all),
            # the same with CPU time (both threads of the trace): the work, load-independent
            "cold_start_cpu_seconds": min(cold_cpu), "trace_cpu_seconds": min(trace_cpu),
            "cpu_ratio_of_minima": min(trace_cpu) / min(cold_cpu),
            "repeats": repeats, **_cache_state(),
            "events": result.events, "simulate_seconds": seconds,
            "events_per_s": result.events / seconds,
            "events_per_cpu_s": result.events / cpu,   # CPU of both threads
            "compiled_while_timed": _compiled_signatures() != compiled,
            "load_average_1min": os.getloadavg()[0],
            "command": " ".join(["memsim", *GQA_128K_ARGS]),
            "targets": "ratio <= 8; events_per_s >= 1e8 (issue 13)"}


#: A fresh process's CPU time (user + system, every thread), phase by phase, for the 128K
#: trace of GQA_128K_ARGS: printed by the child as JSON, the parent adds the exit.
_PHASES = """
import json, resource, sys
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t = {"interpreter": cpu()}
import memsim.cli
memsim.cli._register()
t["memsim.cli"] = cpu()
from memsim.trace import simulate
t["imports_trace_numba"] = cpu()
from memsim.problem import AttentionProblem, Mask
from memsim.hardware import load_gpu
gpu = load_gpu("h100-sxm")
def problem(n):
    return AttentionProblem(batch=1, seq_len=n, heads=32, kv_heads=8, head_dim=128,
                            mask=Mask(causal=True))
simulate(problem(256), gpu, "flash2")
t["numba_cache_loads_first_call"] = cpu()
simulate(problem(131072), gpu, "flash2")
t["simulate_128k"] = cpu()
print(json.dumps(t))
import gc
gc.freeze()  # as memsim.cli.main does before exit
"""


def cpu_breakdown() -> dict[str, Any]:
    """Where a fresh process's CPU time goes for the 128K causal GQA trace (seconds per
    phase, cumulative marks differenced; ``exit``: the interpreter's teardown, from the
    child's rusage as the parent sees it, after ``gc.freeze()`` as in
    :func:`memsim.cli.main`). Not the CLI's own path (the phases are called directly),
    so its total is close to, not equal to, ``trace_cpu_seconds``."""
    import json
    import subprocess
    import sys

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", _PHASES], check=True, capture_output=True,
                         text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    total = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    phases, last = {}, 0.0
    for name, mark in marks.items():
        phases[name] = mark - last
        last = mark
    phases["exit"] = total - last
    return {"name": "trace_128k_cpu_breakdown", "cpu_seconds": phases, "total_cpu_s": total}


def cold_numba_cache() -> dict[str, Any]:
    """The same 128K trace once more with an empty numba cache (``NUMBA_CACHE_DIR`` a new
    directory): what the first run after installing or editing memsim/trace costs, when
    every engine function is compiled (the ratio above assumes the cache warm)."""
    import tempfile

    from benchmarks import _cli

    with tempfile.TemporaryDirectory() as cache_dir:
        (wall,), (cpu,) = _cli.times_s(GQA_128K_ARGS, 1, env={"NUMBA_CACHE_DIR": cache_dir})
    return {"name": "trace_128k_cold_numba_cache", "seconds": wall, "cpu_seconds": cpu,
            "command": " ".join(["NUMBA_CACHE_DIR=<empty>", "memsim", *GQA_128K_ARGS])}


def run() -> list[dict[str, Any]]:
    return ([warm_up()] + [measure(*case) for case in CASES]
            + [end_to_end_ratio(), cpu_breakdown(), cold_numba_cache()])


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
