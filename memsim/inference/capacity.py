"""The batch that fits: the largest batch whose weights, cache, activations, workspace and
reserve fit in every GPU's memory, at each context."""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.inference.deployment import Setup, _positive_array
from memsim.inference.memory import vram
from memsim.inference.phases import prefill_phase

MAX_BATCH = 1 << 20  # sequences: the search's upper end (far beyond any serving engine)


def total_bytes(setup: Setup, context: Any, batch: Any) -> Any:
    """Per-GPU VRAM total (bytes) of ``batch`` sequences at ``context`` (arrays)."""
    return vram(setup, context, batch, prefill_phase(setup, context, batch).workspace_bytes)[
        "total_bytes"]


def fits(setup: Setup, context: Any, batch: Any) -> Any:
    """Whether ``batch`` sequences of ``context`` tokens fit on every GPU (bool array)."""
    return total_bytes(setup, context, batch) <= setup.gpu.spec.hbm_bytes


def max_batch(setup: Setup, context: Any) -> Any:
    """Largest batch (a multiple of the D attention replicas) that fits, per context; 0
    where not even one sequence per replica fits.

    Memory per GPU is affine in the replica's batch (cache, activations, logits and
    workspace grow with it, weights and reserve do not), so two evaluations give the
    estimate; any non-linearity (split-KV workspace) is then corrected by stepping down
    until it fits. Vectorised over ``context``.
    """
    ctx = _positive_array("context", context)
    D = setup.attention_dp
    capacity = float(setup.gpu.spec.hbm_bytes)
    one, two = total_bytes(setup, ctx, D), total_bytes(setup, ctx, 2 * D)
    slope = np.maximum(two - one, 1e-9)
    est = np.floor((capacity - (one - slope)) / slope)
    rank = np.clip(est, 0, MAX_BATCH).astype(np.int64)
    for _ in range(64):
        bad = (rank > 0) & ~fits(setup, ctx, np.maximum(rank, 1) * D)
        if not np.any(bad):
            break
        rank = np.where(bad, np.floor(rank * 0.98).astype(np.int64) - 1, rank).clip(0)
    return rank * D
