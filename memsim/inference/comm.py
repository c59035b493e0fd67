"""The collectives of a deployment, one small function per kind, through
:mod:`memsim.ops.comm`: the algorithm the backend's library picks (one-shot / two-shot custom
all-reduce, NCCL ring or NVLS), the profile's ``[interconnect]`` link bandwidth, and the
fitted floor and link efficiency of each algorithm. ``message_bytes`` is what one GPU
contributes (all-reduce: its full buffer; all-gather: the gathered result); an MoE
dispatch or combine takes the tokens each rank holds.
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


def p2p_s(message_bytes: Any, gpu: GPU, gpus: int = 2, backend: str | None = None) -> Any:
    """Seconds to send ``message_bytes`` to the next pipeline stage; ``gpus`` > the
    scale-up domain crosses the network."""
    return collective_s("p2p", np.asarray(message_bytes, dtype=float), gpus, gpu=gpu,
                        backend=backend)


def moe_a2a_s(tokens: Any, *, hidden: int, top_k: int, experts: int, ep: int, phase: str,
              mode: str, dtype: str, gpu: GPU, backend: str | None = None, groups: int = 1,
              topk_groups: int = 1, eager: bool = False) -> Any:
    """Seconds of one MoE dispatch or combine of ``tokens`` tokens per rank over ``ep``
    ranks as DeepEP's ``mode`` kernels move them (:func:`memsim.ops.comm.moe_all_to_all`,
    ``groups`` / ``topk_groups`` the model's group-limited routing, ``eager`` whether the
    framework calls it outside a CUDA graph); no tokens or one rank cost nothing."""
    from memsim.ops.comm import moe_all_to_all

    T = np.asarray(tokens, dtype=float)
    if ep <= 1:
        return np.zeros_like(T)
    t = moe_all_to_all(np.maximum(T, 1.0), hidden=hidden, top_k=top_k, experts=experts,
                       ep=ep, phase=phase, mode=mode, dtype=dtype, gpu=gpu,
                       backend=backend, groups=groups, topk_groups=topk_groups,
                       eager=eager).time_s
    return np.where(T > 0, t, 0.0)
