"""One phase (prefill or decode step) of the whole model: the time of every operator of every
layer on one GPU, and the attention workspace; prefill chunks, pipeline stages (bubbles in
prefill, micro-batches in decode), multi-token prediction and context-parallel prefill."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.attention import backend_time_s
from memsim.cost import Cost
from memsim.inference.attention_call import (
    _attention_call,
    attention_cost,
    encoder_kernel_s,
    mla_kernel_s,
)
from memsim.inference.comm import all_gather_s, all_reduce_s, p2p_s
from memsim.inference.deployment import Setup
from memsim.inference.memory import kv_bytes_per_token
from memsim.inference.mlp import mlp_block_s
from memsim.inference.operators import (
    ELEMENTWISE_BLOCK_ELEMENTS,
    _elementwise,
    _time_s,
    linear_s,
)
from memsim.inference.projections import projections_s
from memsim.ops import DEFAULT_BACKEND
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
    """Every operator of the model, on one GPU, for B sequences of N new tokens against S
    keys: all layers (a pipeline's stages are folded in by the callers).

    B is the batch of the whole stage; each of the D attention replicas serves ⌈B/D⌉ of
    them (the busiest replica sets the pace). With ``context_parallel`` a prefill instead
    splits every sequence's N tokens over the D replicas (SGLang's in-sequence split for
    DeepSeek-V3.2, ``--enable-nsa-prefill-context-parallel``): each replica projects ⌈N/D⌉
    tokens, does 1/D of the attention (the split balances the causal triangle) and
    all-gathers the cache entries of the others' tokens.
    """
    m, gpu, G = setup.model, setup.gpu, setup.tp
    h = m.hidden_size
    w_b, a_b = dtype_bytes(setup.weight_dtype), dtype_bytes(setup.act_dtype)
    gemm_dtype = "fp8" if setup.weight_dtype == "fp8" else setup.act_dtype
    D = setup.attention_dp
    cp = setup.context_parallel and phase == "prefill"
    if cp:  # every replica takes 1/D of each sequence's tokens (balanced in-sequence split)
        Br, T = np.asarray(B), np.asarray(B) * -(-np.asarray(N) // D)
    else:
        Br = -(-np.asarray(B) // D)  # sequences of one attention replica
        T = Br * N  # tokens of one attention replica this step
    stage_T = np.asarray(B) * N  # tokens of the whole stage this step
    ops: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        ops[name] = ops.get(name, 0.0) + value

    workspace = np.zeros(np.shape(T))
    for g in setup.groups:
        a, c = g.attention, g.count
        before_s, after_s = projections_s(setup, a, phase, T, w_b, a_b, gemm_dtype)
        add("qkv_proj", c * before_s)
        call = _attention_call(setup, a, phase)
        cost, per_sm = attention_cost(call, gpu, Br, N, S)
        share = 1 / D if cp else 1  # CP: each replica does 1/D of the sequence's attention
        kernel_s = None if cp else mla_kernel_s(setup, a, phase, Br, N, S)
        if kernel_s is None and not cp:
            kernel_s = encoder_kernel_s(setup, a, phase, Br, N, S)
        if kernel_s is None:
            kernel_s = backend_time_s(cost, gpu, call.problem, call.algorithm,
                                      setup.backend or DEFAULT_BACKEND, Br, N, per_sm,
                                      S=S)
        add("attention", c * share * kernel_s)
        workspace = np.maximum(workspace, share * cost.workspace_bytes)
        if cp:  # each replica gathers the keys (cache entries) the others computed
            kv = Br * N * kv_bytes_per_token(setup, a)
            add("all_gather", c * all_gather_s(kv, D, gpu, setup.backend))
        add("o_proj", c * after_s)
        if G > 1:  # the all-reduce after o_proj (Megatron §3)
            add("all_reduce", c * all_reduce_s(T * h * a_b, G, gpu, setup.backend))
        for name, value in mlp_block_s(setup, g, T, stage_T, w_b, a_b, gemm_dtype,
                                       phase).items():
            add(name, c * value)
        # RMSNorm/LayerNorm + residual add: ~5 FLOPs per element (square, sum, scale, add)
        norm = _elementwise(T, h, a_b, 5.0)
        add("norms", c * m.norms_per_layer * _time_s(norm, gpu, setup.act_dtype))
    # embedding gather: read one row of weights and write one activation per token
    emb = Cost(global_read_bytes=T * h * w_b, global_write_bytes=T * h * a_b,
               hbm_read_bytes=T * h * w_b, hbm_write_bytes=T * h * a_b, launches=1.0,
               blocks=np.ceil(T * h / ELEMENTWISE_BLOCK_ELEMENTS))
    add("embedding", _time_s(emb, gpu, setup.act_dtype))
    # LM head: decoders need the logits of the last token of each sequence only. Quantised
    # checkpoints keep it at the activations' precision (DeepSeek-V3 report §3.3.1 "the
    # output head" stays BF16; TensorRT-LLM ModelOpt and vLLM leave lm_head unquantised;
    # aiconfigurator's logits_gemm is GEMMQuantMode.bfloat16 in every model file)
    head_tokens = Br if m.decoder else T
    add("lm_head", linear_s(setup, head_tokens, h, m.vocab_size / G, a_b, a_b,
                            setup.act_dtype))
    return Phase({k: np.asarray(v, dtype=float) for k, v in ops.items()}, workspace)


def prefill_phase(setup: Setup, context: Any, batch: Any) -> Phase:
    """Prefill of ``batch`` sequences of ``context`` tokens (chunked if set up so).

    Under a pipeline of P stages the m chunks flow through the stages: (m + P − 1) chunk
    slots of one stage's share (1/P of the layers) each, plus one point-to-point send of the
    chunk's activations per slot (GPipe, Huang et al. arXiv 1811.06965 §2.2: bubble
    (P − 1)/(m + P − 1)). Without chunking m = 1 and the stages run one after the other.
    """
    ph, chunks, chunk_tokens = prefill_layers(setup, context, batch)
    return pipelined_prefill(setup, ph, chunks, batch, chunk_tokens)


def prefill_layers(setup: Setup, context: Any, batch: Any) -> tuple[Phase, Any, Any]:
    """All layers' prefill on one GPU column, no pipeline: the phase, the chunks m per
    sequence and the tokens per chunk. Depends on the stage's shape, not on ``setup.pp``."""
    C = setup.prefill_chunk
    ctx = np.asarray(context)
    if C is None or np.all(ctx <= C):
        ph = _phase(setup, "prefill", batch, ctx, ctx)
        return ph, np.ones(np.shape(ph.workspace_bytes)), ctx
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
    whole = Phase(ops, np.max(np.where(live, ph.workspace_bytes, 0.0), axis=0))
    return whole, -(-ctx_b // C), np.minimum(ctx_b, C)


def pipelined_prefill(setup: Setup, ph: Phase, chunks: Any, batch: Any,
                      chunk_tokens: Any) -> Phase:
    """``ph`` (all layers on one GPU column) spread over ``setup.pp`` stages of ``chunks``
    micro-batches each: (m + P − 1)/(m·P) of the time, plus the sends between stages."""
    P = setup.pp
    if P == 1:
        return ph
    m = np.asarray(chunks, dtype=float)
    slots = m + P - 1
    ops = {k: v * slots / (m * P) for k, v in ph.operators_s.items()}
    rank_tokens = -(-np.asarray(batch) // setup.attention_dp) * chunk_tokens
    act = setup.model.hidden_size * dtype_bytes(setup.act_dtype)
    ops["p2p"] = slots * p2p_s(rank_tokens * act, setup.gpu, setup.n_gpus, setup.backend)
    return Phase(ops, ph.workspace_bytes)


def decode_phase(setup: Setup, context: Any, batch: Any) -> Phase | None:
    """One decode step at position ``context`` for ``batch`` sequences (None for encoders).

    With ``mtp`` = K drafts the step verifies K + 1 tokens per sequence (N = K + 1) and runs
    the draft K times (one more layer of the model's last kind with the embedding and LM
    head, as DeepSeek-V3's MTP module, report §2.2); it yields ``setup.tokens_per_step``
    tokens per sequence. Under a pipeline of P stages the batch runs as P micro-batches of
    ⌈B/P⌉ that keep every stage busy: a step (each sequence advancing once) takes P stage
    slots of 1/P of the layers at the micro-batch, plus P sends (Megatron-LM's interleaved
    inference schedule; Narayanan et al. arXiv 2104.04473 §2.2).
    """
    if not setup.model.decoder:
        return None
    return decode_step(setup, context, batch, setup.mtp)


def decode_step(setup: Setup, context: Any, batch: Any, mtp: Any) -> Phase:
    """:func:`decode_phase` with the MTP depth ``mtp`` as an array (broadcast with the
    others), so that a search evaluates every depth in one call."""
    micro = -(-np.asarray(batch) // setup.pp)
    return pipelined_decode(setup, decode_layers(setup, context, micro, mtp), micro, mtp,
                            context)


def decode_layers(setup: Setup, context: Any, micro: Any, mtp: Any) -> Phase:
    """All layers' decode step (verification of mtp + 1 tokens and the drafts) on one GPU
    column for a micro-batch, no pipeline. Depends on the stage's shape, not on
    ``setup.pp``."""
    ctx, K = np.asarray(context), np.asarray(mtp)
    ph = _phase(setup, "decode", micro, K + 1 + 0 * ctx, ctx + 1)
    ops = dict(ph.operators_s)
    if np.any(K > 0):
        draft = _phase(_draft(setup), "decode", micro, np.ones_like(ctx), ctx + 1).time_s
        ops["mtp_draft"] = K * draft
    return Phase(ops, ph.workspace_bytes)


def pipelined_decode(setup: Setup, ph: Phase, micro: Any, mtp: Any, context: Any) -> Phase:
    """A step of P micro-batches through ``setup.pp`` stages: ``ph`` plus P sends."""
    if setup.pp == 1:
        return ph
    rank_tokens = -(-np.asarray(micro) // setup.attention_dp) * (np.asarray(mtp) + 1)
    act = setup.model.hidden_size * dtype_bytes(setup.act_dtype)
    ops = dict(ph.operators_s)
    ops["p2p"] = setup.pp * p2p_s(rank_tokens * act + 0.0 * np.asarray(context), setup.gpu,
                                  setup.n_gpus, setup.backend)
    return Phase(ops, ph.workspace_bytes)


def _draft(setup: Setup) -> Setup:
    """The draft of multi-token prediction: one layer like the model's last, no pipeline."""
    m = setup.model
    model = replace(m, groups=(replace(m.groups[-1], count=1),), num_layers=1)
    return replace(setup, model=model, gpus=setup.stage_gpus, pp=1, mtp=0)
