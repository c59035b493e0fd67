"""FlashMLA's sparse MLA kernels as vLLM's FLASHMLA_SPARSE backend runs DeepSeek Sparse
Attention over the 576-wide latent (vllm v1/attention/backends/mla/flashmla_sparse.py,
``FlashMLASparseImpl.forward_mqa``; deepseek-ai/FlashMLA at 9241ae3).

vLLM runs every DSA token as MQA (H query heads over one latent, D = 576, Dv = 512) on one
of two FlashMLA kernels (:func:`vllm_kernel`):

- **prefill** (``flash_mla_sparse_fwd``; ``_bf16_flash_mla_kernel``): one CTA per (query
  token, tile of ``B_H`` heads), heads padded to whole tiles (vLLM pads them to 64 on
  SM90, 128 on SM100: ``prefill_padding``). vLLM passes ``topk_length`` (the valid count
  of each token's top-k), and the SM90 kernel walks only ``⌈topk_length / B_TOPK⌉`` key
  blocks (csrc/sm90/prefill/sparse/phase1.cuh: ``num_topk_blocks = HAVE_TOPK_LENGTH ?
  ceil_div(topk_length, B_TOPK) : topk / B_TOPK``, config.h: ``B_H = 64``, ``B_TOPK = 64``,
  ``__launch_bounds__(384, 1)``: one CTA per SM). Its MMAs are whole 64-key blocks of
  the keys a token selected: Σ_p ⌈min(k, p + 1) / 64⌉ · 64 keys per head. The SM100
  kernel runs each token's 128-head tile as a cluster of **two** CTAs on two SMs, each
  CTA 64 of the heads (its Q and O tiles ``B_H/2`` rows, the 2x1SM tcgen05 MMAs) over
  128-key blocks (csrc/sm100/prefill/sparse/fwd.cu at 4cad6fb: ``B_H = 128; // For 2
  CTAs``, ``B_TOPK = 128``, ``__launch_bounds__(NUM_THREADS, 1, 2)``; fwd/head128/
  phase1.cuh at 8e0c060: ``cta_idx = blockIdx.x % 2``, ``s_q_idx = blockIdx.x / 2``,
  ``num_k_blocks = ceil_div(topk_length, B_TOPK)``), so an SM does half a tile's work
  and a call has twice the CTAs (:data:`PREFILL_CLUSTER`, :data:`PREFILL_TOPK_BLOCK`).
- **decode** (``flash_mla_with_kvcache(..., is_fp8_kvcache=True, indices=...)``, the
  split-KV fp8 sparse decode kernel, csrc/sm90/decode/sparse_fp8/splitkv_mla.cuh): with
  an fp8 cache (``fp8_ds_mla``) it runs every token of a call whose heads are fewer than
  ``MIN_HEADS_FOR_BF16_PREFILL`` = 32 (vLLM's mixed-batch mode) and every one-token
  decode. Heads padded to 64 or 128 (``_compute_fp8_decode_padded_heads``); V3.2 has no
  dynamic top-k length (``KU_ASSERT(params.topk_length == nullptr, "V3.2 does not support
  dynamic topk length")``), so every token computes all k = 2048 slots, the invalid ones
  masked. Its split-KV scheduler spreads the slots over every SM (``num_sm_parts``).

The kernels' time (:func:`sparse_time_s`), with the classes "dsa/vllm/sparse_prefill"
and "dsa/vllm/sparse_decode" (fitted on H100 and H200 decode-module rows: CUDA-graphed,
bf16 caches on the prefill kernel, fp8 caches on the decode kernel):

- prefill: whole waves of its CTAs (one per SM), each CTA its MMAs at the SM's share of
  the class's tensor rate plus its fixed steps, ``row_s`` per padded head row (loading the
  64 × 576 Q tile, the pipeline's first gathers, the O and LSE epilogue);
- decode: its MMAs over all SMs at the class's tensor rate;

each plus the class floor. FlashMLA's own figures (README: sparse prefill 640 TFLOP/s on
H800, 1450 on B200; sparse fp8 decode 410 on H800, 350 on B200, "not really optimized
yet") are the check on the fitted rates.

Not modelled: on Blackwell (SM10x) vLLM runs a third kernel for some calls. Its backend
priority (vllm platforms/cuda.py, ``_get_backend_priorities``: "Prefer FlashInfer at low
head counts (FlashMLA uses padding)") puts FLASHINFER_MLA_SPARSE first at 16 heads or
fewer, and FlashMLA's sparse backend takes an fp8 cache only in its ``fp8_ds_mla`` layout
(flashmla_sparse.py), so aiconfigurator's B200/B300/GB200 vLLM DSA rows name
FLASHINFER_MLA_SPARSE for bf16 caches at 8 and 16 heads and for every fp8 cache. That
backend (v1/attention/backends/mla/flashinfer_mla_sparse.py) runs trtllm-gen's sparse MLA
generation kernel (FlashInfer ``trtllm_batch_decode_with_kv_cache_mla`` with
``sparse_mla_top_k``), every query token one decode row over its valid top-k keys, heads
below 128 on the low-latency SwapsMmaAb kernel (tileSizeQ 16; flashinfer-ai/flashinfer
include/flashinfer/trtllm/fmha/fmhaKernels.cuh, ``selectMlaGenerationKernel``: "The
number of headsQPerKv is < 128 for sparseMla"). Those rows are timed here with the
FlashMLA kernels above. No H100/H200 row runs that kernel, so no class can be fitted for
it; two unfitted versions were tried (before the SM100 two-CTA tiles below) and left
out: the profile's L2 gather and tensor rates plus one launch (B200 vLLM DSA decode module
median 13.3 → 37.8 %), and the FlashMLA prefill law with 16-head tiles (context 21.6 →
21.4 %, decode 13.3 → 14.8 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.ops import cc_major

B_TOPK = 64                      # FlashMLA sparse kernels: keys per top-k block
MIN_HEADS_FOR_BF16_PREFILL = 32  # vLLM flashmla_sparse.py: fewer heads → mixed-batch fp8
PREFILL_HEAD_TILE = {9: 64, 10: 128}  # vLLM ``prefill_padding``: SM90 64, SM100 128
PREFILL_CLUSTER = {9: 1, 10: 2}       # CTAs (SMs) sharing one head tile: SM100 2-CTA MMA
PREFILL_TOPK_BLOCK = {9: B_TOPK, 10: 128}  # keys per block of the prefill kernel
MLA_FLOPS_PER_KEY = 2.0 * (576 + 512)  # QKᵀ over D = 576 and PV over Dv = 512, per head


def vllm_kernel(kv_fp8: bool, heads: int, N: Any) -> np.ndarray:
    """Which FlashMLA sparse kernel vLLM runs for calls of ``N`` query tokens per sequence
    (array) with ``heads`` per GPU: "decode" with an fp8 cache when the heads are fewer
    than :data:`MIN_HEADS_FOR_BF16_PREFILL` or the call decodes one token, else
    "prefill" (with an fp8 cache after ``cp_gather_and_upconvert_fp8_kv_cache`` writes
    the sequences' latents to a bf16 workspace)."""
    N = np.asarray(N, dtype=float)
    decode = kv_fp8 & ((heads < MIN_HEADS_FOR_BF16_PREFILL) | (N == 1))
    return np.where(decode, "decode", "prefill")


def padded_heads(kernel: str, heads: int, gpu: Any) -> int:
    """Heads the kernel computes: the prefill kernel's whole head tiles
    (:data:`PREFILL_HEAD_TILE`), the fp8 decode kernel's 64 or 128."""
    if kernel == "decode":
        return 64 if heads <= 64 else 128
    tile = PREFILL_HEAD_TILE.get(cc_major(gpu), 64)
    return int(np.ceil(heads / tile) * tile)


def sparse_time_s(kv_fp8: bool, heads: int, B: Any, N: Any, S: Any, top_k: int,
                  gpu: Any) -> np.ndarray:
    """Seconds of vLLM's sparse MLA kernel for ``B`` sequences of ``N`` new tokens over
    ``S`` keys (arrays), ``heads`` per GPU, top-``top_k`` (module docstring)."""
    from memsim.algorithms.dsa import gathered_tiles
    from memsim.ops.classes import kernel_class

    B, N, S = (np.asarray(v, dtype=float) for v in (B, N, S))
    kernel = vllm_kernel(kv_fp8, heads, N)
    out = np.zeros(np.broadcast(B, N, S).shape)
    sms = float(gpu.spec.sm_count)
    for name in ("prefill", "decode"):
        hit = kernel == name
        if not np.any(hit):
            continue
        cls = kernel_class("dsa", "vllm", f"sparse_{name}")
        rate = gpu.peak_flop_per_s("tensor", "bf16") * min(cls.eff("tensor"), 1.0)
        hp = padded_heads(name, heads, gpu)
        if name == "prefill":
            # whole 64-key blocks of each token's selected keys, one CTA per (token,
            # head tile), whole waves of one CTA per SM
            cc = cc_major(gpu)
            block = PREFILL_TOPK_BLOCK.get(cc, B_TOPK)
            keys = B * gathered_tiles(N, S, top_k, block) * block
            tile = PREFILL_HEAD_TILE.get(cc, 64)
            cluster = PREFILL_CLUSTER.get(cc, 1)
            rows = tile / cluster          # the heads one CTA computes
            ctas = B * N * (hp / tile) * cluster
            waves = np.ceil(ctas / sms)
            # each CTA: its MMAs at the SM's share of the rate, plus its fixed steps
            # (load its Q rows, write their O and LSE) at the class's per-row time
            t = waves * ((keys / (B * N)) * rows * MLA_FLOPS_PER_KEY / (rate / sms)
                         + rows * cls.row_s)
        else:
            t = B * N * top_k * hp * MLA_FLOPS_PER_KEY / rate
        out = np.where(hit, cls.floor_s + t, out)
    return out


__all__ = ["MIN_HEADS_FOR_BF16_PREFILL", "padded_heads", "sparse_time_s", "vllm_kernel"]
