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

    time_s = floor + max(matmul / (tensor · e_tensor) + row_s · rows / SMs,
                         hbm_bytes / (HBM · e_hbm)) + quant_bytes / (HBM · e_hbm)

the quantisation pass being its own kernel after the attention's inputs exist (additive).
Fitted per (phase, backend, KV dtype) on H100 and H200 rows only; other GPUs are predicted
from their datasheet profiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, out, positive, resolve_gpu
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
    compulsory HBM traffic; ``quant_bytes``: the separate fp8 quantisation pass's (0 for
    bf16); ``rows``: padded query rows × heads (the tiles' fixed steps, ``row_s`` each);
    ``tiles``: CTAs' work units (prefill tiles, decode (sequence, head tile) pairs).
    """

    matmul_flops: np.ndarray
    rate: str
    hbm_bytes: np.ndarray
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
    return MLAWork(flops, fam, hbm, quant, tiles * Q_TILE, tiles)


def decode_work(B: Any, S: Any, H: Any, kv_dtype: str = "bf16") -> MLAWork:
    """One decode step of B sequences with S cached tokens (the new one included), H heads
    per GPU: FlashMLA over the 576-wide latent, ⌈H/64⌉ head tiles of 64 rows, 64-key page
    blocks; the latent read from HBM once per sequence (the head tiles of one SM part share
    it through L2), Q read and O written once, fp32 partials of split sequences in L2."""
    fam = kv_family(kv_dtype)
    B, S, H = as_float(B, S, H)
    head_tiles = np.ceil(H / HEAD_TILE)
    rows = B * head_tiles * HEAD_TILE
    flops = rows * np.ceil(S / PAGE_BLOCK) * PAGE_BLOCK * 2.0 * (LATENT + KV_LORA_RANK)
    e = FP8 if fam == "fp8" else BF16
    hbm = B * S * LATENT * e + B * H * (LATENT * e + KV_LORA_RANK * BF16)
    quant = B * H * LATENT * (BF16 + FP8) if fam == "fp8" else np.zeros_like(hbm)
    return MLAWork(flops, fam, hbm, quant, rows, B * head_tiles)


def time_work(work: MLAWork, gpu: Any, cls: KernelClass) -> OpPrediction:
    """Seconds of ``work`` with kernel class ``cls`` (module docstring)."""
    sms = float(gpu.spec.sm_count)
    tensor = gpu.peak_flop_per_s("tensor", work.rate) * min(cls.eff("tensor"), 1.0)
    hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * min(cls.eff("hbm"), 1.0)
    terms = {"matmul": work.matmul_flops / tensor, "serial": cls.row_s * work.rows / sms,
             "hbm": work.hbm_bytes / hbm_bw}
    quant = work.quant_bytes / hbm_bw
    floor = np.full_like(work.matmul_flops, cls.floor_s)
    time = floor + np.maximum(terms["matmul"] + terms["serial"], terms["hbm"]) + quant
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
    return time_work(decode_work(batch, kv_len, heads, kv_dtype), gpu, cls)



# The absorbed-weight BMMs of MLA decode (DeepSeek-V2 §2.1.2, "absorb" W_UK into the query
# and W_UV into the output): per head, q_nope[T, 128] · W_UK[128, 512] before the attention
# ("mla_gen_pre") and o_latent[T, 512] · W_UV[512, 128] after it ("mla_gen_post"), H GEMMs
# in one batched launch (collect_mla_bmm.py: torch.ops.trtllm.bmm_out over [H, T, k]).
BMM_SHAPES = {"pre": (KV_LORA_RANK, QK_NOPE), "post": (V_HEAD, KV_LORA_RANK)}  # (n, k)


def bmm_class(backend: str | None, dtype: str) -> KernelClass:
    """The class "mla_bmm/<backend>/<bf16|fp8>": the batched GEMMs are their own kernels
    (cuBLAS strided-batched for bf16, TensorRT-LLM's block-scaled fp8 BMM), not the GEMM's."""
    return kernel_class("mla_bmm", backend, "fp8" if dtype == "fp8" else "bf16")


def bmm(tokens: Any, heads: Any, *, op: str = "pre", dtype: str = "bf16",
        gpu: Any = "h100-sxm", backend: str | None = None) -> OpPrediction:
    """The MLA absorbed BMM ``op`` ("pre" or "post") over ``tokens`` rows and ``heads``
    heads per GPU: ``heads`` GEMMs [tokens, k]·[k, n] in one launch, timed as memsim.ops.gemm
    times a grouped GEMM (best tile and split, waves over the SMs) with the backend's GEMM
    kernel class (:func:`bmm_class`). ``dtype`` "fp8" is DeepSeek's block-scaled fp8
    (``fp8_block_scaling_bmm_out``), after a quantisation pass over the activations
    (``fp8_batched_quantize_1x128_permute102``: read bf16, write fp8 + one fp32 scale per
    128 values), added after the GEMM."""
    from memsim.errors import InputError
    from memsim.ops.gemm import operand_bytes, tiled_terms
    from memsim.units import scaled_row_bytes

    if op not in BMM_SHAPES:
        raise InputError("op", op, "must be pre or post")
    positive("tokens", tokens)
    positive("heads", heads)
    gpu = resolve_gpu(gpu)
    gemm_dtype = "fp8_block" if dtype == "fp8" else dtype
    rate, e_in = operand_bytes(gemm_dtype)
    cls = bmm_class(backend, dtype)
    n, k = BMM_SHAPES[op]
    T, H = as_float(tokens, heads)
    best = tiled_terms(T, np.full_like(T, n), np.full_like(T, k), H, gpu, cls, rate, e_in)
    quant_bytes = (T * H * (k * BF16 + scaled_row_bytes(k, FP8))
                   if gemm_dtype == "fp8_block" else np.zeros_like(T))
    quant = quant_bytes / (gpu.spec.hbm_bandwidth_bytes_per_s * min(cls.eff("hbm"), 1.0))
    terms = {"matmul": best["matmul"], "l2": best["l2"], "hbm": best["hbm"], "quant": quant}
    floor = np.full_like(T, cls.floor_s)
    time = floor + best["t"] + quant
    return OpPrediction(
        time_s=out(time), bound=bound_of(terms, floor), flops=out(2.0 * T * H * n * k),
        hbm_bytes=out(best["hbm_bytes"] + quant_bytes), launch_s=out(floor),
        terms_s={k2: out(v) for k2, v in terms.items()},
        detail={"kernel_class": cls.name, "tile_m": out(best["tile_m"]),
                "tile_n": out(best["tile_n"]), "split_k": out(best["split"])})


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
    k = 2048 slots)."""
    from dataclasses import replace

    from memsim.attention import backend_time_s, costs_for
    from memsim.problem import AttentionProblem, Mask

    dtype = "fp8" if kv_family(kv_dtype) == "fp8" else "bf16"
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
        cost = replace(cost, matmul_flops=np.maximum(cost.matmul_flops, padded))
        t = backend_time_s(cost, gpu, problem, "dsa", backend, b, n,
                           blocks_per_sm=tiling.blocks_per_sm(gpu))
        hit = np.asarray([k == (b, n, s) for k in keys]).reshape(np.shape(B))
        out_s[hit] = float(np.asarray(t).reshape(-1)[0])
    return out_s


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


__all__ = ["MLAWork", "bmm", "bmm_class", "context", "context_work", "decode", "decode_work",
           "dsa_s", "kv_family", "module", "module_parts", "time_work"]
