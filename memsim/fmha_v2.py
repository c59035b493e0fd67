"""TensorRT-LLM fmha_v2's SM90 warp-specialised context FMHA: the head size it computes at.

One home for the rule, imported by the context-attention timer (:mod:`memsim.attention`).
The encoder-attention model (:mod:`memsim.ops.encoder`) times the same kernel
(``fmha_v2_*_tma_ws_sm90``) but does not use it yet (:func:`memsim.ops.encoder.mma_head_dim`
says why)."""

from __future__ import annotations


def fmha_v2_head_dim(head_dim: int, elem_bytes: float) -> int:
    """The head size TensorRT-LLM's SM90 warp-specialised context FMHA computes for a
    ``head_dim`` of ``elem_bytes``-byte elements: rounded up to whole 128-byte rows, but
    not past the next power of two (NVIDIA/TensorRT-LLM
    cpp/kernels/fmha_v2/src/fmha/warpspec/kernel_traits.h: ``D = min(Round_up<VALID_D,
    128 / ELEMENT_BYTES>, Next_power_of_two<VALID_D>)``, ``DV`` alike). bf16: 64 → 64,
    72 → 128, 80 → 128, 192 → 192; e4m3: 192 → 256, 80 → 128."""
    step = int(128 // elem_bytes)
    rounded = -(-int(head_dim) // step) * step
    return min(rounded, 1 << (int(head_dim) - 1).bit_length())


def fmha_v2_head_pad(D: int, Dv: int, elem_bytes: float) -> float:
    """Factor on the useful MMA FLOPs (2·(D + Dv) per score) of TensorRT-LLM's SM90 context
    FMHA, whose Q·Kᵀ reduces over and P·V produces :func:`fmha_v2_head_dim` columns."""
    return (fmha_v2_head_dim(D, elem_bytes) + fmha_v2_head_dim(Dv, elem_bytes)) / (D + Dv)


__all__ = ["fmha_v2_head_dim", "fmha_v2_head_pad"]
