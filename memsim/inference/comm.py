"""The collectives of a deployment, one small function per kind.

Every collective goes through here, so that the physical model behind it is swapped in one
place. For now each kind is expressed through the one existing ring model,
:func:`memsim.inference.operators.all_reduce_time_s`: a ring all-reduce is a reduce-scatter
followed by an all-gather, each moving (G−1)/G of the message per GPU (nccl-tests
PERFORMANCE.md: busBw = algBw·2(n−1)/n for all-reduce, algBw·(n−1)/n for all-gather,
reduce-scatter and all-to-all), so the other collectives cost half an all-reduce of the same
message. ``message_bytes`` is what one GPU contributes (all-reduce: its full buffer;
all-gather: the gathered result; all-to-all: everything it sends, itself included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.hardware import GPU
from memsim.inference.operators import all_reduce_time_s


def all_reduce_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-reduce of ``message_bytes`` over ``gpus`` GPUs."""
    return all_reduce_time_s(message_bytes, gpus, gpu)


def all_gather_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-gather (or reduce-scatter) whose gathered result is
    ``message_bytes``: half a ring all-reduce of the same message."""
    return 0.5 * all_reduce_time_s(message_bytes, gpus, gpu)


def all_to_all_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-to-all where each GPU sends ``message_bytes`` spread over all
    ``gpus`` (the (G−1)/G that leaves the GPU crosses the links): as an all-gather."""
    return 0.5 * all_reduce_time_s(message_bytes, gpus, gpu)


def p2p_s(message_bytes: Any, gpu: GPU) -> Any:
    """Seconds to send ``message_bytes`` to the next pipeline stage: one direction of the
    link plus one launch (a ring all-reduce over 2 GPUs moves the message once each way)."""
    return 0.5 * all_reduce_time_s(np.asarray(message_bytes, dtype=float) * 2.0, 2, gpu)
