"""GEMM ``C[m, n] = A[m, k] · B[k, n]`` as CUTLASS/cuBLAS run it: output tiles in waves.

The output is cut into ``tile_m × tile_n`` tiles (CUTLASS 3 SM90/SM100 collective tile
shapes, below); each tile is one CTA on one SM and streams its ``(tile_m + tile_n) · k``
operand bytes from L2. When there are fewer tiles than SMs the library splits K
(cuBLAS split-K / CUTLASS stream-K) and adds the fp32 partials. For every tile shape and
split count the time is the roofline of three terms, and the fastest choice wins, as
cuBLAS's heuristics and TensorRT-LLM's autotuner pick the fastest kernel:

- ``matmul``: waves · (2 · tile_m · tile_n · k/split) / (per-SM tensor rate) — a partial
  last wave and rows padded to the tile cost full tiles (wave and tile quantisation);
- ``l2``: every tile's operand panels through L2 (L2 → SM traffic); CUTLASS's SM90/SM100
  kernels run in clusters of 2 CTAs whose shared B panel is multicast by TMA (cluster
  shape 2 × 1 × 1), so a tile loads its A panel and half of its B panel;
- ``hbm``: the compulsory bytes (A, B read once, C written once, split-K partials), the
  rasterised tile order keeping operand re-reads in L2.

``time_s`` = the class's latency floor + max(terms) (memsim.roofline's lower bound).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, out, positive, resolve_gpu
from memsim.ops.classes import KernelClass, kernel_class
from memsim.units import ACCUM_BYTES, DTYPE_BYTES

# CUTLASS 3 collective tile shapes (M, N) of the SM90 TMA warp-specialised GEMMs that
# cuBLAS/TensorRT-LLM profile: 64-row tiles for skinny problems (one warpgroup wgmma M = 64),
# 128 × 128 … 256 × 128 for large ones.
TILES = ((64, 64), (64, 128), (64, 256), (128, 64), (128, 128), (128, 256), (256, 128))
SPLITS = (1, 2, 4, 8, 16)
MIN_K_PER_SPLIT = 256  # split-K keeps at least a few k-blocks (of 64) per split
PARTIAL_BYTES = ACCUM_BYTES  # split-K partials are fp32
CLUSTER = 2  # CTAs per cluster sharing a TMA-multicast operand panel (CUTLASS 2 x 1 x 1)

GEMM_DTYPES = {"fp32": "tf32", "tf32": "tf32", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8",
               "fp8_block": "fp8", "int8": "int8"}
OUT_BYTES = DTYPE_BYTES["bf16"]  # fp16/bf16 output (fp8 GEMMs write bf16 too)


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


def tiled_terms(m: np.ndarray, n: np.ndarray, k: np.ndarray, groups: np.ndarray, gpu: Any,
                cls: KernelClass, rate_dtype: str, e_in: float,
                weight_e: float | None = None) -> dict[str, Any]:
    """Terms (seconds) of ``groups`` independent GEMMs of one shape, best tile and split.

    ``groups``: GEMMs in one launch (a grouped GEMM: MoE experts), sharing the SMs.
    ``weight_e``: bytes per element of B if it differs from A's (weight-only quantisation).
    Returns dict with ``matmul``, ``l2``, ``hbm`` (s), ``hbm_bytes``, ``tile_m``,
    ``tile_n``, ``split``, ``waves``.
    """
    sms = float(gpu.spec.sm_count)
    per_sm = gpu.peak_flop_per_s("tensor", rate_dtype) * cls.eff("tensor") / sms
    hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    l2_bw = gpu.spec.l2_bandwidth_bytes_per_s * cls.eff("l2")
    w_e = e_in if weight_e is None else weight_e
    compulsory = groups * (m * k * e_in + k * n * w_e + m * n * OUT_BYTES)
    best = None
    for tm, tn in TILES:
        tiles = groups * np.ceil(m / tm) * np.ceil(n / tn)
        for split in SPLITS:
            ok = (split == 1) | ((tiles * split <= sms) & (k / split >= MIN_K_PER_SPLIT))
            kk = k / split
            units = tiles * split
            waves = np.maximum(np.ceil(units / sms), 1.0)
            matmul = waves * 2.0 * tm * tn * kk / per_sm
            partial = (split > 1) * 2.0 * groups * m * n * PARTIAL_BYTES * split
            l2 = (units * (tm * e_in + tn * w_e / CLUSTER) * kk + partial) / l2_bw
            hbm_bytes = compulsory + partial
            hbm = hbm_bytes / hbm_bw
            t = np.where(ok, np.maximum(np.maximum(matmul, l2), hbm), np.inf)
            cand = {"t": t, "matmul": matmul, "l2": l2, "hbm": hbm, "hbm_bytes": hbm_bytes,
                    "tile_m": np.full_like(t, tm), "tile_n": np.full_like(t, tn),
                    "split": np.full_like(t, split), "waves": waves}
            if best is None:
                best = {k2: np.array(v, dtype=float) for k2, v in cand.items()}
            else:
                better = cand["t"] < best["t"]
                for k2 in best:
                    best[k2] = np.where(better, cand[k2], best[k2])
    return best


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
    cls = kernel_class("gemm", backend, kernel_family(dtype))
    m, n, k = as_float(m, n, k)
    best = tiled_terms(m, n, k, np.ones_like(m), gpu, cls, rate_dtype, e_in)
    terms = {"matmul": best["matmul"], "l2": best["l2"], "hbm": best["hbm"]}
    floor = np.full_like(m, cls.floor_s)
    time = floor + best["t"]
    return OpPrediction(
        time_s=out(time), bound=bound_of(terms, floor), flops=out(2.0 * m * n * k),
        hbm_bytes=out(best["hbm_bytes"]), launch_s=out(floor),
        terms_s={k2: out(v) for k2, v in terms.items()},
        detail={"kernel_class": cls.name, "tile_m": out(best["tile_m"]),
                "tile_n": out(best["tile_n"]), "split_k": out(best["split"]),
                "waves": out(best["waves"])})


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
