"""Speed of whole-model prediction: `memsim predict` cold start and vectorised sweeps.

``run()`` returns JSON-able dicts; the benchmark runner prints them. Targets (issue 3):
cold start under 1.5 s; at least 10,000 whole-model predictions per second, vectorised.
Nothing here asserts on time.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import _cli

COLD_START_ARGS = ["predict", "--model", "llama-3-70b", "--gpu", "h100-sxm",
                   "--context", "131072", "--tp", "2", "--json"]
SWEEP_MODELS = ("llama-3-8b", "llama-3-70b", "mistral-7b", "gemma-3-27b", "mixtral-8x7b",
                "deepseek-v3.2")


def cold_start(repeats: int = 5) -> dict[str, Any]:
    """Median wall time of a fresh `memsim predict` process (import + predict + print)."""
    return _cli.cold_start("predict_cold_start", COLD_START_ARGS, 1.5, repeats)


def sweep_throughput(contexts: int = 64, batches: int = 32, repeats: int = 3) -> list[dict]:
    """Whole-model predictions per second through the vectorised API.

    One (model, GPU) cell evaluates contexts × batches predictions in one call: VRAM
    breakdown, prefill and decode time by operator, $ per M tokens. Reported with and
    without the min-GPUs-to-fit search (which re-evaluates VRAM for each TP degree), and
    end to end through ``sweep_task`` (rows as dicts, as `memsim sweep` writes them).
    """
    import numpy as np

    from memsim.hardware import load_gpu
    from memsim.inference import Setup, predict_arrays, sweep_task
    from memsim.models import load_model

    gpu = load_gpu("h100-sxm")
    L = np.geomspace(256, 131_072, contexts).round().astype(np.int64)
    B = np.arange(1, batches + 1, dtype=np.int64)
    Lg, Bg = np.meshgrid(L, B, indexing="ij")
    setups = []
    for name in SWEEP_MODELS:
        m = load_model(name)
        tp = 8 if m.params_total > 1e11 else 1
        setups.append(Setup(m, gpu, tp=tp))
    n = Lg.size * len(setups)
    out = []
    for label, min_gpus in (("predict_sweep", False), ("predict_sweep_with_min_gpus", True)):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for s in setups:
                predict_arrays(s, Lg, Bg, with_min_gpus=min_gpus)
            best = min(best, time.perf_counter() - t0)
        out.append({"name": label, "predictions_per_s": n / best, "predictions": n,
                    "seconds": best, "models": list(SWEEP_MODELS), "target_per_s": 10_000})
    t0 = time.perf_counter()
    rows = 0
    for name, s in zip(SWEEP_MODELS, setups, strict=True):
        rows += len(sweep_task(name, "h100-sxm", "auto", s.tp, tuple(int(x) for x in L),
                               tuple(int(x) for x in B)))
    dt = time.perf_counter() - t0
    out.append({"name": "predict_sweep_rows", "predictions_per_s": rows / dt,
                "predictions": rows, "seconds": dt})
    return out


def run() -> list[dict[str, Any]]:
    """All whole-model prediction benchmarks, one dict each."""
    return [cold_start(), *sweep_throughput()]


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
