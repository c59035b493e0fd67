"""Speed of the analytic attention model: vectorised evaluations per second, and the cold
start of ``memsim attention``, and what the closed-form L2 estimate costs on top.

Targets (issue 2, on a 2-core machine): ≥ 1,000,000 cost evaluations per second through
:func:`memsim.attention.costs`; ``memsim attention --json`` in under 1 s from a fresh
process. Reported, never asserted.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import _cli

CONFIGS = 1_000_000
REPEATS = 3
COLD_START_ARGS = ["attention", "--algorithm", "flash2", "--gpu", "h100-sxm", "--heads", "32",
                   "--kv-heads", "8", "--seq-len", "8192", "--head-dim", "128", "--causal",
                   "--json"]

# One sweep per algorithm: the mask and the shape arguments it runs with.
SWEEPS = {
    "flash2": {"mask": "causal"},
    "standard": {"mask": "causal"},
    "flash1": {"mask": "window", "window": 4096},
    "flash_decode": {"mask": "causal", "decode": True},
    "dsa": {"mask": "topk", "top_k": 2048},
}


def _shapes(n: int, seed: int = 0) -> dict[str, Any]:
    """n random configurations: B ∈ [1, 64], N ∈ [1, 131072], H ∈ {8..64}, D ∈ {64, 128}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"B": rng.integers(1, 65, n), "N": rng.integers(1, 131_073, n),
            "H": rng.choice([8, 16, 32, 64], n), "D": rng.choice([64, 128], n)}


def vectorised(n: int = CONFIGS, repeats: int = REPEATS) -> dict[str, Any]:
    """Median evaluations per second of memsim.attention.costs over n configurations, for
    flash2 causal (the headline) and every other algorithm."""
    import numpy as np

    from memsim.attention import costs

    shapes = _shapes(n)
    rates = {}
    for algorithm, sweep in SWEEPS.items():
        kwargs = dict(shapes, block_q=128, block_kv=64, **{k: v for k, v in sweep.items()
                                                          if k != "decode"})
        if sweep.get("decode"):  # one new token against a cache of N
            kwargs.update(S=shapes["N"], N=np.ones(n, dtype=np.int64))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            costs(algorithm, **kwargs)
            times.append(time.perf_counter() - t0)
        rates[algorithm] = n / statistics.median(times)
    return {"name": "attention_vectorised", "evals_per_s": rates["flash2"], "configs": n,
            "repeats": repeats, "per_algorithm_evals_per_s": rates,
            "target_evals_per_s": 1_000_000}


def l2_estimate_ratio(n: int = 100_000, repeats: int = REPEATS) -> dict[str, Any]:
    """The closed-form L2 estimate's cost (issue 13): ``n`` causal GQA configurations
    (H 32, K 8, D 128, bf16, FA-2 on h100-sxm; N = S uniform in 1K–1M, where the later
    head groups' misses are evaluated step by step) with ``l2_estimate`` against the same
    call without it, as a ratio of the fastest CPU times of each measured in this run
    (single-threaded numpy: CPU time is the work, whatever else the machine runs)."""
    import numpy as np

    from memsim.attention import costs_for
    from memsim.hardware import load_gpu
    from memsim.problem import AttentionProblem, Mask

    gpu = load_gpu("h100-sxm")
    problem = AttentionProblem(batch=1, seq_len=131072, heads=32, kv_heads=8, head_dim=128,
                               dtype="bf16", mask=Mask(causal=True))
    N = np.random.default_rng(0).integers(1024, 1 << 20, n)
    seconds = {}
    for estimate in (False, True):
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            costs_for(problem, gpu, "flash2", N=N, S=N, l2_estimate=estimate)
            times.append(time.process_time() - t0)
        seconds[estimate] = min(times)
    return {"name": "l2_estimate_vs_plain", "configs": n,
            "plain_cpu_seconds": seconds[False], "estimate_cpu_seconds": seconds[True],
            "ratio": seconds[True] / seconds[False],
            "note": "FA-2 causal GQA, N 1K-1M, h100-sxm"}


def cold_start(repeats: int = 5) -> dict[str, Any]:
    """Median wall time of a fresh `memsim attention --json` process."""
    return _cli.cold_start("cli_attention_cold_start", COLD_START_ARGS, 1.0, repeats)


def run() -> list[dict[str, Any]]:
    return [vectorised(), l2_estimate_ratio(), cold_start()]
