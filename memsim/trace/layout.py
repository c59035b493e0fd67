"""Global-memory tensors with real row-major layouts and byte addresses.

Every tensor a schedule touches (``q: (B, N, H, D)``, ``k: (B, S, K, D)``, ``o``, ``lse``,
score matrices, split partials, indexer logits, top-k indices, ...) is allocated once, at
its own 256-byte-aligned base address (cudaMalloc's alignment), so a tile of a tensor has
one byte address, the same for every block that touches it.

Schedules are generated for one *template instance*: batch 0, head group 0. A block of
batch ``b`` and head group ``g`` touches the same tiles shifted by

    offset = b · batch_stride_bytes + (g // group_divisor) · group_stride_bytes

(``group_divisor`` maps head groups onto the KV head they share: with H/K query heads per
KV head packed ``hpb`` per block, (H/K)/hpb consecutive head groups read one KV head.)
Addresses are integers: for sub-byte dtypes (int4) an element offset is floored to the
byte that holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALIGN_BYTES = 256
FIRST_ADDRESS = 1 << 32  # where the first tensor is placed (any aligned value works)
ROLES = ("input", "output", "workspace")


@dataclass(frozen=True)
class Tensor:
    """One tensor: ``shape`` (row-major) of ``elem_bytes``-byte elements at ``base_address``.

    ``batch_axis``/``head_axis`` say which axes a block's instance (batch b, head group g)
    indexes; ``heads_per_group`` is how many entries of the head axis one group spans.
    """

    name: str
    shape: tuple[int, ...]
    elem_bytes: float
    role: str
    base_address: int
    batch_axis: int | None = None
    head_axis: int | None = None
    heads_per_group: int = 1
    group_divisor: int = 1

    @property
    def nbytes(self) -> float:
        return math.prod(self.shape) * self.elem_bytes

    @property
    def strides_elems(self) -> tuple[int, ...]:
        """Row-major element strides."""
        out, acc = [], 1
        for n in reversed(self.shape):
            out.append(acc)
            acc *= n
        return tuple(reversed(out))

    def address(self, *index: np.ndarray | int) -> np.ndarray:
        """Byte address of element ``index`` (one entry per axis; numpy-broadcasting)."""
        if len(index) != len(self.shape):
            raise ValueError(f"{self.name}: {len(index)} indices for shape {self.shape}")
        elems = sum(np.asarray(i, dtype=np.int64) * s
                    for i, s in zip(index, self.strides_elems, strict=True))
        return self.base_address + np.floor(elems * self.elem_bytes).astype(np.int64)

    def _axis_stride_bytes(self, axis: int | None, scale: int = 1) -> int:
        if axis is None:
            return 0
        return int(math.floor(self.strides_elems[axis] * scale * self.elem_bytes))

    @property
    def batch_stride_bytes(self) -> int:
        return self._axis_stride_bytes(self.batch_axis)

    @property
    def group_stride_bytes(self) -> int:
        return self._axis_stride_bytes(self.head_axis, self.heads_per_group)


@dataclass
class Layout:
    """The tensors of one schedule, allocated one after another."""

    tensors: list[Tensor] = field(default_factory=list)
    _next_address: int = FIRST_ADDRESS

    def add(self, name: str, shape: tuple[int, ...], elem_bytes: float, role: str, *,
            batch_axis: int | None = 0, head_axis: int | None = None,
            heads_per_group: int = 1, group_divisor: int = 1) -> int:
        """Allocate a tensor; returns its id (index in :attr:`tensors`)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} must be one of {ROLES}")
        t = Tensor(name, tuple(int(n) for n in shape), float(elem_bytes), role,
                   self._next_address, batch_axis, head_axis, heads_per_group, group_divisor)
        size = math.ceil(t.nbytes)
        self._next_address += -(-max(size, 1) // ALIGN_BYTES) * ALIGN_BYTES
        self.tensors.append(t)
        return len(self.tensors) - 1

    def __getitem__(self, tensor_id: int) -> Tensor:
        return self.tensors[tensor_id]

    def offset_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(batch stride, group stride, group divisor) per tensor, int64 arrays for numba."""
        i64 = np.int64
        return (np.array([t.batch_stride_bytes for t in self.tensors], dtype=i64),
                np.array([t.group_stride_bytes for t in self.tensors], dtype=i64),
                np.array([max(t.group_divisor, 1) for t in self.tensors], dtype=i64))

    def bytes_by_role(self, role: str) -> float:
        return float(sum(t.nbytes for t in self.tensors if t.role == role))
