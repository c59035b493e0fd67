"""Units and dtype widths. Every quantity inside memsim is in SI base units.

GB (1e9 bytes) and GiB (2**30 bytes) are different constants and are never mixed up.
Dtype widths come from :data:`DTYPE_BYTES`, never from a literal ``2`` in a formula.
"""

from __future__ import annotations

from typing import Literal

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 2**10
MiB = 2**20
GiB = 2**30

TERA = 1e12
GIGA = 1e9
MICRO = 1e-6

SECONDS_PER_HOUR = 3600.0
TOKENS_PER_MILLION = 1e6

Dtype = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4"]

# Storage width in bytes per element. int4 packs two elements per byte.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}

# Accumulators of the online softmax (m, ℓ) and of matmuls are fp32 in every kernel
# memsim models (FlashAttention-2 §3.1; our Numba kernels).
ACCUM_DTYPE = "fp32"
ACCUM_BYTES = DTYPE_BYTES[ACCUM_DTYPE]
INT32_BYTES = 4  # top-k indices (DeepSeek-V3.2-Exp inference/model.py: torch.int32)


def scaled_row_bytes(elements, elem_bytes, scale_block=128):
    """Bytes of one stored row of ``elements`` values: the values, plus one fp32 scale per
    ``scale_block`` values when stored in 8 bits (DeepSeek-V3.2-Exp inference/model.py,
    ``act_quant`` block 128: an fp8 indexer key of 128 values takes 128 + 4 = 132 B).
    numpy-broadcasting."""
    import numpy as np

    scales = np.where(np.asarray(elem_bytes) == DTYPE_BYTES["fp8"],
                      -(-np.asarray(elements) // scale_block), 0)
    return elements * elem_bytes + scales * DTYPE_BYTES["fp32"]


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; raises :class:`memsim.errors.InputError` if unknown."""
    from memsim.errors import InputError, closest

    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise InputError(
            "dtype", dtype, f"must be one of {sorted(DTYPE_BYTES)}{closest(dtype, DTYPE_BYTES)}"
        ) from None


def format_bytes(n: float) -> str:
    """Bytes in decimal units, 3 significant digits: 4.46e9 → '4.46 GB' (GB = 1e9 B)."""
    for unit, scale in (("PB", 1e15), ("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(t: float) -> str:
    """Seconds, 3 significant digits, in s, ms, µs or ns: 1.5e-3 → '1.5 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", MICRO)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t * 1e9:.3g} ns"

# DeepSeek Sparse Attention's lightning indexer as DeepSeek-V3.2-Exp ships it (report §1):
# H_I = 64 heads of D_I = 128. The defaults of memsim.problem.Indexer and of the CLI's
# --index-heads/--index-head-dim (kept here, free of pydantic, so the CLI starts fast).
INDEXER_HEADS = 64
INDEXER_HEAD_DIM = 128
