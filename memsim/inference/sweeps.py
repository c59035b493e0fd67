"""Grids of predictions, one task per (model, GPU, algorithm) cell, through any executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from memsim.inference.deployment import Setup, _positive_array
from memsim.inference.prediction import predict_arrays

SWEEP_FIELDS = ("model", "gpu", "attention", "tp", "context", "batch", "fits",
                "min_gpus_to_fit", "total_bytes", "kv_cache_bytes", "prefill_time_s",
                "prefill_usd_per_million_tokens", "decode_time_per_token_s",
                "decode_usd_per_million_tokens")


def sweep_task(model: str, gpu: str, attention: str, tp: int, contexts: tuple[int, ...],
               batches: tuple[int, ...], options: tuple[tuple[str, Any], ...] = ()
               ) -> list[dict[str, Any]]:
    """One (model, GPU, algorithm, TP) cell of a sweep, vectorised over contexts × batches.

    Takes names, not objects, so that any ``concurrent.futures.Executor`` (process pools,
    Dask, Ray) can ship it to a worker.
    """
    from memsim.hardware import load_gpu
    from memsim.models import load_model

    setup = Setup(load_model(model), load_gpu(gpu), tp=tp, attention=attention, **dict(options))
    L, B = np.meshgrid(np.asarray(contexts, np.int64), np.asarray(batches, np.int64),
                       indexing="ij")
    r = predict_arrays(setup, L, B)
    v, pre, dec = r["vram"], r["prefill"], r["decode"]
    rows = []
    for idx in np.ndindex(L.shape):
        rows.append({
            "model": setup.model.name, "gpu": gpu, "attention": attention, "tp": tp,
            "context": int(L[idx]), "batch": int(B[idx]), "fits": bool(v["fits"][idx]),
            "min_gpus_to_fit": int(v["min_gpus_to_fit"][idx]) or None,
            "total_bytes": float(v["total_bytes"][idx]),
            "kv_cache_bytes": float(v["kv_cache_bytes"][idx]),
            "prefill_time_s": float(pre["time_s"][idx]),
            "prefill_usd_per_million_tokens": float(pre["usd_per_million_tokens"][idx]),
            "decode_time_per_token_s": None if dec is None else float(
                dec["time_per_token_s"][idx]),
            "decode_usd_per_million_tokens": None if dec is None else float(
                dec["usd_per_million_tokens"][idx]),
        })
    return rows


def sweep(models: Iterable[str], gpus: Iterable[str], contexts: Iterable[int],
          batches: Iterable[int], attentions: Iterable[str] = ("auto",), tp: int = 1,
          executor: Any = None, on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
          **options: Any) -> Iterator[dict[str, Any]]:
    """Grid of predictions over models × GPUs × contexts × batches × algorithms.

    ``executor`` is anything with the ``concurrent.futures.Executor`` ``submit`` method
    (ThreadPool/ProcessPool, Dask's ``Client.get_executor()``, Ray's executor); each
    (model, GPU, algorithm) cell is one or more tasks of at most :data:`ROWS_PER_TASK` rows,
    at most 8 in flight. Rows are yielded as tasks finish, and passed to ``on_rows`` too, so
    a long sweep writes each result as it is produced, in memory independent of grid size.
    """
    contexts, batches = tuple(int(c) for c in contexts), tuple(int(b) for b in batches)
    _positive_array("context", np.asarray(contexts))
    _positive_array("batch", np.asarray(batches))
    opts = tuple(sorted(options.items()))
    tasks = ((m, g, a, tp, ctx, bat, opts)
             for m in models for g in gpus for a in attentions
             for ctx, bat in _blocks(contexts, batches))
    if executor is None:
        results: Iterable[list[dict[str, Any]]] = (sweep_task(*t) for t in tasks)
    else:
        results = _bounded(executor, tasks)
    for rows in results:
        if on_rows is not None:
            on_rows(rows)
        yield from rows


ROWS_PER_TASK = 4096  # rows one task builds: memory stays bounded however large the grid


def _blocks(contexts: tuple[int, ...], batches: tuple[int, ...]
            ) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The contexts × batches grid in blocks of at most :data:`ROWS_PER_TASK` rows."""
    nb = min(len(batches), ROWS_PER_TASK)
    nc = max(1, ROWS_PER_TASK // nb)
    for b0 in range(0, len(batches), nb):
        for c0 in range(0, len(contexts), nc):
            yield contexts[c0:c0 + nc], batches[b0:b0 + nb]


def _bounded(executor: Any, tasks: Iterator[tuple], in_flight: int = 8
             ) -> Iterator[list[dict[str, Any]]]:
    """Results of ``sweep_task`` over ``tasks`` as they finish, with at most ``in_flight``
    submitted at once (so finished rows never pile up in memory)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pending: set = set()
    for t in tasks:
        pending.add(executor.submit(sweep_task, *t))
        if len(pending) >= in_flight:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            yield f.result()
