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
    # fitted values: the source of each says what it was fitted to and its errors
    KernelClass("gemm/trtllm/bf16", 2.98e-6, {"tensor": 0.810, "hbm": 0.777, "l2": 0.991},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/trtllm gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 7.9% (p90 25.0%, n=1810), H200 8.8% (p90 28.0%); leave-one-"
                "GPU-out median H100 8.9%, H200 8.3%; unseen B200 13.3% (p90 38.2%)"),
    KernelClass("gemm/trtllm/fp8", 13.4e-6, {"tensor": 0.608, "hbm": 0.760, "l2": 0.562},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/trtllm gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 7.9% (p90 26.3%, n=1803), H200 8.9% (p90 29.1%); leave-one-"
                "GPU-out median H100 8.2%, H200 9.0%; unseen B200 10.5% (p90 37.9%)"),
    KernelClass("gemm/trtllm/fp8_block", 5.98e-6, {"tensor": 0.515, "hbm": 0.761, "l2": 0.292},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/trtllm gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 16.9% (p90 41.1%, n=1387), H200 18.5% (p90 46.4%); leave-one-"
                "GPU-out median H100 17.8%, H200 19.7%; unseen B200 29.8% (p90 155.6%)"),
    KernelClass("gemm/vllm/bf16", 2.95e-6, {"tensor": 0.835, "hbm": 0.798, "l2": 1.000},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/vllm gemm_perf (5000-row"
                " sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0: median "
                "|error| H100 9.1% (p90 24.8%, n=1903), H200 8.9% (p90 26.6%); leave-one-GPU-out "
                "median H100 10.8%, H200 8.7%; unseen B200 11.9% (p90 40.1%)"),
    KernelClass("gemm/vllm/fp8", 7.59e-6, {"tensor": 0.513, "hbm": 0.728, "l2": 0.306},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/vllm gemm_perf (5000-row"
                " sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0: median "
                "|error| H100 22.1% (p90 60.9%, n=1844), H200 27.6% (p90 65.6%); leave-one-GPU-out "
                "median H100 24.9%, H200 27.3%; unseen B200 37.5% (p90 87.4%)"),
    KernelClass("gemm/vllm/fp8_block", 30e-6, {"tensor": 0.641, "hbm": 0.162, "l2": 0.412},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/vllm gemm_perf (5000-row"
                " sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0: median "
                "|error| H100 37.6% (p90 102.6%, n=1253), H200 38.3% (p90 66.8%); leave-one-GPU-out"
                " median H100 41.6%, H200 39.6%; unseen B200 78.0% (p90 86.8%)"),
    KernelClass("gemm/sglang/bf16", 3.23e-6, {"tensor": 0.772, "hbm": 0.782, "l2": 0.965},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/sglang gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 8.9% (p90 26.7%, n=1864), H200 11.0% (p90 31.3%); leave-one-"
                "GPU-out median H100 10.1%, H200 10.8%; unseen B200 13.7% (p90 42.3%)"),
    KernelClass("gemm/sglang/fp8", 6.69e-6, {"tensor": 0.585, "hbm": 0.713, "l2": 0.329},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/sglang gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 15.5% (p90 49.1%, n=1702), H200 17.9% (p90 51.1%); leave-one-"
                "GPU-out median H100 17.1%, H200 18.2%; unseen B200 26.5% (p90 82.0%)"),
    KernelClass("gemm/sglang/fp8_block", 5.51e-6, {"tensor": 0.599, "hbm": 0.735, "l2": 0.365},
                "fitted (scipy least_squares on log time, soft-L1) to gemm/sglang gemm_perf "
                "(5000-row sample per GPU) rows of H100 SXM and H200 in aiconfigurator-core 0.12.0:"
                " median |error| H100 15.4% (p90 47.5%, n=1434), H200 15.6% (p90 48.3%); leave-one-"
                "GPU-out median H100 18.1%, H200 15.9%; unseen B200 28.4% (p90 105.9%)"),
    KernelClass("gemm/trtllm", 2.98e-6, {"tensor": 0.810, "hbm": 0.777, "l2": 0.991},
                "other dtypes: the gemm/trtllm/bf16 values"),
    KernelClass("gemm/vllm", 2.95e-6, {"tensor": 0.835, "hbm": 0.798, "l2": 1.000},
                "other dtypes: the gemm/vllm/bf16 values"),
    KernelClass("gemm/sglang", 3.23e-6, {"tensor": 0.772, "hbm": 0.782, "l2": 0.965},
                "other dtypes: the gemm/sglang/bf16 values"),
    KernelClass("moe/trtllm/bf16", 28.8e-6, {"tensor": 0.464, "hbm": 0.805, "l2": 0.291},
                "fitted (scipy least_squares on log time, soft-L1) to moe/trtllm moe_perf (14 "
                "shapes per dtype and GPU, all token counts) rows of H100 SXM and H200 in "
                "aiconfigurator-core 0.12.0: median |error| H100 14.2% (p90 47.1%, n=378), H200 "
                "18.6% (p90 76.9%); leave-one-GPU-out median H100 19.5%, H200 22.4%; unseen B200 "
                "27.7% (p90 64.7%)"),
    KernelClass("moe/trtllm/fp8", 27.6e-6, {"tensor": 0.484, "hbm": 0.550, "l2": 0.257},
                "fitted (scipy least_squares on log time, soft-L1) to moe/trtllm moe_perf (14 "
                "shapes per dtype and GPU, all token counts) rows of H100 SXM and H200 in "
                "aiconfigurator-core 0.12.0: median |error| H100 46.0% (p90 72.4%, n=378), H200 "
                "19.7% (p90 64.5%); leave-one-GPU-out median H100 36.4%, H200 40.3%; unseen B200 "
                "19.9% (p90 59.0%)"),
    KernelClass("moe/trtllm/fp8_block", 24.6e-6, {"tensor": 0.507, "hbm": 0.559, "l2": 0.322},
                "fitted (scipy least_squares on log time, soft-L1) to moe/trtllm moe_perf (14 "
                "shapes per dtype and GPU, all token counts) rows of H100 SXM and H200 in "
                "aiconfigurator-core 0.12.0: median |error| H100 22.7% (p90 54.0%, n=378), H200 "
                "23.4% (p90 57.0%); leave-one-GPU-out median H100 25.6%, H200 32.3%; unseen B200 "
                "20.4% (p90 44.5%)"),
    KernelClass("moe/vllm/bf16", 35.2e-6, {"tensor": 0.460, "hbm": 0.860, "l2": 0.294},
                "fitted (scipy least_squares on log time, soft-L1) to moe/vllm moe_perf (14 shapes "
                "per dtype and GPU, all token counts) rows of H100 SXM and H200 in aiconfigurator-"
                "core 0.12.0: median |error| H100 8.9% (p90 51.6%, n=378), H200 13.4% (p90 36.3%); "
                "leave-one-GPU-out median H100 10.0%, H200 12.9%; unseen B200 61.3% (p90 124.4%)"),
    KernelClass("moe/vllm/fp8", 58.5e-6, {"tensor": 0.873, "hbm": 0.160, "l2": 0.093},
                "fitted (scipy least_squares on log time, soft-L1) to moe/vllm moe_perf (14 shapes "
                "per dtype and GPU, all token counts) rows of H100 SXM and H200 in aiconfigurator-"
                "core 0.12.0: median |error| H100 22.7% (p90 66.1%, n=378), H200 18.5% (p90 48.9%);"
                " leave-one-GPU-out median H100 53.8%, H200 28.9%; unseen"
                " B200 370.9% (p90 598.8%)"),
    KernelClass("moe/vllm/fp8_block", 29e-6, {"tensor": 0.287, "hbm": 0.754, "l2": 0.383},
                "fitted (scipy least_squares on log time, soft-L1) to moe/vllm moe_perf (14 shapes "
                "per dtype and GPU, all token counts) rows of H100 SXM and H200 in aiconfigurator-"
                "core 0.12.0: median |error| H100 15.1% (p90 44.4%, n=378), H200 10.6% (p90 28.9%);"
                " leave-one-GPU-out median H100 15.1%, H200 11.4%; unseen B200 19.1% (p90 44.2%)"),
    KernelClass("moe/sglang/bf16", 14.2e-6, {"tensor": 0.191, "hbm": 0.602, "l2": 0.129},
                "fitted (scipy least_squares on log time, soft-L1) to moe/sglang moe_perf (14 "
                "shapes per dtype and GPU, all token counts) rows of H100 SXM and H200 in "
                "aiconfigurator-core 0.12.0: median |error| H100 19.9% (p90 55.8%, n=378), H200 "
                "30.8% (p90 61.1%); leave-one-GPU-out median H100 29.1%, H200 29.7%; unseen B200 "
                "60.8% (p90 241.3%)"),
    KernelClass("moe/sglang/fp8_block", 31.5e-6, {"tensor": 0.235, "hbm": 0.742, "l2": 0.223},
                "fitted (scipy least_squares on log time, soft-L1) to moe/sglang moe_perf (14 "
                "shapes per dtype and GPU, all token counts) rows of H100 SXM and H200 in "
                "aiconfigurator-core 0.12.0: median |error| H100 17.4% (p90 56.8%, n=378), H200 "
                "17.0% (p90 42.9%); leave-one-GPU-out median H100 20.7%, H200 20.7%; unseen B200 "
                "24.1% (p90 61.1%)"),
    KernelClass("moe/trtllm", 28.8e-6, {"tensor": 0.464, "hbm": 0.805, "l2": 0.291},
                "other dtypes: the moe/trtllm/bf16 values"),
    KernelClass("moe/vllm", 35.2e-6, {"tensor": 0.460, "hbm": 0.860, "l2": 0.294},
                "other dtypes: the moe/vllm/bf16 values"),
    KernelClass("moe/sglang", 14.2e-6, {"tensor": 0.191, "hbm": 0.602, "l2": 0.129},
                "other dtypes: the moe/sglang/bf16 values"),
    KernelClass("allreduce/oneshot/trtllm", 2.93e-6, {"link": 0.654},
                "fitted (scipy least_squares on log time, soft-L1) to comm/trtllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 4.5% (p90 "
                "12.8%, n=69), H200 5.4% (p90 12.5%); leave-one-GPU-out median H100 4.4%, H200 "
                "5.5%; unseen B200 29.7% (p90 45.3%)"),
    KernelClass("allreduce/twoshot/trtllm", 13.1e-6, {"link": 0.493},
                "fitted (scipy least_squares on log time, soft-L1) to comm/trtllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 4.5% (p90 "
                "12.8%, n=69), H200 5.4% (p90 12.5%); leave-one-GPU-out median H100 4.4%, H200 "
                "5.5%; unseen B200 29.7% (p90 45.3%)"),
    KernelClass("allreduce/ring/trtllm", 19e-6, {"link": 0.688},
                "fitted (scipy least_squares on log time, soft-L1) to comm/trtllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 4.5% (p90 "
                "12.8%, n=69), H200 5.4% (p90 12.5%); leave-one-GPU-out median H100 4.4%, H200 "
                "5.5%; unseen B200 29.7% (p90 45.3%)"),
    KernelClass("allreduce/nvls/trtllm", 40e-6, {"link": 0.643},
                "fitted (scipy least_squares on log time, soft-L1) to comm/trtllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 4.5% (p90 "
                "12.8%, n=69), H200 5.4% (p90 12.5%); leave-one-GPU-out median H100 4.4%, H200 "
                "5.5%; unseen B200 29.7% (p90 45.3%)"),
    KernelClass("nccl/ring", 19e-6, {"link": 0.688},
                "not fitted on its own: TensorRT-LLM's NCCL ring all-reduce class "
                "(allreduce/ring/trtllm) reused for all-gather,"
                " reduce-scatter, all-to-all and p2p"),
    KernelClass("allreduce/oneshot/vllm", 4.53e-6, {"link": 0.601},
                "fitted (scipy least_squares on log time, soft-L1) to comm/vllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 3.9% (p90 "
                "9.5%, n=69), H200 2.9% (p90 8.6%); leave-one-GPU-out median H100 3.8%, H200 3.8%; "
                "unseen B200 34.3% (p90 43.9%)"),
    KernelClass("allreduce/twoshot/vllm", 8.69e-6, {"link": 0.744},
                "fitted (scipy least_squares on log time, soft-L1) to comm/vllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 3.9% (p90 "
                "9.5%, n=69), H200 2.9% (p90 8.6%); leave-one-GPU-out median H100 3.8%, H200 3.8%; "
                "unseen B200 34.3% (p90 43.9%)"),
    KernelClass("allreduce/ring/vllm", 19.2e-6, {"link": 0.673},
                "fitted (scipy least_squares on log time, soft-L1) to comm/vllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 3.9% (p90 "
                "9.5%, n=69), H200 2.9% (p90 8.6%); leave-one-GPU-out median H100 3.8%, H200 3.8%; "
                "unseen B200 34.3% (p90 43.9%)"),
    KernelClass("allreduce/nvls/vllm", 18.9e-6, {"link": 0.625},
                "fitted (scipy least_squares on log time, soft-L1) to comm/vllm "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 3.9% (p90 "
                "9.5%, n=69), H200 2.9% (p90 8.6%); leave-one-GPU-out median H100 3.8%, H200 3.8%; "
                "unseen B200 34.3% (p90 43.9%)"),
    KernelClass("allreduce/oneshot/sglang", 2.76e-6, {"link": 0.649},
                "fitted (scipy least_squares on log time, soft-L1) to comm/sglang "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 5.2% (p90 "
                "16.1%, n=69), H200 6.0% (p90 17.6%); leave-one-GPU-out median H100 4.4%, H200 "
                "6.0%; unseen B200 29.6% (p90 42.6%)"),
    KernelClass("allreduce/twoshot/sglang", 6.71e-6, {"link": 0.694},
                "fitted (scipy least_squares on log time, soft-L1) to comm/sglang "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 5.2% (p90 "
                "16.1%, n=69), H200 6.0% (p90 17.6%); leave-one-GPU-out median H100 4.4%, H200 "
                "6.0%; unseen B200 29.6% (p90 42.6%)"),
    KernelClass("allreduce/ring/sglang", 0.5e-6, {"link": 0.667},
                "fitted (scipy least_squares on log time, soft-L1) to comm/sglang "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 5.2% (p90 "
                "16.1%, n=69), H200 6.0% (p90 17.6%); leave-one-GPU-out median H100 4.4%, H200 "
                "6.0%; unseen B200 29.6% (p90 42.6%)"),
    KernelClass("allreduce/nvls/sglang", 40e-6, {"link": 0.644},
                "fitted (scipy least_squares on log time, soft-L1) to comm/sglang "
                "custom_allreduce_perf (CUDA-graph rows; the four algorithms fitted together) rows "
                "of H100 SXM and H200 in aiconfigurator-core 0.12.0: median |error| H100 5.2% (p90 "
                "16.1%, n=69), H200 6.0% (p90 17.6%); leave-one-GPU-out median H100 4.4%, H200 "
                "6.0%; unseen B200 29.6% (p90 42.6%)"),
    KernelClass("attention/context/trtllm", 16.47e-6, {"tensor": 0.761, "hbm": 0.224},
                "fitted (least_squares on log time, soft-L1; floor, tensor, hbm, row_s) to 3000 "
                "bf16 rows per GPU of trtllm's context_attention_perf, H100 SXM + H200, "
                "aiconfigurator-core 0.12.0: median |error| H100 12.2% (p90 31.9%), H200 10.9% (p90"
                " 29.8%); unseen B200 16.7% (p90 46.8%); leave-one-GPU-out"
                " median H100 13.8%, H200 11.9%",
                row_s=48.92e-9),
    KernelClass("attention/decode/trtllm", 9.492e-6, {"tensor": 0.800, "hbm": 0.715},
                "fitted (least_squares on log time, soft-L1; floor, hbm, row_s; tensor held"
                " at the bf16 GEMM's 0.8, MMAs padded to 16 rows) to 3000 bf16 rows per GPU"
                " of trtllm generation_attention_perf, H100 SXM + H200, aiconfigurator-core"
                " 0.12.0: median |error| H100 19.2% (p90 69.8%), H200 22.2% (p90 67.9%);"
                " unseen B200 20.1% (p90 97.4%); leave-one-GPU-out"
                " median H100 20.9%, H200 21.3%",
                row_s=900.2e-9),
    KernelClass("mla/context/trtllm", 16.47e-6, {"tensor": 0.761, "hbm": 0.224},
                "not fitted: the attention/context/trtllm values (MLA, DSA tables not fitted)",
                row_s=48.92e-9),
    KernelClass("mla/decode/trtllm", 9.492e-6, {"tensor": 0.800, "hbm": 0.715},
                "not fitted: the attention/decode/trtllm values (MLA, DSA tables not fitted)",
                row_s=900.2e-9),
    KernelClass("dsa/trtllm", 9.492e-6, {"tensor": 0.800, "hbm": 0.715},
                "not fitted: the attention/decode/trtllm floor and "
                "efficiencies; no per-row cost (the decode kernel's does not carry to DSA)",
                row_s=0.0),
    KernelClass("attention/context/vllm", 12.68e-6, {"tensor": 1.000, "hbm": 0.286},
                "fitted (least_squares on log time, soft-L1; floor, tensor, hbm, row_s) to 3000 "
                "bf16 rows per GPU of vllm's context_attention_perf, H100 SXM + H200, "
                "aiconfigurator-core 0.12.0: median |error| H100 11.7% (p90 34.2%), H200 10.7% (p90"
                " 31.6%); unseen B200 21.0% (p90 50.6%); leave-one-GPU-out"
                " median H100 13.7%, H200 11.7%",
                row_s=28.61e-9),
    KernelClass("attention/decode/vllm", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "fitted (least_squares on log time, soft-L1; floor, hbm, row_s; tensor held"
                " at the bf16 GEMM's 0.8, MMAs padded to 16 rows) to 3000 bf16 rows per GPU"
                " of vllm generation_attention_perf, H100 SXM + H200, aiconfigurator-core"
                " 0.12.0: median |error| H100 11.8% (p90 50.4%), H200 11.0% (p90 53.3%);"
                " unseen B200 28.7% (p90 61.7%); leave-one-GPU-out"
                " median H100 12.5%, H200 10.4%",
                row_s=330.2e-9),
    KernelClass("mla/context/vllm", 12.68e-6, {"tensor": 1.000, "hbm": 0.286},
                "not fitted: the attention/context/vllm values (MLA, DSA tables not fitted)",
                row_s=28.61e-9),
    KernelClass("mla/decode/vllm", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "not fitted: the attention/decode/vllm values (MLA, DSA tables not fitted)",
                row_s=330.2e-9),
    KernelClass("dsa/vllm", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "not fitted: the attention/decode/vllm floor and "
                "efficiencies; no per-row cost (the decode kernel's does not carry to DSA)",
                row_s=0.0),
    KernelClass("attention/context/sglang", 12.68e-6, {"tensor": 1.000, "hbm": 0.286},
                "not fitted: the attention/context/vllm values (SGLang runs the same "
                "FlashAttention/FlashInfer kernels)",
                row_s=28.61e-9),
    KernelClass("attention/decode/sglang", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "not fitted: the attention/decode/vllm values (SGLang runs the same "
                "FlashAttention/FlashInfer kernels)",
                row_s=330.2e-9),
    KernelClass("mla/context/sglang", 12.68e-6, {"tensor": 1.000, "hbm": 0.286},
                "not fitted: the attention/context/sglang values (MLA, DSA tables not fitted)",
                row_s=28.61e-9),
    KernelClass("mla/decode/sglang", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "not fitted: the attention/decode/sglang values (MLA, DSA tables not fitted)",
                row_s=330.2e-9),
    KernelClass("dsa/sglang", 11.91e-6, {"tensor": 0.800, "hbm": 0.815},
                "not fitted: the attention/decode/sglang floor and "
                "efficiencies; no per-row cost (the decode kernel's does not carry to DSA)",
                row_s=0.0),
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
