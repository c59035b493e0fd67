"""Run a validation suite: read the device, pick its profile, measure every case, write each
one down the moment it is measured.

:func:`validate` does the whole run; :func:`run_cases` is its loop, free of any GPU code
(the handlers are passed in), so the loop's promises are tested on a CPU:

- every case becomes one line of the run file as soon as it finishes (ok, failed, skipped);
- a failing case (out of memory, a launch error, a wrong result) is recorded with its
  reason and the run goes on; a missing library skips the cases that need it;
- ``--resume`` skips the cases already recorded;
- a time budget stops the loop between cases (``--resume`` continues);
- an error that leaves the CUDA context unusable (an illegal address, a launch failure)
  stops the loop with :class:`StickyCudaError` after recording it; the CLI then starts a
  fresh process that resumes the run.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsim.hardware import GPU
from memsim.validation.predictions import relative_errors
from memsim.validation.records import RunFile, utc_now
from memsim.validation.suites import Case

Handler = Callable[[dict[str, Any], "RunContext"], dict[str, Any]]

_STICKY_MARKERS = ("illegal memory access", "ILLEGAL_ADDRESS", "unspecified launch failure",
                   "LAUNCH_FAILED", "misaligned address", "illegal instruction",
                   "device-side assert")
_OOM_MARKERS = ("out of memory", "OutOfMemoryError", "CUDA_ERROR_OUT_OF_MEMORY")
_HINTS = {
    "row_stack": "numba-cuda 0.30 launches fail with numpy ≥ 2.5 (np.row_stack was removed); "
                 "install numpy 2.4 (make validate-gpu installs the wheels in .whl)",
}


class SkipCaseError(Exception):
    """The case cannot run here (a library or tool is missing); recorded as ``skipped``."""


class StickyCudaError(RuntimeError):
    """The CUDA context is unusable after this error; only a new process can go on."""


@dataclass
class RunContext:
    """What the handlers share: the profile, ncu, and caches that outlive one case."""

    gpu: GPU
    ncu_path: str | None = None
    ncu_note: str | None = None
    models: dict[int, Any] = field(default_factory=dict)
    _flusher: Any = None

    def flush(self) -> None:
        """Evict the inputs from L2 (a write of twice its size) before a timed call."""
        if self._flusher is None:
            from memsim.validation.timing import L2Flusher

            self._flusher = L2Flusher(self.gpu.spec.l2_bytes)
        self._flusher()


# ---- handlers, one per kind of case -----------------------------------------------------


def _ceiling(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from memsim.validation import microbench

    return microbench.run(params, ctx.gpu)


def _kernel(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from memsim.validation import kernels

    try:
        return kernels.run(params, ctx.gpu)
    except kernels.BenchUnavailableError as exc:
        raise SkipCaseError(str(exc)) from None


def _sdpa(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from memsim.validation import sdpa

    return sdpa.run(params, ctx.gpu, ctx.flush)


def _llama(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from memsim.validation import llama

    return llama.run(params, ctx.gpu, ctx.models)


def _ncu(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from memsim.validation import kernels, ncu
    from memsim.validation.predictions import ncu_prediction

    if ctx.ncu_path is None:
        raise SkipCaseError(f"ncu not used: {ctx.ncu_note}")
    target = params["target"]
    if target == "kernel":
        try:
            kernels._bench()
        except kernels.BenchUnavailableError as exc:
            raise SkipCaseError(str(exc)) from None
    prediction = ncu_prediction(params, ctx.gpu)
    # sdpa: every kernel in the bracket; kernel and store: the algorithm's own launches
    launch_count = None if target == "sdpa" else int(prediction["analytic"]["launches"])
    try:
        measurement = ncu.profile(ctx.ncu_path, {**params, "profile": ctx.gpu.name},
                                  launch_count=launch_count)
    except ncu.NcuUnavailableError as exc:
        ctx.ncu_path, ctx.ncu_note = None, str(exc)
        raise SkipCaseError(str(exc)) from None
    return {"prediction": prediction, "measurement": measurement}


HANDLERS: dict[str, Handler] = {"ceiling": _ceiling, "kernel": _kernel, "sdpa": _sdpa,
                                "llama": _llama, "ncu": _ncu}


# ---- one case ---------------------------------------------------------------------------


def describe_failure(exc: BaseException) -> str:
    """One line naming the failure: ``out of memory: ...``, ``launch error: ...``, or the type."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if any(m in str(exc) or m in type(exc).__name__ for m in _OOM_MARKERS):
        first = "out of memory: " + first
    elif is_sticky(exc):
        first = "launch error (CUDA context lost): " + first
    for marker, hint in _HINTS.items():
        if marker in str(exc):
            first += f" — {hint}"
    return first[:600]


def is_sticky(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA error that poisons the context for the rest of the process."""
    return any(m in f"{type(exc).__name__}: {exc}" for m in _STICKY_MARKERS)


def _free_gpu_memory() -> None:
    """Drop the case's tensors and return PyTorch's cached blocks (where torch is in use)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def run_case(case: Case, ctx: RunContext,
             handlers: dict[str, Handler] = HANDLERS) -> dict[str, Any]:
    """Run one case and return its record (never raises for a failing case)."""
    record: dict[str, Any] = {"type": "case", "id": case.id, "kind": case.kind,
                              "group": case.group, "params": case.params,
                              "started_utc": utc_now()}
    t0 = time.perf_counter()
    try:
        parts = handlers[case.kind](case.params, ctx)
        prediction, measurement = parts["prediction"], parts["measurement"]
        record.update(status="ok", prediction=prediction, measurement=measurement,
                      errors={model: relative_errors(prediction.get(model), measurement)
                              for model in ("analytic", "trace") if prediction.get(model)})
        if "work" in prediction:
            record["work"] = prediction.pop("work")
    except SkipCaseError as exc:
        record.update(status="skipped", reason=str(exc))
    except ModuleNotFoundError as exc:
        record.update(status="skipped", reason=f"{exc.name or exc} is not installed")
    except Exception as exc:
        record.update(status="failed", reason=describe_failure(exc),
                      traceback=traceback.format_exc(limit=4)[-2000:],
                      sticky=is_sticky(exc))
    record["elapsed_s"] = time.perf_counter() - t0
    _free_gpu_memory()
    return record


# ---- the loop ---------------------------------------------------------------------------


@dataclass
class LoopResult:
    counts: dict[str, int]
    not_run: int
    stopped: str | None


def run_cases(cases: Iterable[Case], ctx: RunContext, run_file: RunFile, done: set[str],
              *, handlers: dict[str, Handler] = HANDLERS, budget_s: float | None = None,
              echo: Callable[[str], None] = print) -> LoopResult:
    """Run the cases not in ``done``, appending each record to ``run_file`` at once."""
    todo = [c for c in cases if c.id not in done]
    counts = {"ok": 0, "failed": 0, "skipped": 0, "already done": len(done)}
    start = time.perf_counter()
    for i, case in enumerate(todo):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            return LoopResult(counts, len(todo) - i,
                              f"time budget of {budget_s:.0f} s spent; --resume continues")
        record = run_case(case, ctx, handlers)
        run_file.append(record)
        counts[record["status"]] += 1
        echo(progress_line(i + 1, len(todo), record))
        if record.get("sticky"):
            raise StickyCudaError(record["reason"])
    return LoopResult(counts, 0, None)


def progress_line(i: int, n: int, record: dict[str, Any]) -> str:
    """``[3/41] sdpa/flash N=4096 ... ok 1.23 ms (analytic −15%)``."""
    p = record["params"]
    shape = " ".join(f"{k}={p[k]}" for k in ("seq_len", "kv_len", "heads", "kv_heads",
                                             "head_dim", "mask", "tokens", "position")
                     if k in p)
    head = f"[{i}/{n}] {record['group']} {shape}".rstrip()
    if record["status"] != "ok":
        return f"{head}: {record['status']} — {record.get('reason', '')}"
    meas = record["measurement"]
    err = record.get("errors", {}).get("analytic", {}).get("time_s")
    tail = f" (analytic {err:+.0%})" if err is not None else ""
    if isinstance(meas.get("time_s"), int | float):
        return f"{head}: ok {meas['time_s'] * 1e3:.4g} ms{tail}"
    return f"{head}: ok"


# ---- the whole run ----------------------------------------------------------------------


@dataclass
class RunResult:
    path: Path
    loop: LoopResult
    warnings: list[str]


def _profile_for(attrs: dict[str, Any], profile: str | None) -> tuple[GPU, list[str], dict]:
    from memsim.hardware import load_gpu
    from memsim.validation.device import bundled_profiles, compare, match_profile

    if profile is not None:
        gpu = load_gpu(profile)
        agreeing, compared, mismatches = compare(attrs, gpu)
        warnings = [f"device and profile {gpu.name} disagree on {m.describe()}"
                    for m in mismatches]
        info = {"chosen": "given", "agreeing": agreeing, "compared": compared}
    else:
        match = match_profile(attrs, bundled_profiles())
        gpu, warnings = match.gpu, match.warnings()
        info = {"chosen": "matched", "agreeing": match.agreeing, "compared": match.compared,
                "name_score": match.name_score}
    info["profile"] = gpu.name
    info["mismatches"] = warnings
    return gpu, warnings, info


def validate(suite: str = "quick", out: Path | str = "measurements", ncu_mode: str = "auto",
             resume: bool = False, profile: str | None = None,
             kinds: tuple[str, ...] | None = None, budget_s: float | None = None,
             echo: Callable[[str], None] = print,
             handlers: dict[str, Handler] = HANDLERS) -> RunResult:
    """Run ``suite`` on this machine's GPU; results in ``<out>/<profile>/<run-id>.jsonl``."""
    from memsim.errors import InputError
    from memsim.validation import ncu
    from memsim.validation.device import read_device
    from memsim.validation.environment import environment
    from memsim.validation.records import latest_run, new_run_id
    from memsim.validation.suites import KINDS, cases

    planned = cases(suite, kinds or KINDS)
    ncu_path, ncu_note = ncu.resolve(ncu_mode)
    from memsim.validation.kernels import simulated

    attrs = read_device()
    if "name" not in attrs and simulated():   # no device: the simulator stands in
        if profile is None:
            raise InputError("profile", None, "must be given in the CUDA simulator "
                             "(NUMBA_ENABLE_CUDASIM=1: no device to match)")
        attrs = {"name": "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)", "errors": attrs["errors"]}
    if "name" not in attrs:
        raise InputError("device", "none", "needs an NVIDIA GPU visible to PyTorch or Numba "
                         f"({'; '.join(attrs['errors'].values()) or 'none found'})")
    gpu, warnings, match_info = _profile_for(attrs, profile)
    for w in warnings:
        echo(f"warning: {w}")
    header = {"suite": suite, "environment": environment(), "device": attrs,
              "profile_match": match_info, "cases_planned": len(planned),
              "ncu": {"mode": ncu_mode, "path": ncu_path, "note": ncu_note,
                      "version": ncu.version(ncu_path) if ncu_path else None}}
    previous = latest_run(out, gpu.name, suite) if resume else None
    if previous is not None:
        run_file, done = previous, previous.resume(header)
        echo(f"resuming {run_file.path}: {len(done)} cases already done")
    else:
        run_file, done = RunFile.create(out, gpu.name, new_run_id(suite), header), set()
        echo(f"writing {run_file.path}")
    ctx = RunContext(gpu=gpu, ncu_path=ncu_path, ncu_note=ncu_note)
    loop = run_cases(planned, ctx, run_file, done, handlers=handlers, budget_s=budget_s,
                     echo=echo)
    return RunResult(run_file.path, loop, warnings)
