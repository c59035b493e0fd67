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
  Dv = 128, K = H); generation MLA as MQA over the latent cache (D = 576, Dv = 512, K = 1).
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
MLA_LATENT = 512   # DeepSeek-V3 kv_lora_rank
MLA_ROPE = 64      # qk_rope_head_dim
MLA_NOPE = 128     # qk_nope_head_dim
MLA_V = 128        # v_head_dim


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


def dtype_of(values: np.ndarray) -> np.ndarray:
    """Database dtype names → memsim's (``bfloat16`` → ``bf16``, ``fp8_block`` → ``fp8``)."""
    return np.array([_DTYPES.get(str(v), str(v)) for v in values], dtype=object)


def _empty(n: int) -> Mapped:
    nan = np.full(n, np.nan)
    return Mapped(time_s={m: nan.copy() for m in MODELS}, bound=np.full(n, "", dtype=object),
                  terms={m: {k: nan.copy() for k in TERM_KEYS} for m in MODELS},
                  size=nan.copy(), params=[{} for _ in range(n)])


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
    algorithm: str
    backend: str | None = None


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
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(shape.H.tolist(), shape.K.tolist(), shape.D.tolist(),
                                shape.Dv.tolist(), shape.window.tolist(), shape.dtype.tolist(),
                                strict=True)):
        groups[key].append(i)
    for (H, K, D, Dv, window, dtype), index in groups.items():
        idx = np.asarray(index)
        B, N, S = shape.B[idx], shape.N[idx], shape.S[idx]
        mask = Mask(causal=shape.causal, window=int(window) if window > 0 else None)
        try:
            problem = AttentionProblem(
                batch=int(B[0]), seq_len=int(N[0]), kv_len=int(S[0]), heads=int(H),
                kv_heads=int(K), head_dim=int(D), head_dim_v=int(Dv), dtype=dtype,
                mla=shape.mla, mask=mask)
            pred = predict_arrays(problem, gpu, shape.algorithm, B=B, N=N, S=S,
                                  backend=shape.backend)
        except (InputError, ValueError) as exc:
            reason = str(exc).splitlines()[0][:200]
            out.reasons.update({int(i): reason for i in idx})
            continue
        timer = pred.timer
        out.start = {"tensor": timer.gpu.efficiency.tensor,
                     "hbm_bandwidth": timer.gpu.efficiency.hbm_bandwidth}
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
            terms["vector_s"][idx] = (u.terms_s["vector"] + u.terms_s["exp"]
                                      + u.terms_s.get("serial", 0.0))
            terms["hbm_s"][idx] = u.terms_s["hbm"]
            terms["other_memory_s"][idx] = np.maximum(u.terms_s["l2"], u.terms_s["sram"])
            terms["link_s"][idx] = 0.0
            # the KV-cache write before the attention kernel: a fixed time to the fit
            terms["launch_s"][idx] = u.launch_s + u.terms_s.get("pre", 0.0)
        for j, i in enumerate(idx.tolist()):
            out.params[i] = {"algorithm": shape.algorithm, "batch": int(B[j]),
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
    isl = _i(rows, "isl")
    d = _i(rows, "head_dim")
    return _attention(_Shape(B=_i(rows, "batch_size"), N=isl, S=isl, H=_i(rows, "num_heads"),
                             K=_kv_heads(rows), D=d, Dv=d, window=_i(rows, "window_size", 0),
                             causal=True, mla=False, dtype=_context_dtype(rows),
                             algorithm="flash2", backend=_backend(rows)), gpu)


def _context_dtype(rows: Rows) -> np.ndarray:
    """The dtype a prefill row's attention kernel computes in: ``attn_dtype``, except that
    TensorRT-LLM with an fp8 KV cache runs its fp8 context FMHA whatever ``attn_dtype``
    says (fp8 KV forces the paged-context FMHA, which reads Q and K/V in fp8: aiconfigurator
    collector/trtllm/collect_attn.py l. 126-175, "casts Q to the KV dtype to reuse the
    QkvE4m3OBfloat16 cubins")."""
    dtype = dtype_of(rows.col("attn_dtype"))
    if rows.backend == "trtllm":
        fp8_kv = dtype_of(rows.col("kv_cache_dtype", "bfloat16")) == "fp8"
        dtype = np.where(fp8_kv, "fp8", dtype).astype(object)
    return dtype


def generation_attention(rows: Rows, gpu: GPU) -> Mapped:
    kv = _i(rows, "isl") + _i(rows, "step")          # attention.rs l. 13-14
    d = _i(rows, "head_dim")
    return _attention(_Shape(B=_i(rows, "batch_size"), N=np.ones_like(kv), S=kv,
                             H=_i(rows, "num_heads"), K=_kv_heads(rows), D=d, Dv=d,
                             window=_i(rows, "window_size", 0), causal=True, mla=False,
                             dtype=dtype_of(rows.col("kv_cache_dtype")),
                             algorithm="flash_decode", backend=_backend(rows)), gpu)


def encoder_attention(rows: Rows, gpu: GPU) -> Mapped:
    isl = _i(rows, "isl")
    h, d = _i(rows, "num_heads"), _i(rows, "head_dim")
    return _attention(_Shape(B=_i(rows, "batch_size"), N=isl, S=isl, H=h, K=h, D=d, Dv=d,
                             window=np.zeros_like(h), causal=False, mla=False,
                             dtype=dtype_of(rows.col("attn_dtype")), algorithm="flash2",
                             backend=_backend(rows)), gpu)


def context_mla(rows: Rows, gpu: GPU) -> Mapped:
    isl, h = _i(rows, "isl"), _i(rows, "num_heads")
    full = lambda v: np.full_like(h, v)  # noqa: E731
    return _attention(_Shape(B=_i(rows, "batch_size"), N=isl, S=isl, H=h, K=h,
                             D=full(MLA_NOPE + MLA_ROPE), Dv=full(MLA_V), window=full(0),
                             causal=True, mla=False, dtype=dtype_of(rows.col("mla_dtype")),
                             algorithm="flash2", backend=_backend(rows)), gpu)


def generation_mla(rows: Rows, gpu: GPU) -> Mapped:
    kv = _i(rows, "isl") + _i(rows, "step")
    h = _i(rows, "num_heads")
    full = lambda v: np.full_like(h, v)  # noqa: E731
    return _attention(_Shape(B=_i(rows, "batch_size"), N=np.ones_like(kv), S=kv, H=h,
                             K=full(1), D=full(MLA_LATENT + MLA_ROPE), Dv=full(MLA_LATENT),
                             window=full(0), causal=True, mla=True,
                             dtype=dtype_of(rows.col("kv_cache_dtype")),
                             algorithm="flash_decode", backend=_backend(rows)), gpu)


_ATTN_COLS = ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim",
              "window_size", "attn_dtype", "kv_cache_dtype", "step", "kernel_source",
              "latency")
_ATTN_CASE = ("num_heads", "num_key_value_heads", "head_dim", "window_size", "attn_dtype",
              "kv_cache_dtype")
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
)}


# The operators that are not attention (memsim.ops, silicon-physics): registered here.
from memsim.silicon.op_rows import OP_CLASSES  # noqa: E402

CLASSES.update({c.name: c for c in OP_CLASSES})
