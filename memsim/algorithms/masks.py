"""From a :class:`memsim.problem.Mask` to the geometry the tile counting needs."""

from __future__ import annotations

from memsim.errors import InputError
from memsim.geometry import MaskGeometry
from memsim.problem import Mask

DENSE_MASKS = ("full", "causal", "window", "chunk")


def geometry_of(mask: Mask) -> MaskGeometry:
    """The :class:`MaskGeometry` of a dense mask (top-k masks have none: see dsa)."""
    kind = mask.kind
    if kind == "window":
        if mask.causal:
            return MaskGeometry("window", w=mask.window)
        return MaskGeometry("band", half=mask.window // 2)
    if kind == "chunk":
        return MaskGeometry("chunk", c=mask.chunk)
    if kind in ("full", "causal"):
        return MaskGeometry(kind)
    raise InputError("mask", mask.describe(), "is a top-k mask: only the dsa algorithm runs it")
