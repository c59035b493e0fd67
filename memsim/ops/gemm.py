"""GEMM ``C[m, n] = A[m, k] · B[k, n]`` as CUTLASS/cuBLAS run it: output tiles in waves.

The output is cut into ``tile_m × tile_n`` tiles (CUTLASS 3 SM90/SM100 collective tile
shapes, below); each tile is one CTA on one SM and streams its ``(tile_m + tile_n) · k``
operand bytes from L2. When there are fewer tiles than SMs the library splits K
(cuBLAS split-K / CUTLASS stream-K) and adds the fp32 partials. For every tile shape and
split count the time is the roofline of three terms, and the fastest choice wins, as
cuBLAS's heuristics and TensorRT-LLM's autotuner pick the fastest kernel:

- ``matmul``: waves · (2 · tile_m · tile_n · k/split) / (per-SM tensor rate) — a partial
  last wave and rows padded to the tile cost full tiles (wave and tile quantisation);
- ``l2``: the larger of two limits on the operand panels' trip from L2 to the SMs.
  (1) **One SM's ingress**: the busiest SM takes its CTAs' panels into its shared memory,
  one wave after another, at the class's per-SM rate ``l2`` × (L2 peak / SMs)
  (:func:`sm_ingress_bytes_per_s`), so a grid of few CTAs cannot use the whole L2. The
  factor is a per-SM figure in units of L2 peak / SMs (45.9 B/clk on H100 at 1.98 GHz),
  not a share of the aggregate L2 rate: an SM's port is not L2 / SMs (measured: vLLM's
  fp8 GEMM at m = 8, n = 512, k = 65536 on H100 launches 16 CTAs in 1 × 2 clusters, 8 of
  them real; each real SM takes (8 + 64) B · 65536 = 4.7 MB in 50 µs (55.8 µs less the
  floor and the quantisation), 95 GB/s = 48 B/clk, and 92 on H200; at 64 < m ≤ 128 few
  CTAs take about 120 GB/s = 61 B/clk each, below), above the 74.5 GB/s = 37.6 B/clk per
  SM of the profile's aggregate plateau. No source for the port's width was found (the
  Hopper microbenchmark studies cited by the profiles measure the aggregate L2 only), so
  it is the fitted ``l2`` (gemm/vllm/fp8: 0.989, 45.4 B/clk), capped at 1 by the fit's
  bounds. (2) **The L2 slices' reads**: every byte the slices serve, over the profile's
  sustained L2 bandwidth (``achievable_l2_bytes_per_s``, the measured plateau, no class
  factor), :func:`l2_read_bytes` — A once per cluster column of tiles, B once per
  cluster row, split-K partials once — so a full grid never reads L2 faster than its
  plateau. TMA fetches a tile's valid rows only (rows past m or n are zero-filled, not
  read). **TMA multicast** in a thread-block cluster divides the loads each CTA
  *issues* — the slices' reads, (2) — not the bytes each SM *receives*, (1): every CTA
  of the cluster takes the whole shared panel into its own shared memory (CUTLASS
  collective/sm90_mma_tma_gmma_ss_warpspecialized.hpp ``load``: each CTA
  ``tma_partition``s the shared operand by its block id in the cluster and loads its
  slice with ``mcast_mask_b``; every CTA waits on the whole stage). Where the kernel is
  read from its source — vLLM's fp8 ``cutlass_scaled_mm``: CUTLASS 3 with clusters on
  SM90 and SM100 (below), CUTLASS 2 without TMA on SM89
  (scaled_mm_c2x_sm89_fp8_dispatch.cuh) — the whole panels reach each SM, except that
  SM100's 2-SM MMA splits B between the pair's two SMs, each loading half
  (:func:`vllm_fp8_b_share`); where its cluster is modelled (SM90) the grid is rounded up
  to whole clusters (CUTLASS tile_scheduler_params.h,
  ``PersistentTileSchedulerSm90Params::initialize``: ``problem_blocks_m =
  round_up(problem_blocks.x, … cluster_shape.m())``, the padding CTAs taking SM slots
  and waves). For the autotuned kernels whose source is not read
  (cuBLAS, TensorRT-LLM's, SGLang's) the B panel is still counted halved (:data:`CLUSTER`)
  in both limits: their H100/H200 rows run the per-SM limit faster than the fit's cap of
  1 allows, and the halving stands in for that — a known approximation, not multicast
  physics; counting their whole panels, unrefitted, takes gemm/trtllm H100 from 5.9 to
  7.2 % median |error| and gemm/sglang from 9.7 to 12.2 %;
- ``hbm``: the compulsory bytes (A, B read once, C written once, split-K partials), the
  rasterised tile order keeping operand re-reads in L2.

``time_s`` = the class's latency floor + max(terms) (memsim.roofline's lower bound), plus
what each framework launches around its GEMM kernel (:data:`LAUNCHES`, read from the
frameworks' sources and from the aiconfigurator collectors that timed them):

- fp8 and fp8_block GEMMs take 16-bit activations, so a separate **quantisation kernel**
  first reads them and writes their fp8 copy (and, block-scaled, one fp32 scale per 128
  values): ``quant`` = m·k·(2·reads + 1 [+ 4/128]) bytes at the class's HBM bandwidth,
  serial before the GEMM. TensorRT-LLM ``Linear`` (FP8QDQ / FP8 block), vLLM
  ``scaled_fp8_quant`` / per-token-group quant, SGLang ``sgl_per_token_quant_fp8`` /
  ``sglang_per_token_group_quant_fp8`` (aiconfigurator collector/*/collect_gemm.py).
  TensorRT-LLM's collector loads no input scale, so its per-tensor fp8 ``Linear`` takes
  the dynamic path (tensorrt_llm/_torch/modules/linear.py, ``FP8QDQLinearMethod.apply``:
  ``quantize_e4m3_per_tensor``): an abs-max reduction over the activations, then the
  quantising pass — two reads (``reads`` = 2) and three kernels with the GEMM.
  vLLM's dynamic fp8 on CUTLASS quantises **per token** (``Fp8LinearMethod``: "Use
  per-token quantization for better perf if dynamic and cutlass" →
  ``dynamic_per_token_scaled_fp8_quant``: one CTA of 256 threads per row, looping over
  the row in steps of 256 × 16-byte loads): its time is the larger of its bytes and its
  CTAs, ``row_s`` SM-seconds per step (+ one for the reduction and scale store) per row,
  spread over the SMs. Measured: at k ≤ 2048 the rows cost 7.1 ns each on H100 and H200
  and 6.35 on B200 — 132/148, the SM ratio — with steps at k = 2048·i.
- **Split-K** only where the library has it: cuBLAS(Lt) (bf16, TensorRT-LLM's per-tensor
  fp8 ``cublas_scaled_mm``) splits K; CUTLASS ``scaled_mm`` and the block-scaled kernels
  (DeepGEMM, TensorRT-LLM's FP8 block GEMM, FlashInfer/CUTLASS blockwise) do not. A split
  GEMM is two kernels (cuBLAS's ``splitK`` GEMM, then ``cublasLt::splitKreduce_kernel``
  summing the fp32 partials; Dao-AILab/quack PR #157 lists both in cuBLAS's traces): the
  split costs one more launch, ``reduce`` = the class's floor / the kernels one call
  launches without it (``Launch.kernels``).
- vLLM's fp8 ``cutlass_scaled_mm`` on SM90 does not autotune: its **tile and cluster are
  fixed by m and n** (vllm csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm90_fp8_dispatch.cuh
  @68f442e: m ≤ 16 → 16 × 64 (swap-AB), m ≤ 64 → 16 × 64 for n ≤ 1280 else 64 × 64,
  m ≤ 128 → 64 × 128, else 128 × 128), so a mid-size m pays the waves of that one tile.
  Its clusters all run along m (:func:`vllm_sm90_fp8_config`): 2 × 1 for m > 64; for
  swap-AB (m ≤ 64) ``ClusterShape`` 1 × 2 (m ≤ 16) and 1 × 4 (m ≤ 64) when n ≤ 1280 —
  the swapped problem's N is m — and 1 × 1 above. At m ≤ 16 the 1 × 2 cluster thus
  launches a padding CTA beside every real one. Known gap: at 64 < m ≤ 128 with few
  tiles (H100, n ≤ 1024, k = 65536: at most 16 CTAs of 64 × 128) the measured rows take their
  whole (64 + 128)-row panels at about 120 GB/s per SM, above L2 / SMs, and the model
  over-predicts them by 45-55 %: an SM's own ingress exceeds the fitted per-SM rate there,
  which the per-SM limit, capped at 1 (45.9 B/clk) by the fit's bounds, cannot carry.
  Known gap: on SM100 the tile is fixed too (scaled_mm_sm100_fp8_dispatch.cuh @487e7b0:
  m ≤ 16 → swap-AB 128 × 32 in 4 × 1 clusters, m ≤ 64 → swap-AB 128 × 64 (4 × 1; 64 × 64
  un-clustered at m = 64, k < 4096), m ≤ 256 → 128 × 128 (2 × 1), else 256 × 128 (2 × 2);
  CUTLASS's ``KernelScheduleAuto`` runs a 2-SM MMA wherever cluster M is even and tile M
  a multiple of 128, sm100_common.inl ``sm100_make_trivial_tiled_mma``), i.e. per SM
  64 × 128 tiles for m ≤ 256 and 128 × 128 above, each panel shared by 2-4 SMs. Not
  modelled: Blackwell keeps the fastest of :data:`TILES` (an earlier trial of these tiles
  made the SM100 fp8 rows worse; its figures came from a script outside the repository
  and were not reproduced, so none are quoted here).
- vLLM's fp8_block linear was timed **without CUDA graphs** (collector/vllm/collect_gemm.py:
  ``use_cuda_graph=gemm_type != "fp8_block"``): the host's launch of the quantisation and
  GEMM kernels, not the GPU, sets a small problem's time, so there the class floor is that
  host time and ``time_s`` = max(floor, quant + GEMM). Its kernel depends on the shape
  (vLLM ``W8A8BlockFp8LinearOp``): CUTLASS blockwise when k is not a multiple of 128 or n
  of 64, FlashInfer for m < 32 on SM90, DeepGEMM otherwise — three classes
  (``fp8_block_cutlass``, ``fp8_block_flashinfer``, ``fp8_block``). The host time is the
  software path's, and the DeepGEMM path differs on Blackwell (UE8M0 scales:
  vllm utils/deep_gemm.py ``is_deep_gemm_e8m0_used``; in the vLLM versions read, not
  pinned to 0.24.0, ``_fp8_gemm_nt_op`` of kernels/linear/scaled_mm/deep_gemm.py aligns
  the packed activation scales to 4 rows): aiconfigurator's B200 DeepGEMM rows take about
  180 µs per call at m a multiple of 4 and 235 µs otherwise, against the 90 µs of
  H100/H200's, while its CUTLASS rows take 165 µs against Hopper's 180. No Hopper row sees
  that path, so the Hopper floor stands there (B200 DeepGEMM rows about −51 %); not tuned
  on B200.
- **Block-scaled fp8 on Hopper promotes on CUDA cores** (``promote``): SM90's wgmma has no
  per-group scale operand, so after every 128-deep k-block the math warpgroups wait for
  their wgmma batch (``warpgroup_wait<0>``) and fold it into an fp32 accumulator with one
  FFMA per accumulator element, ``final_accum += scale_a · scale_b · accum`` (DeepGEMM
  deep_gemm/include/deep_gemm/impls/sm90_fp8_gemm_1d2d.cuh, "Promote with scales"; the
  TensorRT-LLM and SGLang SM90 block-scaled GEMMs are taken to promote the same way, not
  read line by line here). Both math
  warpgroups consume a stage together, so the tensor cores idle while they promote:
  ``promote`` = waves · tile_m · tile_n · ⌈k / 128⌉ FMAs / the SM's fp32 FMA rate, added
  to ``matmul`` (an upper bound: what overlaps across warpgroups is not credited).
  Blackwell's tcgen05 MMA applies the scales itself (block-scaled ``kind::mxf8f6f4`` with
  UE8M0 factors in tensor memory: DeepGEMM sm100_fp8_gemm_1d1d.cuh,
  ``SM100_MMA_MXF8F6F4_SS``; vLLM requantises the scales to UE8M0 for it,
  ``requant_weight_ue8m0_inplace``), so there is no promotion term on SM100. Ada (SM89) has
  no scaled MMA either: vLLM's Triton ``_w8a8_triton_block_scaled_mm``
  (vllm/model_executor/layers/quantization/utils/fp8_utils.py) multiplies each k-block's
  ``tl.dot`` by its scales on CUDA cores, the same term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, cc_major, out, positive, resolve_gpu
from memsim.ops.classes import KernelClass, kernel_class
from memsim.units import ACCUM_BYTES, DTYPE_BYTES

# CUTLASS 3 collective tile shapes (M, N) of the SM90 TMA warp-specialised GEMMs that
# cuBLAS/TensorRT-LLM profile: 64-row tiles for skinny problems (one warpgroup wgmma M = 64),
# 128 × 128 … 256 × 128 for large ones.
CLUSTER = 2  # CTAs per cluster sharing a TMA-multicast operand panel (CUTLASS 2 x 1 x 1)
TILES = ((64, 64), (64, 128), (64, 256), (128, 64), (128, 128), (128, 256), (256, 128))
SPLITS = (1, 2, 4, 8, 16)
MIN_K_PER_SPLIT = 256  # split-K keeps at least a few k-blocks (of 64) per split
PARTIAL_BYTES = ACCUM_BYTES  # split-K partials are fp32

GEMM_DTYPES = {"fp32": "tf32", "tf32": "tf32", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8",
               "fp8_block": "fp8", "int8": "int8"}
OUT_BYTES = DTYPE_BYTES["bf16"]  # fp16/bf16 output (fp8 GEMMs write bf16 too)


SCALE_GROUP = 128  # fp8_block: one fp32 scale per 128 activations (per-token group)
BF16_BYTES = DTYPE_BYTES["bf16"]  # the quantisation kernel reads 16-bit activations
FP8_BYTES = DTYPE_BYTES["fp8"]    # and writes their fp8 copy
CTA_STEP_BYTES = 256 * 16


@dataclass(frozen=True)
class Launch:
    """What a framework runs for one GEMM kernel family (module docstring).

    ``quant``: a quantisation kernel precedes the GEMM; ``split_k``: the library may split
    K; ``dispatch``: "autotuned" (the fastest tile wins) or a fixed-tile rule by name;
    ``eager``: timed without CUDA graphs (the floor is the host's, a maximum not a sum);
    ``token_ctas``: the quantisation kernel runs one CTA per row (token), each costing the
    class's ``row_s`` SM-seconds per step of its loop (module docstring); ``quant_reads``:
    how often the quantisation reads the activations (2: an abs-max pass, then the
    quantising pass); ``kernels``: kernels one call launches without split-K (the class's
    floor covers them all; a split-K reduction kernel costs one more, floor / kernels).
    """

    quant: bool = False
    split_k: bool = True
    dispatch: str = "autotuned"
    eager: bool = False
    token_ctas: bool = False
    quant_reads: int = 1
    kernels: int = 1


LAUNCHES: dict[tuple[str, str], Launch] = {
    ("trtllm", "fp8"): Launch(quant=True, quant_reads=2, kernels=3),
    ("trtllm", "fp8_block"): Launch(quant=True, split_k=False, kernels=2),
    ("vllm", "fp8"): Launch(quant=True, split_k=False, dispatch="vllm_sm90_fp8",
                            token_ctas=True, kernels=2),
    ("vllm", "fp8_block"): Launch(quant=True, split_k=False, eager=True, kernels=2),
    ("sglang", "fp8"): Launch(quant=True, split_k=False, kernels=2),
    ("sglang", "fp8_block"): Launch(quant=True, split_k=False, kernels=2),
}


def launch_of(backend: str | None, family: str) -> Launch:
    """The :class:`Launch` of ``backend``'s ``family`` kernels (plain cuBLAS-like otherwise)."""
    from memsim.ops import check_backend

    return LAUNCHES.get((check_backend(backend), family), Launch())


def vllm_sm90_fp8_config(m: np.ndarray, n: np.ndarray
                         ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """vLLM's SM90 fp8 ``cutlass_scaled_mm`` config for m, n, as its dispatch table fixes it
    (module docstring): ((tile_m, tile_n), (CTAs along m, CTAs along n) of one cluster),
    written in rows of m × columns of n — the swap-AB tiles for m ≤ 64 included. Tiles:
    16 × 64 for m ≤ 16; 16 × 64 (n ≤ 1280) or 64 × 64 for m ≤ 64; 64 × 128 for m ≤ 128;
    128 × 128 above. Clusters all run along m: 2 (m ≤ 16) and 4 (m ≤ 64) when n ≤ 1280
    (swap-AB ``ClusterShape`` 1 × 2, 1 × 4), 1 for m ≤ 64 above n = 1280, 2 for m > 64
    (``ClusterShape`` 2 × 1)."""
    small_n = n <= 1280
    tile_m = np.where(m <= 16, 16.0, np.where(m <= 64, np.where(small_n, 16.0, 64.0),
                                              np.where(m <= 128, 64.0, 128.0)))
    tile_n = np.where(m <= 64, 64.0, 128.0)
    along_m = np.where(m <= 16, np.where(small_n, 2.0, 1.0),
                       np.where(m <= 64, np.where(small_n, 4.0, 1.0), 2.0))
    return (tile_m, tile_n), (along_m, np.ones_like(along_m))


def vllm_fp8_b_share(gpu: Any) -> float:
    """SMs among which one CTA tile's B panel is split in vLLM's fp8 ``cutlass_scaled_mm``
    (module docstring): 2 on SM100, whose 2-SM MMA (``tcgen05.mma.cta_group::2``) has each
    CTA of the pair provide half of B, N/2 × K (NVIDIA tilus docs, ``tcgen05.mma``; the
    fastest tile stands in for vLLM's SM100 configs, not modelled: module docstring);
    1 elsewhere — SM90's cluster multicast still lands the whole panel in every SM, and
    SM89's CUTLASS 2 kernel has no cluster."""
    return 2.0 if cc_major(gpu) >= 10 else 1.0


def vllm_fp8_block_variant(m: np.ndarray, n: np.ndarray, k: np.ndarray, gpu: Any) -> np.ndarray:
    """The kernel class vLLM's block-scaled fp8 linear runs per shape (module docstring)."""
    hopper = cc_major(gpu) == 9
    return np.where((k % SCALE_GROUP != 0) | (n % 64 != 0), "fp8_block_cutlass",
                    np.where((m < 32) & hopper, "fp8_block_flashinfer", "fp8_block"))


def promotes_on_cuda_cores(dtype: str, gpu: Any) -> bool:
    """Whether a GEMM of ``dtype`` on ``gpu`` folds its per-128-k-block partial sums into
    the fp32 accumulator on CUDA cores: block-scaled fp8 before SM100, whose tensor cores
    take no scale operand (module docstring)."""
    return dtype == "fp8_block" and cc_major(gpu) < 10


def kernel_family(dtype: str) -> str:
    """The GEMM kernel family of a dtype: 16-bit (and TF32) "bf16", per-tensor "fp8",
    DeepSeek-style block-scaled "fp8_block" (different kernels, different floors)."""
    return {"fp8": "fp8", "fp8_block": "fp8_block", "int8": "fp8"}.get(dtype, "bf16")


def operand_bytes(dtype: str) -> tuple[str, float]:
    """(tensor-core rate dtype, bytes per operand element) of a GEMM dtype."""
    from memsim.errors import InputError, closest
    from memsim.units import dtype_bytes

    if dtype not in GEMM_DTYPES:
        raise InputError("dtype", dtype, f"must be one of {', '.join(GEMM_DTYPES)}"
                         + closest(dtype, GEMM_DTYPES))
    rate = GEMM_DTYPES[dtype]
    return rate, dtype_bytes(rate if rate != "tf32" else "fp32")


def compulsory_bytes(m: Any, n: Any, k: Any, groups: Any, e_in: float,
                     weight_e: float | None = None) -> Any:
    """Bytes ``groups`` GEMMs ``C[m, n] = A[m, k] · B[k, n]`` must move through HBM at least:
    A (``e_in`` bytes an element) and B (``weight_e``, default ``e_in``) read once, C
    written once in 16-bit (:data:`OUT_BYTES`)."""
    w_e = e_in if weight_e is None else weight_e
    return groups * (m * k * e_in + k * n * w_e + m * n * OUT_BYTES)


def tiled_terms(m: np.ndarray, n: np.ndarray, k: np.ndarray, groups: np.ndarray, gpu: Any,
                cls: KernelClass, rate_dtype: str, e_in: float,
                weight_e: float | None = None, split_k: bool = True,
                tiles: tuple[np.ndarray, np.ndarray] | None = None,
                cluster: tuple[Any, Any] = (1.0, 1.0), b_share: Any = CLUSTER,
                split_launch_s: float = 0.0, hbm_fraction: Any = 1.0,
                promote: bool = False) -> dict[str, Any]:
    """Terms (seconds) of ``groups`` independent GEMMs of one shape, best tile and split.

    ``groups``: GEMMs in one launch (a grouped GEMM: MoE experts), sharing the SMs.
    ``weight_e``: bytes per element of B if it differs from A's (weight-only quantisation).
    ``split_k``: whether the kernel may split K; ``tiles``: a fixed (tile_m, tile_n) per
    element instead of the fastest of :data:`TILES`; ``cluster``: (CTAs along m, along n)
    of the kernel's thread-block cluster — CUTLASS rounds the grid up to whole clusters,
    so ``ctas`` = round_up(⌈m/tile_m⌉, cluster_m) · round_up(⌈n/tile_n⌉, cluster_n) take
    SM slots (default 1 × 1: no cluster rounding where the kernel's source is not read);
    ``b_share``: the B panel counts 1/b_share per SM — 1 where the kernel is read (TMA
    multicast leaves every SM's ingress whole), :data:`CLUSTER` (default) for the
    autotuned kernels whose source is not read (module docstring: a stand-in, not
    multicast physics);
    ``split_launch_s``: what a split costs beyond its partials' bytes (the launch of the
    reduction kernel, added serially);
    ``hbm_fraction``: the share of the compulsory bytes that reaches HBM (0 where the
    operands stay in L2 from one call to the next); ``promote``: the kernel folds every
    128-deep k-block into its fp32 accumulator on CUDA cores, one FMA per accumulator
    element, serial with its MMAs (:func:`promotes_on_cuda_cores`), added to ``matmul``.
    The L2 term is the larger of the busiest SM's ingress — its ``waves`` CTAs' operand
    panels one after another at :func:`sm_ingress_bytes_per_s`, so a grid of few CTAs
    cannot use the whole L2 (as ``matmul`` cannot use every SM's tensor cores) — and the
    L2 slices' reads (:func:`l2_read_bytes` + split-K partials) at the profile's sustained
    L2 bandwidth. TMA multicast within a cluster lowers the reads, not an SM's ingress:
    every receiving SM still takes the whole panel into its shared memory (module
    docstring).
    Returns dict with ``t`` (the chosen candidate's time without a floor), ``matmul``,
    ``l2``, ``hbm``, ``reduce`` (s), ``hbm_bytes``, ``tile_m``, ``tile_n``, ``split``,
    ``ctas`` (launched, idle cluster padding included), ``waves``.
    """
    sms = float(gpu.spec.sm_count)
    per_sm = gpu.peak_flop_per_s("tensor", rate_dtype) * cls.eff("tensor") / sms
    hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    ingress_per_sm = sm_ingress_bytes_per_s(gpu, cls)
    fma_per_sm_per_s = gpu.peak_flop_per_s("fp32") / 2.0 / sms  # an FMA is 2 flops
    w_e = e_in if weight_e is None else weight_e
    compulsory = compulsory_bytes(m, n, k, groups, e_in, w_e)
    best = None
    for tm, tn in ([tiles] if tiles is not None else TILES):
        count = groups * _round_up(np.ceil(m / tm), cluster[0]) * _round_up(np.ceil(n / tn),
                                                                              cluster[1])
        for split in SPLITS if split_k else (1,):
            ok = (split == 1) | ((count * split <= sms) & (k / split >= MIN_K_PER_SPLIT))
            kk = k / split
            units = count * split
            waves = np.maximum(np.ceil(units / sms), 1.0)
            matmul = waves * 2.0 * tm * tn * kk / per_sm
            if promote:
                matmul = matmul + waves * tm * tn * np.ceil(kk / SCALE_GROUP) / fma_per_sm_per_s
            partial = (split > 1) * 2.0 * groups * m * n * PARTIAL_BYTES * split
            # TMA fetches a tile's valid rows only (out-of-bounds rows are zero-filled)
            rows_m, rows_n = np.minimum(m, tm), np.minimum(n, tn)
            sm_bytes = waves * (rows_m * e_in + rows_n * w_e / b_share) * kk
            read_bytes = l2_read_bytes(m, n, k, groups, (tm, tn), cluster, b_share, e_in, w_e)
            l2 = np.maximum(sm_bytes / ingress_per_sm,
                            (read_bytes + partial) / gpu.achievable_l2_bytes_per_s)
            hbm_bytes = compulsory + partial
            hbm = hbm_bytes * hbm_fraction / hbm_bw
            reduce = np.full_like(matmul, (split > 1) * split_launch_s)
            t = np.where(ok, np.maximum(np.maximum(matmul, l2), hbm) + reduce, np.inf)
            cand = {"t": t, "matmul": matmul, "l2": l2, "hbm": hbm, "reduce": reduce,
                    "hbm_bytes": hbm_bytes,
                    "tile_m": np.full_like(t, tm), "tile_n": np.full_like(t, tn),
                    "split": np.full_like(t, split), "ctas": units, "waves": waves}
            if best is None:
                best = {k2: np.array(v, dtype=float) for k2, v in cand.items()}
            else:
                better = cand["t"] < best["t"]
                for k2 in best:
                    best[k2] = np.where(better, cand[k2], best[k2])
    return best


def sm_ingress_bytes_per_s(gpu: Any, cls: KernelClass) -> float:
    """Bytes per second one SM takes in from L2 (its operand panels into shared memory):
    the class's fitted ``l2`` factor × the L2 peak / SMs (module docstring: a per-SM
    ingress figure, not a share of the aggregate L2 rate, which caps the whole grid
    separately in :func:`l2_read_bytes`'s term)."""
    return gpu.spec.l2_bandwidth_bytes_per_s * cls.eff("l2") / gpu.spec.sm_count


def l2_read_bytes(m: Any, n: Any, k: Any, groups: Any, tile: tuple[float, float],
                  cluster: tuple[Any, Any], b_share: Any, e_in: float, w_e: float) -> Any:
    """Bytes the L2 slices serve for ``groups`` GEMMs in ``tile = (tile_m, tile_n)`` tiles:
    A's m rows once per cluster column of tiles along n, B's n columns once per cluster
    row along m (TMA multicast reads a shared panel once for its whole cluster: CUTLASS
    sm90_mma_tma_gmma_ss_warpspecialized.hpp ``load``, ``mcast_mask_b``), B divided by
    ``b_share`` (the SM100 2-SM MMA's pair reads B once; the autotuned kernels' stand-in,
    :data:`CLUSTER`); k whole, however it is split. Out-of-bounds rows are not read."""
    clusters_n = np.ceil(np.ceil(n / tile[1]) / cluster[1])
    clusters_m = np.ceil(np.ceil(m / tile[0]) / cluster[0])
    return groups * k * (m * e_in * clusters_n + n * w_e * clusters_m / b_share)


def _round_up(x: np.ndarray, multiple: Any) -> np.ndarray:
    """``x`` rounded up to a whole multiple of ``multiple`` (elementwise)."""
    return np.ceil(x / multiple) * multiple


def predict(m: Any, n: Any, k: Any, *, dtype: str = "bf16", gpu: Any = "h100-sxm",
            backend: str | None = None) -> OpPrediction:
    """Time of ``C[m, n] = A[m, k] · B[k, n]`` (m: tokens, n: output features, k: input
    features; arrays broadcast) on ``gpu`` with ``backend``'s GEMM kernel class.

    ``dtype``: operand type (fp16, bf16, fp8, fp8_block, int8, fp32 → TF32 tensor cores);
    the output is 16-bit.
    """
    for name, v in (("m", m), ("n", n), ("k", k)):
        positive(name, v)
    gpu = resolve_gpu(gpu)
    rate_dtype, e_in = operand_bytes(dtype)
    family = kernel_family(dtype)
    launch = launch_of(backend, family)
    m, n, k = as_float(m, n, k)
    variants = (vllm_fp8_block_variant(m, n, k, gpu) if launch.eager
                else np.full(m.shape, family, dtype=object))
    sm90_fp8 = launch.dispatch == "vllm_sm90_fp8" and cc_major(gpu) == 9
    fixed, cluster = vllm_sm90_fp8_config(m, n) if sm90_fp8 else (None, (1.0, 1.0))
    b_share = (vllm_fp8_b_share(gpu) if launch.dispatch == "vllm_sm90_fp8" else CLUSTER)
    parts = {}
    sms = float(gpu.spec.sm_count)
    for variant in sorted(set(np.asarray(variants).reshape(-1).tolist())):
        cls = kernel_class("gemm", backend, variant)
        best = tiled_terms(m, n, k, np.ones_like(m), gpu, cls, rate_dtype, e_in,
                           split_k=launch.split_k, tiles=fixed, cluster=cluster, b_share=b_share,
                           split_launch_s=cls.floor_s / launch.kernels,
                           promote=promotes_on_cuda_cores(dtype, gpu))
        hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
        quant_bytes = (m * k * (launch.quant_reads * BF16_BYTES + FP8_BYTES
                                + (4.0 / SCALE_GROUP if family == "fp8_block" else 0.0))
                       if launch.quant else 0.0 * m)
        best["quant"] = quant_bytes / hbm_bw
        if launch.token_ctas:
            steps = np.ceil(k * BF16_BYTES / CTA_STEP_BYTES) + 1.0
            best["quant"] = np.maximum(best["quant"], cls.row_s * steps * m / sms)
        best["hbm_bytes"] = best["hbm_bytes"] + quant_bytes
        best["floor"] = np.full_like(m, cls.floor_s)
        kernel_s = best["t"] + best["quant"]
        best["kernel"] = kernel_s
        best["time"] = (np.maximum(best["floor"], kernel_s) if launch.eager
                        else best["floor"] + kernel_s)
        best["name"] = np.full(m.shape, cls.name, dtype=object)
        parts[variant] = best
    pick = {key: _select(variants, {v: p[key] for v, p in parts.items()})
            for key in next(iter(parts.values()))}
    terms = {"matmul": pick["matmul"], "l2": pick["l2"], "hbm": pick["hbm"]}
    if launch.split_k:
        terms["reduce"] = pick["reduce"]
    if launch.quant:
        terms["quant"] = pick["quant"]
    floor = pick["floor"]
    name = pick["name"]
    return OpPrediction(
        time_s=out(pick["time"]), bound=bound_of(terms, floor), flops=out(2.0 * m * n * k),
        hbm_bytes=out(pick["hbm_bytes"]), launch_s=out(floor),
        terms_s={k2: out(v) for k2, v in terms.items()},
        detail={"kernel_class": str(name) if name.ndim == 0 else name,
                "tile_m": out(pick["tile_m"]), "tile_n": out(pick["tile_n"]),
                "split_k": out(pick["split"]), "ctas": out(pick["ctas"]),
                "waves": out(pick["waves"]),
                "eager": launch.eager, "kernels": launch.kernels,
                "kernel_s": out(pick["kernel"])})


def _select(variants: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Per element, the value of its variant's computation."""
    first = next(iter(values.values()))
    if len(values) == 1:
        return first
    result = np.array(first, copy=True)
    for v, arr in values.items():
        result = np.where(variants == v, arr, result)
    return result


def linear_s(tokens: Any, in_features: float, out_features: float, *, dtype: str, gpu: Any,
             backend: str | None = None) -> Any:
    """Seconds of a linear layer on ``tokens`` rows (array; 0 rows cost nothing):
    ``predict(tokens, out_features, in_features)`` for whole-model sums."""
    T = np.asarray(tokens, dtype=float)
    # A whole-model grid repeats row counts (every batch × position with the same tokens per
    # step): each distinct count is timed once, its tile search being the costly part.
    rows, where = np.unique(T, return_inverse=True)
    t = predict(np.maximum(rows, 1.0), max(float(out_features), 1.0),
                max(float(in_features), 1.0), dtype=dtype, gpu=gpu, backend=backend).time_s
    t = np.asarray(t, dtype=float).reshape(-1)[where.reshape(-1)].reshape(T.shape)
    return np.where(T > 0, t, 0.0)
