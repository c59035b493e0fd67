"""Fitted numbers per kernel class: an efficiency per unit and a latency floor.

A kernel class is one family of kernels one framework launches ("gemm/trtllm" is TensorRT-
LLM's GEMM, "allreduce/oneshot/trtllm" its one-shot custom all-reduce). Each has at most
an ``efficiency`` per unit, a latency floor ``floor_s`` and the fixed times ``row_s``,
``cta_s``, ``key_s``, ``host_s``, ``prelaunch_s``, ``skew_s`` (:class:`KernelClass` says
what each counts and in which unit), fitted on H100 SXM and H200 rows of the
aiconfigurator-core database (NVIDIA's measured kernel latencies) only, never per GPU:
every other GPU is predicted from its own datasheet numbers with the same class numbers.
``source`` says which rows and what the leave-one-GPU-out error of the fit was.

The numbers live in ``kernel_classes.toml`` next to this module (package data), one table
per class, read once on first use. A table either holds ``floor_s``, ``efficiency``,
``row_s`` and ``source``, or names another class with ``same_as`` (a class that was not
fitted on its own and takes that class's numbers, overriding any field it sets itself).
:func:`write_classes` rewrites the file with some entries replaced and every other table
kept as it was (the fit command, ``memsim validate --source aiconfigurator
--fit-classes``, writes through it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import tomllib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsim.ops import check_backend

# The GPUs the classes are fitted on (issue 10, item 4); every other one is "unseen". A
# class number that stands for a profile quantity of these GPUs (memsim.ops.comm's NVLink
# hop) is scaled by the other GPU's own value of that quantity.
FIT_GPUS = ("h100-sxm", "h200")


def clock_ratio(gpu: Any) -> float:
    """A CTA's fixed steps are SM cycles (barriers, the epilogue): the fitted GPUs' SM
    clock over ``gpu``'s turns a class's SM-seconds (``cta_s``, decode ``row_s``), fitted on
    :data:`FIT_GPUS` (H100 SXM and H200, both 1.98 GHz: their mean boost clock, as
    :func:`memsim.ops.comm.fitted_hop_s` takes their mean hop), into ``gpu``'s (1.4 on
    A100's 1.41 GHz, 0.79 on L40S's 2.52 GHz)."""
    from memsim.hardware import load_gpu

    fitted_hz = sum(load_gpu(name).spec.boost_clock_hz for name in FIT_GPUS) / len(FIT_GPUS)
    return float(fitted_hz / gpu.spec.boost_clock_hz)

DATA_FILE = Path(__file__).with_name("kernel_classes.toml")
_FIELDS = ("same_as", "floor_s", "efficiency", "row_s", "cta_s", "key_s", "host_s",
           "prelaunch_s", "skew_s", "source")


@dataclass(frozen=True)
class KernelClass:
    """One class's fitted numbers; the one place that says their units.

    - ``floor_s`` [s per call]: the latency floor (launch, prologue, grid synchronisation),
      added to the roofline time (an MLA decode's scales with its kernels per call).
    - ``efficiency`` [fraction of the datasheet peak] per unit ("tensor", "fp32", "hbm",
      "l2", "link"; MoE's "hbm_act", its activation passes): multiplies the profile's
      peaks, replacing the profile's own efficiency factors for this class. Kept with
      them, NCCL's "fill" [steps] is no efficiency: the ring's fill and drain per pass, a
      fraction of one step (:mod:`memsim.ops.comm`).
    - ``row_s`` [seconds per row; its row depends on the class's op]:
      - attention prefill and FA-2/FA-3 decode: SM-seconds per query row and head of
        the kernel's query tiles, padding included (:func:`memsim.attention.class_serial_s`
        spreads it over the SMs); FA-3 prefill: per row of a 128-row m-block
        (:data:`memsim.attention.FA3_FIXED_ROWS`: a fixed time per m-block);
      - TensorRT-LLM MMHA decode: SM-seconds per query row and head of a CTA, added to
        ``cta_s``; XQA decode: per padded query row and 128 head elements
        (:data:`memsim.attention.XQA_ROW_ELEMS`: × D / 128), added to ``cta_s``; both
        at the fitted GPUs' SM clock (× :func:`clock_ratio` elsewhere);
      - encoder attention (:mod:`memsim.ops.encoder`): SM-seconds per padded query row
        of the kernel's m-blocks;
      - DSA's SM90 sparse MLA kernel: SM-seconds per head row of a 64-head CTA tile;
        MLA (:mod:`memsim.ops.mla`): SM-seconds per padded query row × head;
      - GEMM fp8 quantisation: SM-seconds per token CTA per 4 KiB step
        (:mod:`memsim.ops.gemm`);
      - TensorRT-LLM's block-scaled fp8 MoE on Hopper and Blackwell (compute capability
        9 and 10: its DeepGEMM grouped GEMMs): seconds per local expert per call,
        touched or not, at the fitted GPUs' SM clock (:func:`memsim.ops.moe.problem_walk_s`);
      - TensorRT-LLM's Triton MXFP4 MoE on Hopper: seconds per token entering the layer,
        at the fitted GPUs' SM clock (:func:`memsim.ops.moe.token_walk_s`);
      - NCCL (:mod:`memsim.ops.comm`): seconds per ring step beyond the hop latency;
        MoE all-to-all: seconds per token copy at the fitted GPUs' hop latency.
    - ``cta_s`` [SM-seconds per CTA, at the fitted GPUs' SM clock]: a TensorRT-LLM decode
      CTA's fixed time that does not grow with its rows (barriers, the Q and page-table
      loads, the partials; XQA GMMA's last CTA of a split also pays a quarter of it per
      partial it merges, :func:`memsim.attention.xqa_partial_s`; MMHA: only a
      multi-block CTA's, :func:`memsim.attention.mmha_seq_len_tiles`); a MoE grouped-GEMM
      tile's fixed time beyond its operand stream
      (:mod:`memsim.ops.moe`); encoder attention (:mod:`memsim.ops.encoder`): SM-seconds
      per (m-block, key tile) pair, a warp-specialised FMHA's fixed steps per key tile;
      × :func:`clock_ratio` on other GPUs. vLLM's prefill (``attention/context/vllm``,
      ``.../fp8``): seconds per wave of its KV-cache write's one-per-token CTAs
      (:func:`memsim.attention.vllm_cache_write_latency_s`), memory latency, not scaled.
    - ``key_s`` [seconds per key a TensorRT-LLM XQA or MMHA decode CTA streams, per 128
      head elements]: × D / 128 (mha.cu's K/V row loads), and for XQA GMMA also × the padded
      head rows / 8 (its GMMA N slices) over whole 64-key tiles
      (:func:`memsim.attention.xqa_streamed_keys`); latency-bound loads, not scaled by
      the clock.
    - ``host_s`` [s per call, ≤ ``floor_s``]: host (CPU) work an *eager* framework call
      does after launching its last kernel, before the caller's end event is recorded;
      the kernels' GPU time hides behind it (vLLM's eager DeepEP normal-mode prepare,
      :func:`memsim.ops.comm.moe_all_to_all` with ``eager=True``): time = ``floor_s`` +
      max(0, GPU time − ``host_s``). A CUDA-graph replay has no host work: it pays
      ``floor_s`` − ``host_s`` − ``prelaunch_s`` + GPU time (one rule for both).
    - ``prelaunch_s`` [s per call, ≤ ``floor_s``]: host (CPU) work an eager framework call
      does *before* launching its kernel, part of ``floor_s`` (vLLM's low-latency
      ``finalize``: its Python down to ``low_latency_combine``'s launch). A CUDA-graph
      replay has none (time = ``floor_s`` − ``host_s`` − ``prelaunch_s`` + …); GPU work
      queued before the call runs under it, which in aiconfigurator's collector is a
      known kernel (its ``expert_x.clone()`` between dispatch and combine), so its rows
      pay ``floor_s`` − min(``prelaunch_s``, the clone's time) (``collector=True``,
      :func:`memsim.ops.comm.moe_all_to_all`); a model's eager call pays all of it, an
      upper bound (GPU work queued before it, e.g. a MoE layer's expert GEMMs before its
      combine, would hide it as the clone does).
    - ``skew_s`` [s per call]: a measurement artefact of aiconfigurator's collector, not
      of the kernel: the ranks' calls start unaligned (no barrier right before the start
      event), so a kernel that first waits for every rank's messages finds the early
      ranks' already landed and its measured time is short by up to ``skew_s`` (vLLM's
      low-latency combine, :func:`memsim.ops.comm.moe_all_to_all`); it applies to the
      collector's rows only (``collector=True``), never to a prediction of a model.
    - ``source``: what was fitted and the fit's leave-one-GPU-out errors.
    """

    name: str
    floor_s: float
    efficiency: dict[str, float] = field(default_factory=dict)
    source: str = ""
    row_s: float = 0.0
    cta_s: float = 0.0
    key_s: float = 0.0
    host_s: float = 0.0
    skew_s: float = 0.0
    prelaunch_s: float = 0.0

    def eff(self, unit: str) -> float:
        return self.efficiency[unit]


def read_tables(path: Path = DATA_FILE) -> dict[str, dict[str, Any]]:
    """The raw tables of the class file, in file order (``same_as`` not resolved)."""
    with open(path, "rb") as f:
        return tomllib.load(f)


def _resolve(name: str, tables: dict[str, dict[str, Any]], seen: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    if name not in tables:
        raise ValueError(f"kernel class {seen[-1]!r}: same_as={name!r} names no class")
    if name in seen:
        raise ValueError(f"kernel class {name!r}: same_as cycle {' -> '.join(seen)}")
    table = tables[name]
    unknown = set(table) - set(_FIELDS)
    if unknown:
        raise ValueError(f"kernel class {name!r}: unknown keys {sorted(unknown)}")
    base = _resolve(table["same_as"], tables, (*seen, name)) if "same_as" in table else {}
    return {**base, **{k: v for k, v in table.items() if k != "same_as"}}


def _build(name: str, fields: dict[str, Any]) -> KernelClass:
    eff = {str(u): float(v) for u, v in fields.get("efficiency", {}).items()}
    floor_s, row_s = float(fields["floor_s"]), float(fields.get("row_s", 0.0))
    cta_s = float(fields.get("cta_s", 0.0))
    key_s = float(fields.get("key_s", 0.0))
    host_s = float(fields.get("host_s", 0.0))
    skew_s = float(fields.get("skew_s", 0.0))
    prelaunch_s = float(fields.get("prelaunch_s", 0.0))
    # host_s and prelaunch_s are part of the floor: host work is part of the fixed time
    if not (floor_s >= 0 and row_s >= 0 and cta_s >= 0 and key_s >= 0
            and 0 <= host_s <= floor_s and 0 <= prelaunch_s <= floor_s and skew_s >= 0
            and all(v > 0 for v in eff.values())):
        raise ValueError(f"kernel class {name!r}: floor_s, row_s, cta_s, key_s must be ≥ 0, "
                         f"skew_s ≥ 0, "
                         f"0 ≤ host_s ≤ floor_s, 0 ≤ prelaunch_s ≤ floor_s and "
                         f"efficiencies > 0 (got {fields})")
    return KernelClass(name, floor_s, eff, str(fields.get("source", "")), row_s, cta_s,
                       key_s, host_s, skew_s, prelaunch_s)


def load_classes(path: Path = DATA_FILE) -> dict[str, KernelClass]:
    """Every class of the file at ``path`` by name, ``same_as`` resolved."""
    tables = read_tables(path)
    return {name: _build(name, _resolve(name, tables)) for name in tables}


@functools.cache
def kernel_classes() -> dict[str, KernelClass]:
    """The installed classes (``kernel_classes.toml``), read once."""
    return load_classes(DATA_FILE)


_TRIAL: ContextVar[dict[str, KernelClass] | None] = ContextVar("trial_classes", default=None)


@contextlib.contextmanager
def trial_classes(classes: dict[str, KernelClass]) -> Iterator[None]:
    """Within the block, :func:`kernel_class` answers ``classes`` for their names instead
    of the file's (the fitter's trial values: it re-runs memsim's own predictions)."""
    token = _TRIAL.set({**(_TRIAL.get() or {}), **classes})
    try:
        yield
    finally:
        _TRIAL.reset(token)


def __getattr__(name: str) -> Any:  # KERNEL_CLASSES, read on first use
    if name == "KERNEL_CLASSES":
        return kernel_classes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def class_table(cls: KernelClass) -> dict[str, Any]:
    """The table :func:`write_classes` writes for a fitted class."""
    table: dict[str, Any] = {"floor_s": cls.floor_s, "efficiency": dict(cls.efficiency)}
    if cls.row_s:
        table["row_s"] = cls.row_s
    if cls.cta_s:
        table["cta_s"] = cls.cta_s
    if cls.key_s:
        table["key_s"] = cls.key_s
    if cls.host_s:
        table["host_s"] = cls.host_s
    if cls.prelaunch_s:
        table["prelaunch_s"] = cls.prelaunch_s
    if cls.skew_s:
        table["skew_s"] = cls.skew_s
    table["source"] = cls.source
    return table


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(float(v))  # shortest text that reads back to the same float
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to the kernel-class file")


HEADER = """\
# Fitted kernel classes (memsim.ops.classes): floor_s, efficiency per unit, row_s, cta_s,
# key_s, host_s, skew_s, source; what each counts and its unit (row_s's row differs by op):
# memsim.ops.classes.KernelClass. `same_as` takes another class's numbers (a class not
# fitted on its own).
# Fitted entries are written by `memsim validate --source aiconfigurator --fit-classes
# --write` (make fit-classes); hand edits of their numbers are a defect.
"""


def render_tables(tables: dict[str, dict[str, Any]]) -> str:
    """The TOML text of ``tables`` (class name → fields), in the given order."""
    parts = [HEADER]
    for name, table in tables.items():
        lines = [f"[{json.dumps(name)}]"]
        lines += [f"{k} = {_value(table[k])}" for k in _FIELDS if k in table]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def write_classes(updates: dict[str, KernelClass], path: Path = DATA_FILE) -> None:
    """Rewrite ``path`` with the classes in ``updates`` replaced (new names appended) and
    every other table as it was; the cache of :func:`kernel_classes` is cleared."""
    from memsim.files import write_text

    tables = read_tables(path)
    for name, cls in updates.items():
        tables[name] = class_table(cls)
    text = render_tables(tables)
    tomllib.loads(text)  # never write a file that does not read back
    write_text(path, text, "kernel_classes")
    kernel_classes.cache_clear()

# the profile's efficiency field each class unit replaces
_PROFILE_UNITS = {"tensor": "tensor", "hbm": "hbm_bandwidth", "l2": "l2_bandwidth",
                  "sram": "sram_bandwidth", "fp32": "fp32", "exp": "exp"}


def with_class(gpu, cls: KernelClass):  # (GPU, KernelClass) -> GPU
    """``gpu`` with the class's efficiency factors in place of the profile's own (for
    memsim.roofline, which reads ``gpu.efficiency``); units the class lacks keep the
    profile's factor."""
    update = {_PROFILE_UNITS[u]: min(float(v), 1.0) for u, v in cls.efficiency.items()
              if u in _PROFILE_UNITS}
    return gpu.model_copy(update={"efficiency": gpu.efficiency.model_copy(update=update)})


def kernel_class(op: str, backend: str | None = None, variant: str | None = None
                 ) -> KernelClass:
    """The fitted class of ``op`` ("gemm", "moe", "allreduce/oneshot", ...) for ``backend``
    (default :data:`memsim.ops.DEFAULT_BACKEND`) and ``variant`` (the kernel family within
    it, e.g. the GEMM's "bf16", "fp8", "fp8_block" kernels), falling back to the backend's
    class; classes shared by every backend (NCCL) are looked up by ``op`` alone."""
    classes, trial = kernel_classes(), _TRIAL.get()
    if trial:
        classes = {**classes, **trial}
    if op in classes:
        return classes[op]
    name = f"{op}/{check_backend(backend)}"
    return classes.get(f"{name}/{variant}", classes[name])
