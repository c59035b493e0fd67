"""PyTorch's ``scaled_dot_product_attention`` against memsim's production-kernel prediction.

This is the check that matters most to users: it is the attention they run. Each case pins
one backend with ``torch.nn.attention.sdpa_kernel`` and compares:

- ``flash`` (FlashAttention-2 in PyTorch) with memsim's ``flash2`` on tensor cores at bf16,
  and with ``flash_decode`` for one query token (N = 1): FlashAttention-2's forward splits
  the keys over several blocks when the grid is too small to fill the GPU (split-KV);
- ``math`` (the composite implementation: S = QKᵀ and P = softmax(S) materialised in global
  memory) with memsim's ``standard``, eager attention: the math backend computes every
  score and applies a causal mask afterwards (masked_fill), so no tile is skipped. Unless
  ``torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)`` was set, PyTorch upcasts
  bf16 inputs to fp32 for this backend; memsim's ``standard`` models that itself (the
  copies to fp32 and back, the computation in fp32: memsim/algorithms/standard.py), so the
  prediction is the user's problem at its own dtype with the matmuls on the CUDA cores
  (fp32 matmuls run without TF32 by default), plus the fp32 copies of q, k, v in the peak
  memory; the record says which was used, and the reduced-precision setting is refused
  (not modelled).

Tensors: ``q: (B, H, N, D)``, ``k, v: (B, K, S, D)``; GQA/MQA through ``enable_gqa=True``.
Causal cases need N = S (PyTorch's ``is_causal`` aligns the mask top-left, memsim's
bottom-right; they agree only then); decoding cases use the full mask with N = 1.

Measured: median CUDA-event time with L2 flushed (:mod:`memsim.validation.timing`), and the
peak memory one call allocates beyond its inputs (``torch.cuda.max_memory_allocated``),
predicted as the output plus the algorithm's workspace. Before timing, the output of fresh
random inputs is checked against a float64 reference on two (batch, head) slices.
"""

from __future__ import annotations

import math
from typing import Any

from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.validation.predictions import attention_problem, output_bytes, predict_case

ALGORITHM_OF_BACKEND = {"flash": "flash2", "math": "standard", "efficient": "flash2",
                        "cudnn": "flash2"}
_TORCH_BACKEND = {"flash": "FLASH_ATTENTION", "math": "MATH", "efficient": "EFFICIENT_ATTENTION",
                  "cudnn": "CUDNN_ATTENTION"}
BF16_TOLERANCE = 2e-2   # ‖out − ref‖/‖ref‖ for bf16 operands (docs/DESIGN.md §"Measurements")
REFERENCE_ROWS = 128    # query rows per checked (batch, head) slice


def check_params(params: dict[str, Any]) -> None:
    """Raise :class:`InputError` for a case PyTorch's SDPA cannot express exactly."""
    backend = params["backend"]
    if backend not in ALGORITHM_OF_BACKEND:
        raise InputError("backend", backend, f"must be one of {', '.join(ALGORITHM_OF_BACKEND)}")
    if params["mask"] not in ("full", "causal"):
        raise InputError("mask", params["mask"], "must be 'full' or 'causal' for SDPA "
                         "(a window needs attn_mask, which no fused backend takes)")
    if params["mask"] == "causal" and params["seq_len"] != params["kv_len"]:
        raise InputError("seq_len", params["seq_len"],
                         f"must equal kv_len={params['kv_len']} for a causal SDPA case")


def algorithm_for(params: dict[str, Any]) -> str:
    """memsim's algorithm for a case: the backend's, split-KV decoding for N = 1 on flash."""
    if params["backend"] == "flash" and params["seq_len"] == 1:
        return "flash_decode"
    return ALGORITHM_OF_BACKEND[params["backend"]]


def predict_sdpa(params: dict[str, Any], gpu: GPU, math_upcast: bool = True,
                 with_trace: bool = True, ncu: bool = False,
                 l2_model: str = "tiles") -> dict[str, Any]:
    """memsim's prediction for one SDPA case (see module docstring); no GPU needed.

    ``math_upcast``: the math backend computes bf16 inputs in fp32 (PyTorch's default,
    the only one memsim's ``standard`` models: False raises :class:`InputError` for a
    16-bit math case).
    Adds ``peak_extra_bytes`` (output + workspace) to the analytic quantities. ``ncu``:
    the trace as Nsight Compute measures (every kernel from a flushed L2).
    """
    check_params(params)
    problem = attention_problem(params)
    matmul_unit = "tensor"
    # the math backend runs eager `standard` (every score, masked afterwards), which
    # computes 16-bit inputs in fp32 itself (memsim.algorithms.standard.compute_e)
    upcast = params["backend"] == "math" and problem.dtype in ("bf16", "fp16")
    if upcast and not math_upcast:
        raise InputError("math_reduced_precision", True, "is not modelled: memsim's "
                         "standard computes 16-bit inputs in fp32, as PyTorch's default")
    if upcast:
        matmul_unit = "fp32"
    pred = predict_case(problem, gpu, algorithm_for(params), matmul_unit=matmul_unit,
                        with_trace=with_trace, ncu=ncu, l2_model=l2_model)
    extra = output_bytes(problem)  # the output keeps the input dtype
    if upcast:
        extra += _upcast_copy_bytes(params)
    for model in ("analytic", "trace"):
        if pred[model] is not None:
            pred[model]["peak_extra_bytes"] = extra + pred[model]["workspace_bytes"]
    pred["compute_dtype"] = "fp32" if upcast else problem.dtype
    return pred


def _upcast_copy_bytes(params: dict[str, Any]) -> float:
    """fp32 copies of q, k, v the math backend makes of low-precision inputs (bytes)."""
    from memsim.units import dtype_bytes

    p = params
    elements = p["batch"] * (p["heads"] * p["seq_len"] + 2 * p["kv_heads"] * p["kv_len"])
    return float(elements * p["head_dim"] * dtype_bytes("fp32"))


# ---- on the GPU -------------------------------------------------------------------------


def _inputs(params: dict[str, Any], generator: Any) -> tuple[Any, Any, Any]:
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[params["dtype"]]
    B, N, S = params["batch"], params["seq_len"], params["kv_len"]
    H, K, D = params["heads"], params["kv_heads"], params["head_dim"]

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, device="cuda", dtype=torch.float32,
                           generator=generator).to(dtype)

    return randn(B, H, N, D), randn(B, K, S, D), randn(B, K, S, D)


def _call(params: dict[str, Any], q: Any, k: Any, v: Any) -> Any:
    from torch.nn.functional import scaled_dot_product_attention

    gqa = params["kv_heads"] != params["heads"]
    return scaled_dot_product_attention(q, k, v, is_causal=params["mask"] == "causal",
                                          **({"enable_gqa": True} if gqa else {}))


def reference_error(params: dict[str, Any], q: Any, k: Any, v: Any, out: Any) -> float:
    """Largest ‖out − ref‖/‖ref‖ over two (batch, head) slices, reference in float64."""
    import torch

    from memsim.validation.timing import relative_l2_error

    B, H, N, S = params["batch"], params["heads"], params["seq_len"], params["kv_len"]
    group = H // params["kv_heads"]
    rows = torch.arange(max(0, N - REFERENCE_ROWS), N, device=q.device)
    worst = 0.0
    for b, h in {(0, 0), (B - 1, H - 1)}:
        q64 = q[b, h, rows].double()
        k64, v64 = k[b, h // group].double(), v[b, h // group].double()
        scores = q64 @ k64.T / math.sqrt(params["head_dim"])
        if params["mask"] == "causal":  # query i sits at position S − N + i
            keys = torch.arange(S, device=q.device)
            scores = scores.masked_fill(keys[None, :] > (S - N + rows)[:, None], float("-inf"))
        ref = torch.softmax(scores, dim=-1) @ v64
        err = relative_l2_error(out[b, h, rows], ref)
        if not math.isfinite(err):
            return float("nan")
        worst = max(worst, err)
    return worst


def measure_sdpa(params: dict[str, Any], flush: Any) -> dict[str, Any]:
    """Validate, then time one SDPA case; raises if the output is wrong."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from memsim.validation.timing import median_time_s, peak_extra_bytes

    check_params(params)
    backend = getattr(SDPBackend, _TORCH_BACKEND[params["backend"]])
    generator = torch.Generator(device="cuda")
    generator.seed()  # fresh inputs every run
    q, k, v = _inputs(params, generator)
    with sdpa_kernel(backend):
        out = _call(params, q, k, v)
        error = reference_error(params, q, k, v, out)
        if not error <= BF16_TOLERANCE:  # NaN fails too
            raise RuntimeError(f"validation failed: ‖out − ref‖/‖ref‖ = {error:.3g} "
                               f"> {BF16_TOLERANCE}")
        del out
        timing = median_time_s(lambda: _call(params, q, k, v), flush=flush)
        peak = peak_extra_bytes(lambda: _call(params, q, k, v))
    allowed = getattr(torch.backends.cuda, "fp16_bf16_reduction_math_sdp_allowed", None)
    return {**timing, "peak_extra_bytes": peak, "relative_error": error,
            "math_reduced_precision": bool(allowed()) if allowed else None}


def run(params: dict[str, Any], gpu: GPU, flush: Any) -> dict[str, Any]:
    """Measure and predict one case: the record's prediction/measurement/work parts."""
    measurement = measure_sdpa(params, flush)
    upcast = not measurement.get("math_reduced_precision")
    prediction = predict_sdpa(params, gpu, math_upcast=upcast)
    flops = prediction["analytic"]["matmul_flops"]
    measurement["achieved_flop_per_s"] = flops / measurement["time_s"]
    return {"prediction": prediction, "measurement": measurement}
