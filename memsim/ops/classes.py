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
    row_s: float = 0.0  # SM-seconds per query row and head (decode kernels' fixed steps)

    def eff(self, unit: str) -> float:
        return self.efficiency[unit]


_DB = "aiconfigurator-core 0.12.0 systems/data/{h100_sxm,h200_sxm}"

KERNEL_CLASSES: dict[str, KernelClass] = {k.name: k for k in (
    # ---- GEMM: CUTLASS/cuBLAS tiles in waves (memsim.ops.gemm); one class per kernel family
    KernelClass("gemm/trtllm/bf16", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/trtllm"),
    KernelClass("gemm/trtllm/fp8", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/trtllm"),
    KernelClass("gemm/trtllm/fp8_block", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/trtllm"),
    KernelClass("gemm/trtllm", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/trtllm"),
    KernelClass("gemm/vllm/bf16", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/vllm"),
    KernelClass("gemm/vllm/fp8", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/vllm"),
    KernelClass("gemm/vllm/fp8_block", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/vllm"),
    KernelClass("gemm/vllm", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/vllm"),
    KernelClass("gemm/sglang/bf16", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/sglang"),
    KernelClass("gemm/sglang/fp8", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/sglang"),
    KernelClass("gemm/sglang/fp8_block", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/sglang"),
    KernelClass("gemm/sglang", 6.0e-6, {"tensor": 0.80, "hbm": 0.85, "l2": 0.8},
                f"initial values before the fit; {_DB}/gemm/sglang"),
    # ---- attention (memsim.attention with backend=): prefill (context) and decode kernels,
    # MLA's, DeepSeek Sparse Attention's
    KernelClass("attention/context/trtllm", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/trtllm"),
    KernelClass("attention/decode/trtllm", 8e-06, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/trtllm"),
    KernelClass("mla/context/trtllm", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/trtllm"),
    KernelClass("mla/decode/trtllm", 1e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/trtllm"),
    KernelClass("dsa/trtllm", 3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/dsa/trtllm"),
    KernelClass("attention/context/vllm", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/vllm"),
    KernelClass("attention/decode/vllm", 8e-06, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/vllm"),
    KernelClass("mla/context/vllm", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/vllm"),
    KernelClass("mla/decode/vllm", 1e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/vllm"),
    KernelClass("dsa/vllm", 3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/dsa/vllm"),
    KernelClass("attention/context/sglang", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/sglang"),
    KernelClass("attention/decode/sglang", 8e-06, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/attention/sglang"),
    KernelClass("mla/context/sglang", 1.3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/sglang"),
    KernelClass("mla/decode/sglang", 1e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/mla/sglang"),
    KernelClass("dsa/sglang", 3e-05, {"tensor": 0.75, "hbm": 0.85},
                f"initial values before the fit; {_DB}/dsa/sglang"),
    # ---- MoE: grouped GEMM + routing (memsim.ops.moe), one class per weight-type family
    KernelClass("moe/trtllm/bf16", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/trtllm"),
    KernelClass("moe/trtllm/fp8", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/trtllm"),
    KernelClass("moe/trtllm/fp8_block", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/trtllm"),
    KernelClass("moe/trtllm", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/trtllm"),
    KernelClass("moe/vllm/bf16", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/vllm"),
    KernelClass("moe/vllm/fp8", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/vllm"),
    KernelClass("moe/vllm/fp8_block", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/vllm"),
    KernelClass("moe/vllm", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/vllm"),
    KernelClass("moe/sglang/bf16", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/sglang"),
    KernelClass("moe/sglang/fp8", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/sglang"),
    KernelClass("moe/sglang/fp8_block", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/sglang"),
    KernelClass("moe/sglang", 20e-6, {"tensor": 0.6, "hbm": 0.75, "l2": 0.8},
                f"initial values before the fit; {_DB}/moe/sglang"),
    # ---- all-reduce algorithms (memsim.ops.comm), per backend: its custom kernels and its
    # NCCL calls (NCCL ring, NCCL NVLS)
    KernelClass("allreduce/oneshot/trtllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/twoshot/trtllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/ring/trtllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/nvls/trtllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/trtllm custom_allreduce"),
    KernelClass("allreduce/oneshot/vllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/twoshot/vllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/ring/vllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/nvls/vllm", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/vllm custom_allreduce"),
    KernelClass("allreduce/oneshot/sglang", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    KernelClass("allreduce/twoshot/sglang", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    KernelClass("allreduce/ring/sglang", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    KernelClass("allreduce/nvls/sglang", 10e-6, {"link": 0.6},
                f"initial values before the fit; {_DB}/comm/sglang custom_allreduce"),
    # ---- other NCCL collectives (all-gather, reduce-scatter, all-to-all, p2p): ring
    KernelClass("nccl/ring", 19e-6, {"link": 0.69},
                "TensorRT-LLM's NCCL ring all-reduce class (allreduce/ring/trtllm) reused"),
)}


# the profile's efficiency field each class unit replaces
_PROFILE_UNITS = {"tensor": "tensor", "hbm": "hbm_bandwidth", "l2": "l2_bandwidth",
                  "sram": "sram_bandwidth", "fp32": "fp32", "exp": "exp"}


def with_class(gpu, cls: KernelClass):  # (GPU, KernelClass) -> GPU
    """``gpu`` with the class's efficiency factors in place of the profile's own (for
    memsim.roofline, which reads ``gpu.efficiency``); units the class lacks keep the
    profile's factor."""
    update = {_PROFILE_UNITS[u]: min(float(v), 1.0) for u, v in cls.efficiency.items()
              if u in _PROFILE_UNITS}
    return gpu.model_copy(update={"efficiency": gpu.efficiency.model_copy(update=update)})


def kernel_class(op: str, backend: str | None = None, variant: str | None = None
                 ) -> KernelClass:
    """The fitted class of ``op`` ("gemm", "moe", "allreduce/oneshot", ...) for ``backend``
    (default :data:`memsim.ops.DEFAULT_BACKEND`) and ``variant`` (the kernel family within
    it, e.g. the GEMM's "bf16", "fp8", "fp8_block" kernels), falling back to the backend's
    class; classes shared by every backend (NCCL) are looked up by ``op`` alone."""
    if op in KERNEL_CLASSES:
        return KERNEL_CLASSES[op]
    name = f"{op}/{check_backend(backend)}"
    return KERNEL_CLASSES.get(f"{name}/{variant}", KERNEL_CLASSES[name])
