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
    (model, GPU, algorithm) cell is one task. Rows are yielded as cells finish, and passed
    to ``on_rows`` too, so a long sweep can write each result as it is produced.
    """
    contexts, batches = tuple(int(c) for c in contexts), tuple(int(b) for b in batches)
    _positive_array("context", np.asarray(contexts))
    _positive_array("batch", np.asarray(batches))
    opts = tuple(sorted(options.items()))
    cells = [(m, g, a, tp, contexts, batches, opts)
             for m in models for g in gpus for a in attentions]
    if executor is None:
        results: Iterable[list[dict[str, Any]]] = (sweep_task(*c) for c in cells)
    else:
        from concurrent.futures import as_completed

        futures = [executor.submit(sweep_task, *c) for c in cells]
        results = (f.result() for f in as_completed(futures))
    for rows in results:
        if on_rows is not None:
            on_rows(rows)
        yield from rows
