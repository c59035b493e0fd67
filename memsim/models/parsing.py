"""Shared helpers for reading a Hugging Face ``config.json``: keyed access with errors that
name the key, the head layout, and grouping identical layers."""

from __future__ import annotations

from typing import Any

from memsim.errors import InputError
from memsim.models.config import MLP, Attention, LayerGroup


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
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.cfg.get(key)
        return default if value is None else value


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
