"""Fitted numbers per kernel class: an efficiency per unit and a latency floor.

A kernel class is one family of kernels one framework launches ("gemm/trtllm" is TensorRT-
LLM's GEMM, "allreduce/oneshot/trtllm" its one-shot custom all-reduce). Each has at most:

- ``efficiency``: achievable fraction of the datasheet peak for the units it uses
  ("tensor", "hbm", "link"), multiplying the profile's peaks (not its own efficiency
  factors: these replace them for this class);
- ``floor_s``: the latency floor (launch, prologue, grid synchronisation), added to the
  roofline time;

fitted on H100 SXM and H200 rows of the aiconfigurator-core 0.12.0 database (NVIDIA's
measured kernel latencies) only, never per GPU: every other GPU is predicted from its own
datasheet numbers with the same class numbers. ``source`` says which rows and what the
leave-one-GPU-out error of the fit was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memsim.ops import check_backend


@dataclass(frozen=True)
class KernelClass:
    name: str
    floor_s: float
    efficiency: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def eff(self, unit: str) -> float:
        return self.efficiency[unit]


_DB = "aiconfigurator-core 0.12.0 systems/data/{h100_sxm,h200_sxm}"

KERNEL_CLASSES: dict[str, KernelClass] = {k.name: k for k in (
    # ---- GEMM: CUTLASS/cuBLAS tiles in waves (memsim.ops.gemm) ---------------------------
    KernelClass("gemm/trtllm", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/trtllm"),
    KernelClass("gemm/vllm", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/vllm"),
    KernelClass("gemm/sglang", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/sglang"),
    # ---- MoE: grouped GEMM + routing (memsim.ops.moe) ------------------------------------
    KernelClass("moe/trtllm", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/trtllm"),
    KernelClass("moe/vllm", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/vllm"),
    KernelClass("moe/sglang", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/sglang"),
    # ---- all-reduce algorithms (memsim.ops.comm) -----------------------------------------
    KernelClass("allreduce/oneshot/trtllm", 2.7e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/twoshot/trtllm", 8e-6, {"link": 0.5},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/oneshot/vllm", 4.2e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/twoshot/vllm", 8e-6, {"link": 0.5},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/oneshot/sglang", 4.2e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    KernelClass("allreduce/twoshot/sglang", 8e-6, {"link": 0.5},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    KernelClass("nccl/ring", 10e-6, {"link": 0.75},
                f"initial values before the fit; {_DB}/comm/nccl"),
    KernelClass("nccl/nvls", 15e-6, {"link": 0.67},
                f"initial values before the fit; {_DB}/comm/nccl"),
)}


def kernel_class(op: str, backend: str | None = None) -> KernelClass:
    """The fitted class of ``op`` ("gemm", "moe", "allreduce/oneshot", ...) for ``backend``
    (default :data:`memsim.ops.DEFAULT_BACKEND`); classes shared by every backend (NCCL)
    are looked up by ``op`` alone."""
    if op in KERNEL_CLASSES:
        return KERNEL_CLASSES[op]
    return KERNEL_CLASSES[f"{op}/{check_backend(backend)}"]
