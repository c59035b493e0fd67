"""The non-attention operators of a layer as roofline Costs: GEMMs, element-wise kernels,
the expected experts a step touches, the ring all-reduce."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memsim.cost import Cost
from memsim.hardware import GPU

GEMM_TILE = 128  # CUTLASS default threadblock tile 128×128: blocks of a GEMM for the roofline
#: Elements per block of a memory-bound element-wise kernel (norms, residual adds, the
#: embedding gather): 256 threads × 8 elements, one 16-byte vector of bf16 each. memsim's
#: assumption, not a measured launch; it sets only the wave count, never the bytes.
ELEMENTWISE_BLOCK_ELEMENTS = 256 * 8


def _gemm(tokens: Any, params: float, in_width: float, out_width: float, w_bytes: float,
          a_bytes: float) -> Cost:
    """A linear layer on ``tokens`` rows: 2 FLOPs per weight per token; weights read once,
    input and output activations read/written once (no reuse beyond the GEMM's tiles)."""
    read = params * w_bytes + tokens * in_width * a_bytes
    write = tokens * out_width * a_bytes
    blocks = np.ceil(tokens / GEMM_TILE) * math.ceil(out_width / GEMM_TILE)
    return Cost(matmul_flops=2.0 * tokens * params, global_read_bytes=read,
                global_write_bytes=write, hbm_read_bytes=read, hbm_write_bytes=write,
                launches=1.0, blocks=blocks)


def _elementwise(tokens: Any, width: float, a_bytes: float, flops_per_element: float) -> Cost:
    """A memory-bound element-wise kernel (norm + residual add): read and write ``width``."""
    nbytes = tokens * width * a_bytes
    return Cost(vector_flops=flops_per_element * tokens * width, global_read_bytes=2 * nbytes,
                global_write_bytes=nbytes, hbm_read_bytes=2 * nbytes, hbm_write_bytes=nbytes,
                launches=1.0, blocks=np.ceil(tokens * width / ELEMENTWISE_BLOCK_ELEMENTS))


def touched_experts(experts: int, per_token: int, tokens: Any) -> Any:
    """Expected distinct experts hit by ``tokens`` tokens each routed to ``per_token`` of
    ``experts`` (uniform independent routing: occupancy of E bins, E·(1 − (1 − k/E)^T))."""
    return experts * (1.0 - (1.0 - per_token / experts) ** np.asarray(tokens, dtype=float))


def all_reduce_time_s(message_bytes: Any, gpus: int, gpu: GPU) -> Any:
    """Ring all-reduce of ``message_bytes`` over ``gpus`` GPUs.

    Each GPU sends and receives 2(G−1)/G of the message (nccl-tests PERFORMANCE.md: busBw =
    algBw · 2(n−1)/n) at the per-direction link rate (the profile gives both directions
    together), plus one launch latency per ring step.
    """
    if gpus == 1:
        return np.zeros_like(np.asarray(message_bytes, dtype=float))
    per_direction = gpu.achievable_interconnect_bytes_per_s / 2
    steps = 2 * (gpus - 1)
    return (steps / gpus) * message_bytes / per_direction \
        + steps * gpu.spec.kernel_launch_overhead_s


def linear_s(setup: Any, tokens: Any, in_width: float, out_width: float, w_bytes: float,
             a_bytes: float, dtype: str) -> Any:
    """Seconds of a linear layer on ``tokens`` rows through :func:`memsim.ops.gemm.predict`
    (CUTLASS tiles in waves, the backend's fitted GEMM class); dtypes it has no kernel class
    for (int4 weights) keep the plain roofline of :func:`_gemm`."""
    from memsim.ops.gemm import GEMM_DTYPES
    from memsim.ops.gemm import linear_s as ops_linear_s

    if dtype in GEMM_DTYPES and (w_bytes >= a_bytes or dtype.startswith("fp8")):
        return ops_linear_s(tokens, in_width, out_width, dtype=dtype, gpu=setup.gpu,
                            backend=setup.backend)
    return _time_s(_gemm(tokens, in_width * out_width, in_width, out_width, w_bytes, a_bytes),
                   setup.gpu, dtype)


def _time_s(cost: Cost, gpu: GPU, dtype: str, blocks_per_sm: Any = None) -> Any:
    """Seconds from the one roofline (memsim.roofline); no wave model for plain GEMMs."""
    from memsim.roofline import roofline

    return roofline(cost, gpu, dtype, blocks_per_sm=blocks_per_sm).time_s
