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


def kv_bytes_per_token(setup: Setup, attn: Attention) -> float:
    """Cached bytes per token of one layer at ``setup.kv_dtype`` (indexer keys included).

    An fp8 cache stores one fp32 scale per ``kv_scale_block`` elements; an MLA latent in
    fp8 keeps its RoPE key in bf16 (FlashMLA's fp8 format: 512 fp8 + 4 scales + 64 bf16 =
    656 B per token for DeepSeek-V3.2).
    """
    base = attn.kv_bytes_per_token(setup.kv_dtype)
    if setup.kv_dtype != "fp8":
        return base
    if attn.mla is not None:
        rope = attn.mla.qk_rope_head_dim * (dtype_bytes("bf16") - dtype_bytes("fp8"))
        return base + rope + (math.ceil(attn.mla.kv_lora_rank / setup.kv_scale_block)
                              * dtype_bytes("fp32"))
    heads_elements = attn.kv_elements_per_token
    return base + math.ceil(heads_elements / setup.kv_scale_block) * dtype_bytes("fp32")


def kv_cache_bytes(setup: Setup, context: Any, batch: Any) -> dict[str, Any]:
    """KV cache per GPU by layer kind (bytes); windowed and chunked layers are capped.

    Each GPU holds the cache of its attention replica's ⌈B/D⌉ sequences (DP attention; all B
    under context parallelism, which gathers every sequence's keys), of its share of the KV
    heads (TP), for its stage's 1/P of the layers (PP).
    """
    out: dict[str, Any] = {}
    if not setup.model.decoder:
        return out
    ctx = np.asarray(context)
    rank_batch = -(-np.asarray(batch) // setup.attention_dp)
    if setup.context_parallel:  # every replica gathers every sequence's keys
        rank_batch = np.asarray(batch)
    for g in setup.groups:
        a = g.attention
        tokens = np.minimum(ctx, a.mask.window or a.mask.chunk or ctx)
        b = (g.count / setup.pp * rank_batch * tokens * kv_bytes_per_token(setup, a)
             * _kv_share(setup, a))
        kind = g.kind.replace(" moe", "")
        out[kind] = out.get(kind, 0.0) + b
    return out


def routed_expert_bytes(setup: Setup) -> float:
    """Routed-expert weights one GPU holds (bytes): ⌈X/W⌉ whole experts under EP over the
    W GPUs of a stage, else every expert split W ways; for the stage's 1/P of the layers."""
    h, w_b, W = setup.model.hidden_size, dtype_bytes(setup.weight_dtype), setup.stage_gpus
    total = 0.0
    for g in setup.groups:
        mlp = g.mlp
        if not mlp.is_moe:
            continue
        experts = math.ceil(mlp.experts / W) if setup.ep > 1 else mlp.experts / W
        total += g.count * experts * mlp.expert_params(h) * w_b
    return total / setup.pp


def weights_bytes(setup: Setup) -> float:
    """Weights one GPU holds (bytes): attention, embeddings and norms split tp ways; dense
    MLPs, shared experts and routers W ways (tp ways under EP, where they run on each
    replica's own tokens); routed experts as :func:`routed_expert_bytes`; 1/P of the layers
    per stage (embedding and LM head counted as if spread evenly over the stages)."""
    m, h, w_b = setup.model, setup.model.hidden_size, dtype_bytes(setup.weight_dtype)
    attention = sum(g.count * g.attention.weight_params(h) for g in m.groups) * w_b
    mlp = routed = 0.0
    for g in m.groups:
        mlp += g.count * g.mlp.total_params(h) * w_b
        if g.mlp.is_moe:
            routed += g.count * g.mlp.experts * g.mlp.expert_params(h) * w_b
    rest = m.weights_bytes(setup.weight_dtype) - attention - mlp
    dense_ways = setup.tp if setup.ep > 1 else setup.stage_gpus
    return ((attention + rest) / setup.tp + (mlp - routed) / dense_ways) / setup.pp \
        + routed_expert_bytes(setup)


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
    """Per-GPU VRAM breakdown; ``total_bytes`` is exactly the sum of the parts.

    ``batch`` is the whole stage's batch; ``workspace_bytes`` the attention workspace of one
    replica (:func:`~memsim.inference.capacity.step_workspace_bytes`). Activations are those
    of the largest engine step: the replica's whole batch prefilled at once, or with
    ``prefill_chunk`` set, that many tokens in all (the token budget of a serving engine
    with chunked prefill, vLLM's ``max_num_batched_tokens``); the logits of every sequence.
    """
    weights = weights_bytes(setup)
    by_kind = kv_cache_bytes(setup, context, batch)
    kv = sum(by_kind.values()) if by_kind else np.zeros(np.shape(context))
    rank_batch = -(-np.asarray(batch) // setup.attention_dp)
    step_tokens = rank_batch * np.asarray(context)  # the whole batch prefilled at once
    if setup.context_parallel:  # each replica prefills 1/D of every prompt
        step_tokens = np.asarray(batch) * -(-np.asarray(context) // setup.attention_dp)
    if setup.prefill_chunk is not None:  # chunked: a budget of tokens per engine step
        step_tokens = np.minimum(step_tokens, setup.prefill_chunk)
    act = activation_bytes(setup, step_tokens, rank_batch)
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
