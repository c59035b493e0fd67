"""Timing on the GPU as docs/DESIGN.md §"Measurements" asks: CUDA events, warm-up, L2
flushed, median.

:func:`median_time_s` times a PyTorch callable: ``warmup`` untimed calls, then ``repeats``
timed ones, each preceded by a write of a buffer twice the L2's size (outside the timed
region), so inputs that would fit in L2 come from HBM every time, as the models assume.
The number of repeats adapts to the call's length (at least ``min_repeats``, about
``target_s`` of timed work in all). Returns the median and the spread, so a difference
smaller than the spread is visibly noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class L2Flusher:
    """Writes a buffer of twice the L2 size; after it, nothing of the inputs is in L2."""

    def __init__(self, l2_bytes: int) -> None:
        import torch

        self.buffer = torch.empty(max(2 * int(l2_bytes), 1 << 20) // 4, dtype=torch.int32,
                                  device="cuda")

    def __call__(self) -> None:
        self.buffer.fill_(0x5A5A5A5A)


def median_time_s(fn: Callable[[], Any], *, flush: Callable[[], None] | None = None,
                  warmup: int = 3, min_repeats: int = 5, max_repeats: int = 50,
                  target_s: float = 0.5) -> dict[str, float]:
    """Median CUDA-event time of ``fn()`` in seconds, with ``p10_s``, ``p90_s``, ``repeats``
    (:func:`memsim.kernels.timing.event_times_s`, PyTorch events)."""
    from memsim.kernels.timing import event_times_s

    s = event_times_s(fn, backend="torch", flush=flush, warmup=warmup,
                      min_repeats=min_repeats, max_repeats=max_repeats,
                      target_s=target_s).summary()
    return {k: s[k] for k in ("time_s", "p10_s", "p90_s", "repeats")}


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """Peak memory ``fn()`` allocates beyond what was allocated before it (bytes).

    ``torch.cuda.max_memory_allocated`` counts tensors, not the caching allocator's reserve.
    The result of ``fn`` is kept alive until the peak is read, so outputs count.
    """
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del result
    return int(peak)


def relative_l2_error(out: Any, ref: Any) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (torch tensors); NaN anywhere gives NaN."""
    import torch

    out64, ref64 = out.to(torch.float64), ref.to(torch.float64)
    return float(torch.linalg.vector_norm(out64 - ref64) / torch.linalg.vector_norm(ref64))
