"""The MLP block of a layer under TP, DP attention and EP: its time and its communication.

Tokens reach the MLP block in one of three ways (see :class:`~memsim.inference.deployment.Setup`):

- one attention replica per stage (D = 1): the W = tp GPUs hold the same tokens and split
  every matrix W ways; one all-reduce of the output (Megatron-LM, arXiv 1909.08053 §3);
- DP attention (D > 1): the tokens of the D replicas are all-gathered, the MLP runs
  tensor-parallel over the W GPUs, and a reduce-scatter returns each replica its tokens
  (SGLang's DP attention for DeepSeek, lmsys.org/blog/2024-12-04-sglang-v0-4);
- expert parallelism (ep = W): every GPU holds ⌈X/W⌉ whole routed experts; each token is
  dispatched to its top-k experts and combined back by two all-to-alls (DeepSeek-V3 report
  arXiv 2412.19437 §3.4), while the shared experts run on the replica's own tokens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memsim.cost import Cost
from memsim.inference.comm import all_gather_s, all_reduce_s, moe_a2a_s
from memsim.inference.deployment import Setup
from memsim.inference.operators import (
    GEMM_TILE,
    _elementwise,
    _gemm,
    _time_s,
    linear_s,
    touched_experts,
)
from memsim.models import LayerGroup
from memsim.ops import DEFAULT_BACKEND
from memsim.units import dtype_bytes


def mlp_block_s(setup: Setup, g: LayerGroup, rank_tokens: Any, stage_tokens: Any,
                w_b: float, a_b: float, dtype: str, phase: str = "decode") -> dict[str, Any]:
    """Seconds by operator of one layer's MLP block on one GPU.

    ``rank_tokens``: tokens of the busiest attention replica this step; ``stage_tokens``:
    tokens of the whole stage (arrays; equal without DP attention); ``phase``: "prefill" or
    "decode" (which EP dispatch kernels run). Keys: ``mlp`` and the communication it needs
    (``all_reduce``, ``all_gather``, ``all_to_all``).
    """
    h, gpu, W, D = setup.model.hidden_size, setup.gpu, setup.stage_gpus, setup.attention_dp
    act = h * a_b
    if g.mlp.is_moe and setup.ep > 1:
        return _expert_parallel_s(setup, g, rank_tokens, stage_tokens, w_b, a_b, dtype,
                                  phase)
    tokens = stage_tokens  # gathered from the D replicas under DP attention
    out = {"mlp": _tensor_parallel_mlp_s(setup, g, tokens, W, w_b, a_b, dtype)}
    if D > 1:  # all-gather in, reduce-scatter out: each returns the stage's tokens
        out["all_gather"] = 2 * all_gather_s(tokens * act, W, gpu, setup.backend)
    elif W > 1:
        out["all_reduce"] = all_reduce_s(tokens * act, W, gpu, setup.backend)
    return out


def _tensor_parallel_mlp_s(setup: Setup, g: LayerGroup, T: Any, ways: int, w_b: float,
                           a_b: float, dtype: str) -> Any:
    """Every matrix split ``ways`` ways, ``T`` tokens: dense MLP or router + experts."""
    h, mlp, gpu = setup.model.hidden_size, g.mlp, setup.gpu
    if not mlp.is_moe:
        return _dense_s(setup, T, mlp.intermediate, mlp.gated, ways, w_b, a_b, dtype)
    if _ops_moe(mlp, dtype, ways, 1):
        return (_ops_moe_s(setup, mlp, T, dtype, tp=ways, ep=1)
                + _shared_and_router_s(setup, mlp, T, ways, w_b, a_b, dtype))
    # MoE: router, then the experts the step's tokens touch (weights of those read once),
    # top-k experts' FLOPs per token, plus the always-on shared experts.
    expert = mlp.expert_params(h) / ways
    touched = touched_experts(mlp.experts, mlp.experts_per_token, T)
    shared = mlp.shared_params(h) / ways
    experts = _experts_cost(T, T * mlp.experts_per_token, touched * expert + shared,
                            mlp.experts_per_token * expert + shared, h, a_b, w_b,
                            mlp.intermediate)
    router = _gemm(T, mlp.router_params(h), h, mlp.experts, w_b, a_b)
    return _time_s(router, gpu, dtype) + _time_s(experts, gpu, dtype)


def _experts_cost(T: Any, routed_tokens: Any, read_params: Any, flop_params_per_token: Any,
                  h: int, a_b: float, w_b: float, intermediate: int) -> Cost:
    """Grouped expert GEMMs: weights of the touched experts read once, each routed token's
    activation read and written once."""
    read = read_params * w_b + (T + routed_tokens) * h * a_b
    write = (T + routed_tokens) * h * a_b
    return Cost(matmul_flops=2.0 * T * flop_params_per_token, global_read_bytes=read,
                global_write_bytes=write, hbm_read_bytes=read, hbm_write_bytes=write,
                launches=2.0, blocks=np.ceil(np.maximum(routed_tokens, 1) / GEMM_TILE)
                * math.ceil(intermediate / GEMM_TILE))


def _expert_parallel_s(setup: Setup, g: LayerGroup, rank_tokens: Any, stage_tokens: Any,
                       w_b: float, a_b: float, dtype: str, phase: str) -> dict[str, Any]:
    """MoE layer under EP over the W GPUs of a stage (balanced routing assumed: each GPU
    receives the stage's tokens × k / W; DeepSeek balances with redundant experts, §3.4)."""
    h, mlp, gpu, W, T = (setup.model.hidden_size, g.mlp, setup.gpu, setup.stage_gpus,
                         setup.tp)
    X, k = mlp.experts, mlp.experts_per_token
    local = math.ceil(X / W)
    # a given expert is hit by a token with probability k/X
    touched = local * (1.0 - (1.0 - k / X) ** np.asarray(stage_tokens, dtype=float))
    received = stage_tokens * k / W
    expert = mlp.expert_params(h)
    routed = _experts_cost(received / k, received, touched * expert, k * expert, h, a_b, w_b,
                           mlp.intermediate)
    if _ops_moe(mlp, dtype, 1, W):  # the busiest rank's grouped GEMM (memsim.ops.moe)
        out = {"mlp": _ops_moe_s(setup, mlp, stage_tokens, dtype, tp=1, ep=W)
               + _shared_and_router_s(setup, mlp, rank_tokens, T, w_b, a_b, dtype)}
    else:
        out = {"mlp": _time_s(routed, gpu, dtype)
               + _time_s(_gemm(rank_tokens, mlp.router_params(h), h, X, w_b, a_b), gpu,
                         dtype)}
        if mlp.shared_experts:
            shared = _gemm(rank_tokens, mlp.shared_params(h) / T, h, h, w_b, a_b)
            out["mlp"] = out["mlp"] + _time_s(shared, gpu, dtype)
    if mlp.shared_experts and T > 1:
        out["all_reduce"] = all_reduce_s(rank_tokens * h * a_b, T, gpu, setup.backend)
    # dispatch and combine of the tokens this GPU holds (1/T of its replica's) by DeepEP's
    # kernels: the normal ones in prefill, the low-latency ones in decode (as TensorRT-LLM,
    # vLLM and SGLang configure them; aiconfigurator's MOE_A2A_BACKENDS). The normal
    # dispatch runs eagerly (its host waits for the receive counts: "not compatible with
    # CUDA graph", DeepEP docs/legacy.md); the low-latency calls run inside the decode's
    # CUDA graph, with no host work to hide behind (memsim.ops.comm.moe_all_to_all)
    mode = "normal" if phase == "prefill" else "low_latency"
    a2a = {"hidden": h, "top_k": k, "experts": X, "ep": W, "mode": mode, "gpu": gpu,
           "backend": setup.backend, "groups": mlp.expert_groups,
           "topk_groups": mlp.expert_groups_per_token, "eager": mode == "normal"}
    rank_share = rank_tokens / T
    out["all_to_all"] = (
        moe_a2a_s(rank_share, phase="dispatch", dtype=_dispatch_dtype(setup, mode), **a2a)
        + moe_a2a_s(rank_share, phase="combine", dtype="bf16", **a2a))
    return out


def _dispatch_dtype(setup: Setup, mode: str) -> str:
    """The dispatch's wire format: with fp8 weights the activations are quantised before
    dispatch (fp8 + one fp32 scale per 128, DeepSeek-V3 report §3.3.2; DeepEP's fp8
    dispatch), except TensorRT-LLM's normal (HT) path, which sends fp8 models' activations
    in bf16 (aiconfigurator sdk/operations/moe_comm.py ``communication_dtype_for``: "TRT-LLM
    HT communicates FP8-model activations as BF16, while LL communicates them as FP8")."""
    if setup.weight_dtype != "fp8" or setup.act_dtype not in ("bf16", "fp16"):
        return setup.act_dtype if setup.act_dtype in ("bf16", "fp16") else "bf16"
    if mode == "normal" and (setup.backend or DEFAULT_BACKEND) == "trtllm":
        return "bf16"
    return "fp8"




# ---- through memsim.ops (the backend's fitted kernel classes) ----------------------------


def _dense_s(setup: Setup, T: Any, inter: int, gated: bool, ways: int, w_b: float,
             a_b: float, dtype: str) -> Any:
    """A dense MLP split ``ways`` ways: the fused gate+up GEMM (h → (2·)inter/ways), the
    activation kernel (SiLU(gate)·up: reads 2·inter/ways, writes inter/ways per token, a
    kernel of its own in TensorRT-LLM and vLLM), then down (inter/ways → h); the GEMMs
    through :func:`~memsim.inference.operators.linear_s`."""
    h = setup.model.hidden_size
    up = (2 if gated else 1) * inter / ways
    act = activation_s(setup, T, inter / ways) if gated else 0.0
    return (linear_s(setup, T, h, up, w_b, a_b, dtype) + act
            + linear_s(setup, T, inter / ways, h, w_b, a_b, dtype))


def activation_s(setup: Setup, T: Any, width: float) -> Any:
    """Seconds of the gated activation kernel SiLU(gate)·up on ``T`` tokens of ``width``
    outputs: reads 2·width, writes width per token, ~4 FLOPs per element (exp, add,
    divide, multiply)."""
    a_b = dtype_bytes(setup.act_dtype)
    return _time_s(_elementwise(T, width, a_b, 4.0), setup.gpu, setup.act_dtype)


def _ops_moe(mlp: Any, dtype: str, tp: int, ep: int) -> bool:
    """Whether :func:`memsim.ops.moe.predict` models this layer (its dtype and sharding)."""
    from memsim.ops.moe import MOE_DTYPES

    return (dtype in MOE_DTYPES and mlp.intermediate % tp == 0 and mlp.experts % ep == 0
            and mlp.experts_per_token <= mlp.experts)


def _ops_moe_s(setup: Setup, mlp: Any, tokens: Any, dtype: str, tp: int, ep: int) -> Any:
    """Routed experts on the busiest GPU: routing + grouped GEMM (balanced routing)."""
    from memsim.ops.moe import predict

    T = np.asarray(tokens, dtype=float)
    t = predict(np.maximum(T, 1.0), setup.model.hidden_size, mlp.intermediate, mlp.experts,
                mlp.experts_per_token, tp=tp, ep=ep, dtype=_expert_dtype(dtype), gpu=setup.gpu,
                backend=setup.backend, gated=mlp.gated).time_s
    return np.where(T > 0, t, 0.0)


def _shared_and_router_s(setup: Setup, mlp: Any, T: Any, ways: int, w_b: float, a_b: float,
                         dtype: str) -> Any:
    """The router GEMM (h → experts, not split; kept at the activations' precision, as
    DeepSeek-V3's fp8 recipe keeps the gating module in BF16/FP32, arXiv 2412.19437 §3.3.1)
    and the shared experts split ``ways`` ways."""
    h = setup.model.hidden_size
    out = linear_s(setup, T, h, mlp.experts, a_b, a_b, setup.act_dtype)
    if mlp.shared_experts:
        inter = mlp.shared_intermediate or mlp.intermediate * mlp.shared_experts
        out = out + _dense_s(setup, T, inter, mlp.gated, ways, w_b, a_b, _expert_dtype(dtype))
    return out


def _expert_dtype(dtype: str) -> str:
    """fp8 experts are block-scaled (1x128 activations, 128x128 weights: DeepSeek-V3 report
    §3.3.2, the fp8 MoE checkpoints TensorRT-LLM and vLLM serve): the fp8_block kernels."""
    return "fp8_block" if dtype == "fp8" else dtype
