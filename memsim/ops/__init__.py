"""Operators other than attention: GEMM, collectives, MoE — time from physics plus a few
fitted numbers per kernel class.

Every operator returns an :class:`OpPrediction`; sizes may be numpy arrays (they broadcast)
and every field then is an array of that shape. The model of each operator is the roofline
of :mod:`memsim.roofline` made concrete for the kernel that real frameworks launch (CUTLASS
tiles in waves for GEMMs, the one-shot / two-shot / ring / NVLS algorithm switch for
all-reduce, a grouped GEMM for MoE), plus the kernel class's latency floor. The efficiency
per unit and the floor of each class (:mod:`memsim.ops.classes`) are fitted on H100 and
H200 measurements only; every other GPU is predicted from its datasheet profile.

``backend``: ``"trtllm"``, ``"vllm"`` or ``"sglang"`` pick the kernel class fitted for that
framework; ``None`` means :data:`DEFAULT_BACKEND`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Number = float | np.ndarray

BACKENDS = ("trtllm", "vllm", "sglang")
# TensorRT-LLM: its kernels are the ones most of the published measurements time
# (aiconfigurator-core's database), and the fastest production kernels for NVIDIA GPUs, so a
# prediction says what a tuned deployment gets.
DEFAULT_BACKEND = "trtllm"


@dataclass(frozen=True)
class OpPrediction:
    """Time and work of one operator call on one GPU.

    - ``time_s``: the headline estimate (seconds): latency floor + the binding term.
    - ``bound``: the term that binds ("matmul", "hbm", "l2", "link", "latency"), a str or an
      array of str.
    - ``flops``: matmul FLOPs (2 per multiply-add); ``hbm_bytes``: bytes to and from HBM.
    - ``launch_s``: the kernel class's latency floor (launch, prologue, synchronisation).
    - ``terms_s``: seconds of each term before the floor is added.
    - ``detail``: what the model chose (tile, algorithm, split count, ...).
    """

    time_s: Number
    bound: Any
    flops: Number
    hbm_bytes: Number
    launch_s: Number
    terms_s: dict[str, Number]
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: scalars as floats, arrays as lists."""
        out = {k: _plain(getattr(self, k)) for k in
               ("time_s", "bound", "flops", "hbm_bytes", "launch_s")}
        out["terms_s"] = {k: _plain(v) for k, v in self.terms_s.items()}
        out["detail"] = {k: _plain(v) for k, v in self.detail.items()}
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_backend(backend: str | None) -> str:
    """``backend`` or the default; an unknown name raises InputError."""
    from memsim.errors import InputError, closest

    if backend is None:
        return DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise InputError("backend", backend,
                         f"must be one of {', '.join(BACKENDS)}{closest(backend, BACKENDS)}")
    return backend


def resolve_gpu(gpu: Any) -> Any:
    """A GPU profile from a name, a .toml path or a profile."""
    from memsim.hardware import load_gpu

    return load_gpu(gpu) if isinstance(gpu, str) else gpu


def cc_major(gpu: Any) -> int:
    """The major version of a profile's CUDA compute capability (8 Ampere/Ada, 9 Hopper,
    10 Blackwell), the architecture production kernels dispatch on; 0 for a profile
    without an NVIDIA one (MI300X: "gfx942")."""
    cc = str(getattr(gpu, "compute_capability", ""))
    return int(cc.split(".")[0]) if cc[:1].isdigit() else 0


def attention_kernels_backend(backend: str | None, gpu: Any) -> str | None:
    """Whose attention *decode-family* kernels ``backend`` runs on ``gpu`` (the one home of
    this rule): vLLM on the SM100 family (compute capability 10.x) picks FlashInfer, whose
    decode and prefill wrap TensorRT-LLM's trtllm-gen kernels (FLASHINFER_MLA:
    ``trtllm_batch_decode_with_kv_cache_mla``, vllm v1/attention/backends/mla/
    flashinfer_mla.py; the b200 rows of aiconfigurator's vLLM 0.24 tables name their kernels
    ``vllm_flashinfer_trtllmdecode`` / ``…trtllmprefill`` and FLASHINFER_MLA), so
    TensorRT-LLM's classes and structure time them: "trtllm". Otherwise ``backend``."""
    if backend == "vllm" and cc_major(gpu) == 10:
        return "trtllm"
    return backend


def as_float(*values: Any) -> list[np.ndarray]:
    """Broadcast sizes to float64 arrays of one shape."""
    return list(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values)))


def positive(field_name: str, value: Any) -> None:
    """InputError unless every element of ``value`` is > 0."""
    from memsim.errors import InputError

    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(field_name, value if arr.ndim == 0 else arr.tolist(),
                         "must be positive")


def bound_of(terms: dict[str, np.ndarray], floor_s: Any) -> Any:
    """Name of the largest term; "latency" where the floor exceeds every term."""
    names = list(terms)
    stacked = np.stack([np.asarray(terms[k], dtype=float) for k in names])
    biggest = np.max(stacked, axis=0)
    label = np.asarray(names)[np.argmax(stacked, axis=0)]
    label = np.where(np.asarray(floor_s) > biggest, "latency", label)
    return str(label) if label.ndim == 0 else label


def out(v: Any) -> Number:
    v = np.asarray(v, dtype=float)
    return float(v) if v.ndim == 0 else v
