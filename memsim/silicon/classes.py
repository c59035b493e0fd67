"""The op classes: which measured table each reads, and how a row becomes a memsim prediction.

Column semantics (each read from aiconfigurator's own code; ``docs/silicon.md`` has the
table with file and line):

- ``latency`` is milliseconds (CUDA-event ``elapsed_time`` over graph replays, e.g.
  collector/trtllm/collect_attn.py l. 423-437 of ai-dynamo/aiconfigurator @095f58a).
- attention, generation rows: ``isl`` = 1 (the new token) and ``step`` = the cached tokens,
  so the key length is ``isl + step`` (collect_attn.py l. 419-420; the loader,
  aic-core/rust/.../perf_database/attention.rs l. 13-14: ``kv_seq_tokens = isl + step``).
  Context rows: ``isl`` = the prompt, ``step`` = 0 (l. 415-416), causal.
- ``num_heads``/``num_key_value_heads`` are per GPU (the collectors run tp_size = 1,
  collect_attn.py l. 147); MLA rows' ``num_heads`` is already divided by ``tp_size``
  (collect_mla.py l. 247-248), ``tp_size`` is provenance only.
- MLA geometry: DeepSeek-V3's (kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128;
  collect_mla.py l. 71-82). Context MLA runs as MHA over the decompressed K/V (D = 192,
  Dv = 128, K = H); generation MLA as MQA over the latent cache (D = 576, Dv = 512, K = 1),
  both timed by :mod:`memsim.ops.mla` (the kernels' tiles, not memsim's FA-2 roofline).
- ``window_size`` > 0 is a causal sliding window of that many tokens; 0 is none.

Each class maps the rows of one table file on one GPU profile to a :class:`Mapped`: memsim's
time per row for each model (``analytic``: the time ``memsim attention --backend B``
headlines, i.e. :func:`memsim.attention.predict` with the row's backend (its fitted kernel
class and latency floor) and the L2-aware estimate; ``no_reuse``: the same with every global
read counted at HBM), and the roofline terms the calibration re-times. Rows memsim cannot
express are left NaN with a reason, never dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from memsim.hardware import GPU
from memsim.silicon.tables import Rows

MODELS = ("analytic", "no_reuse")
# Roofline terms at efficiency 1 for the units the calibration fits (tensor, hbm), at the
# profile's efficiency for the rest: fitted time = max(matmul_s / e_tensor + vector_s,
# max(hbm_s / e_hbm, other_memory_s)) + link_s / e_interconnect + floor_s
# (see memsim.validation.calibrate).
TERM_KEYS = ("matmul_s", "vector_s", "hbm_s", "other_memory_s", "link_s", "launch_s")
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "fp8": "fp8",
           "fp8_block": "fp8", "float8": "fp8", "float32": "fp32"}


@dataclass
class Mapped:
    """memsim's predictions for ``n`` rows (NaN where a row could not be mapped)."""

    time_s: dict[str, np.ndarray]
    bound: np.ndarray
    terms: dict[str, dict[str, np.ndarray]]
    size: np.ndarray                      # a size feature (FLOPs or bytes) for the trend
    params: list[dict]                    # memsim's reading of each row
    reasons: dict[int, str] = field(default_factory=dict)   # row position → why unmapped
    start: dict[str, float] = field(default_factory=dict)   # factors the terms were timed at


@dataclass(frozen=True)
class OpClass:
    """One op class: its table, the columns it reads, its neighbours for outliers, its map.

    ``curve``: the columns that, held equal, make a curve along ``axis`` (outlier search).
    ``select``: which rows of the table belong to the class (e.g. one ``op_name``).
    ``case``: the columns naming a model shape (heads, head size, dtype...): the calibration
    holds all rows of a case out together.
    """

    name: str
    table: str
    columns: tuple[str, ...]
    curve: tuple[str, ...]
    axis: str
    mapper: Callable[[Rows, GPU], Mapped]
    select: Callable[[Rows], np.ndarray] | None = None
    doc: str = ""
    case: tuple[str, ...] = ()
    latency_to_s: float = 1e-3   # the table's latency unit: ms, µs for moe_a2a_perf
    siblings: tuple[str, ...] = ()   # curves doing equal work at their smallest size (outliers)
    split: tuple[str, ...] = ()      # curve columns splitting the work over GPUs (outliers)


def dtype_of(values: np.ndarray) -> np.ndarray:
    """Database dtype names → memsim's (``bfloat16`` → ``bf16``, ``fp8_block`` → ``fp8``)."""
    return np.array([_DTYPES.get(str(v), str(v)) for v in values], dtype=object)


def _empty(n: int) -> Mapped:
    nan = np.full(n, np.nan)
    return Mapped(time_s={m: nan.copy() for m in MODELS}, bound=np.full(n, "", dtype=object),
                  terms={m: {k: nan.copy() for k in TERM_KEYS} for m in MODELS},
                  size=nan.copy(), params=[{} for _ in range(n)])


def _groups(keys: list[tuple]) -> dict[tuple, np.ndarray]:
    """Row indices per distinct key, keys in order of first appearance."""
    g: dict[tuple, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        g[k].append(i)
    return {k: np.asarray(v) for k, v in g.items()}


# ---- attention family ------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """The per-row attention shape a table describes (arrays of n)."""

    B: np.ndarray
    N: np.ndarray
    S: np.ndarray
    H: np.ndarray
    K: np.ndarray
    D: np.ndarray
    Dv: np.ndarray
    window: np.ndarray
    causal: bool
    mla: bool
    dtype: np.ndarray
    algorithm: str | np.ndarray   # one for all rows, or one per row
    backend: str | None = None
    rotary_dim: int | None = None   # head elements RoPE rotates (None: all)


def _attention(shape: _Shape, gpu: GPU) -> Mapped:
    """Vectorised memsim attention predictions: one :func:`memsim.attention.predict_arrays`
    call (what ``memsim attention --backend B`` prints, row by row) per distinct
    (H, K, D, Dv, window, dtype), over arrays of (B, N, S)."""
    from dataclasses import replace

    from memsim.attention import predict_arrays
    from memsim.errors import InputError
    from memsim.problem import AttentionProblem, Mask
    from memsim.validation.calibrate import with_factors

    n = len(shape.B)
    out = _empty(n)
    algorithms = np.broadcast_to(np.asarray(shape.algorithm, dtype=object), (n,))
    keys = list(zip(shape.H.tolist(), shape.K.tolist(), shape.D.tolist(), shape.Dv.tolist(),
                    shape.window.tolist(), shape.dtype.tolist(), algorithms.tolist(),
                    strict=True))
    for (H, K, D, Dv, window, dtype, algorithm), idx in _groups(keys).items():
        B, N, S = shape.B[idx], shape.N[idx], shape.S[idx]
        mask = Mask(causal=shape.causal, window=int(window) if window > 0 else None)
        try:
            problem = AttentionProblem(
                batch=int(B[0]), seq_len=int(N[0]), kv_len=int(S[0]), heads=int(H),
                kv_heads=int(K), head_dim=int(D), head_dim_v=int(Dv), dtype=dtype,
                mla=shape.mla, mask=mask)
            pred = predict_arrays(problem, gpu, algorithm, B=B, N=N, S=S,
                                  backend=shape.backend, rotary_dim=shape.rotary_dim)
        except (InputError, ValueError) as exc:
            reason = str(exc).splitlines()[0][:200]
            out.reasons.update({int(i): reason for i in idx})
            continue
        timer = pred.timer
        start = {"tensor": timer.gpu.efficiency.tensor,
                 "hbm_bandwidth": timer.gpu.efficiency.hbm_bandwidth}
        if not out.start or dtype == "bf16":   # an fp8 cache's class may differ (as _mla)
            out.start = start
        # the same kernel at efficiency 1 for the units the calibration fits
        unit = replace(timer, gpu=with_factors(timer.gpu, {"tensor": 1.0,
                                                           "hbm_bandwidth": 1.0}))
        for model, cost, t in (("analytic", pred.l2_cost, pred.l2_timing),
                               ("no_reuse", pred.cost, pred.timing)):
            out.time_s[model][idx] = t.time_s
            if model == "analytic":
                out.bound[idx] = t.bound
                out.size[idx] = np.asarray(timer.kernel_cost(cost).matmul_flops, dtype=float)
            u = unit(cost)
            terms = out.terms[model]
            terms["matmul_s"][idx] = u.terms_s["matmul"]
            # a decode kernel's per-CTA steps add to its memory time (Timer.cta_s):
            # a fixed time to the fit, as the KV-cache write before a prefill kernel
            serial = u.terms_s.get("serial", 0.0)
            overlaps = timer.cta_s is None
            # a kernel that hides its exponentials under its matmuls (Timer.exp_overlaps):
            # the part the matmuls at the start factor leave exposed (exact there)
            exp = np.where(timer.exp_overlaps, np.maximum(
                u.terms_s["exp"] - u.terms_s["matmul"] / start["tensor"], 0.0),
                u.terms_s["exp"])
            terms["vector_s"][idx] = (u.terms_s["vector"] + exp
                                      + (serial if overlaps else 0.0))
            terms["hbm_s"][idx] = u.terms_s["hbm"]
            # a decode CTA's own latency-bound key stream (Timer.key_s) is a memory term
            # no HBM factor scales
            terms["other_memory_s"][idx] = np.maximum(
                np.maximum(u.terms_s["l2"], u.terms_s["sram"]), u.terms_s.get("stream", 0.0))
            terms["link_s"][idx] = 0.0
            terms["launch_s"][idx] = (u.launch_s + u.terms_s.get("pre", 0.0)
                                      + (0.0 if overlaps else serial))
        for j, i in enumerate(idx.tolist()):
            out.params[i] = {"algorithm": algorithm, "batch": int(B[j]),
                             "seq_len": int(N[j]), "kv_len": int(S[j]), "heads": int(H),
                             "kv_heads": int(K), "head_dim": int(D), "head_dim_v": int(Dv),
                             "mla": shape.mla, "dtype": dtype, "mask": mask.describe()}
    return out


def _backend(rows: Rows) -> str | None:
    """The row's framework as memsim's kernel-class backend, None for others (NCCL)."""
    from memsim.ops import BACKENDS

    return rows.backend if rows.backend in BACKENDS else None


def _i(rows: Rows, name: str, default: int | None = None) -> np.ndarray:
    return np.asarray(rows.col(name, default), dtype=np.int64)


def _kv_heads(rows: Rows) -> np.ndarray:
    h, k = _i(rows, "num_heads"), _i(rows, "num_key_value_heads", 0)
    return np.where(k > 0, k, h)   # 0 is the MHA sentinel (attention.rs l. 17)


def context_attention(rows: Rows, gpu: GPU) -> Mapped:
    """Prefill rows: memsim's flash2 prefill, or its decode where the backend runs a short
    query with its decode kernel (:func:`memsim.attention.runs_decode_kernel`)."""
    from memsim.attention import runs_decode_kernel

    isl = _i(rows, "isl")
    d = _i(rows, "head_dim")
    backend = _backend(rows)
    algorithm = np.where(runs_decode_kernel(backend, gpu, isl), "flash_decode", "flash2")
    return _attention(_Shape(B=_i(rows, "batch_size"), N=isl, S=isl, H=_i(rows, "num_heads"),
                             K=_kv_heads(rows), D=d, Dv=d, window=_i(rows, "window_size", 0),
                             causal=True, mla=False, dtype=_context_dtype(rows),
                             algorithm=algorithm.astype(object), backend=backend), gpu)


def _context_dtype(rows: Rows) -> np.ndarray:
    """The dtype a prefill row's attention kernel computes in: ``attn_dtype``, except that
    TensorRT-LLM with an fp8 KV cache runs its fp8 context FMHA whatever ``attn_dtype``
    says (fp8 KV forces the paged-context FMHA, which reads Q and K/V in fp8: aiconfigurator
    collector/trtllm/collect_attn.py l. 126-175, "casts Q to the KV dtype to reuse the
    QkvE4m3OBfloat16 cubins"); so does vLLM, whose collector hands FA3 an fp8 query with
    an fp8 cache (collector/vllm/collect_attn.py l. 283-284, ``needs_fp8_query``): FA3's
    e4m3 kernel."""
    dtype = dtype_of(rows.col("attn_dtype"))
    if rows.backend in ("trtllm", "vllm"):
        fp8_kv = dtype_of(rows.col("kv_cache_dtype", "bfloat16")) == "fp8"
        dtype = np.where(fp8_kv, "fp8", dtype).astype(object)
    return dtype


# aiconfigurator's TensorRT-LLM attention collector rotates 128 head elements whatever the
# head size (collector/trtllm/collect_attn.py run_attention_torch:
# ``PositionalEmbeddingParams(type=rope_gpt_neox, rope=RopeParams(dim=128))``)
TRTLLM_COLLECTOR_ROTARY_DIM = 128


def generation_attention(rows: Rows, gpu: GPU) -> Mapped:
    """Decode rows: memsim's flash_decode, with the RoPE width the row's collector used
    (TensorRT-LLM's: :data:`TRTLLM_COLLECTOR_ROTARY_DIM`; it decides whether XQA runs a
    separate RoPE kernel, :func:`memsim.attention.xqa_separate_rope`)."""
    kv = _i(rows, "isl") + _i(rows, "step")          # attention.rs l. 13-14
    d = _i(rows, "head_dim")
    backend = _backend(rows)
    return _attention(_Shape(B=_i(rows, "batch_size"), N=np.ones_like(kv), S=kv,
                             H=_i(rows, "num_heads"), K=_kv_heads(rows), D=d, Dv=d,
                             window=_i(rows, "window_size", 0), causal=True, mla=False,
                             dtype=dtype_of(rows.col("kv_cache_dtype")),
                             algorithm="flash_decode", backend=backend,
                             rotary_dim=TRTLLM_COLLECTOR_ROTARY_DIM
                             if backend == "trtllm" else None), gpu)


def trtllm_decode_kernel(rows: Rows) -> np.ndarray:
    """Per generation row, the TensorRT-LLM decode kernel that times it on the row's GPU
    (:func:`memsim.attention.decode_kernel`: "mmha", "xqa_hmma", "xqa_gmma"; "" for other
    backends and GPUs without a profile): the fitter's row selection per kernel class."""
    from memsim.attention import decode_kernel, production_problem
    from memsim.hardware import load_gpu
    from memsim.problem import AttentionProblem
    from memsim.silicon import source

    out = np.full(len(rows), "", dtype=object)
    profile = source.SYSTEM_PROFILES.get(rows.system)
    if rows.backend != "trtllm" or profile is None:
        return out
    gpu = load_gpu(profile)
    H, K, D = _i(rows, "num_heads"), _kv_heads(rows), _i(rows, "head_dim")
    dtype = dtype_of(rows.col("kv_cache_dtype", "bfloat16"))
    keys = list(zip(H.tolist(), K.tolist(), D.tolist(), dtype.tolist(), strict=True))
    for (h, k, hd, d), idx in _groups(keys).items():
        p = production_problem(AttentionProblem.model_construct(
            heads=h, kv_heads=k, head_dim=hd, dtype=d, mla=False), "flash_decode", "trtllm")
        out[idx] = decode_kernel(p, "trtllm", gpu) or ""
    return out


def vllm_flash_attn(rows: Rows) -> np.ndarray:
    """Per row, the FlashAttention version vLLM runs on the row's GPU as memsim routes it
    (:func:`memsim.attention.vllm_fa4`: "fa4" for a head size FA3 lacks on SM90, else
    "fa3"); "" for other backends and GPUs. The tables' ``kernel_source`` names the same
    kernel (tests/test_fa4.py checks they agree); memsim never reads it to predict."""
    from memsim.attention import vllm_fa4
    from memsim.hardware import load_gpu
    from memsim.problem import AttentionProblem
    from memsim.silicon import source

    out = np.full(len(rows), "", dtype=object)
    profile = source.SYSTEM_PROFILES.get(rows.system)
    if rows.backend != "vllm" or profile is None:
        return out
    gpu = load_gpu(profile)
    if gpu.architecture != "hopper":
        return out
    D = _i(rows, "head_dim")
    for hd, idx in _groups([(d,) for d in D.tolist()]).items():
        p = AttentionProblem.model_construct(head_dim=hd[0], head_dim_v=hd[0], mla=False)
        out[idx] = "fa4" if vllm_fa4(p, "vllm", gpu) else "fa3"
    return out


# columns the fitter selects rows by that the tables do not hold (memsim.silicon.fit)
DERIVED_COLUMNS = {"decode_kernel": trtllm_decode_kernel, "vllm_flash_attn": vllm_flash_attn}


def encoder_attention(rows: Rows, gpu: GPU) -> Mapped:
    """Encoder rows (bidirectional MHA, bf16, no KV cache) through :mod:`memsim.ops.encoder`:
    the kernel each framework's collector times (fmha_v2 / trtllm-gen behind TensorRT-LLM's
    QKV preprocessing, FlashAttention-3/4 varlen, SGLang's Triton), one call per head size.

    Terms for the calibration: ``matmul_s`` the MMA time at efficiency 1; the softmax and
    the fixed per-tile steps as ``vector_s``; the preprocessing pass and the floor as
    ``launch_s``."""
    from memsim.errors import InputError
    from memsim.ops import encoder
    from memsim.ops.classes import kernel_class

    out = _empty(len(rows))
    B, N = _i(rows, "batch_size"), _i(rows, "isl")
    H, D = _i(rows, "num_heads"), _i(rows, "head_dim")
    dtype = dtype_of(rows.col("attn_dtype"))
    backend = _backend(rows)
    for (d, dt), idx in _groups(list(zip(D.tolist(), dtype.tolist(), strict=True))).items():
        try:
            if dt != "bf16":
                raise InputError("attn_dtype", dt, "encoder attention is modelled in bf16")
            cls = kernel_class("attention/encoder", backend)
            pred = encoder.predict(B[idx], N[idx], H[idx], d, gpu=gpu, backend=backend)
        except (InputError, ValueError, KeyError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        out.start = {"tensor": cls.efficiency.get("tensor", 1.0),
                     "hbm_bandwidth": gpu.efficiency.hbm_bandwidth}
        t = pred.terms_s
        for model in MODELS:
            out.time_s[model][idx] = pred.time_s
            terms = out.terms[model]
            terms["matmul_s"][idx] = t["matmul"] * min(cls.efficiency.get("tensor", 1.0), 1.0)
            terms["vector_s"][idx] = t["exp"] + t["vector"] + t["serial"]
            terms["hbm_s"][idx] = t["hbm"] * gpu.efficiency.hbm_bandwidth
            terms["other_memory_s"][idx] = 0.0
            terms["link_s"][idx] = 0.0
            terms["launch_s"][idx] = pred.launch_s + t["pre"]
        out.bound[idx] = pred.bound
        out.size[idx] = pred.flops
        for i in idx.tolist():   # the problem `memsim attention --bidirectional` times
            out.params[i] = {"algorithm": "flash2", "batch": int(B[i]), "seq_len": int(N[i]),
                             "kv_len": int(N[i]), "heads": int(H[i]), "kv_heads": int(H[i]),
                             "head_dim": d, "head_dim_v": d, "mla": False, "dtype": dt,
                             "mask": "full", "kernel": pred.detail["kernel"],
                             "kernel_class": cls.name}
    return out


def _mla(phase: str, rows: Rows, gpu: GPU, kv_len: np.ndarray, seq_len: np.ndarray
         ) -> Mapped:
    """MLA rows through :mod:`memsim.ops.mla` (the kernels' own structure: prefill FMHA on
    the decompressed K/V, FlashMLA decode on the latent), one call per KV-cache dtype.

    Terms for the calibration: ``matmul_s``, ``hbm_s`` (with the fp8 quantisation pass's
    bytes, which the model adds after the max) at efficiency 1; the class's per-row fixed
    steps and the decode's Q/O traffic in series with them (``tile_io``, at the class's
    HBM efficiency) as ``vector_s``; its floor as ``launch_s``."""
    from memsim.errors import InputError
    from memsim.ops import mla
    from memsim.ops.classes import kernel_class

    out = _empty(len(rows))
    B, H = _i(rows, "batch_size"), _i(rows, "num_heads")
    kv = dtype_of(rows.col("kv_cache_dtype"))
    backend = _backend(rows)
    for fam in sorted(set(kv.tolist())):
        idx = np.nonzero(kv == fam)[0]
        try:
            cls = kernel_class(f"mla/{phase}", backend, mla.kv_family(fam))
            if phase == "context":
                work, launches = mla.context_work(B[idx], seq_len[idx], H[idx], fam), None
            else:
                work = mla.decode_work(B[idx], kv_len[idx], H[idx], fam)
                launches = mla.decode_launches(gpu, backend)
            pred = mla.time_work(work, gpu, cls, launches)
        except (InputError, ValueError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        if not out.start or fam == "bf16":
            out.start = {"tensor": cls.efficiency.get("tensor", 1.0),
                         "hbm_bandwidth": cls.efficiency.get("hbm", 1.0)}
        t = pred.terms_s
        for model in MODELS:
            out.time_s[model][idx] = pred.time_s
            terms = out.terms[model]
            terms["matmul_s"][idx] = t["matmul"] * min(cls.eff("tensor"), 1.0)
            terms["vector_s"][idx] = t["serial"] + t["tile_io"]
            terms["hbm_s"][idx] = (t["hbm"] + t["quant"]) * min(cls.eff("hbm"), 1.0)
            terms["other_memory_s"][idx] = 0.0
            terms["link_s"][idx] = 0.0
            terms["launch_s"][idx] = pred.launch_s
        out.bound[idx] = pred.bound
        out.size[idx] = pred.flops
        for i in idx.tolist():
            out.params[i] = {"op": f"mla_{phase}", "batch": int(B[i]),
                             "seq_len": int(seq_len[i]), "kv_len": int(kv_len[i]),
                             "heads": int(H[i]), "kv_dtype": fam,
                             "kernel_class": cls.name}
    return out


def context_mla(rows: Rows, gpu: GPU) -> Mapped:
    isl = _i(rows, "isl")
    return _mla("context", rows, gpu, kv_len=isl, seq_len=isl)


def generation_mla(rows: Rows, gpu: GPU) -> Mapped:
    kv = _i(rows, "isl") + _i(rows, "step")          # attention.rs l. 13-14
    return _mla("decode", rows, gpu, kv_len=kv, seq_len=np.ones_like(kv))


# the models whose attention modules memsim.inference.mla_module.module builds (DeepSeek-V3;
# V3.2 adds the DSA indexer); other models of the module tables (GLM-5) are left unmapped
MODULE_MODELS = {"deepseek-ai/DeepSeek-V3": False, "deepseek-ai/DeepSeek-V3.2": True}
_GEMM_TYPES = {"bfloat16": "bf16", "fp8_block": "fp8_block"}


def _module(phase: str) -> Callable[[Rows, GPU], Mapped]:
    """Rows of an MLA/DSA *module* table (a whole attention layer: projections, BMMs,
    attention; collect_mla_module.py times ``DeepseekV3DecoderLayer.self_attn.forward``)
    → the sum of memsim's own pieces, :func:`memsim.inference.mla_module.module`. Not fitted: a
    whole-layer check of the GEMM, BMM and attention classes. The calibration sees the
    module's time as one term (``matmul_s``, factor 1) so a fit can only scale it."""

    def mapper(rows: Rows, gpu: GPU) -> Mapped:
        from memsim.errors import InputError
        from memsim.inference import mla_module

        out = _empty(len(rows))
        out.start = {"tensor": 1.0, "hbm_bandwidth": 1.0}
        B, H = _i(rows, "batch_size"), _i(rows, "num_heads")
        isl, step = _i(rows, "isl"), _i(rows, "step", 0)
        N = isl if phase == "context" else np.ones_like(isl)
        S = isl + step    # context: prefix (step) + new tokens; decode: cache + the new one
        kv = dtype_of(rows.col("kv_cache_dtype"))
        # the prefill's query dtype (vLLM's fp8 prefill: mla_module.prefill_kv_dtype) and
        # how the collector ran the norms and RoPE (mla_module.EAGER_OPS)
        q = dtype_of(rows.col("mla_dtype", "bfloat16"))
        norm = np.array([mla_module.eager_ops_of(str(v))
                         for v in rows.col("norm_dispatch", "native")], dtype=object)
        gemm = np.array([str(g) for g in rows.col("gemm_type")], dtype=object)
        model = np.array([str(m) for m in rows.col("model")], dtype=object)
        backend = _backend(rows)
        keys = list(zip(kv.tolist(), gemm.tolist(), H.tolist(), model.tolist(), q.tolist(),
                        norm.tolist(), strict=True))
        for (kvd, g, h, m, qd, nd), idx in _groups(keys).items():
            if m not in MODULE_MODELS:
                out.reasons.update({int(i): f"model={m} geometry not modelled (DeepSeek-V3, "
                                            "V3.2 only)" for i in idx})
                continue
            if g not in _GEMM_TYPES:
                out.reasons.update({int(i): f"gemm_type={g} not modelled" for i in idx})
                continue
            try:
                pred = mla_module.module(phase, B[idx], N[idx], S[idx], int(h), kv_dtype=kvd,
                                  gemm_dtype=_GEMM_TYPES[g], sparse=MODULE_MODELS[m],
                                  gpu=gpu, backend=backend, mla_dtype=qd, eager_ops=nd)
            except (InputError, ValueError) as exc:
                out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
                continue
            t = np.asarray(pred.time_s, dtype=float)
            for mdl in MODELS:
                out.time_s[mdl][idx] = t
                terms = out.terms[mdl]
                terms["matmul_s"][idx] = t
                for k in ("vector_s", "hbm_s", "other_memory_s", "link_s", "launch_s"):
                    terms[k][idx] = 0.0
            parts = {k: np.asarray(v, dtype=float) for k, v in pred.terms_s.items()}
            names = np.asarray(list(parts))
            out.bound[idx] = names[np.argmax(np.stack(list(parts.values())), axis=0)]
            out.size[idx] = t
            for j, i in enumerate(idx.tolist()):
                out.params[i] = {"op": f"{'dsa' if MODULE_MODELS[m] else 'mla'}_{phase}_module",
                                 "batch": int(B[i]), "seq_len": int(N[i]),
                                 "kv_len": int(S[i]), "heads": int(h), "kv_dtype": kvd,
                                 "gemm_dtype": _GEMM_TYPES[g], "model": m,
                                 "parts_s": {k: float(v[j]) for k, v in parts.items()}}
        return out

    return mapper


_ATTN_COLS = ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim",
              "window_size", "attn_dtype", "kv_cache_dtype", "step", "kernel_source",
              "latency")
_ATTN_CASE = ("num_heads", "num_key_value_heads", "head_dim", "window_size", "attn_dtype",
              "kv_cache_dtype")
_MODULE_COLS = ("batch_size", "isl", "num_heads", "step", "kv_cache_dtype", "gemm_type",
                "mla_dtype", "norm_dispatch", "model", "kernel_source", "latency")
_MODULE_CASE = ("num_heads", "kv_cache_dtype", "gemm_type")
_MLA_COLS = ("batch_size", "isl", "num_heads", "tp_size", "step", "mla_dtype",
             "kv_cache_dtype", "kernel_source", "latency")

CLASSES: dict[str, OpClass] = {c.name: c for c in (
    OpClass("context_attention", "context_attention_perf", _ATTN_COLS,
            curve=("num_heads", "num_key_value_heads", "head_dim", "window_size", "attn_dtype",
                   "kv_cache_dtype", "kernel_source", "isl"),
            axis="batch_size", mapper=context_attention, case=_ATTN_CASE,
            doc="prefill attention (TRT-LLM FMHA, vLLM/SGLang flash-attn), causal"),
    OpClass("generation_attention", "generation_attention_perf", _ATTN_COLS,
            curve=("num_heads", "num_key_value_heads", "head_dim", "window_size",
                   "kv_cache_dtype", "kernel_source", "batch_size"),
            axis="step", mapper=generation_attention, case=_ATTN_CASE,
            doc="decode attention over a KV cache of isl + step tokens"),
    OpClass("encoder_attention", "encoder_attention_perf",
            ("batch_size", "isl", "num_heads", "head_dim", "attn_dtype", "kernel_source",
             "latency"),
            curve=("num_heads", "head_dim", "attn_dtype", "kernel_source", "isl"),
            axis="batch_size", mapper=encoder_attention,
            case=("num_heads", "head_dim", "attn_dtype"),
            doc="bidirectional encoder attention, MHA"),
    OpClass("context_mla", "context_mla_perf", _MLA_COLS,
            curve=("num_heads", "kv_cache_dtype", "kernel_source", "isl"), axis="batch_size",
            mapper=context_mla, case=("num_heads", "kv_cache_dtype"),
            doc="DeepSeek MLA prefill (MHA over decompressed K/V)"),
    OpClass("generation_mla", "generation_mla_perf", _MLA_COLS,
            curve=("num_heads", "kv_cache_dtype", "kernel_source", "batch_size"), axis="step",
            mapper=generation_mla, case=("num_heads", "kv_cache_dtype"),
            doc="DeepSeek MLA decode (MQA over the 576-wide latent)"),
    *(OpClass(f"{kind}_{phase}_module", f"{kind}_{phase}_module_perf", _MODULE_COLS,
              curve=(*_MODULE_CASE, "model", "kernel_source",
                     "isl" if phase == "context" else "batch_size"),
              axis="batch_size" if phase == "context" else "step",
              mapper=_module("context" if phase == "context" else "decode"),
              case=_MODULE_CASE,
              doc=f"{'DeepSeek-V3.2 DSA' if kind == 'dsa' else 'DeepSeek-V3 MLA'} attention "
                  f"module, {phase} (whole layer: projections, BMMs, attention)")
      for kind in ("mla", "dsa") for phase in ("context", "generation")),
)}


# The operators that are not attention (memsim.ops, silicon-physics): registered here.
from memsim.silicon.op_rows import OP_CLASSES  # noqa: E402

CLASSES.update({c.name: c for c in OP_CLASSES})
