"""Where the report pages get their numbers: memsim's models and the committed measurements.

Nothing here draws. Curves go through memsim's vectorised cost (:func:`memsim.attention.costs`)
and the one roofline; measurements are read from ``measurements/<gpu>/`` as committed, so
every page can be redrawn without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from memsim.algorithms import runs_mask
from memsim.cost import Cost
from memsim.hardware import GPU
from memsim.models import ModelConfig
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.roofline import Timing, roofline
from memsim.tiling import Tiling
from memsim.units import DTYPE_BYTES

TOP_K = 2048  # DeepSeek-V3.2-Exp's k (tech report §1)


# ---- attention curves ----------------------------------------------------------------


def problem_for(algorithm: str, problem: AttentionProblem) -> AttentionProblem:
    """``problem`` with the mask ``algorithm`` runs: dsa gets top-k and an indexer."""
    if runs_mask(algorithm, "topk"):
        return problem.model_copy(update={"mask": Mask(top_k=TOP_K), "indexer": Indexer()})
    return problem


def attention_curve(problem: AttentionProblem, gpu: GPU, algorithm: str,
                    seq_len: Any, kv_len: Any = None) -> tuple[Cost, Timing, Tiling]:
    """Cost and roofline time of ``algorithm`` for ``problem`` at every query length in
    ``seq_len`` (and key length ``kv_len``, default = ``seq_len``), vectorised through
    :func:`memsim.attention.costs_for` with memsim's default tiles for ``problem``.
    """
    from memsim.attention import costs_for

    problem = problem_for(algorithm, problem)
    n = np.asarray(seq_len, dtype=np.int64)
    cost, tiling = costs_for(problem, gpu, algorithm, N=n, S=n if kv_len is None else kv_len)
    timing = roofline(cost, gpu, problem.dtype, blocks_per_sm=tiling.blocks_per_sm(gpu))
    return cost, timing, tiling


def describe_problem(p: AttentionProblem) -> str:
    """One line with every size of an attention call, for hovers and notes."""
    kv = f" S={p.S:,}" if p.S != p.N else ""
    dv = f" Dv={p.Dv}" if p.Dv != p.D else ""
    return (f"B={p.B} N={p.N:,}{kv} H={p.H} K={p.K} D={p.D}{dv} {p.dtype} "
            f"{p.layout.upper()} {p.mask.describe()} {p.pass_}")


# ---- model variants -----------------------------------------------------------------


def with_kv_heads(model: ModelConfig, kv_heads: int) -> ModelConfig:
    """``model`` with every layer's K/V heads set to ``kv_heads`` (``heads`` gives the MHA
    variant of a GQA model); named ``"<name> (K=<kv_heads>)"``. Weights of the K and V
    projections change with it, as they would in such a model."""
    groups = tuple(replace(g, attention=replace(g.attention, kv_heads=kv_heads))
                   for g in model.groups)
    return replace(model, groups=groups, name=f"{model.name} (K={kv_heads})",
                   expected_params=None)


# ---- measurements --------------------------------------------------------------------


@dataclass(frozen=True)
class Ceilings:
    """Measured ceilings of one GPU (kernels/ceilings.py), SI units; ``file`` names the run."""

    file: Path
    device: str
    hbm_bytes_per_s: float | None
    l2_bytes_per_s: float | None
    matmul_flop_per_s: dict[str, float]
    sdpa_rows: list[dict[str, Any]]


def ceilings(measurements_dir: Path, gpu_name: str) -> Ceilings | None:
    """The newest ``ceilings-*.json`` for ``gpu_name``, or None where there is none."""
    files = sorted((measurements_dir / gpu_name).glob("ceilings-*.json"))
    if not files:
        return None
    raw = json.loads(files[-1].read_text())
    matmul = {}
    for dtype in ("bf16", "fp16", "tf32", "fp32", "fp8"):
        entry = raw.get(f"matmul_{dtype}") or {}
        rate = entry.get(f"matmul_{dtype}_flop_per_s")
        if isinstance(rate, int | float):
            matmul[dtype] = float(rate)
    copy = (raw.get("d2d_copy") or {}).get("d2d_copy_bytes_per_s")
    l2 = (raw.get("l2_read") or {}).get("l2_read_bytes_per_s")
    rows = [r for r in (raw.get("sdpa_flash") or {}).get("rows", [])
            if isinstance(r.get("time_s"), int | float)]
    return Ceilings(file=files[-1], device=str((raw.get("device") or {}).get("name", gpu_name)),
                    hbm_bytes_per_s=float(copy) if copy else None,
                    l2_bytes_per_s=float(l2) if l2 else None,
                    matmul_flop_per_s=matmul, sdpa_rows=rows)


def sdpa_problem(row: dict[str, Any]) -> AttentionProblem:
    """The attention call one measured PyTorch SDPA row ran."""
    return AttentionProblem(batch=row["batch"], seq_len=row["seq_len"], heads=row["heads"],
                            head_dim=row["head_dim"], dtype=row.get("dtype", "bf16"),
                            mask=Mask(causal=bool(row["causal"])))


def extra_bytes(problem: AttentionProblem, workspace_bytes: Any,
                seq_len: Any = None) -> Any:
    """Memory a call allocates beyond its inputs: the output O (B·N·H·Dv elements) plus the
    workspace; what ``torch.cuda.max_memory_allocated`` measures. ``seq_len`` may be an
    array of N (default: the problem's)."""
    n = problem.N if seq_len is None else np.asarray(seq_len, dtype=float)
    return problem.B * n * problem.H * problem.Dv * DTYPE_BYTES[problem.dtype] + workspace_bytes


# ---- modules that other areas are still writing --------------------------------------


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported (a sibling area's module that may not exist yet)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


TRACE_EVENT_BUDGET = 20_000_000  # tile events per simulation: well under a second each


def trace_simulate() -> Callable[..., Any] | None:
    """``memsim.trace.simulate`` where the trace-driven simulator has landed, else None.

    Bound to the report's event budget, so a simulation that would take long raises
    :class:`memsim.errors.InputError` (and the page shows the analytic count alone)."""
    if not module_available("memsim.trace"):
        return None
    import memsim.trace

    simulate = getattr(memsim.trace, "simulate", None)
    if simulate is None:
        return None
    if "event_budget" in inspect.signature(simulate).parameters:
        return functools.partial(simulate, event_budget=TRACE_EVENT_BUDGET)
    return simulate
