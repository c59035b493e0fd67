"""Whole-model inference: per-layer operators, VRAM, prefill and decode time, tensor
parallelism, $ per million tokens and the cost curve by token position.

Every layer's operators go through the one roofline (:mod:`memsim.roofline`); the attention
operator's FLOPs, bytes and workspace come from the attention algorithms
(:mod:`memsim.algorithms`), never from a formula here. Context ``L`` and batch ``B`` may be
numpy arrays (broadcast together): one call evaluates a whole grid (``memsim sweep``).

Conventions
-----------
- Prefill processes ``B`` sequences of ``L`` tokens (N = S = L). Decode produces the next
  token at position ``L`` for each of ``B`` sequences: N = 1 query against S = L + 1 keys.
- Under tensor parallelism over G GPUs (Megatron-LM, Shoeybi et al. arXiv 1909.08053 §3)
  weights, query heads and KV heads are split G ways; a model with fewer KV heads than G
  keeps one KV head per GPU, and an MLA latent is replicated on every GPU. Every number in
  the VRAM breakdown is *per GPU*; time is the wall time of the G GPUs working together.
- Linear layers cost 2 FLOPs per weight per token (Kaplan et al. arXiv 2001.08361 Table 1)
  and read their weights once per step plus their input and output activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.cost import Cost
from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.models import Attention, LayerGroup, ModelConfig
from memsim.problem import AttentionProblem, Mask
from memsim.units import SECONDS_PER_HOUR, TOKENS_PER_MILLION, dtype_bytes

ATTENTION_CHOICES = ("auto", "standard", "standard_blockskip", "flash1", "flash2", "flash_decode",
                     "dsa")
TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
COMPUTE_DTYPES = ("fp32", "fp16", "bf16", "fp8")
# vLLM's default gpu_memory_utilization = 0.9 leaves 10 % of HBM to the CUDA context, NCCL
# buffers and allocator fragmentation (docs.vllm.ai, EngineArgs).
DEFAULT_RESERVE_FRACTION = 0.10
GEMM_TILE = 128  # CUTLASS default threadblock tile 128×128: blocks of a GEMM for the roofline


# ---- the $ algebra ----------------------------------------------------------------------


def usd_per_million_tokens(time_s: Any, tokens: Any, gpus: Any, usd_per_gpu_hour: Any) -> Any:
    """$ per 10⁶ tokens = time × GPUs × ($ per GPU-hour / 3600 s) / tokens × 10⁶."""
    return time_s * gpus * (usd_per_gpu_hour / SECONDS_PER_HOUR) / tokens * TOKENS_PER_MILLION


# ---- set-up -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What is served and how: model, GPU, TP degree, attention algorithm, dtypes, price.

    ``all_global`` treats every windowed or chunked layer as global (what a calculator that
    ignores the layer pattern predicts); ``prefill_chunk`` runs prefill in chunks of that many
    tokens (chunked prefill: smaller activations, weights re-read per chunk).
    """

    model: ModelConfig
    gpu: GPU
    tp: int = 1
    attention: str = "auto"
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    usd_per_gpu_hour: float | None = None
    prefill_chunk: int | None = None
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION
    all_global: bool = False

    def __post_init__(self) -> None:
        _positive_int("tp", self.tp)
        if self.attention not in ATTENTION_CHOICES:
            from memsim.errors import closest

            raise InputError("attention", self.attention, "must be one of "
                             + ", ".join(ATTENTION_CHOICES)
                             + closest(self.attention, ATTENTION_CHOICES))
        for name in ("weight_dtype", "kv_dtype", "act_dtype"):
            try:
                dtype_bytes(getattr(self, name))
            except InputError as exc:
                raise InputError(name, exc.value, exc.rule) from None
        for name in ("kv_dtype", "act_dtype"):  # these feed tensor-core matmuls
            if getattr(self, name) not in COMPUTE_DTYPES:
                raise InputError(name, getattr(self, name),
                                 f"must be one of {', '.join(COMPUTE_DTYPES)}")
        if self.usd_per_gpu_hour is not None and not self.usd_per_gpu_hour > 0:
            raise InputError("price", self.usd_per_gpu_hour, "must be > 0 $ per GPU-hour")
        if self.prefill_chunk is not None:
            _positive_int("prefill_chunk", self.prefill_chunk)
        if not 0 <= self.reserve_fraction < 1:
            raise InputError("reserve_fraction", self.reserve_fraction, "must be in [0, 1)")
        for g in self.model.groups:
            if g.attention.heads % self.tp:
                raise InputError("tp", self.tp, f"must divide the query heads "
                                 f"({g.attention.heads}) of {self.model.name}")

    @property
    def price(self) -> float:
        """$ per GPU-hour: the override, else the profile's price."""
        return self.usd_per_gpu_hour or self.gpu.price.usd_per_gpu_hour

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        if not self.all_global:
            return self.model.groups
        out = []
        for g in self.model.groups:
            mask = g.attention.mask
            if mask.window is not None or mask.chunk is not None:
                mask = Mask(causal=mask.causal)
            out.append(replace(g, attention=replace(g.attention, mask=mask)))
        return tuple(out)

    def with_tp(self, tp: int) -> Setup:
        return replace(self, tp=tp)


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise InputError(field, value, "must be a positive integer")


def _positive_array(field: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or np.any(arr <= 0):
        raise InputError(field, value if arr.ndim == 0 else arr.tolist(),
                         "must be a positive integer")
    return arr.astype(np.int64)


# ---- operators --------------------------------------------------------------------------


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
                launches=1.0, blocks=np.ceil(tokens * width / (256 * 8)))


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


# ---- attention through the foundation's algorithms ------------------------------------


@dataclass(frozen=True)
class _AttnCall:
    """One layer group's attention as the algorithms see it (per GPU)."""

    algorithm: str
    problem: AttentionProblem  # B = N = S = 1 template; the real sizes are passed as arrays


def _attention_call(setup: Setup, attn: Attention, phase: str) -> _AttnCall:
    """Algorithm and per-GPU problem for one layer group in ``phase`` ('prefill'|'decode').

    MLA: decode runs in the absorbed MQA mode (one latent of 576 shared by all heads, V the
    first 512 elements: DeepSeek-V2 §2.1.2 "absorb W^UK into W^UQ"); prefill runs in MHA
    mode on decompressed K, V (D = 192, Dv = 128), as DeepSeek's kernels do for prefill
    (V3.2-Exp report §2.3). DSA layers always run in MQA mode with the top-k mask and the
    lightning indexer (V3.2-Exp report §1). A dense algorithm chosen for a DSA model runs
    its layers densely (what V3.1-Terminus does).
    """
    G = setup.tp
    mask = attn.mask
    sparse = mask.top_k is not None
    choice = setup.attention
    if sparse and choice in ("auto", "dsa"):
        algorithm = "dsa"
    else:
        if sparse:
            mask = Mask(causal=mask.causal)
        if choice in ("auto", "dsa"):
            algorithm = "flash2" if phase == "prefill" else "flash_decode"
        elif choice == "flash_decode" and phase == "prefill":
            algorithm = "flash2"  # split-KV is a decode kernel; prefill runs FA-2
        else:
            algorithm = choice
    H = attn.heads // G
    dtype = setup.kv_dtype
    if attn.mla is not None:
        m = attn.mla
        if algorithm != "dsa" and phase == "prefill":
            problem = AttentionProblem(batch=1, seq_len=1, heads=H, kv_heads=H,
                                       head_dim=m.qk_nope_head_dim + m.qk_rope_head_dim,
                                       head_dim_v=m.v_head_dim, dtype=dtype, mask=mask)
        else:
            problem = AttentionProblem(batch=1, seq_len=1, heads=H, kv_heads=1,
                                       head_dim=m.kv_lora_rank + m.qk_rope_head_dim,
                                       head_dim_v=m.kv_lora_rank, dtype=dtype, mla=True,
                                       mask=mask,
                                       indexer=attn.indexer if algorithm == "dsa" else None)
    else:
        K = max(1, attn.kv_heads // G)
        problem = AttentionProblem(batch=1, seq_len=1, heads=H, kv_heads=K,
                                   head_dim=attn.head_dim, head_dim_v=attn.head_dim_v,
                                   dtype=dtype, mask=mask)
    return _AttnCall(algorithm, problem)


_TILINGS: dict[tuple[str, AttentionProblem, str], Any] = {}


def _tiling(call: _AttnCall, gpu: GPU) -> Any:
    """The foundation's default Tiling for the call's (B = N = S = 1) template problem.

    Tiles do not depend on B, N, S for these kernels (FA-2 launch templates); only
    flash_decode's split count does, and :func:`attention_cost` sets it per element.
    """
    key = (call.algorithm, call.problem, gpu.name)
    if key not in _TILINGS:
        from memsim.tiling import default_tiling

        _TILINGS[key] = default_tiling(call.problem, gpu, call.algorithm)
    return _TILINGS[key]


def attention_cost(call: _AttnCall, gpu: GPU, B: Any, N: Any, S: Any) -> tuple[Cost, int]:
    """The algorithm's Cost at batch B, N queries, S keys (arrays), and blocks per SM.

    Through :func:`memsim.attention.costs_for`: the call's template Tiling, with the
    decoding split count chosen per element, and HBM bytes from the closed-form L2 reuse
    estimate (K/V tiles re-read by the blocks of one head group are served by L2), the
    best single number for whole-model time; the trace-driven model checks it.
    """
    from memsim.attention import costs_for

    tiling = _tiling(call, gpu)
    cost, _ = costs_for(call.problem, gpu, call.algorithm, B=B, N=N, S=S, tiling=tiling,
                        l2_estimate=True)
    return cost, tiling.blocks_per_sm(gpu)


# ---- one phase: the operators of every layer -----------------------------------------


@dataclass
class Phase:
    """Time of one phase by operator (seconds, arrays) and its attention workspace."""

    operators_s: dict[str, Any]
    workspace_bytes: Any

    @property
    def time_s(self) -> Any:
        return sum(self.operators_s.values())


def _time_s(cost: Cost, gpu: GPU, dtype: str, blocks_per_sm: Any = None) -> Any:
    """Seconds from the one roofline (memsim.roofline); no wave model for plain GEMMs."""
    from memsim.roofline import roofline

    return roofline(cost, gpu, dtype, blocks_per_sm=blocks_per_sm).time_s


def _phase(setup: Setup, phase: str, B: Any, N: Any, S: Any) -> Phase:
    """Every operator of the model for B sequences of N new tokens against S keys."""
    m, gpu, G = setup.model, setup.gpu, setup.tp
    h = m.hidden_size
    w_b, a_b = dtype_bytes(setup.weight_dtype), dtype_bytes(setup.act_dtype)
    gemm_dtype = "fp8" if setup.weight_dtype == "fp8" else setup.act_dtype
    T = B * N  # tokens this step
    ops: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        ops[name] = ops.get(name, 0.0) + value

    workspace = np.zeros(np.shape(T))
    for g in setup.groups:
        a, c = g.attention, g.count
        o_params = a.heads * (a.mla.v_head_dim if a.mla else a.head_dim_v) * h
        in_params = a.weight_params(h) - o_params
        add("qkv_proj", c * _time_s(_gemm(T, in_params / G, h, in_params / (G * h), w_b, a_b),
                                   gpu, gemm_dtype))
        call = _attention_call(setup, a, phase)
        cost, per_sm = attention_cost(call, gpu, B, N, S)
        add("attention", c * _time_s(cost, gpu, setup.kv_dtype, per_sm))
        workspace = np.maximum(workspace, cost.workspace_bytes)
        add("o_proj", c * _time_s(_gemm(T, o_params / G, o_params / (G * h), h, w_b, a_b),
                                 gpu, gemm_dtype))
        add("mlp", c * _mlp_time_s(setup, g, T, w_b, a_b, gemm_dtype))
        # RMSNorm/LayerNorm + residual add: ~5 FLOPs per element (square, sum, scale, add)
        norm = _elementwise(T, h, a_b, 5.0)
        add("norms", c * m.norms_per_layer * _time_s(norm, gpu, setup.act_dtype))
        if G > 1:  # two all-reduces per layer: after o_proj and after the MLP (Megatron §3)
            add("all_reduce", c * 2 * all_reduce_time_s(T * h * a_b, G, gpu))
    # embedding gather: read one row of weights and write one activation per token
    emb = Cost(global_read_bytes=T * h * w_b, global_write_bytes=T * h * a_b,
               hbm_read_bytes=T * h * w_b, hbm_write_bytes=T * h * a_b, launches=1.0,
               blocks=np.ceil(T * h / 2048))
    add("embedding", _time_s(emb, gpu, setup.act_dtype))
    # LM head: decoders need the logits of the last token of each sequence only
    head_tokens = B if m.decoder else T
    add("lm_head", _time_s(_gemm(head_tokens, m.vocab_size * h / G, h, m.vocab_size / G,
                                 w_b, a_b), gpu, gemm_dtype))
    return Phase({k: np.asarray(v, dtype=float) for k, v in ops.items()}, workspace)


def _mlp_time_s(setup: Setup, g: LayerGroup, T: Any, w_b: float, a_b: float,
                dtype: str) -> Any:
    h, G, mlp, gpu = setup.model.hidden_size, setup.tp, g.mlp, setup.gpu
    if not mlp.is_moe:
        p = mlp.expert_params(h) / G
        return _time_s(_gemm(T, p, h, h, w_b, a_b), gpu, dtype)
    # MoE: router, then the experts the step's tokens touch (weights of those read once),
    # top-k experts' FLOPs per token, plus the always-on shared experts.
    expert = mlp.expert_params(h) / G
    touched = touched_experts(mlp.experts, mlp.experts_per_token, T)
    flops_params = mlp.experts_per_token * expert + mlp.shared_params(h) / G
    read = (touched * expert + mlp.shared_params(h) / G) * w_b \
        + T * h * a_b * (1 + mlp.experts_per_token)
    write = T * h * a_b * (1 + mlp.experts_per_token)
    experts = Cost(matmul_flops=2.0 * T * flops_params, global_read_bytes=read,
                   global_write_bytes=write, hbm_read_bytes=read, hbm_write_bytes=write,
                   launches=2.0, blocks=np.ceil(T * mlp.experts_per_token / GEMM_TILE)
                   * math.ceil(mlp.intermediate / GEMM_TILE))
    router = _gemm(T, mlp.router_params(h), h, mlp.experts, w_b, a_b)
    return _time_s(router, gpu, dtype) + _time_s(experts, gpu, dtype)


# ---- VRAM -------------------------------------------------------------------------------


def _kv_share(setup: Setup, attn: Attention) -> float:
    """Fraction of a layer's KV cache one GPU holds under TP."""
    if attn.mla is not None:
        return 1.0  # the latent is shared by all heads: replicated on every GPU
    return math.ceil(attn.kv_heads / setup.tp) / attn.kv_heads


def kv_cache_bytes(setup: Setup, context: Any, batch: Any) -> dict[str, Any]:
    """KV cache per GPU by layer kind (bytes); windowed and chunked layers are capped."""
    out: dict[str, Any] = {}
    if not setup.model.decoder:
        return out
    ctx = np.asarray(context)
    for g in setup.groups:
        a = g.attention
        tokens = np.minimum(ctx, a.mask.window or a.mask.chunk or ctx)
        b = g.count * batch * tokens * a.kv_bytes_per_token(setup.kv_dtype) * _kv_share(setup, a)
        kind = g.kind.replace(" moe", "")
        out[kind] = out.get(kind, 0.0) + b
    return out


def activation_bytes(setup: Setup, tokens: Any, batch: Any) -> Any:
    """Peak activations of a prefill step of ``tokens`` tokens, per GPU (bytes).

    Inference keeps only one layer's tensors alive (the inference subset of Korthikanti et al.
    arXiv 2205.05198 §4.1): the residual stream and its normalised copy (2·T·h) plus the
    widest transient of any layer — the QKV output, or the MLP's gate + up intermediate (MoE:
    for each of the top-k experts and the shared experts) — and the fp32 logits of the last
    token of each of the ``batch`` sequences.
    """
    m, G = setup.model, setup.tp
    h = m.hidden_size
    widest = 0.0
    for g in setup.groups:
        a, mlp = g.attention, g.mlp
        if a.mla is not None:  # MHA-mode prefill: q, decompressed k (nope + rope) and v
            qk = a.mla.qk_nope_head_dim + a.mla.qk_rope_head_dim
            qkv = a.heads / G * (2 * qk + a.mla.v_head_dim)
        else:
            qkv = a.heads / G * a.head_dim + math.ceil(a.kv_heads / G) * (a.head_dim
                                                                          + a.head_dim_v)
        inter = (2 if mlp.gated else 1) * mlp.intermediate / G * (
            max(1, mlp.experts_per_token) + mlp.shared_experts)
        widest = max(widest, qkv, inter)
    logits = batch * m.vocab_size / G * dtype_bytes("fp32")
    return tokens * (2 * h + widest) * dtype_bytes(setup.act_dtype) + logits


def vram(setup: Setup, context: Any, batch: Any, workspace_bytes: Any) -> dict[str, Any]:
    """Per-GPU VRAM breakdown; ``total_bytes`` is exactly the sum of the parts."""
    weights = setup.model.weights_bytes(setup.weight_dtype) / setup.tp
    by_kind = kv_cache_bytes(setup, context, batch)
    kv = sum(by_kind.values()) if by_kind else np.zeros(np.shape(context))
    step_tokens = np.minimum(context, setup.prefill_chunk or context)
    act = activation_bytes(setup, batch * step_tokens, batch)
    capacity = float(setup.gpu.spec.hbm_bytes)
    reserve = setup.reserve_fraction * capacity
    total = weights + kv + act + workspace_bytes + reserve
    return {
        "weights_bytes": weights + 0 * total,
        "kv_cache_bytes": kv + 0 * total,
        "activation_bytes": act + 0 * total,
        "workspace_bytes": workspace_bytes + 0 * total,
        "reserve_bytes": reserve + 0 * total,
        "total_bytes": total,
        "capacity_bytes": capacity + 0 * total,
        "fits": total <= capacity,
        "shortfall_bytes": np.maximum(total - capacity, 0.0),
        "kv_cache_by_layer_kind": by_kind,
    }


# ---- phases with chunked prefill --------------------------------------------------------


def prefill_phase(setup: Setup, context: Any, batch: Any) -> Phase:
    """Prefill of ``batch`` sequences of ``context`` tokens (chunked if set up so)."""
    C = setup.prefill_chunk
    ctx = np.asarray(context)
    if C is None or np.all(ctx <= C):
        return _phase(setup, "prefill", batch, ctx, ctx)
    # chunk i: N = min(C, L − iC) new tokens against S = min((i+1)C, L) keys
    ctx_b, batch_b = np.broadcast_arrays(ctx, np.asarray(batch))
    n_chunks = int(np.max(-(-ctx_b // C)))
    i = np.arange(n_chunks).reshape((-1,) + (1,) * ctx_b.ndim)
    S = np.minimum((i + 1) * C, ctx_b)
    N = np.maximum(S - i * C, 0)
    live = N > 0
    N_safe, S_safe = np.where(live, N, 1), np.where(live, S, 1)
    ph = _phase(setup, "prefill", batch_b, N_safe, S_safe)
    ops = {k: np.sum(np.where(live, v, 0.0), axis=0) for k, v in ph.operators_s.items()}
    return Phase(ops, np.max(np.where(live, ph.workspace_bytes, 0.0), axis=0))


def decode_phase(setup: Setup, context: Any, batch: Any) -> Phase | None:
    """One decode step at position ``context`` for ``batch`` sequences (None for encoders)."""
    if not setup.model.decoder:
        return None
    ctx = np.asarray(context)
    return _phase(setup, "decode", batch, np.ones_like(ctx), ctx + 1)


# ---- predictions ------------------------------------------------------------------------


def _dominant(operators_s: dict[str, Any], top: int = 3) -> list[dict[str, float]]:
    total = sum(float(v) for v in operators_s.values()) or 1.0
    ranked = sorted(operators_s.items(), key=lambda kv: -float(kv[1]))[:top]
    return [{"operator": k, "time_s": float(v), "share": float(v) / total} for k, v in ranked]


def min_gpus_to_fit(setup: Setup, context: Any, batch: Any) -> Any:
    """Smallest TP degree in :data:`TP_CANDIDATES` that fits (arrays: per element; 0 = none)."""
    best = np.zeros(np.broadcast(np.asarray(context), np.asarray(batch)).shape, dtype=np.int64)
    for G in TP_CANDIDATES:
        if any(g.attention.heads % G for g in setup.model.groups):
            continue
        s = setup.with_tp(G)
        fits = vram(s, context, batch, prefill_phase(s, context, batch).workspace_bytes)["fits"]
        best = np.where((best == 0) & fits, G, best)
        if np.all(best > 0):
            break
    return best


def predict_arrays(setup: Setup, context: Any, batch: Any,
                   with_min_gpus: bool = True) -> dict[str, Any]:
    """Vectorised prediction: every value an array over the broadcast (context, batch)."""
    ctx = _positive_array("context", context)
    B = _positive_array("batch", batch)
    ctx, B = np.broadcast_arrays(ctx, B)
    pre = prefill_phase(setup, ctx, B)
    dec = decode_phase(setup, ctx, B)
    v = vram(setup, ctx, B, pre.workspace_bytes)
    if with_min_gpus:
        v["min_gpus_to_fit"] = min_gpus_to_fit(setup, ctx, B)
    G, price = setup.tp, setup.price
    out: dict[str, Any] = {"vram": v}
    pre_t = pre.time_s
    out["prefill"] = {"time_s": pre_t, "tokens_per_s": B * ctx / pre_t,
                      "usd_per_million_tokens": usd_per_million_tokens(pre_t, B * ctx, G, price),
                      "operators_s": pre.operators_s}
    if dec is not None:
        step = dec.time_s
        out["decode"] = {"time_per_token_s": step, "tokens_per_s": B / step,
                         "usd_per_million_tokens": usd_per_million_tokens(step, B, G, price),
                         "operators_s": dec.operators_s}
    else:
        out["decode"] = None
    return out


def warnings_for(setup: Setup, context: int) -> list[str]:
    """Warnings (not errors): context beyond the trained length."""
    limit = setup.model.max_position_embeddings
    if context > limit:
        return [f"context={context} exceeds the model's max_position_embeddings={limit}; "
                "quality beyond the trained length is not modelled"]
    return []


def predict(setup: Setup, context: int, batch: int = 1) -> dict[str, Any]:
    """One prediction as a JSON-able dict (the ``memsim predict --json`` contract)."""
    _positive_int("context", context)
    _positive_int("batch", batch)
    r = predict_arrays(setup, context, batch)
    v = r["vram"]
    best = int(v["min_gpus_to_fit"])
    vram_out = {k: _scalar(val) for k, val in v.items() if k != "kv_cache_by_layer_kind"}
    vram_out["fits"] = bool(v["fits"])
    vram_out["min_gpus_to_fit"] = best or None
    vram_out["kv_cache_by_layer_kind"] = {k: float(x) for k, x in
                                          v["kv_cache_by_layer_kind"].items()}
    vram_out["per_gpu"] = True
    p = r["prefill"]
    out: dict[str, Any] = {
        "model": setup.model.name, "gpu": setup.gpu.name, "context": context, "batch": batch,
        "tp": setup.tp, "attention": setup.attention, "weight_dtype": setup.weight_dtype,
        "kv_dtype": setup.kv_dtype, "usd_per_gpu_hour": setup.price,
        "all_global": setup.all_global, "prefill_chunk": setup.prefill_chunk,
        "vram": vram_out,
        "prefill": {"time_s": _scalar(p["time_s"]), "tokens": context * batch,
                    "tokens_per_s": _scalar(p["tokens_per_s"]),
                    "usd_per_million_tokens": _scalar(p["usd_per_million_tokens"]),
                    "operators_s": {k: _scalar(x) for k, x in p["operators_s"].items()},
                    "dominant": _dominant(p["operators_s"])},
    }
    d = r["decode"]
    if d is None:
        out["decode"] = {"time_per_token_s": None, "tokens_per_s": None,
                         "usd_per_million_tokens": None, "operators_s": {}, "dominant": [],
                         "note": "encoder model: no autoregressive decode"}
    else:
        out["decode"] = {"time_per_token_s": _scalar(d["time_per_token_s"]),
                         "position": context,
                         "tokens_per_s": _scalar(d["tokens_per_s"]),
                         "usd_per_million_tokens": _scalar(d["usd_per_million_tokens"]),
                         "operators_s": {k: _scalar(x) for k, x in d["operators_s"].items()},
                         "dominant": _dominant(d["operators_s"])}
    out["warnings"] = warnings_for(setup, context)
    out["takeaway"] = takeaway(out)
    return out


def _scalar(x: Any) -> Any:
    a = np.asarray(x)
    if a.dtype == bool:
        return bool(a)
    return float(a)


def takeaway(pred: dict[str, Any]) -> str:
    """One sentence: does it fit, what the memory is, what dominates."""
    v = pred["vram"]
    gib = 2**30
    if v["fits"]:
        fit = f"fits on {pred['tp']} × {pred['gpu']} ({v['total_bytes'] / gib:.1f} of " \
              f"{v['capacity_bytes'] / gib:.1f} GiB per GPU"
    else:
        need = v["min_gpus_to_fit"]
        fit = (f"does not fit on {pred['tp']} × {pred['gpu']}: short by "
               f"{v['shortfall_bytes'] / gib:.1f} GiB per GPU"
               + (f", needs {need} GPUs" if need else ", not even on 64 GPUs")
               + f" ({v['total_bytes'] / gib:.1f} GiB per GPU")
    kv_share = v["kv_cache_bytes"] / v["total_bytes"]
    pre = pred["prefill"]["dominant"][0]["operator"]
    text = f"{fit}, KV cache {kv_share:.0%}); prefill is dominated by {pre}"
    if pred["decode"]["dominant"]:
        text += f", decode by {pred['decode']['dominant'][0]['operator']}"
    return text + "."


# ---- cost curve -------------------------------------------------------------------------


def cost_curve(setup: Setup, max_context: int, points: int = 32, batch: int = 1,
               chunk: int = 2048) -> list[dict[str, float]]:
    """Marginal $ per million tokens of the token at position p, for prefill and decode.

    Prefill: the cost per token of prefilling the ``chunk`` tokens that end at position p
    (N = min(chunk, p) queries against S = p keys, B sequences). Decode: one decode step at
    position p, per token of the batch. Positions are spaced evenly up to ``max_context``.
    This is the curve DeepSeek published for V3.2-Exp against V3.1-Terminus (report Fig. 3).
    """
    _positive_int("max_context", max_context)
    _positive_int("points", points)
    _positive_int("batch", batch)
    p = np.unique(np.linspace(max_context / points, max_context, points).round().astype(int))
    p = np.maximum(p, 1)
    N = np.minimum(p, chunk)
    pre = _phase(setup, "prefill", batch, N, p).time_s
    pre_usd = usd_per_million_tokens(pre, batch * N, setup.tp, setup.price)
    dec = decode_phase(setup, p - 1, batch)
    dec_usd = (usd_per_million_tokens(dec.time_s, batch, setup.tp, setup.price)
               if dec is not None else None)
    return [{"position": int(pi), "prefill_usd_per_million_tokens": float(pre_usd[i]),
             "decode_usd_per_million_tokens": None if dec_usd is None else float(dec_usd[i])}
            for i, pi in enumerate(p)]


# ---- sweeps -----------------------------------------------------------------------------


SWEEP_FIELDS = ("model", "gpu", "attention", "tp", "context", "batch", "fits",
                "min_gpus_to_fit", "total_bytes", "kv_cache_bytes", "prefill_time_s",
                "prefill_usd_per_million_tokens", "decode_time_per_token_s",
                "decode_usd_per_million_tokens")


def sweep_task(model: str, gpu: str, attention: str, tp: int, contexts: tuple[int, ...],
               batches: tuple[int, ...], options: tuple[tuple[str, Any], ...] = ()
               ) -> list[dict[str, Any]]:
    """One (model, GPU, algorithm, TP) cell of a sweep, vectorised over contexts × batches.

    Takes names, not objects, so that any ``concurrent.futures.Executor`` (process pools,
    Dask, Ray) can ship it to a worker.
    """
    from memsim.hardware import load_gpu
    from memsim.models import load_model

    setup = Setup(load_model(model), load_gpu(gpu), tp=tp, attention=attention, **dict(options))
    L, B = np.meshgrid(np.asarray(contexts, np.int64), np.asarray(batches, np.int64),
                       indexing="ij")
    r = predict_arrays(setup, L, B)
    v, pre, dec = r["vram"], r["prefill"], r["decode"]
    rows = []
    for idx in np.ndindex(L.shape):
        rows.append({
            "model": setup.model.name, "gpu": gpu, "attention": attention, "tp": tp,
            "context": int(L[idx]), "batch": int(B[idx]), "fits": bool(v["fits"][idx]),
            "min_gpus_to_fit": int(v["min_gpus_to_fit"][idx]) or None,
            "total_bytes": float(v["total_bytes"][idx]),
            "kv_cache_bytes": float(v["kv_cache_bytes"][idx]),
            "prefill_time_s": float(pre["time_s"][idx]),
            "prefill_usd_per_million_tokens": float(pre["usd_per_million_tokens"][idx]),
            "decode_time_per_token_s": None if dec is None else float(
                dec["time_per_token_s"][idx]),
            "decode_usd_per_million_tokens": None if dec is None else float(
                dec["usd_per_million_tokens"][idx]),
        })
    return rows


def sweep(models: Iterable[str], gpus: Iterable[str], contexts: Iterable[int],
          batches: Iterable[int], attentions: Iterable[str] = ("auto",), tp: int = 1,
          executor: Any = None, on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
          **options: Any) -> Iterator[dict[str, Any]]:
    """Grid of predictions over models × GPUs × contexts × batches × algorithms.

    ``executor`` is anything with the ``concurrent.futures.Executor`` ``submit`` method
    (ThreadPool/ProcessPool, Dask's ``Client.get_executor()``, Ray's executor); each
    (model, GPU, algorithm) cell is one task. Rows are yielded as cells finish, and passed
    to ``on_rows`` too, so a long sweep can write each result as it is produced.
    """
    contexts, batches = tuple(int(c) for c in contexts), tuple(int(b) for b in batches)
    _positive_array("context", np.asarray(contexts))
    _positive_array("batch", np.asarray(batches))
    opts = tuple(sorted(options.items()))
    cells = [(m, g, a, tp, contexts, batches, opts)
             for m in models for g in gpus for a in attentions]
    if executor is None:
        results: Iterable[list[dict[str, Any]]] = (sweep_task(*c) for c in cells)
    else:
        from concurrent.futures import as_completed

        futures = [executor.submit(sweep_task, *c) for c in cells]
        results = (f.result() for f in as_completed(futures))
    for rows in results:
        if on_rows is not None:
            on_rows(rows)
        yield from rows
