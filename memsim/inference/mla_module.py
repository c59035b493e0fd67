"""The attention module of a DeepSeek-V3 / V3.2 layer predicted from memsim's own pieces:
its GEMMs (:mod:`memsim.ops.gemm`), the absorbed BMMs and MLA kernels (:mod:`memsim.ops.mla`)
and DSA through :func:`memsim.attention.backend_time_s`. A whole-layer composition, so it sits
above both :mod:`memsim.ops` and :mod:`memsim.attention` (which imports the ops' kernel
classes); aiconfigurator's MLA/DSA module tables check it (:mod:`memsim.silicon.classes`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from memsim.ops import (
    OpPrediction,
    as_float,
    attention_kernels_backend,
    bound_of,
    cc_major,
    check_backend,
    out,
    positive,
    resolve_gpu,
)
from memsim.ops.mla import (
    BF16,
    BMM_SHAPES,
    CONTEXT_D,
    FP8,
    KV_LORA_RANK,
    LATENT,
    QK_NOPE,
    QK_ROPE,
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
                 gpu: Any = "h100-sxm", backend: str | None = None,
                 mla_dtype: str = "bf16", eager_ops: str = "native",
                 linears: dict[str, tuple[np.ndarray, OpPrediction]] | None = None
                 ) -> dict[str, Any]:
    """Seconds of each kernel of one attention module call, memsim's own pieces summed by
    :func:`module`: ``batch`` sequences of ``seq_len`` new tokens (1 when decoding) over
    ``kv_len`` keys (arrays), ``heads`` per GPU (an int); ``linears``: the call's
    :func:`linear_predictions` where the caller has them (:func:`module` shares them with
    :func:`eager_module_host_s`), else predicted here.

    - GEMMs through :func:`memsim.ops.gemm.predict` (``gemm_dtype`` bf16 or fp8_block):
      the fused down-projection ``fused_a`` (hidden → q_lora 1536 + latent 576, + the
      indexer key 128 with DSA), ``q_b_proj`` (1536 → H·192), ``o_proj`` (H·128 → hidden);
      prefill also decompresses K/V (``kv_b_proj`` 512 → H·256); DSA adds the indexer's
      ``wq_b`` (1536 → 64·128) and head weights (hidden → 64);
    - the absorbed (MQA) path's BMMs (:func:`bmm`; fp8 block-scaled with fp8_block GEMMs
      in TensorRT-LLM, bf16 in vLLM: :func:`_bmm_dtype`) where the call runs it: decode,
      DSA, and vLLM prefills short enough for its decode kernel (:func:`mqa_rows`);
    - the attention: MLA prefill/decode (:func:`context` at :func:`prefill_kv_dtype`'s
      dtype, ``mla_dtype`` being the prefill's query dtype; :func:`decode`; a short prefill
      on the decode kernel as ``N`` query rows per head over its ``N`` keys), or DSA
      (indexer, top-k, sparse MLA over the latent: memsim's ``dsa`` algorithm, its sparse
      gathers through the L2 estimate) timed with the backend's "dsa" class;
    - the element-wise kernels, ``aux``: vLLM's (:func:`aux_s`: norms and RoPE as
      ``eager_ops`` ran them, cache write, copies); TensorRT-LLM's (:func:`trtllm_aux_s`:
      the latent norms and concat, K's assembly; its attention op applies RoPE and writes
      the cache)."""
    gpu = resolve_gpu(gpu)
    B, N, S = as_float(batch, seq_len, kv_len)
    T = B * N
    H = float(heads)
    mqa = mqa_rows(phase, sparse, N, kv_dtype, gpu, backend)
    zero = np.zeros_like(T)
    if linears is None:
        linears = linear_predictions(T, H, mqa, sparse, gemm_dtype, gpu, backend)
    parts = {name: _linear_s(p, backend) for name, (_, p) in linears.items()}
    if "kv_b_proj" in parts:
        parts["kv_b_proj"] = np.where(mqa, zero, parts["kv_b_proj"])
    if mqa.any():
        bmm_dtype = _bmm_dtype(gemm_dtype, backend)
        for op in BMM_SHAPES:
            parts[f"bmm_{op}"] = np.where(mqa, np.asarray(
                bmm(T, H, op=op, dtype=bmm_dtype, gpu=gpu, backend=backend).time_s,
                dtype=float), zero)
    if sparse:
        parts["attention"] = dsa_s(B, N, S, heads, kv_dtype=kv_dtype, gpu=gpu,
                                   backend=backend)
    else:
        att = zero.copy()
        if not mqa.all():
            att = np.asarray(context(B, N, H, kv_dtype=prefill_kv_dtype(kv_dtype, mla_dtype,
                                                                        backend),
                                     gpu=gpu, backend=backend).time_s, dtype=float) + att
        if mqa.any():
            # FlashMLA-style kernels take a sequence's N queries × H heads as the rows of
            # one MQA problem over the latent (q of shape (B, N, H) → B × (N·H) rows)
            dec = np.asarray(decode(B, S, H * N, kv_dtype=kv_dtype, gpu=gpu,
                                    backend=attention_kernels_backend(backend, gpu)).time_s,
                             dtype=float)
            att = np.where(mqa, dec, att)
        parts["attention"] = att
    cls = _elementwise_class(backend)
    if cls is not None:
        parts["aux"] = np.where(mqa, aux_s(T, heads, True, sparse, kv_dtype, gpu, cls,
                                           eager_ops),
                                aux_s(T, heads, False, sparse, kv_dtype, gpu, cls, eager_ops))
    if check_backend(backend) == "trtllm":
        parts["aux"] = trtllm_aux_s(T, heads, mqa, sparse, gpu)
    return parts


def linear_shapes(H: float, sparse: bool) -> dict[str, tuple[float, float]]:
    """The (k, n) of the linears every module call runs (:func:`module_parts`): the fused
    down-projection, ``q_b_proj``, ``o_proj`` and, with DSA, the indexer's ``wq_b`` and
    head weights; ``H`` heads per GPU."""
    out = {"fused_a": (HIDDEN, Q_LORA_RANK + LATENT + (INDEX_HEAD_DIM if sparse else 0)),
           "q_b_proj": (Q_LORA_RANK, H * CONTEXT_D),
           "o_proj": (H * V_HEAD, HIDDEN)}
    if sparse:
        out["indexer_wq_b"] = (Q_LORA_RANK, INDEX_HEADS * INDEX_HEAD_DIM)
        out["indexer_weights"] = (HIDDEN, INDEX_HEADS)
    return out


def kv_b_proj_shape(H: float) -> tuple[float, float]:
    """(k, n) of the prefill (MHA) path's K/V decompression ``kv_b_proj``."""
    return KV_LORA_RANK, H * (QK_NOPE + V_HEAD)


def linear_predictions(T: np.ndarray, H: float, mqa: np.ndarray, sparse: bool,
                       gemm_dtype: str, gpu: Any, backend: str | None
                       ) -> dict[str, tuple[np.ndarray, OpPrediction]]:
    """Each linear of a module call over ``T`` tokens (array) → (the rows that run it, its
    :func:`memsim.ops.gemm.predict`): the :func:`linear_shapes` on every row, and
    ``kv_b_proj`` on the prefill (MHA) rows (``~mqa``, :func:`mqa_rows`) where there are
    any. One prediction each, which the kernels' time (:func:`module_parts`) and an eager
    call's host time (:func:`eager_host_s`) both read."""
    from memsim.ops.gemm import predict as gemm

    every = np.ones(np.shape(T), dtype=bool)
    out = {name: (every, gemm(T, n, k, dtype=gemm_dtype, gpu=gpu, backend=backend))
           for name, (k, n) in linear_shapes(H, sparse).items()}
    if not np.all(mqa):
        k, n = kv_b_proj_shape(H)
        out["kv_b_proj"] = (~np.asarray(mqa, dtype=bool),
                            gemm(T, n, k, dtype=gemm_dtype, gpu=gpu, backend=backend))
    return out


# vLLM's MLA backends run a batch's short prefills on their decode kernel (the metadata
# builders' ``reorder_batch_threshold``: query lengths up to it count as decodes; vllm
# v1/attention/backends/mla/flashattn_mla.py, flashmla.py, flashinfer_mla.py). The values
# as aiconfigurator's vLLM prefill-module rows record them (their ``kernel_source``: H100 /
# H200 FLASH_ATTN_MLA for bf16 caches to 512 tokens, FLASHMLA for fp8 caches to 128; B200
# FLASHINFER_MLA at 1 token only; FLASH_ATTN above), by KV-cache family on Hopper, 1 token
# elsewhere.
VLLM_DECODE_THRESHOLD_SM90 = {"bf16": 512, "fp8": 128}


def mqa_rows(phase: str, sparse: bool, N: np.ndarray, kv_dtype: str, gpu: Any,
             backend: str | None) -> np.ndarray:
    """Per row, whether the module runs MLA's absorbed (MQA) path: every decode and DSA
    call (vLLM's sparse MLA runs all tokens as MQA); a vLLM prefill of at most the decode
    kernel's threshold (:data:`VLLM_DECODE_THRESHOLD_SM90`) new tokens per sequence."""

    N = np.asarray(N, dtype=float)
    if phase == "decode" or sparse:
        return np.ones(N.shape, dtype=bool)
    if check_backend(backend) != "vllm":
        return np.zeros(N.shape, dtype=bool)
    limit = (VLLM_DECODE_THRESHOLD_SM90[kv_family(kv_dtype)] if cc_major(gpu) == 9 else 1)
    return N <= limit


def prefill_kv_dtype(kv_dtype: str, mla_dtype: str, backend: str | None) -> str:
    """The dtype the module's MHA prefill (:func:`memsim.ops.mla.context`) runs at.

    TensorRT-LLM: the KV cache's (an fp8 cache runs its fp8 context FMHA after a
    quantisation kernel, ``mFP8ContextMLA``: memsim.ops.mla). vLLM: the prefill's query
    dtype ``mla_dtype``, whatever the cache: ``forward_mha`` decompresses K/V with
    ``kv_b_proj`` in the model dtype and casts q, k, v to fp8 only when fp8 prefill is
    enabled (vllm model_executor/layers/attention/mla_attention.py ``MLACommonImpl.
    forward_mha``: ``use_fp8_prefill = prefill_metadata.q_data_type == fp8``), which vLLM
    allows on the SM100 family with an fp8 cache only (aiconfigurator collector/vllm/
    collect_mla_module.py records it as the ``mla_dtype`` column: bfloat16 on every Hopper
    row); the fp8 cache itself is written by the cache-update kernel (:data:`AUX_KERNELS`)."""
    if check_backend(backend) == "vllm":
        return "fp8" if kv_family(mla_dtype) == "fp8" else "bf16"
    return kv_dtype


# Backends whose module launches the element-wise kernels of :data:`AUX_KERNELS` on their
# own (TensorRT-LLM's attention op applies RoPE and writes the cache inside its kernels;
# its other element-wise kernels are :data:`TRTLLM_AUX_KERNELS`)
AUX_BACKENDS = ("vllm",)


def _launch_class(backend: str | None) -> Any:
    """The time of one GEMM-side kernel (a linear's quantisation or GEMM) inside the
    module's CUDA graph: the backend's graph-timed bf16 GEMM class (``gemm/<backend>/bf16``:
    its floor is what the smallest GEMMs of aiconfigurator's CUDA-graph GEMM table take),
    not fitted again; None for backends outside :data:`AUX_BACKENDS`."""
    from memsim.ops.classes import kernel_class

    if check_backend(backend) not in AUX_BACKENDS:
        return None
    return kernel_class("gemm", backend, "bf16")


def _elementwise_class(backend: str | None) -> Any:
    """The fitted class "module/<backend>/graph" of the module's element-wise kernels
    (:data:`AUX_KERNELS`): ``floor_s`` the time of one such kernel inside the module's CUDA
    graph, its HBM efficiency what their bytes stream at; None for backends outside
    :data:`AUX_BACKENDS`."""
    from memsim.ops.classes import kernel_class

    if check_backend(backend) not in AUX_BACKENDS:
        return None
    return kernel_class(f"module/{check_backend(backend)}/graph")


def _host_class(backend: str | None) -> Any:
    """The fitted class "module/<backend>/eager" (``floor_s``: the host's time of one
    kernel launch of an eager module forward, :func:`eager_host_s`), None where the
    backend has none."""
    from memsim.ops.classes import kernel_class

    try:
        return kernel_class(f"module/{check_backend(backend)}/eager")
    except KeyError:
        return None


def _graphed(phase: str, sparse: bool) -> bool:
    """Whether the module is timed as one CUDA-graph replay: every vLLM module but DSA's
    prefill, which aiconfigurator's collector runs eagerly (collector/vllm/
    collect_mla_module.py, ``use_cuda_graph = not (attn_type == "dsa" and is_context)``:
    the flashmla-sparse scratch of a captured graph is not reclaimed between cases)."""
    return not (sparse and phase == "context")


# The kernels of vLLM's DSA prefill beyond memsim's linears, BMMs and element-wise kernels
# (:func:`aux_kernels`), one launch each: the indexer's prefill path (vllm-project/vllm
# @006475fe model_executor/layers/sparse_attn_indexer.py ``sparse_attn_indexer``, one
# prefill chunk: the top-k buffer's ``fill(-1)``, ``cp_gather_indexer_k_quant_cache``,
# DeepGEMM's ``fp8_fp4_mqa_logits``, ``top_k_per_row_prefill``) and FlashMLA's sparse
# attention (@60191e18 v1/attention/backends/mla/flashmla_sparse.py
# ``FlashMLASparseImpl.forward_mqa``: ``convert_req_index_to_global_index``,
# ``flash_mla_sparse_prefill``; its query ``torch.cat`` runs in decode too and is the
# element-wise kernel ``q_cat`` of :data:`AUX_KERNELS`).
DSA_PREFILL_LAUNCHES = {"indexer": 4, "sparse_mla": 2}
# With an fp8_ds_mla cache the prefill tokens' keys are upconverted inline by the index
# conversion into a bf16 workspace, after ``prefill_token_mask``'s zeros and fill and
# ``prefill_seen.zero_()``, and the prefill output is copied into ``attn_out``: 4 more.
DSA_PREFILL_FP8_LAUNCHES = 4


def sparse_head_padding(gpu: Any) -> int:
    """The head multiple FlashMLA's sparse prefill kernel needs, as vLLM sets it: 128 on
    the SM100 family (every compute capability 10.x: B200, GB200 10.0 and B300 10.3), 64
    elsewhere (vllm-project/vllm @60191e18 and @008a0c31 v1/attention/backends/mla/
    flashmla_sparse.py ``FlashMLASparseImpl.__init__``: ``self.prefill_padding = 128 if
    current_platform.is_device_capability_family(100) else 64``; older vLLM's
    ``self.padding`` tested ``is_device_capability(100)``, cc 10.0 only). Fewer heads are
    copied into a padded query first (``_bf16_flash_mla_kernel``)."""
    return 128 if cc_major(gpu) == 10 else 64


def dsa_prefill_launches(heads: int, kv_dtype: str, gpu: Any) -> int:
    """Kernel launches of vLLM's DSA indexer and sparse attention in one prefill call
    (:data:`DSA_PREFILL_LAUNCHES`; :data:`DSA_PREFILL_FP8_LAUNCHES` with an fp8 cache;
    the head-padding copy where ``heads`` is not a multiple of
    :func:`sparse_head_padding`)."""
    n = sum(DSA_PREFILL_LAUNCHES.values())
    n += DSA_PREFILL_FP8_LAUNCHES if kv_family(kv_dtype) == "fp8" else 0
    return n + (1 if heads % sparse_head_padding(gpu) else 0)


def eager_host_s(T: np.ndarray, heads: int, mqa: np.ndarray, *, sparse: bool,
                 kv_dtype: str, linears: dict[str, tuple[np.ndarray, OpPrediction]],
                 gpu: Any, eager_ops: str, launch_s: float) -> np.ndarray:
    """Seconds the host takes to issue one eager module call over ``T`` tokens (array;
    ``mqa`` per row, :func:`mqa_rows`): ``launch_s`` (the fitted "module/<backend>/eager"
    floor) per kernel launch — the element-wise kernels (:func:`aux_launches`), the BMMs,
    DSA's prefill kernels (:func:`dsa_prefill_launches`), each linear's kernels (with a
    split-K reduction where it splits; ``linears``: the call's
    :func:`linear_predictions`) — except a linear whose GEMM class was itself timed
    eagerly (vLLM's fp8_block, memsim.ops.gemm): its host time is that class's floor, the
    host time of the very same ``W8A8BlockFp8LinearOp`` call, measured."""
    T = np.asarray(T, dtype=float)
    pad_v = pads_v(gpu)
    aux = {m: aux_launches(heads, m, sparse, kv_dtype, pad_v, eager_ops)[0]
           for m in (True, False)}
    launches = np.where(mqa, aux[True] + len(BMM_SHAPES), aux[False])
    if sparse:
        launches = launches + dsa_prefill_launches(heads, kv_dtype, gpu)
    host = np.zeros_like(T)
    for runs, p in linears.values():
        if p.detail["eager"]:
            host = host + np.where(runs, np.asarray(p.launch_s, dtype=float), 0.0)
        else:
            split = np.asarray(p.detail["split_k"], dtype=float) > 1
            launches = launches + np.where(runs, p.detail["kernels"] + split, 0)
    return launches * launch_s + host


def _linear_s(p: OpPrediction, backend: str | None) -> np.ndarray:
    """Seconds of one linear layer inside the module from its
    :func:`memsim.ops.gemm.predict` ``p``: its time, except a GEMM class timed *eagerly*
    (vLLM's fp8_block, whose floor is the host's launch time: memsim.ops.gemm): inside the
    module's stream each of its kernels (quantisation and GEMM, ``detail["kernels"]``)
    costs one launch (:func:`_launch_class`'s floor) on top of the kernels' own time
    (``detail["kernel_s"]``), the host's launch time being the module's (:func:`module`)."""
    cls = _launch_class(backend)
    if not p.detail["eager"] or cls is None:
        return np.asarray(p.time_s, dtype=float)
    return (np.asarray(p.detail["kernel_s"], dtype=float)
            + p.detail["kernels"] * cls.floor_s)


def _bmm_dtype(gemm_dtype: str, backend: str | None) -> str:
    """The absorbed BMMs' dtype: block-scaled fp8 with fp8_block weights in TensorRT-LLM
    (``fp8_block_scaling_bmm_out``), bf16 in vLLM whatever the linears' quantisation
    (vllm model_executor/layers/attention/mla_attention.py: ``W_UK_T`` / ``W_UV`` are kept
    as 16-bit copies of ``kv_b_proj``'s dequantised weight, ``get_and_maybe_dequant_
    weights``, and run by ``torch.bmm``; only ROCm's aiter path runs an fp8 BMM)."""

    if check_backend(backend) == "vllm":
        return "bf16"
    return "fp8" if gemm_dtype == "fp8_block" else "bf16"


# The element-wise kernels vLLM's attention module launches around its GEMMs, BMMs and
# attention kernels (vllm 0.24.0 model_executor/layers/mla.py
# ``MultiHeadLatentAttentionWrapper.forward``, model_executor/layers/attention/
# mla_attention.py ``MLAAttention.forward`` / ``forward_impl`` / ``MLACommonImpl.
# forward_mha``, models/deepseek_v2.py ``Indexer``): name → (phases, launches, bytes per
# token as a function of the heads H and the KV-cache element width e).
#
# How the collector ran the module's norms and RoPE (``eager_ops``):
#
# - "native": the RoPE runs its PyTorch-native path, one kernel per tensor op: the
#   collector's VllmConfig kept vLLM's default compilation (VLLM_COMPILE with the inductor
#   backend), under which ``custom_ops`` defaults to "none" (vllm config/vllm.py
#   ``VllmConfig.__post_init__``), so ``CustomOp.forward`` dispatches the rotary embedding
#   to ``forward_native``; the collector calls the attention module directly, outside the
#   torch.compile'd model, so nothing fuses it. The RMSNorms are vLLM IR ops that fall
#   back to their native implementation the same way ("Priority not set for op rms_norm,
#   using native implementation").
# - "fused": tables collected after aiconfigurator#1423 (commit c56db49fe, "run module
#   collectors with engine-fused ops"), which both pins the ``vllm_c`` RMSNorm kernel
#   (collector/vllm/utils.py ``enable_engine_fused_ops``) and sets
#   ``compilation_config.custom_ops = ["all"]`` (``create_vllm_config``), so the rotary
#   embedding runs ``DeepseekScalingRotaryEmbedding.forward_cuda``: one in-place kernel.
#   Such tables say so in their collection_meta.yaml (``norm_dispatch:
#   vllm_c_eager_surrogate``, e.g. B200's vLLM MLA module tables): :func:`eager_ops_of`.
EAGER_OPS = ("native", "fused")


def eager_ops_of(norm_dispatch: str) -> str:
    """The :data:`EAGER_OPS` mode of a table whose collection metadata states
    ``norm_dispatch`` ("vllm_c_eager_surrogate": collected with aiconfigurator#1423's
    fused ops, vllm_c norms and CUDA custom ops; anything else: the native chains)."""
    return "fused" if norm_dispatch.startswith("vllm_c") else "native"


# ``RMSNorm`` native (vllm model_executor/layers/layernorm.py ``forward_native``) over d
# values per token: ``x.to(float32)`` (read 2, write 4 bytes a value), ``x.pow(2)``
# (4, 4), ``.mean(-1)`` (4), ``+ eps`` and ``rsqrt`` (per token), ``x * rsqrt(...)``
# (4, 4), ``.to(bf16)`` (4, 2), ``* weight`` (2, 2): 8 kernels, 36 bytes a value;
# ``vllm_c``'s ``rms_norm`` kernel (fused) reads and writes each value once in bf16.
RMS_NORM_KERNELS = {"native": (8, 36.0), "fused": (1, 2.0 * BF16)}  # launches, bytes/value
# the RMSNorms of the module and their widths: the q latent and the KV latent
RMS_NORMS = {"q_a_layernorm": Q_LORA_RANK, "kv_a_layernorm": KV_LORA_RANK}


# ``DeepseekScalingRotaryEmbedding.forward_native`` (rotary_embedding/
# deepseek_scaling_rope.py; DeepSeek's RoPE is GPT-J style, ``is_neox_style=False``) over
# the 64 rotary values of each rotated vector (query heads and key): per vector ``-x2``
# (read and write 32 values), ``stack`` (64, 64), ``* cos`` (64, 64), ``rotate(x) * sin``
# (64, 64), the sum (128, 64): 5 kernels for the query tensor and 5 for the key, 640 bf16
# values = 1280 bytes a vector; once per call the cos/sin gather (64, 64) and the two
# ``repeat_interleave`` (32, 64 each, an index build and an index_select): 15 kernels.
# ``forward_cuda`` rotates both in place in one kernel (read and write each value once).
NATIVE_ROPE_LAUNCHES = 1 + 2 * 2 + 5 + 5
NATIVE_ROPE_VECTOR_BYTES = 640 * BF16
NATIVE_ROPE_TOKEN_BYTES = (128 + 2 * 96) * BF16
# the MLA wrapper's ``q[..., 128:] = q_pe`` copy back (64 values per head, read and
# write), a no-op after ``forward_cuda`` (the same view: ATen ``copy_`` returns early)
NATIVE_ROPE_COPY_BYTES = 2 * QK_ROPE * BF16


def rope_kernels(eager_ops: str, vectors: float) -> tuple[int, float]:
    """Launches and bytes per token of one ``rotary_emb`` call rotating ``vectors``
    64-wide vectors a token (the query's heads and the key), as ``eager_ops``
    (:data:`EAGER_OPS`) ran it."""
    if eager_ops == "native":
        return NATIVE_ROPE_LAUNCHES, vectors * NATIVE_ROPE_VECTOR_BYTES + NATIVE_ROPE_TOKEN_BYTES
    return 1, vectors * 2 * BF16 * QK_ROPE


# the module's rotary_emb calls: name → (phases, rotated vectors a token of the heads H)
# — the MLA's q_pe (H × 64) and k_pe (64); DSA's indexer rotates only its key (vllm
# models/deepseek_v2.py ``Indexer.forward`` at vllm-project/vllm 002d6073, CUDA bf16
# path: ``rotary_emb(positions, q_dummy, k_pe)`` over one dummy and one key vector; its
# query's RoPE is fused with its fp8 quantisation, ``fused_indexer_q_rope_quant``)
ROPE_CALLS = {"rotary_emb": ("all", lambda H: H + 1.0), "indexer_k_rope": ("dsa", lambda H: 2.0)}
AUX_KERNELS = {
    # concat_and_cache_mla: the 576-wide latent read in bf16, written to the cache
    "kv_cache_update": ("all", 1, lambda H, e: LATENT * (BF16 + e)),
    # decode (absorbed) path: W_UV's output (N, B, 128) copied back to (B, N·128)
    "v_up_copy": ("mqa", 1, lambda H, e: 2 * BF16 * H * V_HEAD),
    # fp8 cache, dense MLA: _DecodeConcatQuantFP8 (compiled native: one kernel)
    # concatenates ql_nope and q_pe and quantises them. The layer runs it only where
    # ``fp8_attention and self.impl.supports_quant_query_input`` (vllm model_executor/
    # layers/attention/mla_attention.py ``forward_impl``); FlashMLASparseImpl leaves that
    # False (AttentionImplBase's default; @60191e18 flashmla_sparse.py) and takes the bf16
    # (ql_nope, q_pe) pair, which its ``forward_mqa`` joins with one ``torch.cat``
    # (``q_cat``, below): DSA never launches it (:func:`aux_kernels`)
    "q_concat_quant": ("mqa_fp8", 1, lambda H, e: H * LATENT * (BF16 + 1.0)),
    # prefill (MHA) path: ``_concat_k_nope_k_pe`` writes K = [k_nope, k_pe broadcast]
    # (two copies into one buffer), the output copied into the module's (``output.copy_``)
    "k_concat": ("mha", 2, lambda H, e: BF16 * H * (QK_NOPE + CONTEXT_D)),
    "o_copy": ("mha", 1, lambda H, e: 2 * BF16 * H * V_HEAD),
    # V padded to K's width for a FlashAttention without distinct V head size
    # (``_flash_attn_varlen_diff_headdims``, ``requires_v_padding``: all but FA3 on SM90)
    "v_pad": ("mha_pad", 1, lambda H, e: BF16 * H * (V_HEAD + CONTEXT_D)),
    # DSA's indexer (``Indexer.forward``, above): k's LayerNorm (128; ``F.layer_norm``,
    # one kernel either way), its query's fused RoPE + fp8 quantisation (64 × 128) and
    # head weights' scaling (``fused_indexer_q_rope_quant``), k = cat(k_pe, k_nope), k's
    # quantisation into the indexer cache
    "indexer_k_norm": ("dsa", 1, lambda H, e: 2 * BF16 * INDEX_HEAD_DIM),
    "indexer_q_rope_quant": ("dsa", 1, lambda H, e: (INDEX_HEADS * INDEX_HEAD_DIM
                                                     * (BF16 + 1.0) + 2 * 4.0 * INDEX_HEADS)),
    "indexer_k_concat": ("dsa", 1, lambda H, e: 2 * BF16 * INDEX_HEAD_DIM),
    "indexer_k_cache": ("dsa", 1, lambda H, e: INDEX_HEAD_DIM * (BF16 + 1.0)),
    # FlashMLASparseImpl.forward_mqa's ``q = torch.cat(q, dim=-1)``: the bf16 (ql_nope,
    # q_pe) pair read, the 576-wide bf16 query written, in every DSA call, whatever the
    # cache (@60191e18 flashmla_sparse.py; the fp8 kernels take this bf16 query)
    "q_cat": ("dsa", 1, lambda H, e: 2 * BF16 * H * LATENT),
}


def pads_v(gpu: Any) -> bool:
    """Whether vLLM's FlashAttention prefill pads V to K's head size: all but FA3 on SM90
    (``FlashAttnPrefillBackend.requires_v_padding``; vLLM runs FA3 on Hopper only)."""
    return cc_major(gpu) != 9


def aux_kernels(mqa: bool, sparse: bool, kv_dtype: str, pad_v: bool = True) -> list[str]:
    """The names of the element-wise kernels one module call launches (the
    :data:`RMS_NORMS`, :data:`ROPE_CALLS` and :data:`AUX_KERNELS`): every call's norms,
    RoPE and cache write;
    on the absorbed (MQA) path (:func:`mqa_rows`) the output copy and, with an fp8 cache
    and dense MLA, the query concat-quantise (not DSA's: :data:`AUX_KERNELS`); on the
    prefill (MHA) path the K assembly and output copy,
    and V's padding where ``pad_v`` (:func:`pads_v`); DSA's indexer kernels and its
    sparse attention's query cat."""
    tags = {"all", "mqa" if mqa else "mha"}
    if mqa and kv_family(kv_dtype) == "fp8" and not sparse:
        tags.add("mqa_fp8")
    if not mqa and pad_v:
        tags.add("mha_pad")
    if sparse:
        tags.add("dsa")
    return [*RMS_NORMS, *(name for name, (tag, _) in ROPE_CALLS.items() if tag in tags),
            *(name for name, (tag, _, _) in AUX_KERNELS.items() if tag in tags)]


def aux_launches(heads: int, mqa: bool, sparse: bool, kv_dtype: str, pad_v: bool,
                 eager_ops: str = "native") -> tuple[int, float]:
    """The kernel launches one module call makes for its element-wise kernels
    (:func:`aux_kernels`; ``eager_ops`` how the norms and RoPE ran, :data:`EAGER_OPS`:
    :data:`RMS_NORM_KERNELS`, :func:`rope_kernels`) and the bytes they move per token."""
    e = float(FP8 if kv_family(kv_dtype) == "fp8" else BF16)
    kernels = aux_kernels(mqa, sparse, kv_dtype, pad_v)
    norm_launches, norm_bytes = RMS_NORM_KERNELS[eager_ops]
    launches = len(RMS_NORMS) * norm_launches
    per_token = norm_bytes * sum(RMS_NORMS.values())
    for name in (n for n in kernels if n in ROPE_CALLS):
        n_launch, n_bytes = rope_kernels(eager_ops, ROPE_CALLS[name][1](float(heads)))
        launches, per_token = launches + n_launch, per_token + n_bytes
    if eager_ops == "native":    # the MLA wrapper's copy back of the rotated q_pe
        launches, per_token = launches + 1, per_token + heads * NATIVE_ROPE_COPY_BYTES
    names = [n for n in kernels if n in AUX_KERNELS]
    launches += sum(AUX_KERNELS[n][1] for n in names)
    per_token += sum(AUX_KERNELS[n][2](float(heads), e) for n in names)
    return launches, per_token


def aux_s(T: np.ndarray, heads: int, mqa: bool, sparse: bool, kv_dtype: str, gpu: Any,
          cls: Any, eager_ops: str = "native") -> np.ndarray:
    """Seconds of the module's element-wise kernels (:func:`aux_launches`) over ``T``
    tokens (array): each launch costs ``cls.floor_s``, their bytes stream at ``cls``'s HBM
    efficiency."""
    launches, per_token = aux_launches(heads, mqa, sparse, kv_dtype, pads_v(gpu), eager_ops)
    return elementwise_s(launches, per_token, T, cls, gpu)


def elementwise_s(launches: float, per_token_bytes: float, T: np.ndarray, cls: Any,
                  gpu: Any) -> np.ndarray:
    """Seconds of ``launches`` element-wise kernels moving ``per_token_bytes`` for each of
    ``T`` tokens (array): ``cls.floor_s`` per launch plus the bytes at ``cls``'s fraction
    of the GPU's HBM bandwidth."""
    bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    return launches * cls.floor_s + T * per_token_bytes / bw


# The element-wise kernels of TensorRT-LLM's MLA module outside its GEMMs, BMMs and
# attention op (tensorrt_llm/_torch/modules/attention.py at NVIDIA/TensorRT-LLM 00547a25,
# ``MLA.forward_impl`` / ``forward_dsa_proj`` / ``forward_context_default``): name →
# (path, launches, bytes per token as a function of the heads H). The attention op itself
# applies RoPE and writes the cache (``latent_cache``: its context preprocessing and
# generation kernels, timed inside the MLA/DSA kernel tables memsim's attention classes
# are fitted on), so neither is here.
TRTLLM_AUX_KERNELS = {
    # ``q_a_layernorm`` (1536) and ``kv_a_layernorm`` (512): RMSNorm kernels reading and
    # writing bf16, on two streams at once (``maybe_execute_in_parallel``): one launch's
    # latency, both tensors' bytes
    "a_layernorms": ("all", 1, lambda H: 2 * BF16 * (Q_LORA_RANK + KV_LORA_RANK)),
    # ``latent_cache = torch.concat([compressed_kv, k_pe])``: the 576-wide latent copied;
    # in DSA's ``forward_dsa_proj`` between the norms and ``q_b_proj``; MLA's
    # ``forward_impl`` runs it on the aux stream beside ``q_b_proj``
    # (``maybe_execute_in_parallel``), whose longer GEMM hides it
    "latent_concat": ("dsa", 1, lambda H: 2 * BF16 * LATENT),
    # MHA prefill (``forward_context_default``): K assembled in a fresh buffer,
    # ``maybe_compiled_copy_(k[..., :128], k_nope)`` — H × 128 values read and written
    "k_nope_copy": ("mha", 1, lambda H: 2 * BF16 * H * QK_NOPE),
}


def trtllm_aux_kernels(mqa: bool, sparse: bool) -> list[str]:
    """The names of :data:`TRTLLM_AUX_KERNELS` one TensorRT-LLM module call launches
    (outside those another kernel hides): the norms always, K's assembly on the MHA
    prefill path, the latent concat with DSA (``sparse``)."""
    tags = {"all", "mqa" if mqa else "mha", *(("dsa",) if sparse else ())}
    return [n for n, (tag, _, _) in TRTLLM_AUX_KERNELS.items() if tag in tags]


def trtllm_aux_s(T: np.ndarray, heads: int, mqa: np.ndarray, sparse: bool,
                 gpu: Any) -> np.ndarray:
    """Seconds of TensorRT-LLM's element-wise module kernels (:func:`trtllm_aux_kernels`)
    over ``T`` tokens (array), per row's path (``mqa``, :func:`mqa_rows`; ``sparse``:
    DSA): each launch costs the class "module/trtllm/graph"'s ``floor_s`` (one kernel
    inside the module's CUDA graph), their bytes stream at its HBM efficiency."""
    from memsim.ops.classes import kernel_class

    cls = kernel_class("module/trtllm/graph")
    H = float(heads)

    def path_s(on_mqa: bool) -> np.ndarray:
        names = trtllm_aux_kernels(on_mqa, sparse)
        launches = sum(TRTLLM_AUX_KERNELS[n][1] for n in names)
        per_token = sum(TRTLLM_AUX_KERNELS[n][2](H) for n in names)
        return elementwise_s(launches, per_token, T, cls, gpu)

    return np.where(mqa, path_s(True), path_s(False))


def dsa_s(B: np.ndarray, N: np.ndarray, S: np.ndarray, heads: int, *, kv_dtype: str,
          gpu: Any, backend: str | None) -> np.ndarray:
    """Seconds of DeepSeek Sparse Attention over the latent (indexer, top-k, sparse MLA:
    :mod:`memsim.algorithms.dsa` with V3.2's indexer, its gathers through the L2 estimate),
    timed as :func:`memsim.attention.backend_time_s` times it with ``backend``'s "dsa"
    class and its production sparse kernel (:func:`memsim.attention.sparse_mla_kernel`:
    vLLM's FlashMLA sparse prefill or fp8 decode kernel, :mod:`memsim.ops.sparse_mla`;
    FlashMLA's SM90 sparse kernel by its CTAs on Hopper where the backend has that class,
    else its MMAs over the selected keys at the actual heads in the roofline), as ``memsim attention
    --algorithm dsa --backend`` and the whole-model sums time it."""
    from memsim.attention import backend_time_s
    from memsim.problem import AttentionProblem, Mask

    dtype = "fp8" if kv_family(kv_dtype) == "fp8" else "bf16"
    flat = [np.asarray(v, dtype=float).reshape(-1) for v in (B, N, S)]
    rows: dict[tuple[float, float, float], list[int]] = {}
    for i, key in enumerate(zip(*(v.tolist() for v in flat), strict=True)):
        rows.setdefault(key, []).append(i)
    gpu_json = gpu.model_dump_json()
    out_s = np.zeros(len(flat[0]))
    for (b, n, s), at in sorted(rows.items()):
        problem = AttentionProblem(
            batch=int(b), seq_len=int(n), kv_len=int(s), heads=int(heads), kv_heads=1,
            head_dim=LATENT, head_dim_v=KV_LORA_RANK, dtype=dtype, mla=True,
            mask=Mask(causal=True, top_k=INDEX_TOPK))
        cost, tiling = _dsa_costs(problem, gpu_json)
        t = backend_time_s(cost, gpu, problem, "dsa", backend, b, n,
                           blocks_per_sm=tiling.blocks_per_sm(gpu), S=s)
        out_s[at] = float(np.asarray(t).reshape(-1)[0])
    return out_s.reshape(np.shape(B))


@functools.lru_cache(maxsize=4096)   # a few KB per entry
def _dsa_costs(problem: Any, gpu_json: str) -> tuple[Any, Any]:
    """:func:`memsim.attention.costs_for` of a DSA problem (its cost and tiling) on the GPU
    profile ``gpu_json`` (``GPU.model_dump_json()``: the whole profile, hashable where the
    model is not; rebuilt here), memoised: they depend on the problem and the profile
    only, not on the kernel classes, so a fit re-predicting the same module rows under
    trial classes computes them once (tests/test_mla_module.py checks a trial class still
    moves :func:`dsa_s`)."""
    from memsim.attention import costs_for
    from memsim.hardware import GPU

    return costs_for(problem, GPU.model_validate_json(gpu_json), "dsa", l2_estimate=True)


def module(phase: str, batch: Any, seq_len: Any, kv_len: Any, heads: int, *,
           kv_dtype: str = "bf16", gemm_dtype: str = "bf16", sparse: bool = False,
           gpu: Any = "h100-sxm", backend: str | None = None,
           mla_dtype: str = "bf16", eager_ops: str = "native") -> OpPrediction:
    """The attention module of a DeepSeek-V3 (``sparse``: V3.2) layer, the sum of its
    kernels' times (:func:`module_parts`; ``mla_dtype``: the prefill's query dtype,
    :func:`prefill_kv_dtype`; ``eager_ops``: how vLLM's norms and RoPE ran,
    :data:`EAGER_OPS`); ``terms_s`` holds each part."""
    if phase not in ("context", "decode"):
        from memsim.errors import InputError

        raise InputError("phase", phase, "must be context or decode")
    for name, v in (("batch", batch), ("seq_len", seq_len), ("kv_len", kv_len),
                    ("heads", heads)):
        positive(name, v)
    gpu = resolve_gpu(gpu)
    B, N, _ = as_float(batch, seq_len, kv_len)
    linears = linear_predictions(B * N, float(heads),
                                 mqa_rows(phase, sparse, N, kv_dtype, gpu, backend), sparse,
                                 gemm_dtype, gpu, backend)
    parts = module_parts(phase, batch, seq_len, kv_len, heads, kv_dtype=kv_dtype,
                         gemm_dtype=gemm_dtype, sparse=sparse, gpu=gpu, backend=backend,
                         mla_dtype=mla_dtype, eager_ops=eager_ops, linears=linears)
    kernels_s = sum(parts.values())
    host_s = eager_module_host_s(phase, batch, seq_len, heads, kv_dtype=kv_dtype,
                                 sparse=sparse, gpu=gpu, backend=backend,
                                 eager_ops=eager_ops, linears=linears)
    # an eager forward was timed over back-to-back calls between two CUDA events with no
    # synchronisation inside (aiconfigurator collector/helper.py ``benchmark_with_power``,
    # its eager branch): each launch returns once its kernel is queued on the stream, so
    # the host (producer) runs ahead of the GPU (consumer) and the slower of the two sets
    # the pace — per call the larger of the host's time and the kernels', not their sum
    # (a sum needs the host to wait for the GPU inside the call)
    total = np.maximum(kernels_s, host_s)
    zero = np.zeros_like(total)
    bound = np.where(host_s > kernels_s, "host", bound_of(parts, zero))
    return OpPrediction(time_s=out(total), bound=str(bound) if bound.ndim == 0 else bound,
                        flops=out(zero), hbm_bytes=out(zero), launch_s=out(zero),
                        terms_s={k: out(v) for k, v in parts.items()},
                        detail={"sparse": sparse, "gemm_dtype": gemm_dtype,
                                "host_s": out(host_s)})


def eager_module_host_s(phase: str, batch: Any, seq_len: Any, heads: int, *,
                        kv_dtype: str, sparse: bool, gpu: Any, backend: str | None,
                        eager_ops: str,
                        linears: dict[str, tuple[np.ndarray, OpPrediction]]) -> np.ndarray:
    """The host's seconds per call of a module the collector ran eagerly
    (:func:`_graphed`; :func:`eager_host_s` with the class "module/<backend>/eager" over
    the call's :func:`linear_predictions` ``linears``), 0 for a CUDA-graph replay or a
    backend without that class."""
    B, N = as_float(batch, seq_len)
    host = _host_class(backend)
    if host is None or _graphed(phase, sparse):
        return np.zeros_like(B * N)
    gpu = resolve_gpu(gpu)
    return eager_host_s(B * N, heads, mqa_rows(phase, sparse, N, kv_dtype, gpu, backend),
                        sparse=sparse, kv_dtype=kv_dtype, linears=linears, gpu=gpu,
                        eager_ops=eager_ops, launch_s=host.floor_s)


__all__ = ["AUX_KERNELS", "DSA_PREFILL_LAUNCHES", "EAGER_OPS", "HIDDEN", "INDEX_TOPK",
           "TRTLLM_AUX_KERNELS", "aux_kernels", "aux_launches", "aux_s",
           "dsa_prefill_launches", "dsa_s", "eager_host_s", "eager_module_host_s",
           "eager_ops_of", "elementwise_s", "linear_predictions", "linear_shapes", "module",
           "module_parts", "mqa_rows", "pads_v", "prefill_kv_dtype", "trtllm_aux_kernels",
           "trtllm_aux_s"]
