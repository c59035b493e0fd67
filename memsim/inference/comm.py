"""The collectives of a deployment, one small function per kind, through
:mod:`memsim.ops.comm`: the algorithm the backend's library picks (one-shot / two-shot custom
all-reduce, NCCL ring or NVLS), the profile's ``[interconnect]`` link bandwidth, and the
fitted floor and link efficiency of each algorithm. ``message_bytes`` is what one GPU
contributes (all-reduce: its full buffer; all-gather: the gathered result; all-to-all:
everything it sends, itself included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.hardware import GPU
from memsim.ops.comm import collective_s


def all_reduce_s(message_bytes: Any, gpus: int, gpu: GPU, backend: str | None = None) -> Any:
    """Seconds of an all-reduce of ``message_bytes`` over ``gpus`` GPUs."""
    return collective_s("all_reduce", message_bytes, gpus, gpu=gpu, backend=backend)


def all_gather_s(message_bytes: Any, gpus: int, gpu: GPU, backend: str | None = None) -> Any:
    """Seconds of an all-gather (or reduce-scatter) whose gathered result is
    ``message_bytes``."""
    return collective_s("all_gather", message_bytes, gpus, gpu=gpu, backend=backend)


def all_to_all_s(message_bytes: Any, gpus: int, gpu: GPU, backend: str | None = None) -> Any:
    """Seconds of an all-to-all where each GPU sends ``message_bytes`` spread over all
    ``gpus`` (the (G−1)/G that leaves the GPU crosses the links)."""
    return collective_s("all_to_all", message_bytes, gpus, gpu=gpu, backend=backend)


def p2p_s(message_bytes: Any, gpu: GPU, gpus: int = 2, backend: str | None = None) -> Any:
    """Seconds to send ``message_bytes`` to the next pipeline stage; ``gpus`` > the
    scale-up domain crosses the network."""
    return collective_s("p2p", np.asarray(message_bytes, dtype=float), gpus, gpu=gpu,
                        backend=backend)
