"""Encoder (bidirectional, ViT) attention as the production kernels run it: one call over
``B`` sequences of ``N`` tokens each, ``H`` query heads of ``H`` KV heads (MHA), head size
``D``, no KV cache, every query attending to every key of its sequence.

What aiconfigurator's collectors time (ai-dynamo/aiconfigurator @095f58a; CUDA-graph
replays of one call, ``collector/helper.py`` ``benchmark_with_power``):

- TensorRT-LLM (``collector/trtllm/collect_attn_encoder.py`` l. 80-131): its torch-flow
  ``TrtllmAttention`` with ``kv_cache_manager=None`` and ``PredefinedAttentionMask.FULL``
  (the padding mask) on a packed [tokens, 3·H·D] QKV. ``attentionOp.cpp``
  ``enqueueContext`` runs ``invokeBuildDecoderInfo``, then ``invokeQKVPreprocessing``
  (in place: reads the packed QKV, writes Q and K back; no cache to fill), then the
  context FMHA on the packed QKV: on Hopper fmha_v2's warp-specialised TMA kernels
  ``fmha_v2_flash_attention_bf16_64_{256,128}_S_qkv_{D}_tma_ws_sm90`` (64-row query tiles,
  256 keys per tile for D ≤ 64, 128 to D = 128), on the SM100 family trtllm-gen's but
  for D = 72 (:data:`TLLM_GEN_EXCLUDED_HEAD_DIMS`), elsewhere fmha_v2's ``mma.sync``
  flash kernels (``..._{128,64}_128_S_qkv_{D}_sm89``).
- vLLM 0.24 (``collector/vllm/collect_attn_encoder.py`` l. 70-101): the ViT wrapper
  ``vit_flash_attn_wrapper`` → ``flash_attn_varlen_func(causal=False)`` on contiguous
  [B·N, H, D] views (no copies); kernel_source names the version: FA3 on Hopper, FA4 on
  Blackwell, FA2 on Ada. FA3's varlen path zeroes a tile-count semaphore and runs
  ``prepare_varlen_num_blocks`` before the kernel (vllm-project/flash-attention
  @617264c1 ``hopper/flash_api.cpp`` l. 686-722).
- SGLang 0.5.14 (``collector/sglang/collect_attn_encoder.py`` l. 86-150): FA3's
  ``flash_attn_varlen_func`` on SM90, FA4 on SM100, its Triton ``context_attention_fwd``
  elsewhere (SM89, SM103).

The kernels (:func:`kernel`) tile the (query, key) square of each (sequence, head) into
``block_m × block_n`` tiles, the head size padded to what their MMAs take
(:func:`mma_head_dim`); every tile is a whole MMA and softmax, the last ones padded. A
persistent scheduler (FA3/FA4's, fmha_v2's tile counter) deals the B·H·⌈N/block_m⌉ query
tiles (m-blocks) over the SMs; all do the same work, so the busiest SM runs
⌈m-blocks / SMs⌉ of them, each over ⌈N/block_n⌉ key tiles (:func:`work`).

Time of one call (:func:`time_work`), on the busiest SM (the class's rates / SMs):

    pair_s  = combine(MMA_s, exp_s + vector_s) + cta_s      per (m-block, key tile)
    time_s  = floor + max(pairs · pair_s + rows · row_s, hbm_bytes / HBM) + pre_bytes / HBM

``combine`` is ``max`` where the kernel is warp-specialised — its softmax warpgroups run
while other warpgroups' tensor-core MMAs do (FlashAttention-3 arXiv 2407.08608 §3.1
"ping-pong scheduling"; fmha_v2's SM90 warp-specialised kernels, FA4 and trtllm-gen on
Blackwell) — and ``+`` where the same warps issue both (FA2, fmha_v2's ``mma.sync``
kernels, Triton). ``exp_s`` counts one exponential per score at the special-function
rate, ``vector_s`` :data:`SOFTMAX_FLOPS_PER_SCORE` FP32 FLOPs per score (the online
softmax's scale, running max, subtract and row sum, as :mod:`memsim.algorithms.flash2`
counts them). ``row_s`` is the fixed time of an m-block per padded query row (loading Q,
the epilogue writing O), ``cta_s`` a fixed time per key tile (the per-tile barriers of a
kernel whose few warpgroups wait on each other), both SM-seconds, as fitted (like
:mod:`memsim.ops.mla`'s ``row_s``, not rescaled by another GPU's clock). HBM sees Q, K,
V once and O once (the K/V tiles re-read by the m-blocks of a head hit L2), and
TensorRT-LLM's preprocessing pass is a separate kernel before the FMHA (``pre``).

Fitted per framework (``attention/encoder/<backend>``, :mod:`memsim.ops.classes`) on H100
and H200 rows only; every other GPU is predicted from its datasheet profile with its own
kernel's tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.algorithms.flash2 import SOFTMAX_FLOPS_PER_SCORE
from memsim.ops import OpPrediction, as_float, bound_of, cc_major, out, positive, resolve_gpu
from memsim.ops.classes import KernelClass, kernel_class, with_class
from memsim.units import DTYPE_BYTES

BF16 = DTYPE_BYTES["bf16"]
# FlashAttention-3's head sizes (hopper/flash_api.cpp ``round_up_headdim``)
FA3_HEAD_DIMS = (64, 96, 128, 192, 256)
MMA_K = 16   # the K step of a 16-bit tensor-core MMA (mma.sync m16n8k16, wgmma/UMMA k16)
# TensorRT-LLM 1.3.0rc20 (the version of aiconfigurator-core 0.12.0's encoder rows: their
# data folders ``encoder_attention/trtllm/1.3.0rc20``, the collector pinned to it in
# ai-dynamo/aiconfigurator dec5f4cd2, 2026-08-03), cpp/tensorrt_llm/kernels/
# fmhaDispatcher.cpp ``FmhaDispatcher::FmhaDispatcher``: ``mUseTllmGen =
# isSM100Family() && fixedParams.headSize != 72`` — "TRTLLM-GEN only supports power of 2
# head sizes (and 80 with padding). The exception will fall back to fmha v2." The rule as
# NVIDIA/TensorRT-LLM main had it from PR #13808 (trtllm-gen head_dim 80 cubins, opened
# 2026-05-06, merged) until PR #19507 (2026-09, adds 104), the window rc20 lies in; the
# file at the v1.3.0rc20 tag itself could not be read here (the repository's snapshot is
# over the fetch limit): read at the base of #19507's diff and in the yunruis/TensorRT-LLM
# copy @0380cf13. Earlier releases had ``!= 80`` (D = 80 to fmha_v2).
TLLM_GEN_EXCLUDED_HEAD_DIMS = (72,)
# the head sizes trtllm-gen has context kernels for besides the powers of two (the
# dispatcher's comment above); others fail ``isSupported`` and run unfused
TLLM_GEN_PADDED_HEAD_DIMS = (80,)


@dataclass(frozen=True)
class Kernel:
    """The kernel a framework runs for encoder attention on one GPU.

    ``name``: "fmha_v2_sm90", "fmha_v2", "trtllm_gen", "unfused", "fa3",
    "fa4", "fa2" or "triton";
    ``head_dim``: the head size its MMAs run at (padded); ``block_m``, ``block_n``: query
    rows and keys per tile (arrays: FA3's tile depends on N); ``overlap``: warp-specialised
    (softmax concurrent with the MMAs); ``preprocess``: a QKV pass runs before it
    (TensorRT-LLM's ``invokeQKVPreprocessing``); ``tile_cost``: the class's fixed time per
    key tile (``cta_s``, fitted on fmha_v2's SM90 kernel) applies: fmha_v2's builds share
    its per-key-tile loop (SM90: warpgroups handing each tile over at named barriers; SM8x:
    ``cp.async`` waits and ``__syncthreads``); trtllm-gen, a different code base (one
    thread issuing asynchronous tcgen05 MMAs into tensor memory), is not charged it."""

    name: str
    head_dim: int
    block_m: np.ndarray
    block_n: np.ndarray
    overlap: bool
    preprocess: bool = False
    tile_cost: bool = False


def mma_head_dim(name: str, head_dim: int) -> int:
    """The head size kernel ``name`` computes at: FA3's instantiated sizes
    (``round_up_headdim``: 64, 96, 128, 192, 256), FA2's multiples of 32 (its
    ``hdim32 … hdim256`` instantiations), Triton's next power of two (``BLOCK_DMODEL =
    triton.next_power_of_2(Lk)``); fmha_v2, trtllm-gen and FA4 (``hdim_multiple_of = 16``,
    flash_attn/cute/flash_fwd_sm100.py) pad to the MMA's K step of 16 (D = 72 runs as 80:
    TensorRT-LLM's H100 rows at D = 72 take 1.00× the time of D = 80, vLLM's FA3 1.05×).
    Known gap: fmha_v2's SM90 warp-specialised kernel pads by its kernel_traits.h rule
    (:func:`memsim.fmha_v2.fmha_v2_head_dim`, bf16 72 and 80 → 128), which the context
    timer uses; timing encoder rows with it (class refitted) balanced the per-head-size
    bias on H100/H200 but worsened the leave-one-GPU-out and unseen-GPU errors of
    ``attention/encoder/trtllm`` (2026-12-02), so it is not used here yet."""
    D = int(head_dim)
    if name == "fa3":
        return next((d for d in FA3_HEAD_DIMS if d >= D), D)
    if name == "fa2":
        return -(-D // 32) * 32
    if name == "triton":
        return 1 << (D - 1).bit_length()
    return -(-D // MMA_K) * MMA_K


def kernel(framework: str, gpu: Any, head_dim: int, seq_len: Any) -> Kernel:
    """The kernel ``framework`` runs on ``gpu`` for head size ``head_dim`` and ``seq_len``
    tokens per sequence (array), with its tiles (module docstring for the dispatch).

    - "fa3" (vLLM, SGLang on Hopper): hopper/tile_size.h ``tile_size_fwd_sm90``
      (:func:`memsim.ops.fa3.tile_size_fwd_sm90`) for a non-causal, non-local call with
      TMA K/V (not paged): hdim 64 → 192 × 192, or 64 ×
      192 with one MMA warpgroup (heuristics.h ``use_one_mma_wg``: D ∈ {64, 128} and
      seqlen_q ≤ 64); hdim 96 → 192 × 144; hdim 128 → 128 × 176 (one warpgroup: 64 × 176)
      else 128 × 160; hdim 192 → 128 × 96; hdim 256 → 128 × 80.
    - "fa4" (vLLM, SGLang on the SM100 family): 128 × 128 tiles, two query tiles per CTA
      when seqlen_q > 128 (flash_attn/cute/interface.py: ``q_stage = 2 if seqlen_q_packgqa
      > tile_m``, ``m_block_size_effective = q_stage * tile_m``).
    - "fmha_v2_sm90" (TensorRT-LLM on Hopper): 64-row query tiles, 256 keys per tile for
      D ≤ 64, 128 to D = 128, 64 above (the ``_64_{256,128,64}_S_qkv_{D}_tma_ws_sm90``
      kernels).
    - "trtllm_gen" (TensorRT-LLM on the SM100 family: every head size but
      :data:`TLLM_GEN_EXCLUDED_HEAD_DIMS` is sent to it, and it has kernels for the powers
      of two and :data:`TLLM_GEN_PADDED_HEAD_DIMS`): its context kernels are closed cubins;
      timed with the 128 × 128 tiles of Blackwell's 128-row UMMA and the head size padded
      to the MMA's K step (the width D = 80's "padding" runs at is not in the source read).
      Other head sizes find no trtllm-gen kernel (``isSupported`` false: "Fall back to
      unfused MHA"), and attentionOp.cpp ``enqueueContext`` runs the unfused path:
      "unfused" (:func:`work`). D = 72 goes to fmha_v2, whose SM100 build is its
      ``mma.sync`` flash kernels (the warp-specialised TMA kernels are ``_tma_ws_sm90``:
      ``wgmma`` exists on sm_90a only): "fmha_v2", with the tiles of its SM8x build (the
      SM100 enumeration of fmha_v2/setup.py was not read) and the profile's tensor rate,
      which is tcgen05's: ``mma.sync``'s own rate on Blackwell is not modelled.
    - "fmha_v2" (TensorRT-LLM on Ada/Ampere, and D = 72 on SM100):
      ``_128_128_S_qkv_64_sm89`` for D ≤ 64, else ``_64_128_S_qkv_{D}_sm89`` (NVIDIA
      TensorRT-Edge-LLM's cubin list, contextAttentionKernels/cubin/fmha_cubin.h, names the
      SM100 build the same way: ``..._64_128_S_qkv_128_sm100``, no ``tma_ws``); "fa2" (vLLM
      on Ada/Ampere): flash_fwd_launch_template.h hdim64 128 × 128, hdim96 and up
      128 × 64 on SM8x; "triton" (SGLang elsewhere):
      sglang/srt/layers/attention/triton_ops/prefill_attention.py
      ``context_attention_fwd``, ``BLOCK_M = BLOCK_N = 128`` where the compute capability's
      major is above 8, else 64.
    """
    N = np.asarray(seq_len, dtype=float)
    D = int(head_dim)
    cc = cc_major(gpu)
    full = lambda v: np.full(N.shape, float(v))  # noqa: E731
    if framework == "trtllm":
        if cc == 9:
            return Kernel("fmha_v2_sm90", mma_head_dim("fmha_v2", D), full(64),
                          full(256 if D <= 64 else 128 if D <= 128 else 64), True, True,
                          tile_cost=True)
        if cc == 10 and D not in TLLM_GEN_EXCLUDED_HEAD_DIMS:
            if D & (D - 1) and D not in TLLM_GEN_PADDED_HEAD_DIMS:
                return Kernel("unfused", D, full(0), full(0), False)
            return Kernel("trtllm_gen", mma_head_dim("trtllm_gen", D), full(128), full(128),
                          True, True)
        return Kernel("fmha_v2", mma_head_dim("fmha_v2", D), full(128 if D <= 64 else 64),
                      full(128), False, True, tile_cost=True)
    if cc == 9:
        from memsim.ops import fa3

        # bidirectional, no window, K/V by TMA (contiguous, not paged); one warpgroup on
        # the raw head size (heuristics.h use_one_mma_wg reads params.d)
        d = mma_head_dim("fa3", D)
        m, n = fa3.sm90_tile(d, d, False, False, fa3.use_one_mma_wg(D, D, False, N))
        return Kernel("fa3", d, m.astype(float), n.astype(float), True)
    if cc == 10 and not (framework == "sglang" and str(gpu.compute_capability) == "10.3"):
        return Kernel("fa4", mma_head_dim("fa4", D), np.where(N > 128, 256.0, 128.0),
                      full(128), True)
    if framework == "sglang":
        block = 128 if cc > 8 else 64
        return Kernel("triton", mma_head_dim("triton", D), full(block), full(block), False)
    d = mma_head_dim("fa2", D)
    return Kernel("fa2", d, full(128), full(128 if d <= 64 else 64), False)


@dataclass(frozen=True)
class EncoderWork:
    """The work of one encoder attention call on the busiest SM and in HBM (arrays).

    ``pairs``: (m-block, key tile) pairs the busiest SM runs; ``scores``: their padded
    scores; ``matmul_flops``: their MMA FLOPs at the padded head size (QKᵀ and PV);
    ``rows``: the padded query rows of its m-blocks; ``hbm_bytes``: Q, K, V read and O
    written once; ``pre_bytes``: the preprocessing pass's (0 without one); ``flops``: the
    useful MMA FLOPs of the whole call, 4·B·H·N²·D; ``m_blocks``: the grid's m-blocks."""

    pairs: np.ndarray
    scores: np.ndarray
    matmul_flops: np.ndarray
    rows: np.ndarray
    hbm_bytes: np.ndarray
    pre_bytes: np.ndarray
    flops: np.ndarray
    m_blocks: np.ndarray


def work(B: Any, N: Any, H: Any, D: int, k: Kernel, sm_count: int) -> EncoderWork:
    """The busiest SM's tiles and the call's HBM bytes for ``B`` sequences of ``N`` tokens
    and ``H`` heads of size ``D`` (arrays broadcast) on kernel ``k`` over ``sm_count``
    SMs (module docstring)."""
    B, N, H = as_float(B, N, H)
    if k.name == "unfused":
        return _unfused_work(B, N, H, D, sm_count)
    m = np.ceil(N / k.block_m)
    n = np.ceil(N / k.block_n)
    m_blocks = B * H * m
    busiest = np.maximum(np.ceil(m_blocks / sm_count), 1.0)
    pairs = busiest * n
    scores = pairs * k.block_m * k.block_n
    tokens = B * N * H * D * BF16
    pre = 5.0 * tokens if k.preprocess else np.zeros_like(tokens)
    return EncoderWork(pairs=pairs, scores=scores,
                       matmul_flops=scores * 2.0 * (k.head_dim + k.head_dim),
                       rows=busiest * k.block_m, hbm_bytes=4.0 * tokens, pre_bytes=pre,
                       flops=4.0 * B * H * N * N * D, m_blocks=m_blocks)


def _unfused_work(B: np.ndarray, N: np.ndarray, H: np.ndarray, D: int, sm_count: int
                  ) -> EncoderWork:
    """TensorRT-LLM's unfused context attention (attentionOp.cpp ``enqueueContext``, the
    ``mEnableContextFMHA`` false branch): ``invokeAddFusedQKVBiasTranspose`` (reads the
    packed QKV, writes Q, K, V per head, after a memset of the K, V buffers), a cuBLAS
    batched GEMM S = QKᵀ written in fp32 (``is_qk_buf_float_ = true``), the masked softmax
    (reads S in fp32, writes P in bf16), the GEMM O = PV reading P, and the transpose of O
    back to tokens. HBM: 12 bytes per score plus the activations; the separate passes
    (transposes, memset) as ``pre``. No tiles: ``pairs`` and ``rows`` are 0, the GEMMs'
    FLOPs spread over the SMs."""
    tokens = B * N * H * D * BF16
    scores = B * H * N * N
    flops = 4.0 * scores * D
    zero = np.zeros_like(tokens)
    return EncoderWork(pairs=zero, scores=zero, matmul_flops=flops / sm_count, rows=zero,
                       hbm_bytes=4.0 * tokens + (4.0 + 4.0 + 2.0 + 2.0) * scores,
                       pre_bytes=(3.0 + 3.0 + 2.0 + 2.0) * tokens, flops=flops,
                       m_blocks=zero)


def time_work(w: EncoderWork, k: Kernel, gpu: Any, cls: KernelClass) -> OpPrediction:
    """Seconds of ``w`` on kernel ``k`` with class ``cls``'s efficiencies, floor and fixed
    times (module docstring): the class's efficiencies replace the profile's for the units
    it has (:func:`memsim.ops.classes.with_class`)."""
    g = with_class(gpu, cls)
    sms = float(gpu.spec.sm_count)
    mma = w.matmul_flops / (g.achievable_flop_per_s("tensor", "bf16") / sms)
    exp = w.scores / (g.achievable_flop_per_s("exp") / sms)
    vector = w.scores * SOFTMAX_FLOPS_PER_SCORE / (g.achievable_flop_per_s("fp32") / sms)
    fixed = w.pairs * (cls.cta_s if k.tile_cost else 0.0) + w.rows * cls.row_s
    softmax = exp + vector
    compute = (np.maximum(mma, softmax) if k.overlap else mma + softmax) + fixed
    hbm = w.hbm_bytes / g.achievable_hbm_bytes_per_s
    pre = w.pre_bytes / g.achievable_hbm_bytes_per_s
    floor = np.full_like(compute, cls.floor_s)
    time = floor + np.maximum(compute, hbm) + pre
    terms = {"matmul": mma, "exp": exp, "vector": vector, "serial": fixed, "hbm": hbm,
             "pre": pre}
    # the bound in attention's vocabulary (memsim.roofline): the floor is launch_s
    return OpPrediction(
        time_s=out(time), bound=bound_of(terms, 0.0), flops=out(w.flops),
        hbm_bytes=out(w.hbm_bytes + w.pre_bytes), launch_s=out(floor),
        terms_s={key: out(v) for key, v in terms.items()},
        detail={"kernel_class": cls.name, "kernel": k.name, "head_dim_mma": k.head_dim,
                "block_m": out(k.block_m), "block_n": out(k.block_n),
                "m_blocks": out(w.m_blocks), "compute_s": out(compute)})


def applies(problem: Any, algorithm: str, backend: str | None, seq_len: Any = None,
            kv_len: Any = None) -> bool:
    """Whether an attention call is timed by :func:`predict` — the one rule ``memsim
    attention`` (:func:`memsim.attention.encoder_production_timing`) and whole-model sums
    (:func:`memsim.inference.attention_call.encoder_kernel_s`) share.

    ``problem``: the call (an :class:`memsim.problem.AttentionProblem`; its ``dtype`` the
    call's, of Q, K, V), run as ``algorithm`` with ``backend``'s kernels; ``seq_len``,
    ``kv_len``: its N and S (arrays; default the problem's). True for a backend's kernels
    (None: memsim's own roofline), memsim's default prefill algorithm (FlashAttention-2,
    :data:`memsim.algorithms.DEFAULT`, what the production FMHA kernels are; another one
    chosen explicitly keeps its own cost), a forward pass, a full mask (bidirectional, no
    window), MHA (K = H, no MLA) with D = Dv, in bf16, every query over the keys of its own
    sequence (N = S)."""
    from memsim.algorithms import DEFAULT

    p = problem
    if (backend is None or algorithm != DEFAULT or p.mla or p.mask.kind != "full"
            or p.pass_ != "forward" or p.K != p.H or p.D != p.Dv or p.dtype != "bf16"):
        return False
    N = np.asarray(p.N if seq_len is None else seq_len)
    S = np.asarray(p.S if kv_len is None else kv_len)
    return bool(np.all(N == S))


def predict(batch: Any, seq_len: Any, heads: Any, head_dim: int, *, gpu: Any = "h100-sxm",
            backend: str | None = None) -> OpPrediction:
    """Encoder attention of ``batch`` sequences × ``seq_len`` tokens, ``heads`` heads of
    size ``head_dim`` (MHA, bf16, bidirectional) on ``gpu`` as ``backend``'s kernel runs
    it, with the class "attention/encoder/<backend>" (arrays broadcast)."""
    from memsim.ops import check_backend

    for name, v in (("batch", batch), ("seq_len", seq_len), ("heads", heads),
                    ("head_dim", head_dim)):
        positive(name, v)
    gpu = resolve_gpu(gpu)
    framework = check_backend(backend)
    k = kernel(framework, gpu, head_dim, seq_len)
    w = work(batch, seq_len, heads, head_dim, k, gpu.spec.sm_count)
    return time_work(w, k, gpu, kernel_class("attention/encoder", framework))


__all__ = ["EncoderWork", "Kernel", "applies", "kernel", "mma_head_dim", "predict",
           "time_work", "work"]
