"""One phase (prefill or decode step) of the whole model: the time of every operator of every
layer, and the attention workspace; prefill chunking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.cost import Cost
from memsim.inference.attention_call import _attention_call, attention_cost
from memsim.inference.deployment import Setup
from memsim.inference.operators import (
    _elementwise,
    _gemm,
    _mlp_time_s,
    _time_s,
    all_reduce_time_s,
)
from memsim.units import dtype_bytes


@dataclass
class Phase:
    """Time of one phase by operator (seconds, arrays) and its attention workspace."""

    operators_s: dict[str, Any]
    workspace_bytes: Any

    @property
    def time_s(self) -> Any:
        return sum(self.operators_s.values())



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
