"""Model architectures read from Hugging Face ``config.json`` files.

A :class:`ModelConfig` describes a transformer layer by layer: each layer has its attention
(head layout, mask, MLA latent, DSA indexer) and its MLP (dense or mixture of experts).
Layers that are alike are grouped (:class:`LayerGroup`, with a count), so that whole-model
arithmetic loops over a handful of kinds, not over 126 layers.

Supported ``model_type`` values: gpt2, llama, mistral, mixtral, qwen2, gemma2, gemma3 /
gemma3_text, llama4 / llama4_text, modernbert, deepseek_v3, deepseek_v32. Bundled presets live
in ``memsim/presets/<org>/<name>/config.json`` (named by Hugging Face id) with the parameter
count they must produce in ``_memsim_expected_params`` and its ``_memsim_params_source``.

Units: counts are Python ints; bytes carry ``_bytes``. Notation as in DESIGN.md (H query
heads, K key/value heads, D head dimension, L layers).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memsim.errors import InputError, closest
from memsim.problem import Indexer, Mask
from memsim.units import dtype_bytes

PRESETS_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2 §2.1, arXiv 2405.04434).

    The cache holds one latent of ``kv_lora_rank`` plus one RoPE key of ``qk_rope_head_dim``
    per token, shared by all heads: (d_c + d_h^R) elements per token per layer (V2 eq. 14).
    """

    kv_lora_rank: int
    q_lora_rank: int | None
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Attention:
    """One layer's attention: ``q: (B, N, H, D)``, ``k: (B, S, K, D)``, ``v: (B, S, K, Dv)``."""

    heads: int
    kv_heads: int
    head_dim: int
    head_dim_v: int
    mask: Mask
    mla: MLA | None = None
    indexer: Indexer | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False  # a learned norm of head_dim on q and k (Gemma 3)

    @property
    def layout(self) -> str:
        if self.mla is not None:
            return "mla"
        if self.kv_heads == self.heads:
            return "mha"
        return "mqa" if self.kv_heads == 1 else "gqa"

    @property
    def kv_elements_per_token(self) -> int:
        """Elements cached per token: K·(D + Dv), or the MLA latent + rope key (V2 eq. 14)."""
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return self.kv_heads * (self.head_dim + self.head_dim_v)

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """KV-cache bytes per token for this layer, indexer keys included (V3.2 report §1)."""
        total = self.kv_elements_per_token * dtype_bytes(kv_dtype)
        if self.indexer is not None:
            total += indexer_key_bytes(self.indexer)
        return total

    def cached_tokens(self, context: int) -> int:
        """Tokens this layer keeps in its cache at a context of ``context`` tokens.

        A sliding window keeps a rolling buffer of W (Mistral 7B, arXiv 2310.06825 §2);
        chunked local attention at most one chunk of C (Llama 4 iRoPE); others keep all.
        """
        m = self.mask
        if m.window is not None:
            return min(context, m.window)
        if m.chunk is not None:
            return min(context, m.chunk)
        return context

    def weight_params(self, hidden: int) -> int:
        """Weights of the projections (and MLA / indexer sub-layers) of one layer."""
        return _attention_params(self, hidden)


def indexer_key_bytes(ix: Indexer) -> float:
    """One indexer key per token: D_I at ``ix.dtype`` + one fp32 scale per block.

    DeepSeek-V3.2-Exp ``inference/model.py``: fp8 e4m3 key of 128 + 1 fp32 scale = 132 B.
    """
    return ix.head_dim * dtype_bytes(ix.dtype) + math.ceil(ix.head_dim / ix.scale_block) * 4


@dataclass(frozen=True)
class MLP:
    """Feed-forward block: dense (``experts == 0``) or a mixture of experts.

    ``intermediate`` is the hidden width of one expert (or of the dense MLP); ``gated`` is a
    GLU (SwiGLU / GeGLU: three matrices, Shazeer 2020 arXiv 2002.05202 eq. 6) vs two.
    """

    intermediate: int
    gated: bool = True
    bias: bool = False
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    shared_intermediate: int = 0
    router_bias: bool = False

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def matrix_params(self, hidden: int, intermediate: int) -> int:
        n_mat = 3 if self.gated else 2
        p = n_mat * hidden * intermediate
        if self.bias:
            p += (2 if self.gated else 1) * intermediate + hidden
        return p

    def expert_params(self, hidden: int) -> int:
        return self.matrix_params(hidden, self.intermediate)

    def shared_params(self, hidden: int) -> int:
        if not self.shared_experts:
            return 0
        return self.matrix_params(hidden, self.shared_intermediate or
                                  self.shared_experts * self.intermediate)

    def router_params(self, hidden: int) -> int:
        return hidden * self.experts + (self.experts if self.router_bias else 0)

    def total_params(self, hidden: int) -> int:
        if not self.is_moe:
            return self.expert_params(hidden)
        return (self.experts * self.expert_params(hidden) + self.shared_params(hidden)
                + self.router_params(hidden))

    def active_params(self, hidden: int) -> int:
        if not self.is_moe:
            return self.expert_params(hidden)
        return (self.experts_per_token * self.expert_params(hidden) + self.shared_params(hidden)
                + self.router_params(hidden))


@dataclass(frozen=True)
class LayerGroup:
    """``count`` identical layers (same attention and MLP)."""

    attention: Attention
    mlp: MLP
    count: int

    @property
    def kind(self) -> str:
        m = self.attention.mask
        name = "global" if m.kind in ("causal", "full") else m.describe()
        return f"{name}{' moe' if self.mlp.is_moe else ''}"


@dataclass(frozen=True)
class ModelConfig:
    """A whole model: embeddings, layer groups, head. Built by :func:`from_hf_config`.

    ``layer_kinds`` gives, for each layer index, the index of its group in ``groups``.
    """

    name: str
    model_type: str
    hidden_size: int
    vocab_size: int
    num_layers: int
    max_position_embeddings: int
    groups: tuple[LayerGroup, ...]
    layer_kinds: tuple[int, ...]
    decoder: bool = True
    tie_word_embeddings: bool = False
    learned_positions: int = 0
    norm_params_per_layer: int = 0
    norms_per_layer: int = 2  # norm kernels per layer (Gemma 2/3: 4, pre and post)
    final_norm_params: int = 0
    extra_params: int = 0  # MLM head of encoders, embedding norms
    vision_params: int = 0  # vision tower of multimodal checkpoints (not run by memsim)
    expected_params: int | None = None
    expected_active_params: int | None = None
    params_source: str = ""
    hf_id: str = ""
    aliases: tuple[str, ...] = ()

    # ---- parameter counts -------------------------------------------------------------

    @property
    def embedding_params(self) -> int:
        p = self.vocab_size * self.hidden_size + self.learned_positions * self.hidden_size
        if not self.tie_word_embeddings:
            p += self.vocab_size * self.hidden_size  # untied LM head
        return p

    def _layer_params(self, active: bool) -> int:
        h = self.hidden_size
        total = 0
        for g in self.groups:
            mlp = g.mlp.active_params(h) if active else g.mlp.total_params(h)
            total += g.count * (g.attention.weight_params(h) + mlp + self.norm_params_per_layer)
        return total

    @property
    def params_total(self) -> int:
        """All weights, vision tower included (what a checkpoint's safetensors hold)."""
        return (self.embedding_params + self._layer_params(False) + self.final_norm_params
                + self.extra_params + self.vision_params)

    @property
    def params_active(self) -> int:
        """Weights one text token passes through (MoE: top-k + shared experts)."""
        return (self.embedding_params + self._layer_params(True) + self.final_norm_params
                + self.extra_params)

    @property
    def params_language(self) -> int:
        """Weights of the text model only (no vision tower): what inference loads and runs."""
        return self.params_total - self.vision_params

    def weights_bytes(self, weight_dtype: str) -> float:
        """Bytes of the text model's weights at ``weight_dtype`` (fp8 / int4 included)."""
        return self.params_language * dtype_bytes(weight_dtype)

    # ---- KV cache -----------------------------------------------------------------------

    def kv_cache_bytes(self, context: int, batch: int = 1, kv_dtype: str = "bf16") -> float:
        """KV cache for ``batch`` sequences of ``context`` tokens, every layer (bytes)."""
        if not self.decoder:
            return 0.0
        return batch * sum(g.count * g.attention.cached_tokens(context)
                           * g.attention.kv_bytes_per_token(kv_dtype) for g in self.groups)

    def kv_bytes_per_token(self, kv_dtype: str = "bf16") -> float:
        """Per-token KV bytes summed over layers, before any window cap (bytes/token)."""
        if not self.decoder:
            return 0.0
        return sum(g.count * g.attention.kv_bytes_per_token(kv_dtype) for g in self.groups)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (``memsim models --json``)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "model_type": self.model_type,
            "layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "params": self.params_total,
            "params_active": self.params_active,
            "expected_params": self.expected_params,
            "max_position_embeddings": self.max_position_embeddings,
            "decoder": self.decoder,
            "kv_bytes_per_token_bf16": self.kv_bytes_per_token("bf16"),
            "layer_groups": [
                {"count": g.count, "kind": g.kind, "layout": g.attention.layout,
                 "heads": g.attention.heads, "kv_heads": g.attention.kv_heads,
                 "head_dim": g.attention.head_dim, "mask": g.attention.mask.describe(),
                 "moe": g.mlp.is_moe}
                for g in self.groups
            ],
        }


# ---- parameter arithmetic ---------------------------------------------------------------


def _attention_params(a: Attention, hidden: int) -> int:
    """Projection weights of one attention layer (biases where the config has them)."""
    if a.mla is not None:
        m, H = a.mla, a.heads
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:  # W^DQ, its RMSNorm, W^UQ/W^QR (DeepSeek-V2 eq. 12-13)
            q = hidden * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * H * qk
        else:
            q = hidden * H * qk
        kv = (hidden * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank   # W^DKV, W^KR, norm
              + m.kv_lora_rank * H * (m.qk_nope_head_dim + m.v_head_dim))        # W^UK, W^UV
        o = H * m.v_head_dim * hidden
        p = q + kv + o
        if a.indexer is not None:  # V3.2-Exp model.py Indexer: wq_b, wk, k_norm, weights_proj
            ix = a.indexer
            q_in = m.q_lora_rank or hidden
            p += q_in * ix.heads * ix.head_dim + hidden * ix.head_dim + 2 * ix.head_dim \
                + hidden * ix.heads
        return p
    H, K, D, Dv = a.heads, a.kv_heads, a.head_dim, a.head_dim_v
    p = hidden * H * D + hidden * K * D + hidden * K * Dv + H * Dv * hidden
    if a.qkv_bias:
        p += H * D + K * D + K * Dv
    if a.o_bias:
        p += hidden
    if a.qk_norm:
        p += 2 * D
    return p


def _vision_params(v: dict[str, Any], text_hidden: int) -> int:
    """Vision tower of a multimodal checkpoint (ViT, Dosovitskiy et al. arXiv 2010.11929).

    Per layer: q, k, v, o with biases, fc1/fc2 with biases, two LayerNorms with biases;
    patch embedding, position embedding, final LayerNorm; then the projector into the text
    model (Gemma 3: one matrix + RMSNorm; Llama 4: pixel-shuffle MLP + projector).
    """
    h, i, n = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    p, img, c = v["patch_size"], v["image_size"], v.get("num_channels", 3)
    per_layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
    patches = (img // p) ** 2
    total = n * per_layer + c * p * p * h + h + patches * h + 2 * h
    if v.get("model_type") == "llama4_vision_model":
        ratio = v.get("pixel_shuffle_ratio", 0.5)
        shuffled = int(h / ratio**2)
        total += h + 2 * h  # class embedding, pre-LayerNorm
        total += shuffled * v["projector_input_dim"] + v["projector_input_dim"] \
            * v["projector_output_dim"]
        total += v["vision_output_dim"] * text_hidden
    else:  # Gemma 3: mm_input_projection (h × hidden) + mm_soft_emb_norm (h)
        total += h * text_hidden + h
    return total


# ---- reading a config.json --------------------------------------------------------------


class _Keys:
    """Required/optional access to a config dict with errors that name the key."""

    def __init__(self, cfg: dict[str, Any], model_type: str, where: str) -> None:
        self.cfg, self.model_type, self.where = cfg, model_type, where

    def req(self, key: str) -> Any:
        if self.cfg.get(key) is None:
            raise InputError(key, None, f"is missing from {self.where} "
                             f"(required for model_type {self.model_type!r})")
        return self.cfg[key]

    def pos(self, key: str, default: int | None = None) -> int:
        value = self.cfg.get(key, default) if default is not None else self.req(key)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(key, value, f"must be a positive integer in {self.where}")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key)
        return default if value is None else value


def _heads(k: _Keys, hidden: int, heads_key: str, kv_key: str | None,
           head_dim_key: str | None) -> tuple[int, int, int]:
    H = k.pos(heads_key)
    K = k.pos(kv_key, H) if kv_key else H
    if H % K:
        raise InputError(kv_key or "kv_heads", K, f"must divide {heads_key}={H}")
    if head_dim_key and k.get(head_dim_key) is not None:
        D = k.pos(head_dim_key)
    else:
        if hidden % H:
            raise InputError("hidden_size", hidden, f"must be a multiple of {heads_key}={H} "
                             "(head_dim = hidden_size / heads when the config gives no head_dim)")
        D = hidden // H
    return H, K, D


def _group(layers: list[tuple[Attention, MLP]]) -> tuple[tuple[LayerGroup, ...], tuple[int, ...]]:
    """Collapse per-layer (attention, mlp) pairs into groups, keeping first-seen order."""
    order: list[tuple[Attention, MLP]] = []
    counts: dict[tuple[Attention, MLP], int] = {}
    kinds = []
    for pair in layers:
        if pair not in counts:
            counts[pair] = 0
            order.append(pair)
        counts[pair] += 1
        kinds.append(order.index(pair))
    return tuple(LayerGroup(a, m, counts[(a, m)]) for a, m in order), tuple(kinds)


def _attn(hidden: int, **kw: Any) -> Attention:
    del hidden  # kept in the call sites for readability of the layer being built
    return Attention(**kw)


def _build_llama_like(k: _Keys, mt: str) -> dict[str, Any]:
    """llama, mistral, mixtral, qwen2: pre-norm decoder, RMSNorm ×2 per layer, SwiGLU."""
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = _heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    window = k.get("sliding_window")
    windowed_from = 0
    if mt == "qwen2":  # window only with use_sliding_window, from layer max_window_layers on
        if not k.get("use_sliding_window", False):
            window = None
        windowed_from = k.get("max_window_layers", 0)
    elif mt == "llama":
        window = None
    if window is not None and (not isinstance(window, int) or window <= 0):
        raise InputError("sliding_window", window, "must be a positive integer or null")
    layer_types = k.get("layer_types")
    if layer_types is not None and len(layer_types) != n:
        raise InputError("layer_types", len(layer_types), f"must list num_hidden_layers={n} layers")
    qkv_bias = mt == "qwen2" or bool(k.get("attention_bias", False))
    o_bias = bool(k.get("attention_bias", False))
    if mt == "mixtral":
        E, top = k.pos("num_local_experts"), k.pos("num_experts_per_tok")
        if top > E:
            raise InputError("num_experts_per_tok", top, f"must not exceed num_local_experts={E}")
        mlp = MLP(k.pos("intermediate_size"), experts=E, experts_per_token=top)
    else:
        mlp = MLP(k.pos("intermediate_size"), bias=bool(k.get("mlp_bias", False)))
    layers = []
    for i in range(n):
        local = (layer_types[i] == "sliding_attention") if layer_types else \
            (window is not None and i >= windowed_from)
        mask = Mask(window=window) if local and window else Mask()
        layers.append((_attn(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qkv_bias=qkv_bias, o_bias=o_bias), mlp))
    groups, kinds = _group(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=bool(k.get("tie_word_embeddings", False)),
                norm_params_per_layer=2 * h, final_norm_params=h)


def _build_gpt2(k: _Keys, mt: str) -> dict[str, Any]:
    """GPT-2: learned positions, LayerNorm with bias, biases everywhere, GELU MLP of 4h."""
    h = k.pos("n_embd")
    n = k.pos("n_layer")
    H, K, D = _heads(k, h, "n_head", None, None)
    mlp = MLP(k.pos("n_inner", 4 * h), gated=False, bias=True)
    a = _attn(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=Mask(),
              qkv_bias=True, o_bias=True)
    groups, kinds = _group([(a, mlp)] * n)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"), max_position_embeddings=k.pos("n_positions"),
                tie_word_embeddings=True, learned_positions=k.pos("n_positions"),
                norm_params_per_layer=4 * h, final_norm_params=2 * h)


def _build_gemma(k: _Keys, mt: str) -> dict[str, Any]:
    """Gemma 2 (local/global 1:1, even layers local) and Gemma 3 (5 local : 1 global).

    Gemma 2 report (arXiv 2408.00118) §2; Gemma 3 report (arXiv 2503.19786) §2.
    HF: Gemma2 ``is_sliding = not layer_idx % 2``; Gemma3 ``(i + 1) % sliding_window_pattern``.
    Four RMSNorms per layer (pre/post attention and MLP), tied embeddings, GeGLU.
    """
    gemma3 = mt == "gemma3_text"
    h = k.pos("hidden_size", 2304 if gemma3 else None)
    n = k.pos("num_hidden_layers", 26 if gemma3 else None)
    if gemma3:  # HF Gemma3TextConfig defaults for keys the released configs leave out
        defaults = {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                    "vocab_size": 262208, "max_position_embeddings": 131072,
                    "sliding_window": 4096, "sliding_window_pattern": 6,
                    "intermediate_size": 9216}
        k = _Keys({**defaults, **{a: b for a, b in k.cfg.items() if b is not None}},
                  k.model_type, k.where)
    H, K, D = _heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    window = k.pos("sliding_window")
    pattern = k.pos("sliding_window_pattern", 6) if gemma3 else 2
    layer_types = k.get("layer_types")
    mlp = MLP(k.pos("intermediate_size"))
    layers = []
    for i in range(n):
        if layer_types is not None:
            local = layer_types[i] == "sliding_attention"
        else:
            local = bool((i + 1) % pattern) if gemma3 else not i % 2
        mask = Mask(window=window) if local else Mask()
        layers.append((_attn(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qk_norm=gemma3), mlp))
    groups, kinds = _group(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=bool(k.get("tie_word_embeddings", True)),
                norm_params_per_layer=4 * h, norms_per_layer=4, final_norm_params=h)


def _build_llama4(k: _Keys, mt: str) -> dict[str, Any]:
    """Llama 4 iRoPE: every 4th layer NoPE + global causal, others chunked local (C = 8192).

    meta-llama/llama-models ``models/llama4/model.py`` (commit a9c89c4); HF
    ``Llama4TextConfig``: ``no_rope_layers[i] = int((i + 1) % 4 != 0)`` when empty; MoE on
    layers ``step-1, 2·step-1, ...`` (``interleave_moe_layer_step``), one shared expert.
    """
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = _heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    chunk = k.pos("attention_chunk_size", 8192)
    nope_interval = k.pos("no_rope_layer_interval", 4)
    rope_layers = k.get("no_rope_layers") or [int((i + 1) % nope_interval != 0) for i in range(n)]
    if len(rope_layers) != n:
        raise InputError("no_rope_layers", len(rope_layers), f"must list {n} layers")
    step = k.pos("interleave_moe_layer_step", 1)
    moe_layers = set(k.get("moe_layers") or range(step - 1, n, step))
    E, top = k.pos("num_local_experts"), k.pos("num_experts_per_tok")
    if top > E:
        raise InputError("num_experts_per_tok", top, f"must not exceed num_local_experts={E}")
    moe = MLP(k.pos("intermediate_size"), experts=E, experts_per_token=top, shared_experts=1)
    dense = MLP(k.pos("intermediate_size_mlp"))
    layers = []
    for i in range(n):
        mask = Mask(chunk=chunk) if rope_layers[i] else Mask()
        layers.append((_attn(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             o_bias=bool(k.get("attention_bias", False))),
                       moe if i in moe_layers else dense))
    groups, kinds = _group(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=bool(k.get("tie_word_embeddings", False)),
                norm_params_per_layer=2 * h, final_norm_params=h)


def _build_modernbert(k: _Keys, mt: str) -> dict[str, Any]:
    """ModernBERT (arXiv 2412.13663 §2.1): bidirectional encoder, global attention every
    3rd layer (0, 3, ...), the others a local window of 128 (±64); GeGLU; no biases."""
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = _heads(k, h, "num_attention_heads", None, None)
    every = k.pos("global_attn_every_n_layers")
    window = k.pos("local_attention")
    norm = h * (2 if k.get("norm_bias", False) else 1)
    mlp = MLP(k.pos("intermediate_size"), bias=bool(k.get("mlp_bias", False)))
    layers = []
    for i in range(n):
        mask = Mask(causal=False) if i % every == 0 else Mask(causal=False, window=window)
        layers.append((_attn(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qkv_bias=bool(k.get("attention_bias", False)),
                             o_bias=bool(k.get("attention_bias", False))), mlp))
    groups, kinds = _group(layers)
    vocab = k.pos("vocab_size")
    # MLM head (dense h×h + norm + decoder bias; decoder weight tied) and the embedding
    # norm, less layer 0's attention norm, which is an Identity in HF ModernBertEncoderLayer.
    head = h * h + norm + (vocab if k.get("decoder_bias", True) else 0)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds, vocab_size=vocab,
                max_position_embeddings=k.pos("max_position_embeddings"), decoder=False,
                tie_word_embeddings=bool(k.get("tie_word_embeddings", True)),
                norm_params_per_layer=2 * norm, final_norm_params=norm,
                extra_params=head)


def _build_deepseek(k: _Keys, mt: str) -> dict[str, Any]:
    """DeepSeek-V3 / V3.1 / V3.2-Exp: MLA attention, MoE with shared experts after
    ``first_k_dense_replace`` dense layers (arXiv 2412.19437 §2.1); V3.2 adds the lightning
    indexer and top-k sparse attention (V3.2-Exp report §1)."""
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H = k.pos("num_attention_heads")
    q_lora = k.get("q_lora_rank")
    if q_lora is not None:
        q_lora = k.pos("q_lora_rank")
    mla = MLA(kv_lora_rank=k.pos("kv_lora_rank"), q_lora_rank=q_lora,
              qk_nope_head_dim=k.pos("qk_nope_head_dim"),
              qk_rope_head_dim=k.pos("qk_rope_head_dim"), v_head_dim=k.pos("v_head_dim"))
    indexer, mask = None, Mask()
    if mt == "deepseek_v32":
        indexer = Indexer(heads=k.pos("index_n_heads"), head_dim=k.pos("index_head_dim"))
        mask = Mask(top_k=k.pos("index_topk"))
    first_dense = k.get("first_k_dense_replace", 0)
    if not isinstance(first_dense, int) or not 0 <= first_dense <= n:
        raise InputError("first_k_dense_replace", first_dense, f"must be in 0..{n}")
    freq = k.pos("moe_layer_freq", 1)
    E, top = k.pos("n_routed_experts"), k.pos("num_experts_per_tok")
    if top > E:
        raise InputError("num_experts_per_tok", top, f"must not exceed n_routed_experts={E}")
    shared = k.get("n_shared_experts", 0)
    inter = k.pos("moe_intermediate_size")
    moe = MLP(inter, experts=E, experts_per_token=top, shared_experts=shared,
              shared_intermediate=shared * inter, router_bias=k.get("topk_method") == "noaux_tc")
    dense = MLP(k.pos("intermediate_size"))
    # Attention in its cache form: one latent of (kv_lora + rope) shared by all heads.
    a = _attn(h, heads=H, kv_heads=1, head_dim=mla.kv_lora_rank + mla.qk_rope_head_dim,
              head_dim_v=mla.kv_lora_rank, mask=mask, mla=mla, indexer=indexer)
    layers = [(a, moe if (i >= first_dense and i % freq == 0) else dense) for i in range(n)]
    groups, kinds = _group(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=bool(k.get("tie_word_embeddings", False)),
                norm_params_per_layer=2 * h, final_norm_params=h)


_BUILDERS: dict[str, Callable[[_Keys, str], dict[str, Any]]] = {
    "llama": _build_llama_like, "mistral": _build_llama_like, "mixtral": _build_llama_like,
    "qwen2": _build_llama_like, "gpt2": _build_gpt2, "gemma2": _build_gemma,
    "gemma3_text": _build_gemma, "llama4_text": _build_llama4, "modernbert": _build_modernbert,
    "deepseek_v3": _build_deepseek, "deepseek_v32": _build_deepseek,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_BUILDERS)) + ("gemma3", "llama4")


def from_hf_config(cfg: dict[str, Any], name: str = "config.json") -> ModelConfig:
    """Build a :class:`ModelConfig` from a parsed Hugging Face ``config.json``.

    Multimodal wrappers (``gemma3``, ``llama4``) are read through their ``text_config``; the
    vision tower counts towards the parameters only. Raises :class:`InputError` naming the
    key for a missing or contradictory key and the model_type for an unsupported one.
    """
    if not isinstance(cfg, dict):
        raise InputError(name, type(cfg).__name__, "must hold a JSON object")
    mt = cfg.get("model_type")
    if mt is None:
        raise InputError("model_type", None, f"is missing from {name}")
    text, vision = cfg, None
    if mt in ("gemma3", "llama4"):
        text = cfg.get("text_config")
        if not isinstance(text, dict):
            raise InputError("text_config", text, f"is missing from {name} "
                             f"(required for model_type {mt!r})")
        vision = cfg.get("vision_config")
        mt = {"gemma3": "gemma3_text", "llama4": "llama4_text"}[mt]
    builder = _BUILDERS.get(mt)
    if builder is None:
        raise InputError("model_type", mt, "is not supported; supported: "
                         + ", ".join(SUPPORTED_MODEL_TYPES) + closest(mt, SUPPORTED_MODEL_TYPES))
    fields = builder(_Keys(text, mt, name), mt)
    vision_params = 0
    if isinstance(vision, dict) and vision.get("hidden_size"):
        try:
            vision_params = _vision_params(vision, fields["hidden_size"])
        except KeyError as exc:
            raise InputError(f"vision_config.{exc.args[0]}", None,
                             f"is missing from {name}") from None
    return ModelConfig(
        name=name, model_type=mt, vision_params=vision_params,
        expected_params=cfg.get("_memsim_expected_params"),
        expected_active_params=cfg.get("_memsim_expected_active_params"),
        params_source=cfg.get("_memsim_params_source", ""),
        hf_id=name if "/" in name and not name.endswith(".json") else "",
        aliases=tuple(cfg.get("_memsim_aliases", ())),
        **fields,
    )


# ---- presets and lookup -----------------------------------------------------------------


@functools.cache
def _preset_paths() -> dict[str, Path]:
    """Hugging Face id → bundled config.json path."""
    out = {}
    for path in sorted(PRESETS_DIR.glob("*/*/config.json")):
        out[f"{path.parent.parent.name}/{path.parent.name}"] = path
    return out


@functools.cache
def _lookup_table() -> dict[str, str]:
    """Lower-case name, bare name and alias → Hugging Face id."""
    table: dict[str, str] = {}
    for hf_id, path in _preset_paths().items():
        table[hf_id.lower()] = hf_id
        table[hf_id.split("/")[1].lower()] = hf_id
        for alias in json.loads(path.read_text()).get("_memsim_aliases", ()):
            table[alias.lower()] = hf_id
    return table


def preset_names() -> list[str]:
    """Hugging Face ids of the bundled presets, sorted."""
    return list(_preset_paths())


def load_config_file(path: Path | str) -> ModelConfig:
    """Read any compatible ``config.json``; errors name the file and the key."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except OSError as exc:
        raise InputError("model", str(path), f"cannot be read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError("model", str(path), f"is not valid JSON: {exc}") from None
    return from_hf_config(cfg, name=str(path))


@functools.cache
def load_model(name: str) -> ModelConfig:
    """A preset by Hugging Face id, bare name or alias (case-insensitive), or a path.

    Unknown names raise :class:`InputError` suggesting the closest known names.
    """
    if name.endswith(".json") or Path(name).is_file():
        return load_config_file(name)
    table = _lookup_table()
    hf_id = table.get(name.lower())
    if hf_id is None:
        raise InputError("model", name, "is not a known model" + closest(name, table)
                         + " (see `memsim models`; or pass a path to a config.json)")
    cfg = json.loads(_preset_paths()[hf_id].read_text())
    return from_hf_config(cfg, name=hf_id)
