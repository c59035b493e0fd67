"""The collectives of a deployment, one small function per kind, each a call into the one
communication model, :mod:`memsim.ops.comm` (NCCL ring/NVLS and custom all-reduce by the
library's own rule; NVLink inside a scale-up domain, the network beyond it; the links and
domain sizes from the GPU profile's ``[interconnect]``).

``message_bytes`` is what one GPU contributes (all-reduce: its full buffer; all-gather:
the gathered result; all-to-all: everything it sends, itself included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.hardware import GPU


def _zero_if_alone(message_bytes: Any, gpus: int) -> np.ndarray | None:
    if gpus == 1:
        return np.zeros_like(np.asarray(message_bytes, dtype=float))
    return None


def all_reduce_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-reduce of ``message_bytes`` over ``gpus`` GPUs."""
    from memsim.ops.comm import all_reduce

    alone = _zero_if_alone(message_bytes, gpus)
    return alone if alone is not None else all_reduce(message_bytes, gpus, gpu=gpu).time_s


def all_gather_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-gather (or the matching reduce-scatter) whose gathered result is
    ``message_bytes``."""
    from memsim.ops.comm import all_gather

    alone = _zero_if_alone(message_bytes, gpus)
    return alone if alone is not None else all_gather(message_bytes, gpus, gpu=gpu).time_s


def all_to_all_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Seconds of an all-to-all where each GPU sends ``message_bytes`` spread over all
    ``gpus`` (MoE dispatch or combine)."""
    from memsim.ops.comm import all_to_all

    alone = _zero_if_alone(message_bytes, gpus)
    return alone if alone is not None else all_to_all(message_bytes, gpus, gpu=gpu).time_s


def p2p_s(message_bytes: Any, gpu: GPU, gpus: int = 2) -> Any:
    """Seconds to send ``message_bytes`` to the next pipeline stage; ``gpus`` > the
    scale-up domain crosses the network."""
    from memsim.ops.comm import p2p

    return p2p(message_bytes, gpu=gpu, gpus=gpus).time_s
