"""The batch that fits: the largest batch whose weights, cache, activations, workspace and
reserve fit in every GPU's memory, at each context."""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.inference.deployment import Setup, _positive_array
from memsim.inference.memory import vram
from memsim.inference.phases import decode_phase, prefill_phase

MAX_BATCH = 1 << 20  # sequences: the search's upper end (far beyond any serving engine)


def step_workspace_bytes(setup: Setup, context: Any, batch: Any) -> Any:
    """Attention workspace of the largest engine step, per GPU (bytes).

    Without chunking: the prefill of the whole batch at once. With ``prefill_chunk``: the
    larger of one sequence's chunked prefill and the decode step of the whole batch (the
    engine interleaves chunks of new prompts with the batch's decode steps).
    """
    if setup.prefill_chunk is None:
        return prefill_phase(setup, context, batch).workspace_bytes
    one = prefill_phase(setup, context, 1).workspace_bytes
    dec = decode_phase(setup, context, batch)
    return one if dec is None else np.maximum(one, dec.workspace_bytes)


def total_bytes(setup: Setup, context: Any, batch: Any) -> Any:
    """Per-GPU VRAM total (bytes) of ``batch`` sequences at ``context`` (arrays)."""
    return vram(setup, context, batch, step_workspace_bytes(setup, context, batch))[
        "total_bytes"]


def fits(setup: Setup, context: Any, batch: Any) -> Any:
    """Whether ``batch`` sequences of ``context`` tokens fit on every GPU (bool array)."""
    return total_bytes(setup, context, batch) <= setup.gpu.spec.hbm_bytes


def max_batch(setup: Setup, context: Any) -> Any:
    """Largest batch (a multiple of the D attention replicas) that fits, per context; 0
    where not even one sequence per replica fits.

    Memory per GPU is close to affine in the replica's batch (cache, activations, logits
    and workspace grow with it; weights and reserve do not), so two evaluations give a
    first estimate; a vectorised bisection between a batch that fits and one that does not
    then makes it exact whatever the workspace does (split-KV counts, indexer chunks).
    """
    ctx = _positive_array("context", context)
    D = setup.attention_dp
    capacity = float(setup.gpu.spec.hbm_bytes)

    def ok(rank: Any) -> Any:
        return (rank >= 1) & fits(setup, ctx, np.maximum(rank, 1) * D)

    one, two = total_bytes(setup, ctx, D), total_bytes(setup, ctx, 2 * D)
    slope = np.maximum(two - one, 1e-9)
    est = np.clip(np.floor((capacity - (one - slope)) / slope), 0, MAX_BATCH).astype(np.int64)
    good = ok(est)
    lo = np.where(good, est, 0)                 # fits (0: nothing known to fit)
    hi = np.where(good, est + 1, np.maximum(est, 1))  # does not fit, unless shown to
    for _ in range(24):                         # grow hi until it does not fit
        grow = (hi <= MAX_BATCH) & ok(hi)
        if not np.any(grow):
            break
        lo, hi = np.where(grow, hi, lo), np.where(grow, hi * 2, hi)
    while np.any(hi - lo > 1):                  # bisect: lo fits, hi does not
        mid = (lo + hi) // 2
        m_ok = ok(mid)
        lo, hi = np.where(m_ok, mid, lo), np.where(m_ok, hi, mid)
    return np.minimum(lo, MAX_BATCH) * D
