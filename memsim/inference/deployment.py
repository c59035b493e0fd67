"""What is served and how (:class:`Setup`) and the checks of its inputs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.models import LayerGroup, ModelConfig
from memsim.problem import Mask
from memsim.units import dtype_bytes

ATTENTION_CHOICES = ("auto", "standard", "flash1", "flash2", "flash_decode", "dsa")
TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
COMPUTE_DTYPES = ("fp32", "fp16", "bf16", "fp8")
# vLLM's default gpu_memory_utilization = 0.9 leaves 10 % of HBM to the CUDA context, NCCL
# buffers and allocator fragmentation (docs.vllm.ai, EngineArgs).
DEFAULT_RESERVE_FRACTION = 0.10


@dataclass(frozen=True)
class Setup:
    """What is served and how: model, GPU, TP degree, attention algorithm, dtypes, price.

    ``all_global`` treats every windowed or chunked layer as global (what a calculator that
    ignores the layer pattern predicts); ``prefill_chunk`` runs prefill in chunks of that many
    tokens (chunked prefill: smaller activations, weights re-read per chunk).
    """

    model: ModelConfig
    gpu: GPU
    tp: int = 1
    attention: str = "auto"
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    usd_per_gpu_hour: float | None = None
    prefill_chunk: int | None = None
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION
    all_global: bool = False

    def __post_init__(self) -> None:
        _positive_int("tp", self.tp)
        if self.attention not in ATTENTION_CHOICES:
            from memsim.errors import closest

            raise InputError("attention", self.attention, "must be one of "
                             + ", ".join(ATTENTION_CHOICES)
                             + closest(self.attention, ATTENTION_CHOICES))
        for name in ("weight_dtype", "kv_dtype", "act_dtype"):
            try:
                dtype_bytes(getattr(self, name))
            except InputError as exc:
                raise InputError(name, exc.value, exc.rule) from None
        for name in ("kv_dtype", "act_dtype"):  # these feed tensor-core matmuls
            if getattr(self, name) not in COMPUTE_DTYPES:
                raise InputError(name, getattr(self, name),
                                 f"must be one of {', '.join(COMPUTE_DTYPES)}")
        if self.usd_per_gpu_hour is not None and not self.usd_per_gpu_hour > 0:
            raise InputError("price", self.usd_per_gpu_hour, "must be > 0 $ per GPU-hour")
        if self.prefill_chunk is not None:
            _positive_int("prefill_chunk", self.prefill_chunk)
        if not 0 <= self.reserve_fraction < 1:
            raise InputError("reserve_fraction", self.reserve_fraction, "must be in [0, 1)")
        for g in self.model.groups:
            if g.attention.heads % self.tp:
                raise InputError("tp", self.tp, f"must divide the query heads "
                                 f"({g.attention.heads}) of {self.model.name}")

    @property
    def price(self) -> float:
        """$ per GPU-hour: the override, else the profile's price."""
        return self.usd_per_gpu_hour or self.gpu.price.usd_per_gpu_hour

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        if not self.all_global:
            return self.model.groups
        out = []
        for g in self.model.groups:
            mask = g.attention.mask
            if mask.window is not None or mask.chunk is not None:
                mask = Mask(causal=mask.causal)
            out.append(replace(g, attention=replace(g.attention, mask=mask)))
        return tuple(out)

    def with_tp(self, tp: int) -> Setup:
        return replace(self, tp=tp)


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise InputError(field, value, "must be a positive integer")


def _positive_array(field: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or np.any(arr <= 0):
        raise InputError(field, value if arr.ndim == 0 else arr.tolist(),
                         "must be a positive integer")
    return arr.astype(np.int64)
