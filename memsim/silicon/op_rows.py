"""Rows of the GEMM, MoE and collective tables → :mod:`memsim.ops` predictions.

The physics is silicon-physics' (``memsim.ops.gemm.predict``, ``memsim.ops.moe.predict``,
``memsim.ops.comm.all_reduce`` ...); this module only reads the columns
(docs/silicon.md has their semantics and sources) and calls it, vectorised over the size
column per distinct shape. Where ``memsim.ops`` is not installed yet every row is
``skipped`` with that reason.

Roofline terms for the calibration come from the prediction's ``terms_s`` brought to
efficiency 1 (× the kernel class's efficiency of that unit), so a fit replaces the class's
factors: ``matmul`` → ``matmul_s``, ``hbm`` → ``hbm_s``, ``l2`` → ``other_memory_s``
(kept), ``link`` → ``link_s``; the class's floor is ``launch_s``. For a GEMM and a
collective this reproduces memsim's time at the class's own factors; a MoE layer's time is
the *sum* of two grouped GEMMs' maxima plus activation passes, which the fit's one max of
summed terms only approximates (its "fitted" errors start from that approximation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from memsim.hardware import GPU
from memsim.silicon import source
from memsim.silicon.classes import MODELS, Mapped, OpClass, _empty, _groups
from memsim.silicon.tables import Rows

# elements → bytes of the message columns (nccl_dtype / allreduce_dtype)
_ELEMENT_BYTES = {"bfloat16": 2, "half": 2, "float16": 2, "fp16": 2, "int8": 1, "fp8": 1,
                  "float32": 4}
_OPS_BACKENDS = ("trtllm", "vllm", "sglang")
_OPS_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
_COLLECTOR_ROUTING = {"balanced": "strided"}


def ops_dtype(values: np.ndarray) -> np.ndarray:
    """Database dtype names → memsim.ops' (``fp8_block`` and the quantised names kept)."""
    return np.array([_OPS_DTYPES.get(str(v), str(v)) for v in values], dtype=object)


def _backend(rows: Rows) -> str | None:
    return rows.backend if rows.backend in _OPS_BACKENDS else None


def _fill(out: Mapped, idx: np.ndarray, pred: Any, eff: Callable[[str], float],
          params: list[dict]) -> None:
    """Copy one vectorised OpPrediction into rows ``idx`` of ``out``."""
    n = len(idx)
    arr = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,))  # noqa: E731
    time = arr(pred.time_s)
    for model in MODELS:
        out.time_s[model][idx] = time
        t = out.terms[model]
        terms = pred.terms_s
        zero = np.zeros(n)
        t["matmul_s"][idx] = arr(terms.get("matmul", zero)) * eff("tensor")
        t["vector_s"][idx] = 0.0
        t["hbm_s"][idx] = arr(terms.get("hbm", zero)) * eff("hbm")
        t["other_memory_s"][idx] = arr(terms.get("l2", zero))
        t["link_s"][idx] = arr(terms.get("link", zero)) * eff("link")
        # a serial launch beyond the floor (a GEMM's split-K reduction kernel)
        t["launch_s"][idx] = arr(pred.launch_s) + arr(terms.get("reduce", zero))
    out.bound[idx] = np.broadcast_to(np.asarray(pred.bound, dtype=object), (n,))
    out.size[idx] = arr(pred.flops) if np.any(arr(pred.flops) > 0) else arr(pred.hbm_bytes)
    for j, i in enumerate(idx.tolist()):
        out.params[i] = params[j]


def _eff_of(cls: Any) -> Callable[[str], float]:
    return lambda unit: float(cls.efficiency.get(unit, 1.0))


def gemm(rows: Rows, gpu: GPU) -> Mapped:
    from memsim.errors import InputError
    from memsim.ops.classes import kernel_class
    from memsim.ops.gemm import kernel_family, predict

    out = _empty(len(rows))
    m, n, k = (np.asarray(rows.col(c), dtype=np.int64) for c in ("m", "n", "k"))
    dtype = ops_dtype(rows.col("gemm_dtype"))
    backend = _backend(rows)
    for (d,), idx in _groups([(x,) for x in dtype.tolist()]).items():
        try:
            # the class memsim.ops.gemm.predict times this dtype with (its kernel family)
            cls = kernel_class("gemm", backend, kernel_family(d))
            if not out.start or d == "bf16":
                out.start = {"tensor": cls.efficiency.get("tensor", 1.0),
                             "hbm_bandwidth": cls.efficiency.get("hbm", 1.0)}
            pred = predict(m[idx], n[idx], k[idx], dtype=d, gpu=gpu, backend=backend)
        except (InputError, ValueError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        names = np.broadcast_to(np.asarray(pred.detail["kernel_class"], dtype=object),
                                (len(idx),))
        _fill(out, idx, pred, _eff_of(cls),
              [{"op": "gemm", "m": int(m[i]), "n": int(n[i]), "k": int(k[i]), "dtype": d,
                "kernel_class": str(names[j])} for j, i in enumerate(idx.tolist())])
    return out


# vLLM MoE kernels no class was fitted on, by their name in the database's kernel_source:
# Marlin (…_marlin_marlinexperts, int4_wo and some w4a16_mxfp4) and OAI's Triton MXFP4
# (…_triton_oaitritonmxfp4experts…, gpt-oss w4a16_mxfp4 on Hopper); docs/silicon.md
_UNMODELLED_MOE_KERNELS = ("_marlin_", "oaitriton")
_UNMODELLED_MOE = "Marlin/OAI-Triton MoE: no kernel class"


def moe(rows: Rows, gpu: GPU) -> Mapped:
    from memsim.errors import InputError
    from memsim.ops.classes import kernel_class
    from memsim.ops.moe import predict

    out = _empty(len(rows))
    ints = {c: np.asarray(rows.col(c), dtype=np.int64) for c in
            ("num_tokens", "hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size",
             "moe_ep_size")}
    dtype = ops_dtype(rows.col("moe_dtype"))
    # the database's "balanced" rows ran the collector's balanced_logits routing, memsim's
    # "strided" (memsim/ops/moe.py); power-law rows keep their name
    dist = np.array([_COLLECTOR_ROUTING.get(str(d), str(d))
                     for d in rows.col("distribution", "balanced")], dtype=object)
    # gated unless TensorRT-LLM names its non-gated kernel or the model's experts are not
    # gated (vLLM and SGLang rows carry no such mark: memsim.silicon.source). h200 vLLM bf16
    # 2688/1856, 128 experts top-6: 0.60 ms flat from 32 tokens, i.e. gated weights at
    # 6.3 TB/s (above the 4.8 TB/s HBM), non-gated at 4.2 TB/s like every other shape
    non_gated = source.non_gated_moe_shapes()
    shapes = zip(*(ints[c].tolist() for c in ("hidden_size", "inter_size", "num_experts",
                                              "topk")), strict=True)
    gated = (np.array(["nongated" not in str(s) for s in rows.col("kernel_source", "")])
             & ~np.array([shape in non_gated for shape in shapes], dtype=bool))
    backend = _backend(rows)
    unmodelled = np.array([backend == "vllm" and any(name in str(s) for name in
                                                     _UNMODELLED_MOE_KERNELS)
                           for s in rows.col("kernel_source", "")], dtype=bool)
    keys = list(zip(*(ints[c].tolist() for c in ("hidden_size", "inter_size", "num_experts",
                                                  "topk", "moe_tp_size", "moe_ep_size")),
                    dtype.tolist(), [str(d) for d in dist], gated.tolist(), strict=True))
    for (h, inter, e, top_k, tp, ep, d, dst, g), idx in _groups(keys).items():
        out.reasons.update({int(i): _UNMODELLED_MOE for i in idx[unmodelled[idx]]})
        idx = idx[~unmodelled[idx]]
        if not len(idx):
            continue
        try:
            pred = predict(ints["num_tokens"][idx], int(h), int(inter), int(e), int(top_k),
                           tp=int(tp), ep=int(ep), dtype=d, gpu=gpu, backend=backend,
                           distribution=dst, gated=bool(g))
        except (InputError, ValueError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        # the class memsim.ops.moe.predict timed these rows with
        cls = kernel_class(pred.detail["kernel_class"])
        if not out.start or d == "bf16":
            out.start = {"tensor": cls.efficiency.get("tensor", 1.0),
                         "hbm_bandwidth": cls.efficiency.get("hbm", 1.0)}
        _fill(out, idx, pred, _eff_of(cls),
              [{"op": "moe", "tokens": int(ints["num_tokens"][i]), "hidden": int(h),
                "inter": int(inter), "experts": int(e), "top_k": int(top_k), "tp": int(tp),
                "ep": int(ep), "dtype": d, "distribution": dst, "gated": bool(g),
                "kernel_class": cls.name}
               for i in idx])
    return out


def mla_bmm(rows: Rows, gpu: GPU) -> Mapped:
    """MLA's absorbed BMMs (``op_name`` mla_gen_pre / mla_gen_post, ``num_heads`` per GPU,
    ``num_tokens`` rows; collect_mla_bmm.py) through :func:`memsim.ops.mla.bmm`."""
    from memsim.errors import InputError
    from memsim.ops import mla

    out = _empty(len(rows))
    tokens = np.asarray(rows.col("num_tokens"), dtype=np.int64)
    heads = np.asarray(rows.col("num_heads"), dtype=np.int64)
    op = np.array([str(v).removeprefix("mla_gen_") for v in rows.col("op_name")])
    dtype = np.array(["fp8" if str(v) == "fp8" else "bf16" for v in rows.col("bmm_dtype")])
    backend = _backend(rows)
    for (o, d), idx in _groups(list(zip(op.tolist(), dtype.tolist(), strict=True))).items():
        try:
            cls = mla.bmm_class(backend, d)
            if not out.start or d == "bf16":
                out.start = {"tensor": cls.efficiency.get("tensor", 1.0),
                             "hbm_bandwidth": cls.efficiency.get("hbm", 1.0)}
            # the collectors replay one call on the same tensors (collect_mla_bmm.py)
            pred = mla.bmm(tokens[idx], heads[idx], op=o, dtype=d, gpu=gpu, backend=backend,
                           warm_l2=True)
        except (InputError, ValueError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        terms = dict(pred.terms_s)
        terms["hbm"] = np.asarray(terms["hbm"]) + np.asarray(terms.pop("quant"))
        _fill(out, idx, replace(pred, terms_s=terms), _eff_of(cls),
              [{"op": f"mla_bmm_{o}", "tokens": int(tokens[i]), "heads": int(heads[i]),
                "dtype": d, "kernel_class": cls.name} for i in idx])
    return out


def _collective(op: str, dtype_column: str) -> Callable[[Rows, GPU], Mapped]:
    def mapper(rows: Rows, gpu: GPU) -> Mapped:
        from memsim.errors import InputError
        from memsim.ops import comm
        from memsim.ops.classes import kernel_class

        out = _empty(len(rows))
        call = getattr(comm, op)
        elements = np.asarray(rows.col("message_size"), dtype=float)
        width = np.array([_ELEMENT_BYTES.get(str(d), 2) for d in rows.col(dtype_column)])
        message_bytes = elements * width
        gpus = np.asarray(rows.col("num_gpus"), dtype=np.int64)
        backend = _backend(rows)
        out.start = {"interconnect": 1.0}
        for (g,), idx in _groups([(x,) for x in gpus.tolist()]).items():
            try:
                pred = call(message_bytes[idx], int(g), gpu=gpu, backend=backend)
            except (InputError, ValueError) as exc:
                out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
                continue
            algorithms = np.broadcast_to(np.asarray(pred.detail.get("algorithm", "ring")),
                                         (len(idx),))
            names = np.broadcast_to(np.asarray(pred.detail["kernel_class"], dtype=object),
                                    (len(idx),))

            def eff(unit: str, names: np.ndarray = names) -> np.ndarray:
                return np.asarray([1.0 if n == comm.NO_CLASS else
                                   float(kernel_class(str(n)).efficiency.get(unit, 1.0))
                                   for n in names.tolist()])

            _fill(out, idx, pred, eff,
                  [{"op": op, "message_bytes": float(message_bytes[i]), "gpus": int(g),
                    "algorithm": str(algorithms[j])} for j, i in enumerate(idx.tolist())])
        return out

    return mapper


# moe_a2a_perf comm_backend → DeepEP kernel family (aiconfigurator's MOE_A2A_BACKENDS:
# the *_ht backends serve context, the *_ll ones generation; sdk/operations/moe_comm.py)
_A2A_MODES = {"trtllm_deepep_ht": "normal", "deepep_ht": "normal",
              "trtllm_deepep_ll": "low_latency", "deepep_ll": "low_latency"}
# comm_dtype → the dispatch wire format; "default" (vLLM's rows) is the bf16 activation
_A2A_DTYPES = {"bfloat16": "bf16", "default": "bf16", "fp8": "fp8", "nvfp4": "nvfp4"}
# TensorRT-LLM's moe_a2a collector routes each shape with its model's declared routing
# (ai-dynamo/aiconfigurator collector/wideep/trtllm/collect_moe_a2a.py: RoutingSpec
# num_expert_group / topk_group from the recipe, one routing per persisted geometry);
# (hidden 7168, top-8, 256 experts) is DeepSeek-V3/R1, whose config.json has n_group 8,
# topk_group 4. vLLM's DeepEP rows route uniformly (DeepEP tests/test_intranode.py: top-k
# of random scores). (hidden, top_k, experts) → (groups, topk_groups)
_A2A_TRTLLM_GROUPED = {(7168, 8, 256): (8, 4)}


def moe_a2a(rows: Rows, gpu: GPU) -> Mapped:
    """DeepEP dispatch / combine rows: ``num_tokens`` per rank (aiconfigurator's
    MoEAllToAll: "comm ops see per-rank token counts"), ``ep_size`` ranks on ``node_num``
    nodes, ``comm_dtype`` on the wire; ``latency`` in microseconds (= ``transmit_us`` +
    ``notify_us`` of the same row; the OpClass's ``latency_to_s`` is 1e-6)."""
    from memsim.errors import InputError
    from memsim.ops import comm
    from memsim.ops.classes import kernel_class

    out = _empty(len(rows))
    tokens = np.asarray(rows.col("num_tokens"), dtype=float)
    ints = {c: np.asarray(rows.col(c), dtype=np.int64)
            for c in ("ep_size", "hidden_size", "topk", "num_experts")}
    backend = _backend(rows)
    out.start = {"interconnect": 1.0}
    keys = list(zip(rows.col("comm_backend").tolist(), rows.col("phase").tolist(),
                    rows.col("comm_dtype").tolist(),
                    *(ints[c].tolist() for c in ("ep_size", "hidden_size", "topk",
                                                 "num_experts")), strict=True))
    for (cb, phase, cd, ep, h, k, x), idx in _groups(keys).items():
        mode, dtype = _A2A_MODES.get(str(cb)), _A2A_DTYPES.get(str(cd))
        if mode is None or (dtype is None and phase != "combine"):
            out.reasons.update({int(i): f"comm_backend={cb} comm_dtype={cd}: no memsim "
                                f"model" for i in idx})
            continue
        if phase == "combine" and dtype is None:
            out.reasons.update({int(i): f"combine in {cd}: memsim's combine is bf16"
                                for i in idx})
            continue
        try:
            cls = kernel_class(f"a2a/{mode}/{phase}", backend)
            groups = (_A2A_TRTLLM_GROUPED.get((int(h), int(k), int(x)), (1, 1))
                      if backend == "trtllm" else (1, 1))
            pred = comm.moe_all_to_all(tokens[idx], hidden=int(h), top_k=int(k),
                                       experts=int(x), ep=int(ep), phase=str(phase),
                                       mode=mode, dtype=dtype, gpu=gpu, backend=backend,
                                       groups=groups[0], topk_groups=groups[1],
                                       eager=True, collector=True)   # eager, unaligned
        except (InputError, ValueError, KeyError) as exc:
            out.reasons.update({int(i): str(exc).splitlines()[0][:200] for i in idx})
            continue
        _fill(out, idx, pred, _eff_of(cls),
              [{"op": "moe_a2a", "tokens": int(tokens[i]), "hidden": int(h), "top_k": int(k),
                "experts": int(x), "ep": int(ep), "phase": str(phase), "mode": mode,
                "dtype": dtype} for i in idx])
    return out


def _op_name(name: str) -> Callable[[Rows], np.ndarray]:
    return lambda rows: np.asarray(rows.col("op_name", name)) == name


def _graph_only(rows: Rows) -> np.ndarray:
    """Custom all-reduce rows of the CUDA-graph kernels (aiconfigurator drops ``_eager``
    rows at load: aic-core/rust/.../perf_database/communication.rs l. 17-19)."""
    return np.array(["_eager" not in str(s) for s in rows.col("kernel_source", "")])


def _deepep(rows: Rows) -> np.ndarray:
    """The DeepEP rows of moe_a2a_perf (vLLM's deepep_v2_* and TensorRT-LLM's NVLink
    one-/two-sided kernels are other algorithms memsim does not model)."""
    return np.isin(np.asarray(rows.col("comm_backend"), dtype=object), list(_A2A_MODES))


_COMM_COLS = ("num_gpus", "message_size", "kernel_source", "op_name", "latency")
OP_CLASSES = (
    OpClass("gemm", "gemm_perf", ("m", "n", "k", "gemm_dtype", "kernel_source", "latency"),
            curve=("n", "k", "gemm_dtype", "kernel_source"), axis="m", mapper=gemm,
            case=("n", "k", "gemm_dtype"), doc="dense GEMM X[m,k]·W[n,k]ᵀ"),
    OpClass("moe", "moe_perf",
            ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
             "moe_ep_size", "moe_dtype", "distribution", "kernel_source", "latency"),
            curve=("hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
                   "moe_ep_size", "moe_dtype", "distribution", "kernel_source"),
            axis="num_tokens", mapper=moe,
            case=("hidden_size", "inter_size", "topk", "num_experts", "moe_dtype"),
            # the same shape under another routing: equal work at one token (the collector's
            # autotuner cache, collector/trtllm/collect_moe.py, is shared by a shape's routings;
            # 1 % of Hopper TRT-LLM curves run 2-7x slower at every size)
            siblings=("hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
                      "moe_ep_size", "moe_dtype", "kernel_source"),
            # TP and EP split a shape's work: a curve slower than the same shape split
            # fewer ways ran a fallback kernel (5 % of Hopper TRT-LLM bf16/fp8 curves)
            split=("moe_tp_size", "moe_ep_size"),
            doc="MoE FFN layer (grouped GEMMs + routing) on the busiest GPU"),
    OpClass("mla_bmm", "mla_bmm_perf",
            ("num_tokens", "num_heads", "bmm_dtype", "op_name", "kernel_source", "latency"),
            curve=("num_heads", "bmm_dtype", "op_name", "kernel_source"), axis="num_tokens",
            mapper=mla_bmm, case=("num_heads", "bmm_dtype", "op_name"),
            doc="MLA absorbed-weight BMMs (q_nope·W_UK, o·W_UV), H GEMMs per launch"),
    OpClass("allreduce", "custom_allreduce_perf", (*_COMM_COLS, "allreduce_dtype"),
            curve=("num_gpus", "kernel_source", "allreduce_dtype"), axis="message_size",
            mapper=_collective("all_reduce", "allreduce_dtype"), select=_graph_only,
            case=("num_gpus",), doc="framework custom all-reduce (CUDA graph)"),
    OpClass("moe_a2a", "moe_a2a_perf",
            ("comm_backend", "phase", "comm_dtype", "ep_size", "node_num", "hidden_size",
             "topk", "num_experts", "num_tokens", "latency"),
            curve=("comm_backend", "phase", "comm_dtype", "ep_size", "node_num",
                   "hidden_size", "topk", "num_experts"),
            axis="num_tokens", mapper=moe_a2a, select=_deepep,
            case=("hidden_size", "topk", "num_experts"), latency_to_s=1e-6,
            doc="MoE dispatch / combine (DeepEP normal and low-latency kernels)"),
    *(OpClass(f"nccl_{op}", "nccl_perf", (*_COMM_COLS, "nccl_dtype"),
              curve=("num_gpus", "nccl_dtype", "op_name"), axis="message_size",
              mapper=_collective(fn, "nccl_dtype"), select=_op_name(op),
              case=("num_gpus", "nccl_dtype"), doc=f"NCCL {op}")
      for op, fn in (("all_reduce", "nccl_all_reduce"), ("all_gather", "all_gather"),
                     ("reduce_scatter", "reduce_scatter"), ("alltoall", "all_to_all"))),
)
