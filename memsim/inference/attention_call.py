"""A layer group's attention through the foundation's algorithms: which algorithm, which
per-GPU problem, and its Cost at arrays of B, N, S."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memsim.algorithms import for_layer, runs_mask
from memsim.cost import Cost
from memsim.hardware import GPU
from memsim.inference.deployment import Setup
from memsim.models import Attention
from memsim.problem import AttentionProblem, Mask


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
    algorithm = for_layer(setup.attention, phase, sparse)
    topk = runs_mask(algorithm, "topk")
    if sparse and not topk:
        mask = Mask(causal=mask.causal)   # a dense algorithm runs the layer densely
    H = attn.heads // G
    dtype = setup.kv_dtype
    if attn.mla is not None:
        m = attn.mla
        if not topk and phase == "prefill":
            problem = AttentionProblem(batch=1, seq_len=1, heads=H, kv_heads=H,
                                       head_dim=m.qk_nope_head_dim + m.qk_rope_head_dim,
                                       head_dim_v=m.v_head_dim, dtype=dtype, mask=mask)
        else:
            problem = AttentionProblem(batch=1, seq_len=1, heads=H, kv_heads=1,
                                       head_dim=m.kv_lora_rank + m.qk_rope_head_dim,
                                       head_dim_v=m.kv_lora_rank, dtype=dtype, mla=True,
                                       mask=mask,
                                       indexer=attn.indexer if topk else None)
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


def mla_kernel_s(setup: Any, attn: Any, phase: str, B: Any, N: Any, S: Any) -> Any:
    """Seconds of a DeepSeek MLA attention call through :mod:`memsim.ops.mla` — the
    production kernels (prefill FMHA over the decompressed K/V, FlashMLA's split-KV decode
    over the latent) with their fitted classes — where it applies: DeepSeek-V3's MLA
    geometry without a DSA indexer, a prefill without a cached prefix (N = S) or a decode
    step of one token, a KV cache in bf16 or fp8. None elsewhere (memsim's own attention
    algorithms time it)."""
    from memsim.ops import mla

    m = attn.mla
    if (m is None or attn.indexer is not None or setup.kv_dtype not in mla.KV_DTYPES
            or (m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim)
            != (mla.KV_LORA_RANK, mla.QK_NOPE, mla.QK_ROPE, mla.V_HEAD)):
        return None
    pred = mla.production(phase == "decode", B, N, S, attn.heads // setup.tp,
                          kv_dtype=setup.kv_dtype, gpu=setup.gpu, backend=setup.backend)
    return None if pred is None else pred.time_s


def encoder_kernel_s(setup: Any, attn: Any, phase: str, B: Any, N: Any, S: Any) -> Any:
    """Seconds of a layer group's attention through :mod:`memsim.ops.encoder` — the
    production encoder kernels with their fitted classes — where
    :func:`memsim.ops.encoder.applies` to its call (:func:`_attention_call`: the algorithm
    ``setup.attention`` picks for the phase, the per-GPU heads), in the activations' dtype
    (an encoder's Q, K, V; there is no cache), with the setup's backend (None: the default,
    as for every op of a whole-model sum). None elsewhere (memsim's own attention
    algorithms time it)."""
    from memsim.ops import DEFAULT_BACKEND, encoder

    call = _attention_call(setup, attn, phase)
    problem = call.problem.model_copy(update={"dtype": setup.act_dtype})
    backend = setup.backend or DEFAULT_BACKEND
    if not encoder.applies(problem, call.algorithm, backend, N, S):
        return None
    return encoder.predict(B, N, problem.H, problem.D, gpu=setup.gpu, backend=backend).time_s
