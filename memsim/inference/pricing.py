"""The $ algebra of serving: $ per million tokens from time, GPUs and the GPU-hour price."""

from __future__ import annotations

from typing import Any

from memsim.units import SECONDS_PER_HOUR, TOKENS_PER_MILLION


def usd_per_million_tokens(time_s: Any, tokens: Any, gpus: Any, usd_per_gpu_hour: Any) -> Any:
    """$ per 10⁶ tokens = time × GPUs × ($ per GPU-hour / 3600 s) / tokens × 10⁶."""
    return time_s * gpus * (usd_per_gpu_hour / SECONDS_PER_HOUR) / tokens * TOKENS_PER_MILLION
