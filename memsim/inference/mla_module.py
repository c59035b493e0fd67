"""The attention module of a DeepSeek-V3 / V3.2 layer predicted from memsim's own pieces:
its GEMMs (:mod:`memsim.ops.gemm`), the absorbed BMMs and MLA kernels (:mod:`memsim.ops.mla`)
and DSA through :func:`memsim.attention.backend_time_s`. A whole-layer composition, so it sits
above both :mod:`memsim.ops` and :mod:`memsim.attention` (which imports the ops' kernel
classes); aiconfigurator's MLA/DSA module tables check it (:mod:`memsim.silicon.classes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, out, positive, resolve_gpu
from memsim.ops.mla import (
    BMM_SHAPES,
    CONTEXT_D,
    HEAD_TILE,
    KV_LORA_RANK,
    LATENT,
    QK_NOPE,
    V_HEAD,
    bmm,
    context,
    decode,
    kv_family,
)

# The attention module of a DeepSeek-V3 / V3.2 layer (TensorRT-LLM's ``MLA.forward``, which
# aiconfigurator's module tables time whole: collect_mla_module.py builds one
# ``DeepseekV3DecoderLayer`` and times ``self_attn.forward``). DeepSeek-V3 config.json:
# hidden 7168, q_lora_rank 1536; V3.2's indexer: 64 heads of 128, top-k 2048.
HIDDEN = 7168
Q_LORA_RANK = 1536
INDEX_HEADS = 64
INDEX_HEAD_DIM = 128
INDEX_TOPK = 2048


def module_parts(phase: str, batch: Any, seq_len: Any, kv_len: Any, heads: int, *,
                 kv_dtype: str = "bf16", gemm_dtype: str = "bf16", sparse: bool = False,
                 gpu: Any = "h100-sxm", backend: str | None = None) -> dict[str, Any]:
    """Seconds of each kernel of one attention module call, memsim's own pieces summed by
    :func:`module`: ``batch`` sequences of ``seq_len`` new tokens (1 when decoding) over
    ``kv_len`` keys (arrays), ``heads`` per GPU (an int).

    - GEMMs through :func:`memsim.ops.gemm.predict` (``gemm_dtype`` bf16 or fp8_block):
      the fused down-projection ``fused_a`` (hidden → q_lora 1536 + latent 576, + the
      indexer key 128 with DSA), ``q_b_proj`` (1536 → H·192), ``o_proj`` (H·128 → hidden);
      prefill also decompresses K/V (``kv_b_proj`` 512 → H·256); DSA adds the indexer's
      ``wq_b`` (1536 → 64·128) and head weights (hidden → 64);
    - decode's absorbed BMMs (:func:`bmm`, fp8 block-scaled when the GEMMs are);
    - the attention: MLA prefill/decode (:func:`context`, :func:`decode`), or DSA
      (indexer, top-k, sparse MLA over the latent: memsim's ``dsa`` algorithm, its sparse
      gathers through the L2 estimate) timed with the backend's "dsa" class.

    Not counted: the RMSNorms of the two low-rank latents and the RoPE of q (element-wise
    kernels of a few µs each)."""
    from memsim.ops.gemm import predict as gemm

    gpu = resolve_gpu(gpu)
    B, N, S = as_float(batch, seq_len, kv_len)
    T = B * N
    H = float(heads)
    g = lambda k, n: np.asarray(gemm(T, n, k, dtype=gemm_dtype, gpu=gpu,  # noqa: E731
                                     backend=backend).time_s, dtype=float)
    parts = {"fused_a": g(HIDDEN, Q_LORA_RANK + LATENT + (INDEX_HEAD_DIM if sparse else 0)),
             "q_b_proj": g(Q_LORA_RANK, H * CONTEXT_D),
             "o_proj": g(H * V_HEAD, HIDDEN)}
    if sparse:
        parts["indexer_wq_b"] = g(Q_LORA_RANK, INDEX_HEADS * INDEX_HEAD_DIM)
        parts["indexer_weights"] = g(HIDDEN, INDEX_HEADS)
    if phase == "context" and not sparse:
        parts["kv_b_proj"] = g(KV_LORA_RANK, H * (QK_NOPE + V_HEAD))
    if phase == "decode" or sparse:
        bmm_dtype = "fp8" if gemm_dtype == "fp8_block" else "bf16"
        for op in BMM_SHAPES:
            parts[f"bmm_{op}"] = np.asarray(bmm(T, H, op=op, dtype=bmm_dtype, gpu=gpu,
                                                backend=backend).time_s, dtype=float)
    if sparse:
        parts["attention"] = dsa_s(B, N, S, heads, kv_dtype=kv_dtype, gpu=gpu,
                                   backend=backend)
    elif phase == "context":
        parts["attention"] = np.asarray(context(B, N, H, kv_dtype=kv_dtype, gpu=gpu,
                                                backend=backend).time_s, dtype=float)
    else:
        parts["attention"] = np.asarray(decode(B, S, H, kv_dtype=kv_dtype, gpu=gpu,
                                               backend=backend).time_s, dtype=float)
    return parts


def dsa_s(B: np.ndarray, N: np.ndarray, S: np.ndarray, heads: int, *, kv_dtype: str,
          gpu: Any, backend: str | None) -> np.ndarray:
    """Seconds of DeepSeek Sparse Attention over the latent (indexer, top-k, sparse MLA:
    :mod:`memsim.algorithms.dsa` with V3.2's indexer, its gathers through the L2 estimate),
    timed as :func:`memsim.attention.backend_time_s` times it with ``backend``'s "dsa"
    class; the sparse MMAs as the production kernel issues them (64-head tiles over all
    k = 2048 slots).

    Where the backend's class "dsa/<backend>/sparse_sm90" has a per-row cost and the GPU
    is a Hopper, the sparse kernel is FlashMLA's SM90 sparse prefill kernel (TensorRT-LLM
    runs it for context and, with a bf16 cache, for decode: FlashMLA's sparse decode
    kernel takes an fp8 cache only, README "Sparse Decoding | SM90 & SM100 | MQA | FP8";
    collect_mla_module.py header), timed by its CTAs (:func:`sm90_sparse_s`) after the
    indexer and top-k kernels instead of in the roofline."""
    from dataclasses import replace

    from memsim.algorithms.dsa import selected_keys
    from memsim.attention import backend_time_s, costs_for
    from memsim.ops.classes import kernel_class
    from memsim.problem import AttentionProblem, Mask

    dtype = "fp8" if kv_family(kv_dtype) == "fp8" else "bf16"
    sm90 = kernel_class("dsa", backend, "sparse_sm90")
    waves = gpu.architecture == "hopper" and sm90.row_s > 0
    out_s = np.zeros(np.shape(B))
    flat = [np.asarray(v, dtype=float).reshape(-1) for v in (B, N, S)]
    keys = list(zip(*(v.tolist() for v in flat), strict=True))
    for b, n, s in sorted(set(keys)):
        problem = AttentionProblem(
            batch=int(b), seq_len=int(n), kv_len=int(s), heads=int(heads), kv_heads=1,
            head_dim=LATENT, head_dim_v=KV_LORA_RANK, dtype=dtype, mla=True,
            mask=Mask(causal=True, top_k=INDEX_TOPK))
        cost, tiling = costs_for(problem, gpu, "dsa", l2_estimate=True)
        # the production sparse kernel (FlashMLA sparse on SM90, which TensorRT-LLM runs:
        # collect_mla_module.py header) computes 64-head tiles over all top-k slots, the
        # invalid ones (-1, fewer than k causal keys) masked, not skipped
        padded = b * n * np.ceil(heads / HEAD_TILE) * HEAD_TILE * INDEX_TOPK * 2.0 * (
            LATENT + KV_LORA_RANK)
        if waves:   # the sparse MMAs leave the roofline: the kernel's CTAs time them
            sparse = b * heads * selected_keys(n, s, INDEX_TOPK) * 2.0 * (LATENT
                                                                        + KV_LORA_RANK)
            cost = replace(cost, matmul_flops=np.maximum(cost.matmul_flops - sparse, 0.0))
        else:
            cost = replace(cost, matmul_flops=np.maximum(cost.matmul_flops, padded))
        t = backend_time_s(cost, gpu, problem, "dsa", backend, b, n,
                           blocks_per_sm=tiling.blocks_per_sm(gpu))
        if waves:
            t = t + sm90_sparse_s(b * n, heads, gpu, sm90.row_s)
        hit = np.asarray([k == (b, n, s) for k in keys]).reshape(np.shape(B))
        out_s[hit] = float(np.asarray(t).reshape(-1)[0])
    return out_s


def sm90_sparse_s(tokens: Any, heads: int, gpu: Any, row_s: float) -> Any:
    """Seconds of FlashMLA's SM90 sparse attention kernel (deepseek-ai/FlashMLA
    ``csrc/sm90/prefill/sparse/phase1.cuh``): one CTA per (query token, 64-head tile)
    (``blockIdx.x`` → ``s_q_idx``, ``q_h_idx``; B_H = 64, heads padded to whole tiles),
    ``__launch_bounds__(384, 1)`` with Q, two K buffers and O in shared memory, so one CTA
    per SM; every CTA runs all topk/64 key blocks (``num_topk_blocks = topk / B_TOPK``),
    invalid indices (-1, fewer than k causal keys) only predicate the gathers off. So the
    CTAs run in ⌈CTAs / SMs⌉ waves of one CTA time each, HEAD_TILE · ``row_s`` (``row_s``:
    the class's SM-seconds per padded head row over the k slots), whatever the context."""
    ctas = np.asarray(tokens, dtype=float) * np.ceil(heads / HEAD_TILE)
    return np.ceil(ctas / gpu.spec.sm_count) * HEAD_TILE * row_s


def module(phase: str, batch: Any, seq_len: Any, kv_len: Any, heads: int, *,
           kv_dtype: str = "bf16", gemm_dtype: str = "bf16", sparse: bool = False,
           gpu: Any = "h100-sxm", backend: str | None = None) -> OpPrediction:
    """The attention module of a DeepSeek-V3 (``sparse``: V3.2) layer, the sum of its
    kernels' times (:func:`module_parts`); ``terms_s`` holds each part."""
    if phase not in ("context", "decode"):
        from memsim.errors import InputError

        raise InputError("phase", phase, "must be context or decode")
    for name, v in (("batch", batch), ("seq_len", seq_len), ("kv_len", kv_len),
                    ("heads", heads)):
        positive(name, v)
    parts = module_parts(phase, batch, seq_len, kv_len, heads, kv_dtype=kv_dtype,
                         gemm_dtype=gemm_dtype, sparse=sparse, gpu=gpu, backend=backend)
    total = sum(parts.values())
    zero = np.zeros_like(total)
    return OpPrediction(time_s=out(total), bound=bound_of(parts, zero), flops=out(zero),
                        hbm_bytes=out(zero), launch_s=out(zero),
                        terms_s={k: out(v) for k, v in parts.items()},
                        detail={"sparse": sparse, "gemm_dtype": gemm_dtype})


__all__ = ["HIDDEN", "INDEX_TOPK", "dsa_s", "module", "module_parts", "sm90_sparse_s"]
