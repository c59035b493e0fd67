"""Model architecture dataclasses: attention, MLP, layer groups and the whole model.

A :class:`ModelConfig` describes a transformer layer by layer: each layer has its attention
(head layout, mask, MLA latent, DSA indexer) and its MLP (dense or mixture of experts).
Layers that are alike are grouped (:class:`LayerGroup`, with a count), so that whole-model
arithmetic loops over a handful of kinds, not over 126 layers.

Units: counts are Python ints; bytes carry ``_bytes``. Notation as in docs/DESIGN.md
§"Notation" (H query heads, K key/value heads, D head dimension, L layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memsim.problem import Indexer, Mask
from memsim.units import dtype_bytes, scaled_row_bytes


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
        return attention_params(self, hidden)


def indexer_key_bytes(ix: Indexer) -> float:
    """One indexer key per token: D_I at ``ix.dtype`` + one fp32 scale per block when 8-bit
    (:func:`memsim.units.scaled_row_bytes`, the rule the attention algorithms use).

    DeepSeek-V3.2-Exp ``inference/model.py``: fp8 e4m3 key of 128 + 1 fp32 scale = 132 B.
    """
    return float(scaled_row_bytes(ix.head_dim, dtype_bytes(ix.dtype), ix.scale_block))


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
    # group-limited routing (DeepSeek-V3 config.json n_group / topk_group; its Gate keeps the
    # topk_group groups with the best top-2 scores): 1 / 1 is uniform over the experts
    expert_groups: int = 1
    expert_groups_per_token: int = 1

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


def attention_params(a: Attention, hidden: int) -> int:
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
