"""One builder per ``model_type`` family: config keys → :class:`ModelConfig` fields.

Each builder takes the text part of a ``config.json`` (as :class:`ConfigKeys`) and its
normalised ``model_type`` and returns the keyword arguments of :class:`ModelConfig` except
the ones :func:`memsim.models.hf.from_hf_config` adds (name, provenance, vision tower).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memsim import limits
from memsim.errors import InputError
from memsim.models.config import MLA, MLP
from memsim.models.parsing import ConfigKeys, group_layers, make_attention, read_heads
from memsim.problem import Indexer, Mask


def _pre_norm_decoder(k: ConfigKeys, h: int, n: int, layers: list) -> dict[str, Any]:
    """ModelConfig fields of a decoder with two norms of h weights per layer and a final
    norm (Llama-like, Llama 4, DeepSeek), from its ``layers`` [(Attention, MLP), ...]."""
    groups, kinds = group_layers(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=k.flag("tie_word_embeddings"),
                norm_params_per_layer=2 * h, final_norm_params=h)


def _build_llama_like(k: ConfigKeys, mt: str) -> dict[str, Any]:
    """llama, mistral, mixtral, qwen2: pre-norm decoder, RMSNorm ×2 per layer, SwiGLU."""
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = read_heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    window = k.get("sliding_window")
    if isinstance(window, bool):
        raise InputError("sliding_window", window, "must be a positive integer or null")
    windowed_from = 0
    if mt == "qwen2":  # window only with use_sliding_window, from layer max_window_layers on
        if not k.flag("use_sliding_window"):
            window = None
        windowed_from = k.count("max_window_layers", 0, most=n)
    elif mt == "llama":
        window = None
    if window is not None:
        window = k.pos("sliding_window")
    layer_types = k.items("layer_types", str, n)
    qkv_bias = mt == "qwen2" or k.flag("attention_bias")
    o_bias = k.flag("attention_bias")
    if mt == "mixtral":
        E, top = k.pos("num_local_experts"), k.pos("num_experts_per_tok")
        if top > E:
            raise InputError("num_experts_per_tok", top, f"must not exceed num_local_experts={E}")
        mlp = MLP(k.pos("intermediate_size"), experts=E, experts_per_token=top)
    else:
        mlp = MLP(k.pos("intermediate_size"), bias=k.flag("mlp_bias"))
    layers = []
    for i in range(n):
        local = (layer_types[i] == "sliding_attention") if layer_types else \
            (window is not None and i >= windowed_from)
        mask = Mask(window=window) if local and window else Mask()
        layers.append((make_attention(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qkv_bias=qkv_bias, o_bias=o_bias), mlp))
    return _pre_norm_decoder(k, h, n, layers)


def _build_gpt2(k: ConfigKeys, mt: str) -> dict[str, Any]:
    """GPT-2: learned positions, LayerNorm with bias, biases everywhere, GELU MLP of 4h."""
    h = k.pos("n_embd")
    n = k.pos("n_layer")
    H, K, D = read_heads(k, h, "n_head", None, None)
    mlp = MLP(k.pos("n_inner", 4 * h), gated=False, bias=True)
    a = make_attention(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=Mask(),
              qkv_bias=True, o_bias=True)
    groups, kinds = group_layers([(a, mlp)] * n)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"), max_position_embeddings=k.pos("n_positions"),
                tie_word_embeddings=True, learned_positions=k.pos("n_positions"),
                norm_params_per_layer=4 * h, final_norm_params=2 * h)


def _build_gemma(k: ConfigKeys, mt: str) -> dict[str, Any]:
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
        k = ConfigKeys({**defaults, **{a: b for a, b in k.cfg.items() if b is not None}},
                  k.model_type, k.where)
    H, K, D = read_heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    window = k.pos("sliding_window")
    pattern = k.pos("sliding_window_pattern", 6) if gemma3 else 2
    layer_types = k.items("layer_types", str, n)
    mlp = MLP(k.pos("intermediate_size"))
    layers = []
    for i in range(n):
        if layer_types is not None:
            local = layer_types[i] == "sliding_attention"
        else:
            local = bool((i + 1) % pattern) if gemma3 else not i % 2
        mask = Mask(window=window) if local else Mask()
        layers.append((make_attention(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qk_norm=gemma3), mlp))
    groups, kinds = group_layers(layers)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds,
                vocab_size=k.pos("vocab_size"),
                max_position_embeddings=k.pos("max_position_embeddings"),
                tie_word_embeddings=k.flag("tie_word_embeddings", True),
                norm_params_per_layer=4 * h, norms_per_layer=4, final_norm_params=h)


def _build_llama4(k: ConfigKeys, mt: str) -> dict[str, Any]:
    """Llama 4 iRoPE: every 4th layer NoPE + global causal, others chunked local (C = 8192).

    meta-llama/llama-models ``models/llama4/model.py`` (commit a9c89c4); HF
    ``Llama4TextConfig``: ``no_rope_layers[i] = int((i + 1) % 4 != 0)`` when empty; MoE on
    layers ``step-1, 2·step-1, ...`` (``interleave_moe_layer_step``), one shared expert.
    """
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = read_heads(k, h, "num_attention_heads", "num_key_value_heads", "head_dim")
    chunk = k.pos("attention_chunk_size", 8192)
    nope_interval = k.pos("no_rope_layer_interval", 4)
    rope_layers = k.items("no_rope_layers", int, n) if k.get("no_rope_layers") else \
        [int((i + 1) % nope_interval != 0) for i in range(n)]
    step = k.pos("interleave_moe_layer_step", 1)
    moe_raw = k.get("moe_layers") or list(range(step - 1, n, step))
    if not isinstance(moe_raw, list):
        raise InputError("moe_layers", moe_raw, "must be a list of layer indices")
    moe_layers = set(moe_raw)
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in moe_layers):
        raise InputError("moe_layers", sorted(moe_layers, key=str)[:4],
                         f"must list layer indices in 0..{n - 1}")
    E, top = k.pos("num_local_experts"), k.pos("num_experts_per_tok")
    if top > E:
        raise InputError("num_experts_per_tok", top, f"must not exceed num_local_experts={E}")
    moe = MLP(k.pos("intermediate_size"), experts=E, experts_per_token=top, shared_experts=1)
    dense = MLP(k.pos("intermediate_size_mlp"))
    layers = []
    for i in range(n):
        mask = Mask(chunk=chunk) if rope_layers[i] else Mask()
        layers.append((make_attention(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             o_bias=k.flag("attention_bias")),
                       moe if i in moe_layers else dense))
    return _pre_norm_decoder(k, h, n, layers)


def _build_modernbert(k: ConfigKeys, mt: str) -> dict[str, Any]:
    """ModernBERT (arXiv 2412.13663 §2.1): bidirectional encoder, global attention every
    3rd layer (0, 3, ...), the others a local window of 128 (±64); GeGLU; no biases."""
    h = k.pos("hidden_size")
    n = k.pos("num_hidden_layers")
    H, K, D = read_heads(k, h, "num_attention_heads", None, None)
    every = k.pos("global_attn_every_n_layers")
    window = k.pos("local_attention")
    norm = h * (2 if k.flag("norm_bias") else 1)
    mlp = MLP(k.pos("intermediate_size"), bias=k.flag("mlp_bias"))
    layers = []
    for i in range(n):
        mask = Mask(causal=False) if i % every == 0 else Mask(causal=False, window=window)
        layers.append((make_attention(h, heads=H, kv_heads=K, head_dim=D, head_dim_v=D, mask=mask,
                             qkv_bias=k.flag("attention_bias"),
                             o_bias=k.flag("attention_bias")), mlp))
    groups, kinds = group_layers(layers)
    vocab = k.pos("vocab_size")
    # MLM head (dense h×h + norm + decoder bias; decoder weight tied) and the embedding
    # norm, less layer 0's attention norm, which is an Identity in HF ModernBertEncoderLayer.
    head = h * h + norm + (vocab if k.flag("decoder_bias", True) else 0)
    return dict(hidden_size=h, num_layers=n, groups=groups, layer_kinds=kinds, vocab_size=vocab,
                max_position_embeddings=k.pos("max_position_embeddings"), decoder=False,
                tie_word_embeddings=k.flag("tie_word_embeddings", True),
                norm_params_per_layer=2 * norm, final_norm_params=norm,
                extra_params=head)


def _build_deepseek(k: ConfigKeys, mt: str) -> dict[str, Any]:
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
    first_dense = k.count("first_k_dense_replace", 0, most=n)
    freq = k.pos("moe_layer_freq", 1)
    E, top = k.pos("n_routed_experts"), k.pos("num_experts_per_tok")
    if top > E:
        raise InputError("num_experts_per_tok", top, f"must not exceed n_routed_experts={E}")
    shared = k.count("n_shared_experts", 0, most=limits.MAX_EXPERTS)
    inter = k.pos("moe_intermediate_size")
    groups = k.pos("n_group", 1)
    topk_groups = k.pos("topk_group", 1)
    if topk_groups > groups:
        raise InputError("topk_group", topk_groups, f"must not exceed n_group={groups}")
    moe = MLP(inter, experts=E, experts_per_token=top, shared_experts=shared,
              shared_intermediate=shared * inter, router_bias=k.get("topk_method") == "noaux_tc",
              expert_groups=groups, expert_groups_per_token=topk_groups)
    dense = MLP(k.pos("intermediate_size"))
    # Attention in its cache form: one latent of (kv_lora + rope) shared by all heads.
    a = make_attention(h, heads=H, kv_heads=1, head_dim=mla.kv_lora_rank + mla.qk_rope_head_dim,
              head_dim_v=mla.kv_lora_rank, mask=mask, mla=mla, indexer=indexer)
    layers = [(a, moe if (i >= first_dense and i % freq == 0) else dense) for i in range(n)]
    return _pre_norm_decoder(k, h, n, layers)


BUILDERS: dict[str, Callable[[ConfigKeys, str], dict[str, Any]]] = {
    "llama": _build_llama_like, "mistral": _build_llama_like, "mixtral": _build_llama_like,
    "qwen2": _build_llama_like, "gpt2": _build_gpt2, "gemma2": _build_gemma,
    "gemma3_text": _build_gemma, "llama4_text": _build_llama4, "modernbert": _build_modernbert,
    "deepseek_v3": _build_deepseek, "deepseek_v32": _build_deepseek,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(BUILDERS)) + ("gemma3", "llama4")
