"""What memsim predicts for one attention case, from both models, in the records' terms.

The analytic model (:func:`memsim.attention.predict`) always answers; the trace-driven model
(``memsim.trace.simulate``) answers where it is installed, and its absence is recorded, not
raised. Both predictions are reduced to the same quantities the measurements use:

- ``time_s``: roofline time (lower bound) of the kernel;
- ``hbm_read_bytes``, ``hbm_write_bytes``, ``hbm_bytes``: DRAM traffic; the trace's
  writes are those inside the kernels' windows, as Nsight Compute counts them (lines still
  dirty at the end, written back later, in ``hbm_write_after_bytes``);
- ``l2_bytes``: global-memory traffic, all of which passes L2 (Cost.global_bytes);
- ``global_read_bytes``, ``global_write_bytes``: the same, split;
- ``sram_bytes``: shared-memory traffic;
- ``fp32_flops``: FLOPs on CUDA cores (matmul ones too when the kernel has no tensor cores);
- ``workspace_bytes``: peak extra global memory besides inputs and outputs.

The ncu ``store`` target (one store-only kernel) is predicted by :func:`store_prediction`:
the trace's own L2 rule fed the kernel's store stream.

``work`` keeps, per model, what the roofline needs to re-time the case under another profile
(the calibration fit): the Cost's fields, the dtype, the matmul unit and the blocks per SM.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import Tiling

if TYPE_CHECKING:
    import numpy as np

ATTENTION_KEYS = ("batch", "seq_len", "kv_len", "heads", "kv_heads", "head_dim", "mask", "dtype")


def parse_mask(text: str) -> Mask:
    """``"full"``, ``"causal"``, ``"window:W"`` (causal) or ``"topk:k"`` → :class:`Mask`."""
    kind, _, arg = text.partition(":")
    if kind == "full":
        return Mask(causal=False)
    if kind == "causal":
        return Mask(causal=True)
    if kind == "window" and arg.isdigit():
        return Mask(causal=True, window=int(arg))
    if kind == "topk" and arg.isdigit():
        return Mask(causal=True, top_k=int(arg))
    raise InputError("mask", text, "must be 'full', 'causal', 'window:W' or 'topk:k'")


def attention_problem(params: dict[str, Any]) -> AttentionProblem:
    """The :class:`AttentionProblem` of a case's attention parameters."""
    mask = parse_mask(params["mask"])
    return AttentionProblem(
        batch=params["batch"], seq_len=params["seq_len"], kv_len=params["kv_len"],
        heads=params["heads"], kv_heads=params["kv_heads"], head_dim=params["head_dim"],
        dtype=params["dtype"], mask=mask,
        indexer=Indexer(dtype=params["dtype"]) if mask.kind == "topk" else None)


def output_bytes(problem: AttentionProblem) -> float:
    """Bytes of the output O: B·N·H·Dv elements of the problem's dtype."""
    from memsim.units import dtype_bytes

    p = problem
    return float(p.B * p.N * p.H * p.Dv * dtype_bytes(p.dtype))


def _quantities(cost: Any, time_s: float, matmul_unit: str) -> dict[str, float]:
    c = cost.to_dict()
    fp32 = c["vector_flops"] + (c["matmul_flops"] if matmul_unit == "fp32" else 0.0)
    return {
        "time_s": time_s,
        "hbm_read_bytes": c["hbm_read_bytes"], "hbm_write_bytes": c["hbm_write_bytes"],
        "hbm_bytes": c["hbm_bytes"], "l2_bytes": c["global_bytes"],
        "global_read_bytes": c["global_read_bytes"], "global_write_bytes": c["global_write_bytes"],
        "sram_bytes": c["sram_bytes"], "fp32_flops": fp32, "matmul_flops": c["matmul_flops"],
        "workspace_bytes": c["workspace_bytes"], "launches": c["launches"],
    }


def _trace(problem: AttentionProblem, gpu: GPU, algorithm: str, tiling: Tiling,
           matmul_unit: str, ncu: bool = False, l2_model: str = "tiles"
           ) -> tuple[dict[str, float] | None, Any, str | None]:
    """Trace-driven (quantities, Cost), or (None, None, why not). ``ncu``: as Nsight
    Compute measures, every kernel from a flushed L2 (memsim.trace.simulate's
    ``cold_kernels``); ``l2_model``: simulate's (tiles or lines)."""
    try:
        from memsim.trace import simulate
    except ImportError as exc:
        return None, None, f"trace-driven model not available: {exc}"
    try:
        result = simulate(problem, gpu, algorithm, tiling, l2=True, cold_kernels=ncu,
                          l2_model=l2_model)
        from memsim.roofline import roofline

        time_s = getattr(result, "time_s", None)
        if time_s is None:
            time_s = roofline(result.cost, gpu, problem.dtype, matmul_unit=matmul_unit,
                              blocks_per_sm=tiling.blocks_per_sm(gpu)).time_s
        out = _quantities(result.cost, float(time_s), matmul_unit)
        after = float(getattr(result, "hbm_write_after_bytes", 0.0))
        if after:  # dirty in L2 when the last kernel ends: outside Nsight's kernel windows
            out["hbm_write_bytes"] -= after
            out["hbm_bytes"] -= after
            out["hbm_write_after_bytes"] = after
        hit_rate = getattr(result, "l2_hit_rate", None)
        if hit_rate is not None:
            out["l2_hit_rate"] = float(hit_rate)
        return out, result.cost, None
    except Exception as exc:  # the trace model failing must not lose the measurement
        return None, None, f"trace-driven model failed: {type(exc).__name__}: {exc}"


def _work(cost: Any, problem: AttentionProblem, matmul_unit: str, blocks_per_sm: int) -> dict:
    """What the roofline needs to re-time a case: the Cost's fields and how to time them."""
    return {**asdict(cost), "dtype": problem.dtype, "matmul_unit": matmul_unit,
            "blocks_per_sm": blocks_per_sm}


def predict_case(problem: AttentionProblem, gpu: GPU, algorithm: str,
                 tiling: Tiling | None = None, matmul_unit: str = "tensor",
                 with_trace: bool = True, ncu: bool = False,
                 l2_model: str = "tiles") -> dict[str, Any]:
    """Both models' predictions for one attention call.

    Returns ``{"analytic": {...}, "trace": {...} | None, "trace_note": str | None,
    "tiling": {...}, "work": {"analytic": {...}, "trace": {...}}, "bound": str,
    "profile": name, "profile_kind": "datasheet" | "calibrated"}``.
    """
    from memsim.attention import predict

    pred = predict(problem, gpu, algorithm, tiling, matmul_unit=matmul_unit)
    analytic = _quantities(pred.cost, float(pred.timing.time_s), matmul_unit)
    trace, trace_cost, note = (_trace(problem, gpu, algorithm, pred.tiling, matmul_unit, ncu,
                                      l2_model)
                               if with_trace else (None, None, "not asked"))
    blocks_per_sm = int(pred.tiling.blocks_per_sm(gpu))
    work = {"analytic": _work(pred.cost, problem, matmul_unit, blocks_per_sm)}
    if trace_cost is not None:
        work["trace"] = _work(trace_cost, problem, matmul_unit, blocks_per_sm)
    return {
        "analytic": analytic, "trace": trace, "trace_note": note,
        "tiling": pred.tiling.model_dump() | {"sram_bytes": pred.tiling.sram_bytes},
        "work": work, "bound": pred.timing.bound, "profile": gpu.name,
        "profile_kind": "calibrated" if gpu.calibrated_from else "datasheet",
    }


def ncu_prediction(params: dict[str, Any], gpu: GPU, l2_model: str = "tiles"
                   ) -> dict[str, Any]:
    """memsim's prediction for an Nsight Compute case (``params`` of a ``kind: ncu``
    record): PyTorch SDPA's, or memsim's kernel's on the tiling it launches with; the
    trace with the L2 flushed before every kernel, as ncu measures. The runner records
    it beside the counters; ``memsim.validation.ncu_compare`` re-makes it with today's
    code."""
    from memsim.validation.kernels import tiling_for
    from memsim.validation.sdpa import predict_sdpa

    if params["target"] == "store":
        return store_prediction(params, gpu, l2_model)
    if params["target"] == "sdpa":
        return predict_sdpa(params, gpu, ncu=True, l2_model=l2_model)
    return predict_case(attention_problem(params), gpu, params["algorithm"],
                        tiling_for(params, gpu), matmul_unit="fp32", ncu=True,
                        l2_model=l2_model)


def _store_line_bytes(gpu: GPU, l2_model: str) -> int:
    """The profile's L2 line in bytes; refused, as the lines model refuses it
    (:func:`memsim.trace.l2_lines.state_for_gpu`), when the profile does not name it."""
    if gpu.spec.l2_line_bytes is None:
        raise InputError("l2_model", l2_model,
                         f"needs l2_line_bytes in the profile of {gpu.name}")
    return int(gpu.spec.l2_line_bytes)


def _store_sweeps(params: dict[str, Any], gpu: GPU, l2_model: str) -> tuple[float, float]:
    """(bytes written to DRAM inside the profiled store, bytes still dirty at its end):
    the trace's own L2 (:mod:`memsim.trace.l2`, or for ``l2_model="lines"``
    :mod:`memsim.trace.l2_lines`) fed the ``size_mib`` MiB of whole-line stores, in
    address order, into an L2 of the profile's capacity that is empty
    (``cache_control == "all"``: ncu flushed and invalidated it) or that holds the
    warm-up's identical sweep, dirty (``"none"``; the warm-up's own write-backs happen
    before the profiled range and are not counted).

    Both caches are LRU over groups that do not interact — the whole cache of ⌊capacity /
    line⌋ lines (tiles), or each set of ``ways`` lines, its lines picked by the line
    model's own set index (lines) — so a group of n lines that holds ``fit`` answers in
    closed form (:func:`_lru_sweeps`); tests/test_validation_ncu_store.py checks it
    against the two caches fed line by line."""
    import numpy as np

    from memsim.trace import l2_lines

    line_bytes = _store_line_bytes(gpu, l2_model)
    n_lines = int(params["size_mib"]) * 2**20 // line_bytes
    capacity = gpu.l2_dram_capacity_bytes
    if l2_model == "lines":
        meta = l2_lines.state_for_gpu(gpu, capacity)[1]
        sets, ways = int(meta[l2_lines.M_SETS]), int(meta[l2_lines.M_WAYS])
        lines = np.arange(n_lines, dtype=np.int64)
        n = np.bincount(l2_lines.set_index(lines, meta), minlength=sets)
        fit = ways
    else:
        n, fit = np.array([n_lines]), int(capacity // line_bytes)
    sweeps = 2 if params.get("cache_control", "all") == "none" else 1
    evicted, dirty = _lru_sweeps(n, fit, sweeps)
    return float(evicted * line_bytes), float(dirty * line_bytes)


def _lru_sweeps(n: np.ndarray, fit: int, sweeps: int) -> tuple[int, int]:
    """(lines evicted during the last sweep, lines resident at its end) of ``sweeps`` ∈
    {1, 2} sweeps of stores over groups of ``n`` distinct lines (an int array, one entry
    per group) in the same order, each group an LRU of ``fit`` lines: the first sweep
    evicts the n − fit oldest; the second hits every line if they all fit, else misses
    every one (an LRU over a cycle longer than itself), evicting as many; min(n, fit)
    stay, all dirty."""
    import numpy as np

    if sweeps not in (1, 2):
        raise ValueError(f"sweeps must be 1 or 2, not {sweeps}")
    n = np.asarray(n, dtype=np.int64)
    evicted = np.maximum(n - fit, 0) if sweeps == 1 else np.where(n > fit, n, 0)
    return int(evicted.sum()), int(np.minimum(n, fit).sum())


def _store_time_s(gpu: GPU, l2_bytes: float, hbm_write_bytes: float) -> float:
    """Seconds to move a store's bytes: the slower of its L2 traffic at the achievable L2
    bandwidth and its DRAM writes at the achievable HBM bandwidth (bytes → s)."""
    return max(l2_bytes / gpu.achievable_l2_bytes_per_s,
               hbm_write_bytes / gpu.achievable_hbm_bytes_per_s)


def store_prediction(params: dict[str, Any], gpu: GPU, l2_model: str = "tiles"
                     ) -> dict[str, Any]:
    """memsim's prediction for the ncu ``store`` case: one kernel storing ``size_mib`` MiB.

    - analytic: every stored byte is a DRAM write (the closed form's write rule);
    - trace: the DRAM writes inside the kernel are the dirty lines its own L2 rule evicts
      while the kernel runs (:func:`_store_sweeps`); what is still dirty at the end is
      ``hbm_write_after_bytes``, outside Nsight Compute's window.

    ``time_s`` of each is the roofline of that model's own bytes (:func:`_store_time_s`);
    it is not compared (the record's measured time is ``kernel_time_s``, under the
    profiler). Same shape as :func:`predict_case`'s answer (less ``work``: nothing to
    re-time)."""
    nbytes = float(int(params["size_mib"]) * 2**20)
    zero = {"hbm_read_bytes": 0.0, "global_read_bytes": 0.0, "sram_bytes": 0.0,
            "fp32_flops": 0.0, "matmul_flops": 0.0, "workspace_bytes": 0.0, "launches": 1}
    stored = {"l2_bytes": nbytes, "global_write_bytes": nbytes, **zero}
    analytic = {**stored, "time_s": _store_time_s(gpu, nbytes, nbytes),
                "hbm_write_bytes": nbytes, "hbm_bytes": nbytes}
    trace, note = None, None
    try:
        inside, after = _store_sweeps(params, gpu, l2_model)
        trace = {**stored, "time_s": _store_time_s(gpu, nbytes, inside),
                 "hbm_write_bytes": inside, "hbm_bytes": inside,
                 "hbm_write_after_bytes": after}
    except ImportError as exc:
        note = f"trace-driven model not available: {exc}"
    return {"analytic": analytic, "trace": trace, "trace_note": note, "tiling": None,
            "bound": "hbm", "profile": gpu.name,
            "profile_kind": "calibrated" if gpu.calibrated_from else "datasheet"}


def relative_errors(predicted: dict[str, Any] | None,
                    measured: dict[str, Any]) -> dict[str, float]:
    """``predicted / measured − 1`` for every quantity both have (measured > 0 only).

    Signed: +0.25 means memsim predicts 25 % more than was measured.
    """
    if not predicted:
        return {}
    out = {}
    for key, meas in measured.items():
        pred = predicted.get(key)
        if (isinstance(pred, int | float) and isinstance(meas, int | float)
                and not isinstance(pred, bool) and meas > 0):
            out[key] = pred / meas - 1.0
    return out
