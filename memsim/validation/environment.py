"""The environment header of a run: GPU, driver, CUDA, library versions, clocks, date.

Everything is read, nothing is set: clocks and limits are recorded as found
(``nvidia-smi --query-gpu``), never changed. Each item that cannot be read is recorded as
``null`` with the reason under ``errors``; reading the environment never fails a run.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from memsim.validation.records import utc_now

LIBRARIES = ("memsim", "numpy", "numba", "numba-cuda", "pydantic", "torch", "transformers",
             "triton")
# nvidia-smi fields recorded as found (read-only query).
SMI_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem",
              "clocks.max.mem", "power.limit", "temperature.gpu", "persistence_mode",
              "compute_mode")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`LIBRARIES` (None if absent)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# Where each was imported from: on an H100 (2026-11-22) every Numba kernel failed to compile
# when memsim came from the source tree and compiled from an installed copy (Makefile,
# validate-gpu); a run records which copy of memsim, its kernels and Numba it used.
IMPORTED = ("memsim", "memsim.kernels", "numba", "numba.cuda", "numpy")


def import_paths() -> dict[str, str | None]:
    """The file each module of :data:`IMPORTED` is (or would be) imported from, without
    importing it (None where absent)."""
    import importlib.util

    out: dict[str, str | None] = {}
    for name in IMPORTED:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        out[name] = spec.origin if spec is not None else None
    return out


def nvidia_smi(fields: tuple[str, ...] = SMI_FIELDS) -> dict[str, str]:
    """One read-only ``nvidia-smi --query-gpu`` of GPU 0; {} without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    proc = subprocess.run([exe, "-i", "0", f"--query-gpu={','.join(fields)}",
                           "--format=csv,noheader"], capture_output=True, text=True,
                          timeout=30, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip() or f"exit {proc.returncode}"}
    values = [v.strip() for v in proc.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(fields, values, strict=False))


def git_commit(repo: Path | None = None) -> str | None:
    """The commit memsim runs from (with ``-dirty`` when the tree has changes), or None."""
    repo = repo or Path(__file__).resolve().parents[2]
    exe = shutil.which("git")
    if exe is None or not (repo / ".git").exists():
        return None
    head = subprocess.run([exe, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    if head.returncode != 0:
        return None
    dirty = subprocess.run([exe, "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def cuda_versions() -> dict[str, Any]:
    """CUDA as PyTorch and Numba see it, where they are installed."""
    out: dict[str, Any] = {}
    try:
        import torch

        out["torch_cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except Exception as exc:
        out["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        from numba import cuda

        out["numba_driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        out["numba_runtime"] = ".".join(map(str, cuda.runtime.get_version()))
    except Exception as exc:
        out["numba_error"] = f"{type(exc).__name__}: {exc}"
    return out


def environment() -> dict[str, Any]:
    """The header of a run (see module docstring)."""
    errors: dict[str, str] = {}
    env: dict[str, Any] = {
        "date_utc": utc_now(),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": library_versions(),
        "imported_from": import_paths(),
        "memsim_commit": git_commit(),
    }
    for key, reader in (("nvidia_smi", nvidia_smi), ("cuda", cuda_versions)):
        try:
            env[key] = reader()
        except Exception as exc:  # a tool that hangs or crashes does not stop the run
            env[key] = None
            errors[key] = f"{type(exc).__name__}: {exc}"
    env["errors"] = errors
    return env
