"""Nsight Compute: run one case under ``ncu`` and read its counters from the CSV it prints.

Running (:func:`profile`): the case runs in a child process
(``python -m memsim.validation.ncu_target``) that warms up, then brackets exactly one call
with ``cudaProfilerStart/Stop``; ``ncu --profile-from-start off`` profiles the kernels in
between, with ``--clock-control none`` (ncu never locks or changes the clocks) and its
default cache control (``--cache-control all``: caches flushed and invalidated before each
kernel, so DRAM bytes are a cold run's, as the models assume). A target whose
``cache_control`` is ``none`` (the ``store`` target's warm-L2 cases) is profiled with
``--cache-control none --replay-mode application``: the L2 keeps what the warm-up left in
it, and every replay pass is a fresh run of the child process (warm-up, then the profiled
call), so every metric sees that state. ncu's default kernel replay would not give it:
before the first pass it saves the memory the kernel can access and before each later pass
restores what the kernel wrote (Nsight Compute Kernel Profiling Guide, §Replay / Kernel
Replay), so without a flush the L2 also holds that backup's traffic and passes see
different L2 states; application replay runs the whole program once per pass (§Application
Replay).

Parsing (:func:`parse_csv`) accepts both layouts ncu writes:

- ``--page raw``: one row per kernel, one column per metric, and a second row of units;
- ``--page details`` (the default page): one row per (kernel, metric) with the columns
  ``Section Name, Metric Name, Metric Unit, Metric Value``.

and what comes with them: program output and ``==PROF==`` lines before the header,
thousands separators (``"1,073,741,824"``), ``n/a`` (→ None), and units with SI prefixes
(``Mbyte`` = 1e6 bytes, ``usecond``, ``Ksector``); values are returned in base units.

Counters → memsim quantities (:func:`quantities`), summed over the profiled kernels:

- ``hbm_read_bytes`` / ``hbm_write_bytes``: ``dram__bytes_read.sum`` / ``dram__bytes_write.sum``;
- ``l2_bytes``: ``lts__t_bytes.sum``, every byte requested of L2;
- ``global_read_bytes`` / ``global_write_bytes``: global load / store sectors through the
  LSU × 32 B (``l1tex__t_sectors_pipe_lsu_mem_global_op_ld/st.sum``);
- ``sram_bytes``: shared-memory wavefronts × 128 B (one wavefront serves at most 32 banks ×
  4 B; equal to the bytes moved when accesses are full width and free of bank conflicts);
- ``fp32_flops``: 2 × FFMA + FADD + FMUL thread instructions;
- ``kernel_time_s``: ``gpu__time_duration.sum`` under the profiler (not used as a timing).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsim.errors import InputError

METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "lts__t_bytes.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_fmul_pred_on.sum",
)
SECTOR_BYTES = 32
WAVEFRONT_BYTES = 128
MODES = ("auto", "on", "off")
CACHE_CONTROLS = ("all", "none")
_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40}
_TIME = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0, "ns": 1e-9,
         "us": 1e-6, "ms": 1e-3, "s": 1.0}
_COUNTS = ("byte", "sector", "inst", "cycle", "warp", "request", "wavefront", "thread",
           "block", "register", "B")
_NOT_A_VALUE = {"", "n/a", "N/A", "(!) n/a", "nan"}


# ---- parsing ----------------------------------------------------------------------------


@dataclass
class KernelMetrics:
    """One profiled kernel: its ncu ID, name and metric values in base units (None = n/a)."""

    id: int
    name: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def unit_scale(unit: str) -> float:
    """Factor from ``unit`` to its base unit (bytes, seconds, counts); 1 for unknown units."""
    unit = unit.strip()
    if "/" in unit:
        top, _, bottom = unit.partition("/")
        return unit_scale(top) / unit_scale(bottom)
    if unit in _BINARY:
        return _BINARY[unit]
    if unit in _TIME:
        return _TIME[unit]
    if unit in ("KB", "MB", "GB", "TB"):
        return _PREFIX[unit[0]]
    for base in _COUNTS:
        if unit.endswith(base) and unit[: -len(base)] in _PREFIX:
            return _PREFIX[unit[: -len(base)]]
    return 1.0


def parse_value(text: str, unit: str = "") -> float | None:
    """``"1,073,741,824"`` → 1073741824.0 (× the unit's scale); ``n/a`` → None."""
    text = text.strip()
    if text in _NOT_A_VALUE:
        return None
    try:
        return float(text.replace(",", "")) * unit_scale(unit)
    except ValueError:
        return None


def _rows(text: str) -> tuple[list[str], list[list[str]]]:
    """The CSV header and the rows after it, skipping everything before the header."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith('"ID"') and '"Kernel Name"' in line:
            body = [ln for ln in lines[i:] if ln.startswith('"')]
            table = list(csv.reader(io.StringIO("\n".join(body))))
            header = table[0]
            return header, [r for r in table[1:] if len(r) == len(header)]
    raise InputError("ncu output", _excerpt(text),
                     'has no CSV header ("ID", ..., "Kernel Name", ...); was ncu run with --csv?')


def _excerpt(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:300] if lines else "<empty>"


def _is_metric(column: str) -> bool:
    return re.match(r"^[a-z0-9]+__\w", column) is not None


def parse_csv(text: str) -> list[KernelMetrics]:
    """Kernels of an ``ncu --csv`` output, raw or details page (see module docstring)."""
    header, rows = _rows(text)
    col = {name: i for i, name in enumerate(header)}
    kernels: dict[int, KernelMetrics] = {}
    if "Metric Name" in col and "Metric Value" in col:  # details page
        for row in rows:
            metric = row[col["Metric Name"]]
            if not metric:
                continue  # a rule's row, not a metric
            kid = int(row[col["ID"]])
            k = kernels.setdefault(kid, KernelMetrics(kid, row[col["Kernel Name"]]))
            unit = row[col["Metric Unit"]] if "Metric Unit" in col else ""
            k.metrics[metric] = parse_value(row[col["Metric Value"]], unit)
            k.units[metric] = unit
        return list(kernels.values())
    metric_cols = [name for name in header if _is_metric(name)]
    units = {name: "" for name in metric_cols}
    for row in rows:
        if not row[col["ID"]].strip():  # the units row of the raw page
            units = {name: row[col[name]] for name in metric_cols}
            continue
        kid = int(row[col["ID"]])
        k = KernelMetrics(kid, row[col["Kernel Name"]], units=dict(units))
        for name in metric_cols:
            k.metrics[name] = parse_value(row[col[name]], units[name])
        kernels[kid] = k
    return list(kernels.values())


def _total(kernels: list[KernelMetrics], metric: str) -> float | None:
    values = [k.metrics.get(metric) for k in kernels]
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def quantities(kernels: list[KernelMetrics]) -> dict[str, Any]:
    """memsim's quantities summed over the kernels (None where a counter is missing)."""
    t = {m: _total(kernels, m) for m in METRICS}

    def times(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    read, write = t["dram__bytes_read.sum"], t["dram__bytes_write.sum"]
    ffma = t["sm__sass_thread_inst_executed_op_ffma_pred_on.sum"]
    fadd = t["sm__sass_thread_inst_executed_op_fadd_pred_on.sum"]
    fmul = t["sm__sass_thread_inst_executed_op_fmul_pred_on.sum"]
    return {
        "hbm_read_bytes": read, "hbm_write_bytes": write,
        "hbm_bytes": None if read is None or write is None else read + write,
        "l2_bytes": t["lts__t_bytes.sum"],
        "global_read_bytes": times(t["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"],
                                   SECTOR_BYTES),
        "global_write_bytes": times(t["l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum"],
                                    SECTOR_BYTES),
        "sram_bytes": times(t["l1tex__data_pipe_lsu_wavefronts_mem_shared.sum"],
                            WAVEFRONT_BYTES),
        "fp32_flops": None if None in (ffma, fadd, fmul) else 2 * ffma + fadd + fmul,
        "kernel_time_s": t["gpu__time_duration.sum"],
        "kernels": len(kernels),
        "kernel_names": sorted({k.name[:80] for k in kernels}),
    }


# ---- running ----------------------------------------------------------------------------

_SEARCH = ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu")
PERMISSION_MARKERS = ("ERR_NVGPUCTRPERM", "permission", "LibraryNotLoaded")


def executable() -> str | None:
    """Path of ``ncu``: on PATH, in the CUDA toolkit, or in a Nsight Compute install."""
    found = shutil.which("ncu")
    if found:
        return found
    for pattern in _SEARCH:
        matches = sorted(Path("/").glob(pattern.lstrip("/")))
        if matches:
            return str(matches[-1])
    return None


def version(path: str) -> str | None:
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                          check=False)
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if proc.returncode == 0 and lines else None


def resolve(mode: str) -> tuple[str | None, str | None]:
    """(ncu path or None, why not) for ``--ncu auto|on|off``; ``on`` without ncu is an error."""
    if mode not in MODES:
        raise InputError("ncu", mode, f"must be one of {', '.join(MODES)}")
    if mode == "off":
        return None, "--ncu off"
    path = executable()
    if path is None:
        if mode == "on":
            raise InputError("ncu", mode, "needs Nsight Compute's ncu on PATH (or --ncu auto)")
        return None, "ncu not found"
    return path, None


def command(path: str, target: dict[str, Any], log_file: Path,
            launch_count: int | None = None) -> list[str]:
    """The ncu command line profiling one ``ncu_target`` call; ``target["cache_control"]``
    (default ``all``, ncu's own default, left off the command) sets ``--cache-control``;
    ``none`` also sets ``--replay-mode application`` (each pass a fresh process, so each
    sees the warm-up's L2 and not kernel replay's save/restore traffic; module docstring)."""
    cache_control = target.get("cache_control", "all")
    if cache_control not in CACHE_CONTROLS:
        raise InputError("cache_control", cache_control,
                         f"must be one of {', '.join(CACHE_CONTROLS)}")
    cmd = [path, "--csv", "--page", "raw", "--metrics", ",".join(METRICS),
           "--clock-control", "none", "--profile-from-start", "off",
           "--target-processes", "all", "--log-file", str(log_file)]
    if cache_control == "none":
        cmd += ["--cache-control", "none", "--replay-mode", "application"]
    if launch_count:
        cmd += ["--launch-count", str(launch_count)]
    return cmd + [sys.executable, "-m", "memsim.validation.ncu_target", json.dumps(target)]


class NcuUnavailableError(RuntimeError):
    """ncu cannot read the counters here (permissions, driver); later cases are skipped."""


def profile(path: str, target: dict[str, Any], launch_count: int | None = None,
            timeout_s: float = 300) -> dict[str, Any]:
    """Run ``target`` under ncu and return :func:`quantities` of the kernels it profiled."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "ncu.csv"
        proc = subprocess.run(command(path, target, log, launch_count), capture_output=True,
                              text=True, timeout=timeout_s, check=False)
        text = log.read_text() if log.exists() else ""
    output = text + "\n" + proc.stdout + "\n" + proc.stderr
    if any(marker in output for marker in PERMISSION_MARKERS) and '"ID"' not in text:
        raise NcuUnavailableError(f"ncu cannot read the counters: {_excerpt(output)}")
    if proc.returncode != 0 and '"ID"' not in text:
        raise RuntimeError(f"ncu exited {proc.returncode}: {_excerpt(output)}")
    kernels = parse_csv(text)
    if not kernels:
        raise RuntimeError(f"ncu profiled no kernel: {_excerpt(output)}")
    return quantities(kernels)
