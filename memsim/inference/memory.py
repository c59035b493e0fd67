"""Per-GPU VRAM: weights, KV cache by layer kind, activations, workspace and reserve."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memsim.inference.deployment import Setup
from memsim.models import Attention
from memsim.units import dtype_bytes


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
