"""Shared helpers for reading a Hugging Face ``config.json``: keyed access with errors that
name the key, the head layout, and grouping identical layers."""

from __future__ import annotations

from typing import Any

from memsim import limits
from memsim.errors import InputError
from memsim.models.config import MLP, Attention, LayerGroup

# The ceiling of each size key (memsim.limits); keys not listed are widths (MAX_WIDTH).
_TOKENS = ("max_position_embeddings", "n_positions", "sliding_window", "attention_chunk_size",
           "local_attention", "index_topk")
_HEADS = ("num_attention_heads", "num_key_value_heads", "n_head", "index_n_heads")
_HEAD_DIMS = ("head_dim", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
              "index_head_dim")
_LAYERS = ("num_hidden_layers", "n_layer", "global_attn_every_n_layers",
           "sliding_window_pattern", "no_rope_layer_interval", "interleave_moe_layer_step",
           "moe_layer_freq")
_EXPERTS = ("num_local_experts", "num_experts_per_tok", "n_routed_experts")


def ceiling_of(key: str) -> int:
    """The largest value memsim accepts for a size key of a config.json."""
    for keys, ceiling in ((_TOKENS, limits.MAX_TOKENS), (_HEADS, limits.MAX_HEADS),
                          (_HEAD_DIMS, limits.MAX_HEAD_DIM), (_LAYERS, limits.MAX_LAYERS),
                          (_EXPERTS, limits.MAX_EXPERTS), (("vocab_size",), limits.MAX_VOCAB)):
        if key in keys:
            return ceiling
    return limits.MAX_WIDTH


class ConfigKeys:
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
        if value > ceiling_of(key):
            raise InputError(key, value, f"must be at most {ceiling_of(key)} in {self.where} "
                             "(memsim's ceiling, memsim/limits.py)")
        return value

    def count(self, key: str, default: int = 0, most: int | None = None) -> int:
        """A non-negative integer (``n_shared_experts``, ``first_k_dense_replace``)."""
        value = self.get(key, default)
        most = ceiling_of(key) if most is None else most
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
            raise InputError(key, value, f"must be an integer in 0..{most} in {self.where}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        """A JSON true/false (a string or number is an error, not truthy)."""
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise InputError(key, value, f"must be true or false in {self.where}")
        return value

    def items(self, key: str, kind: type, n: int) -> list[Any] | None:
        """A list of exactly ``n`` values of ``kind`` (per-layer lists), or None if absent."""
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or any(
                isinstance(v, bool) or not isinstance(v, kind) for v in value):
            raise InputError(key, _brief(value), f"must be a list of {kind.__name__} "
                             f"in {self.where}")
        if len(value) != n:
            raise InputError(key, f"{len(value)} entries", f"must list {n} layers "
                             f"(num_hidden_layers) in {self.where}")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key)
        return default if value is None else value


def _brief(value: Any) -> Any:
    return value[:4] if isinstance(value, list) else value


def read_heads(k: ConfigKeys, hidden: int, heads_key: str, kv_key: str | None,
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


def group_layers(
    layers: list[tuple[Attention, MLP]],
) -> tuple[tuple[LayerGroup, ...], tuple[int, ...]]:
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


def make_attention(hidden: int, **kw: Any) -> Attention:
    del hidden  # kept in the call sites for readability of the layer being built
    return Attention(**kw)
