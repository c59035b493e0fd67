"""DeepSeek MLA attention as the production kernels run it: prefill FMHA over the
decompressed K/V, FlashMLA-style decode over the latent cache, and the absorbed BMMs.

MLA (DeepSeek-V2 §2.1, arXiv 2405.04434) caches one 576-wide latent per token (kv_lora_rank
512 + decoupled RoPE key 64) shared by every head. The kernels differ by phase:

- **Prefill** (:func:`context`): TensorRT-LLM decompresses K/V with ``kv_b_proj`` and runs
  its context FMHA as MHA with D = 192 (128 nope + 64 rope), Dv = 128, K = H heads
  (``collect_mla.py`` l. 197-205 of ai-dynamo/aiconfigurator: head_dim = qk_nope + qk_rope,
  num_kv_heads = num_heads in the context phase). Each CTA owns one 64-row query tile of one
  head (:data:`Q_TILE`), so the grid has B·H·⌈N/64⌉ CTAs. With an fp8 KV cache the context
  FMHA runs in fp8 after a separate quantisation kernel that reads the bf16 Q, K, V and
  writes them in fp8 (``attentionOp.cpp``: ``if (mFP8ContextMLA)
  invokeMLAContextFp8Quantize(...)`` after ``invokeMLARopeContext``).
- **Decode** (:func:`decode`): FlashMLA's split-KV kernel (deepseek-ai/FlashMLA
  ``csrc/flash_api.cpp``): the H query heads of one KV head are the M side of a 64-row
  tile (``Config::BLOCK_SIZE_M`` = 64, :data:`HEAD_TILE`), padded when H < 64 (TP!), and
  the keys come in 64-token page blocks (:data:`PAGE_BLOCK`); the grid is
  ⌈H/64⌉ × ``num_sm_parts`` CTAs (``num_sm_parts = sm_count / h_k / ⌈H/64⌉``), the head
  tiles of one part reading the same latent blocks together, so HBM sees each latent once.
  Its scheduler charges every sequence a fixed overhead (``fixed_overhead_num_blocks = 5``
  page blocks, ``get_mla_metadata``): the per-(sequence, head tile) prologue and epilogue
  (load the Q tile, write O) that neither FLOPs nor bytes count. With an fp8 cache FlashMLA
  runs Q and K in fp8 (``q_dtype == kFloat8_e4m3fn`` → ``run_flash_splitkv_mla_kernel
  <float_e4m3_t>``), so a separate kernel quantises Q (read bf16, write fp8).

Time of one call (:func:`time_work`), the memsim roofline of a kernel class (an efficiency
per unit, a floor, and the per-row cost ``row_s`` in SM-seconds per *padded* query row and
head — the fixed steps of a tile, :mod:`memsim.ops.classes`):

    time_s = floor + max(matmul / (tensor · e_tensor) + row_s · rows / SMs
                         + tile_io_bytes / (HBM · e_hbm),
                         hbm_bytes / (HBM · e_hbm)) + quant_bytes / (HBM · e_hbm)

the quantisation pass being its own kernel after the attention's inputs exist (additive).
Fitted per (phase, backend, KV dtype) on H100 and H200 rows only; other GPUs are predicted
from their datasheet profiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, cc_major, out, positive, resolve_gpu
from memsim.ops.classes import KernelClass, kernel_class
from memsim.units import DTYPE_BYTES

# DeepSeek-V3 MLA geometry (config.json of deepseek-ai/DeepSeek-V3; the collector's
# collect_mla.py l. 71-82: kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128).
KV_LORA_RANK = 512
QK_NOPE = 128
QK_ROPE = 64
V_HEAD = 128
LATENT = KV_LORA_RANK + QK_ROPE  # 576: one cached latent row per token
CONTEXT_D = QK_NOPE + QK_ROPE    # 192: the prefill FMHA's Q/K head size
CONTEXT_DV = V_HEAD              # 128: its V head size
Q_TILE = 64       # query rows per prefill CTA (one warpgroup's wgmma M = 64)
HEAD_TILE = 64    # FlashMLA Config::BLOCK_SIZE_M: query heads per decode tile
PAGE_BLOCK = 64   # FlashMLA Config::PAGE_BLOCK_SIZE: keys per decode block
BF16 = DTYPE_BYTES["bf16"]
FP8 = DTYPE_BYTES["fp8"]
KV_DTYPES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "bf16", "float16": "bf16",
             "fp8": "fp8"}


@dataclass(frozen=True)
class MLAWork:
    """The work of one MLA attention call (arrays of one shape).

    ``matmul_flops``: tensor-core FLOPs as the kernel issues them (tiles padded);
    ``rate``: the tensor-core dtype they run at; ``hbm_bytes``: the attention kernel's
    compulsory HBM traffic; ``tile_io_bytes``: the part of it each CTA moves in series
    with its own math (decode: every work item's Q load and O store, :func:`decode_work`; 0 for
    prefill, whose pipelines overlap them); ``quant_bytes``: the separate fp8
    quantisation pass's (0 for bf16); ``rows``: padded query rows × heads (the tiles'
    fixed steps, ``row_s`` each);
    ``tiles``: CTAs' work units (prefill tiles, decode (sequence, head tile) pairs).
    """

    matmul_flops: np.ndarray
    rate: str
    hbm_bytes: np.ndarray
    tile_io_bytes: np.ndarray
    quant_bytes: np.ndarray
    rows: np.ndarray
    tiles: np.ndarray


def kv_family(kv_dtype: str) -> str:
    """The kernel family of a KV-cache dtype: "bf16" (16-bit) or "fp8"."""
    from memsim.errors import InputError, closest

    if kv_dtype not in KV_DTYPES:
        raise InputError("kv_dtype", kv_dtype, "must be one of bf16, fp8"
                         + closest(kv_dtype, KV_DTYPES))
    return KV_DTYPES[kv_dtype]


def context_work(B: Any, N: Any, H: Any, kv_dtype: str = "bf16") -> MLAWork:
    """Prefill MLA over B sequences of N tokens, H heads per GPU (causal): FMHA with
    D = 192, Dv = 128 over the decompressed K/V, 64-row query tiles, key tiles of 64 under
    the causal mask (T·(T+1)/2 active tiles of T = ⌈N/64⌉), padded to whole tiles."""
    fam = kv_family(kv_dtype)
    B, N, H = as_float(B, N, H)
    T = np.ceil(N / Q_TILE)
    tiles = B * H * T
    active = B * H * T * (T + 1) / 2
    flops = active * Q_TILE * Q_TILE * 2.0 * (CONTEXT_D + CONTEXT_DV)
    e = FP8 if fam == "fp8" else BF16
    qkv = B * N * H * (2 * CONTEXT_D + CONTEXT_DV)  # elements of Q, K, V
    # Q, K, V read once (at the FMHA's dtype), O written in bf16, the latent cache row
    # of each token written by the RoPE/cache kernel
    hbm = qkv * e + B * N * H * CONTEXT_DV * BF16 + B * N * LATENT * e
    quant = qkv * (BF16 + FP8) if fam == "fp8" else np.zeros_like(qkv)
    return MLAWork(flops, fam, hbm, np.zeros_like(hbm), quant, tiles * Q_TILE, tiles)


def decode_work(B: Any, S: Any, H: Any, kv_dtype: str = "bf16") -> MLAWork:
    """One decode step of B sequences with S cached tokens (the new one included), H heads
    per GPU: FlashMLA over the 576-wide latent, ⌈H/64⌉ head tiles of 64 rows, 64-key page
    blocks; the latent read from HBM once per sequence (the head tiles of one SM part share
    it through L2), Q read and O written once, fp32 partials of split sequences in L2.

    The Q and O bytes are also ``tile_io_bytes``: FlashMLA's split-KV kernel runs one CTA
    per SM (``__launch_bounds__(kNThreads, 1, 1)``) that walks its part's (sequence, head
    tile) work items one after another (``flash_fwd_splitkv_mla_kernel``: ``for (batch_id
    = begin_idx; batch_id <= end_idx; ++batch_id)`` with a ``__syncthreads()`` between
    items), and each item first copies its Q tile to shared memory (the valid rows only,
    ``flash::copy(..., params.seqlen_q - m_block * kBlockM)``) and ends by storing its O
    rows (``store<Kernel_traits, NoSplit>``): only the K/V blocks are double-buffered, so
    the Q load and the O store sit on the SM's critical path, not under its math
    (deepseek-ai/FlashMLA csrc/flash_fwd_mla_kernel.h @33e110b,
    ``compute_attn_1rowblock_splitkv_mla``; TensorRT-LLM vendors this kernel as
    cpp/tensorrt_llm/kernels/flashMLA)."""
    fam = kv_family(kv_dtype)
    B, S, H = as_float(B, S, H)
    head_tiles = np.ceil(H / HEAD_TILE)
    rows = B * head_tiles * HEAD_TILE
    flops = rows * np.ceil(S / PAGE_BLOCK) * PAGE_BLOCK * 2.0 * (LATENT + KV_LORA_RANK)
    e = FP8 if fam == "fp8" else BF16
    q_o = B * H * (LATENT * e + KV_LORA_RANK * BF16)
    hbm = B * S * LATENT * e + q_o
    quant = B * H * LATENT * (BF16 + FP8) if fam == "fp8" else np.zeros_like(hbm)
    return MLAWork(flops, fam, hbm, q_o, quant, rows, B * head_tiles)


# Kernels of one decode call. TensorRT-LLM on Hopper runs FlashMLA (attentionOp.cpp
# ``mlaGeneration``, ``mUseGenFlashMLA``): ``get_mla_metadata_func`` (the tile scheduler's
# metadata kernel, run every call), the split-KV kernel and its combine kernel; on the SM100
# family it runs trtllm-gen's MLA generation kernel (``mUseTllmGen``), whose multi-CTA
# split-KV mode for MLA is ``GmemReductionWithSeparateKernel``: the FMHA kernel and one
# reduction kernel (trtllmGenKernels/fmha/fmhaKernels.h, ``runFmhaReduction`` after the
# launch). The decode classes are fitted on Hopper rows, so their floor is FlashMLA's.
FLASHMLA_DECODE_LAUNCHES = 3
TRTLLM_GEN_DECODE_LAUNCHES = 2


def decode_launches(gpu: Any, backend: str | None) -> int:
    """Kernel launches of one MLA decode call on ``gpu`` with ``backend`` (above)."""
    from memsim.ops import check_backend

    if (check_backend(backend) == "trtllm"
            and cc_major(gpu) == 10):
        return TRTLLM_GEN_DECODE_LAUNCHES
    return FLASHMLA_DECODE_LAUNCHES


def time_work(work: MLAWork, gpu: Any, cls: KernelClass, launches: int | None = None
              ) -> OpPrediction:
    """Seconds of ``work`` with kernel class ``cls`` (module docstring). ``launches``: a
    decode call's kernels (:func:`decode_launches`): the class's floor, fitted on
    FlashMLA's three, scales with them; None for prefill."""
    sms = float(gpu.spec.sm_count)
    tensor = gpu.peak_flop_per_s("tensor", work.rate) * min(cls.eff("tensor"), 1.0)
    hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * min(cls.eff("hbm"), 1.0)
    terms = {"matmul": work.matmul_flops / tensor, "serial": cls.row_s * work.rows / sms,
             "tile_io": work.tile_io_bytes / hbm_bw, "hbm": work.hbm_bytes / hbm_bw}
    quant = work.quant_bytes / hbm_bw
    scale = 1.0 if launches is None else launches / FLASHMLA_DECODE_LAUNCHES
    floor = np.full_like(work.matmul_flops, cls.floor_s * scale)
    chain = terms["matmul"] + terms["serial"] + terms["tile_io"]
    time = floor + np.maximum(chain, terms["hbm"]) + quant
    terms["quant"] = quant
    return OpPrediction(
        time_s=out(time), bound=bound_of(terms, floor), flops=out(work.matmul_flops),
        hbm_bytes=out(work.hbm_bytes + work.quant_bytes), launch_s=out(floor),
        terms_s={k: out(v) for k, v in terms.items()},
        detail={"kernel_class": cls.name, "tiles": out(work.tiles),
                "padded_rows": out(work.rows)})


def _checked(phase: str, sizes: dict[str, Any], kv_dtype: str, gpu: Any,
             backend: str | None) -> tuple[Any, KernelClass]:
    for name, v in sizes.items():
        positive(name, v)
    return resolve_gpu(gpu), kernel_class(f"mla/{phase}", backend, kv_family(kv_dtype))


def context(batch: Any, seq_len: Any, heads: Any, *, kv_dtype: str = "bf16",
            gpu: Any = "h100-sxm", backend: str | None = None) -> OpPrediction:
    """Prefill MLA attention of ``batch`` × ``seq_len`` tokens, ``heads`` per GPU (arrays
    broadcast) on ``gpu`` with ``backend``'s kernel class "mla/context/<backend>/<kv>"."""
    gpu, cls = _checked("context", {"batch": batch, "seq_len": seq_len, "heads": heads},
                        kv_dtype, gpu, backend)
    return time_work(context_work(batch, seq_len, heads, kv_dtype), gpu, cls)


def decode(batch: Any, kv_len: Any, heads: Any, *, kv_dtype: str = "bf16",
           gpu: Any = "h100-sxm", backend: str | None = None) -> OpPrediction:
    """One MLA decode step of ``batch`` sequences with ``kv_len`` cached tokens (the new
    token's included), ``heads`` per GPU, on ``gpu`` with the class
    "mla/decode/<backend>/<kv>"."""
    gpu, cls = _checked("decode", {"batch": batch, "kv_len": kv_len, "heads": heads},
                        kv_dtype, gpu, backend)
    return time_work(decode_work(batch, kv_len, heads, kv_dtype), gpu, cls,
                     decode_launches(gpu, backend))


def production(decodes: bool, batch: Any, seq_len: Any, kv_len: Any, heads: Any, *,
               kv_dtype: str = "bf16", gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction | None:
    """The production kernels of an MLA call of ``seq_len`` new tokens over ``kv_len``
    keys: :func:`decode` for a decode step of one token (``decodes`` and N = 1),
    :func:`context` for a prefill without a cached prefix (not ``decodes`` and N = S);
    None for any other call (memsim's own attention algorithms time it)."""
    N, S = np.asarray(seq_len), np.asarray(kv_len)
    kw = {"kv_dtype": kv_dtype, "gpu": gpu, "backend": backend}
    if decodes and np.all(N == 1):
        return decode(batch, S, heads, **kw)
    if not decodes and np.all(N == S):
        return context(batch, N, heads, **kw)
    return None



# The absorbed-weight BMMs of MLA decode (DeepSeek-V2 §2.1.2, "absorb" W_UK into the query
# and W_UV into the output): per head, q_nope[T, 128] · W_UK[128, 512] before the attention
# ("mla_gen_pre") and o_latent[T, 512] · W_UV[512, 128] after it ("mla_gen_post"), H GEMMs
# in one batched launch (collect_mla_bmm.py: torch.ops.trtllm.bmm_out over [H, T, k]).
BMM_SHAPES = {"pre": (KV_LORA_RANK, QK_NOPE), "post": (V_HEAD, KV_LORA_RANK)}  # (n, k)


def bmm_class(backend: str | None, dtype: str) -> KernelClass:
    """The class "mla_bmm/<backend>/<bf16|fp8>": the batched GEMMs are their own kernels
    (cuBLAS strided-batched for bf16, TensorRT-LLM's block-scaled fp8 BMM), not the GEMM's."""
    return kernel_class("mla_bmm", backend, "fp8" if dtype == "fp8" else "bf16")


def bmm_kernel_dtype(dtype: str, backend: str | None, gpu: Any) -> str:
    """The dtype the absorbed BMM's kernel runs at: ``dtype``, except TensorRT-LLM's fp8
    BMM on the SM100 family (compute capability 10.x: B200, GB200, B300), which is a bf16
    ``torch.bmm`` over weights dequantised once at load time, with no activation
    quantisation (tensorrt_llm/_torch/modules/attention.py, ``fp8_block_scaling_bmm_out``:
    ``elif is_sm_100f(sm_version): torch.bmm(mat1.transpose(0, 1),
    mat2_dequant.transpose(1, 2), out=out)``); SM89/SM90 quantise and run the block-scaled
    fp8 kernel. The database agrees: B200's fp8 and bf16 mla_bmm rows time alike."""
    from memsim.ops import check_backend

    if (dtype == "fp8" and check_backend(backend) == "trtllm"
            and cc_major(gpu) == 10):
        return "bf16"
    return dtype


def bmm(tokens: Any, heads: Any, *, op: str = "pre", dtype: str = "bf16",
        gpu: Any = "h100-sxm", backend: str | None = None, warm_l2: bool = False
        ) -> OpPrediction:
    """The MLA absorbed BMM ``op`` ("pre" or "post") over ``tokens`` rows and ``heads``
    heads per GPU: ``heads`` GEMMs [tokens, k]·[k, n] in one launch, timed as memsim.ops.gemm
    times a grouped GEMM (best tile and split, waves over the SMs) with the backend's GEMM
    kernel class (:func:`bmm_class`). ``dtype`` "fp8" is DeepSeek's block-scaled fp8
    (``fp8_block_scaling_bmm_out``), after a quantisation pass over the activations
    (``fp8_batched_quantize_1x128_permute102``: read bf16, write fp8 + one fp32 scale per
    128 values), added after the GEMM; where the kernel runs in bf16 instead
    (:func:`bmm_kernel_dtype`) it is timed as the bf16 BMM.

    ``warm_l2``: the call repeats on the same tensors (a benchmark replaying one call, as
    aiconfigurator's collect_mla_bmm.py times it: the same q_nope, weights and output every
    replay). The L2 is a cyclic LRU over the call's bytes: if they all fit in it
    (``l2_dram_capacity_bytes``) every replay hits and HBM sees none of them; if not, each
    replay evicts what the next one needs first and HBM sees all of them. In a model the
    weights of every layer stream from HBM (the default)."""
    from memsim.errors import InputError
    from memsim.ops.gemm import compulsory_bytes, operand_bytes, tiled_terms
    from memsim.units import scaled_row_bytes

    if op not in BMM_SHAPES:
        raise InputError("op", op, "must be pre or post")
    positive("tokens", tokens)
    positive("heads", heads)
    gpu = resolve_gpu(gpu)
    dtype = bmm_kernel_dtype(dtype, backend, gpu)
    gemm_dtype = "fp8_block" if dtype == "fp8" else dtype
    rate, e_in = operand_bytes(gemm_dtype)
    cls = bmm_class(backend, dtype)
    n, k = BMM_SHAPES[op]
    T, H = as_float(tokens, heads)
    quant_bytes = (T * H * (k * BF16 + scaled_row_bytes(k, FP8))
                   if gemm_dtype == "fp8_block" else np.zeros_like(T))
    hbm_fraction = 1.0
    if warm_l2:
        call_bytes = compulsory_bytes(T, n, k, H, e_in) + quant_bytes
        hbm_fraction = np.where(call_bytes <= gpu.l2_dram_capacity_bytes, 0.0, 1.0)
    best = tiled_terms(T, np.full_like(T, n), np.full_like(T, k), H, gpu, cls, rate, e_in,
                       hbm_fraction=hbm_fraction)
    quant = quant_bytes * hbm_fraction / (gpu.spec.hbm_bandwidth_bytes_per_s
                                          * min(cls.eff("hbm"), 1.0))
    terms = {"matmul": best["matmul"], "l2": best["l2"], "hbm": best["hbm"], "quant": quant}
    floor = np.full_like(T, cls.floor_s)
    time = floor + best["t"] + quant
    return OpPrediction(
        time_s=out(time), bound=bound_of(terms, floor), flops=out(2.0 * T * H * n * k),
        hbm_bytes=out(best["hbm_bytes"] + quant_bytes), launch_s=out(floor),
        terms_s={k2: out(v) for k2, v in terms.items()},
        detail={"kernel_class": cls.name, "tile_m": out(best["tile_m"]),
                "tile_n": out(best["tile_n"]), "split_k": out(best["split"])})


__all__ = ["MLAWork", "bmm", "bmm_class", "bmm_kernel_dtype", "context", "context_work",
           "decode", "decode_launches", "decode_work", "kv_family", "production", "time_work"]
