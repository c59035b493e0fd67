"""Speed of `memsim plan`: deployments evaluated per second, serially and on 2 processes.

A deployment is one (GPU count, TP, PP, DP attention, EP, batch, MTP depth) for decode or
one (structure, prompt batch) for prefill, each priced and checked against memory. Target
(issue 14): ≥ 10,000 deployments per second on 2 cores. In-process runs also report
deployments per CPU-second, the rate that does not depend on how many other processes
share the cores. ``run()`` returns JSON-able dicts; nothing here asserts on time.
"""

from __future__ import annotations

import time
from typing import Any

QUERIES = (
    # (model, GPU, prompt, output, max GPUs, max MTP depth)
    ("meta-llama/Meta-Llama-3-70B", "h100-sxm", 31_744, 1_024, 64, 0),
    ("deepseek-ai/DeepSeek-V3.2-Exp", "h800-sxm", 130_048, 1_024, 64, 1),
    ("Qwen/Qwen2.5-7B", "l40s", 7_168, 1_024, 8, 0),
)
TARGET_PER_S = 10_000


def plan_rate(workers: int = 0) -> list[dict[str, Any]]:
    """Deployments per second of :func:`memsim.planning.plan` for each query."""
    from memsim.planning import Query, plan

    executor = None
    if workers:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=workers)
    rows = []
    try:
        for model, gpu, isl, osl, max_gpus, max_mtp in QUERIES:
            q = Query(model, gpu, isl, osl, max_gpus=max_gpus, max_mtp=max_mtp)
            plan(q, executor)  # warm: tilings cached, worker processes started
            cpu0 = time.process_time()
            r = plan(q, executor)
            row = {"name": "plan_deployments" + (f"_{workers}proc" if workers else ""),
                   "model": model, "gpu": gpu, "deployments": r["evaluated"],
                   "structures": r["structures"], "seconds": r["seconds"],
                   "deployments_per_s": r["evaluated"] / r["seconds"],
                   "target_per_s": TARGET_PER_S}
            if not workers:  # this process's CPU time: the rate on an unshared core
                cpu_s = time.process_time() - cpu0
                row |= {"cpu_seconds": cpu_s, "deployments_per_cpu_s": r["evaluated"] / cpu_s}
            rows.append(row)
    finally:
        if executor is not None:
            executor.shutdown()
    return rows


def run() -> list[dict[str, Any]]:
    """Plan search rate: in this process, then over 2 worker processes."""
    return [*plan_rate(0), *plan_rate(2)]


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
