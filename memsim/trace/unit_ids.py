"""Dense integer ids of the L2 units a schedule touches, so the hot loop needs no hashing.

A unit is named by the byte address of its first element (:mod:`memsim.trace.program`);
the engine computes every address as an affine function of the loop counters

    address = A + it·step + u·unit_stride + b·batch_stride + (g // divisor)·group_stride
    (gathered: A + key·unit_stride + …, key ≤ gather_pos)

This module replaces the byte address by a small integer id computed by the same affine
formula with every term mapped through one linear map per tensor, ``id = φ(address)``:

- The byte offset from the tensor's base is split into the tensor's axes (row-major, the
  innermost axis in bytes): ``offset = Σ c_i · stride_bytes_i``. Every term above is split
  the same way. When every access keeps every axis index inside ``[0, extent_i)`` over all
  its loop counters (checked, per access and axis, from the counters' ranges), the split of
  a sum is the sum of the splits (no carries), so the split is linear on the addresses the
  schedule touches, and a one-to-one function of them (row-major offsets are unique).
- Axis i only ever sees multiples of ``g_i`` (the gcd of all its terms): the id is the
  mixed-radix number of the digits ``c_i / g_i``, each below ``radix_i`` (one more than
  the largest index the schedule reaches), offset by the tensor's first id.

Distinct addresses therefore get distinct ids and equal addresses equal ids — the cache
sees exactly the units it saw keyed by address — while the ids of a tensor are as many as
its tiles (a K tensor of S / Bc tiles per head has S / Bc · K ids, not S · K · D · e / 256).
A tensor whose axes are not whole bytes (sub-byte dtypes with an odd inner extent) or whose
accesses leave an axis is split as one byte axis (``id = offset / g``: still exact, less
compact). An access outside its tensor's bytes is a schedule error (ValueError): keyed by
address it would have aliased another tensor's units.

:meth:`UnitIds.addresses` maps ids back to byte addresses (for the recorded event log).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memsim.trace.layout import Layout
from memsim.trace.program import GATHER, KernelProgram


@dataclass(frozen=True)
class _TensorIds:
    """The linear map of one tensor: axis byte strides, per-axis gcd, digit weights."""

    base_address: int
    first_id: int
    stride_bytes: np.ndarray      # int64[n_axes], outermost first, innermost 1
    gcd: np.ndarray               # int64[n_axes], ≥ 1
    weight: np.ndarray            # int64[n_axes]: id = first_id + Σ (c_i / gcd_i) · weight_i
    radix: np.ndarray             # int64[n_axes]

    @property
    def ids(self) -> int:
        return int(np.prod(self.radix))

    def split(self, values: np.ndarray) -> np.ndarray:
        return _split(values, self.stride_bytes)

    def of(self, values: np.ndarray) -> np.ndarray:
        """φ of byte offsets (or offset steps; linear, so signs carry through)."""
        return (self.split(values) // self.gcd) @ self.weight


@dataclass(frozen=True)
class UnitIds:
    """Ids of every unit of a schedule's tensors (see module docstring)."""

    tensors: tuple[_TensorIds, ...]
    n_ids: int

    def offsets(self, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`Layout.offset_tables` in ids: (batch stride, group stride, divisor)."""
        sb, sg, div = layout.offset_tables()
        return (np.array([t.of(np.array([v]))[0] for t, v in zip(self.tensors, sb,
                                                                   strict=True)], np.int64),
                np.array([t.of(np.array([v]))[0] for t, v in zip(self.tensors, sg,
                                                                   strict=True)], np.int64),
                div)

    def program(self, k: KernelProgram) -> dict[str, np.ndarray]:
        """``k.acc`` with address, step_bytes and unit_stride_bytes mapped to ids."""
        acc = dict(k.acc)
        first, step, ustride = (np.zeros_like(k.acc[f]) for f in
                                ("address", "step_bytes", "unit_stride_bytes"))
        for x, t in enumerate(self.tensors):
            m = k.acc["tensor"] == x
            first[m] = t.of(k.acc["address"][m] - t.base_address) + t.first_id
            step[m] = t.of(k.acc["step_bytes"][m])
            ustride[m] = t.of(k.acc["unit_stride_bytes"][m])
        acc["address"], acc["step_bytes"], acc["unit_stride_bytes"] = first, step, ustride
        return acc

    def addresses(self, ids: np.ndarray) -> np.ndarray:
        """Byte addresses of ``ids`` (the inverse map)."""
        ids = np.asarray(ids, np.int64)
        starts = np.array([t.first_id for t in self.tensors], np.int64)
        x = np.searchsorted(starts, ids, side="right") - 1
        out = np.zeros(len(ids), np.int64)
        for i, t in enumerate(self.tensors):
            m = x == i
            digits = ((ids[m, None] - t.first_id) // t.weight) % t.radix
            out[m] = t.base_address + (digits * t.gcd) @ t.stride_bytes
        return out


def unit_ids(layout: Layout, kernels: list[KernelProgram], batch: int,
             instances: list[int]) -> UnitIds:
    """The ids of ``kernels``' units; ``instances[i]``: (batch, head group) instances
    kernel i is replayed for (the group index reaches instances / batch − 1)."""
    sb, sg, div = layout.offset_tables()
    out, first_id = [], 0
    for x, tensor in enumerate(layout.tensors):
        terms = _terms(kernels, instances, x, tensor.base_address, batch, sb[x], sg[x], div[x])
        nbytes = int(np.ceil(tensor.nbytes))
        axes = _axis_strides(tensor.shape, tensor.elem_bytes)
        t = _linear_map(terms, axes, _extents(tensor.shape, axes, nbytes))
        if t is None:                                  # one byte axis
            t = _linear_map(terms, np.ones(1, np.int64), np.array([nbytes]))
        if t is None:
            raise ValueError(f"a schedule accesses {tensor.name} outside its {nbytes} bytes")
        out.append(_TensorIds(tensor.base_address, first_id, *t))
        first_id += out[-1].ids
    return UnitIds(tuple(out), first_id)


def _terms(kernels, instances, x, base, batch, sb, sg, div) -> tuple:
    """Each access of tensor x as (start offset int64[A], term values int64[A, T], the
    largest coefficient of each term int64[A, T])."""
    starts, values, coefs = [], [], []
    for k, inst in zip(kernels, instances, strict=True):
        acc = k.acc
        m = acc["tensor"] == x
        if not m.any():
            continue
        count = np.repeat(k.run_count, np.diff(k.run_acc_ptr))[m]
        gathered = acc["kind"][m] == GATHER
        n = int(m.sum())
        groups = max(inst // batch, 1)
        starts.append(acc["address"][m] - base)
        values.append(np.stack([acc["step_bytes"][m], acc["unit_stride_bytes"][m],
                                np.full(n, sb), np.full(n, sg)], axis=1))
        coefs.append(np.stack([np.where(gathered, 0, count - 1),
                               np.where(gathered, acc["gather_pos"][m], acc["units"][m] - 1),
                               np.full(n, batch - 1), np.full(n, (groups - 1) // div)],
                              axis=1))
    if not starts:
        z = np.zeros((0, 4), np.int64)
        return np.zeros(0, np.int64), z, z
    return (np.concatenate(starts).astype(np.int64), np.concatenate(values).astype(np.int64),
            np.concatenate(coefs).astype(np.int64))


def _axis_strides(shape: tuple[int, ...], elem_bytes: float) -> np.ndarray:
    """Byte strides of the axes, the innermost axis counted in bytes (stride 1); a single
    byte axis when an outer stride is not a whole number of bytes."""
    strides, acc = [], elem_bytes * shape[-1] if shape else 1.0
    for n in reversed(shape[:-1]):
        strides.append(acc)
        acc *= n
    strides = list(reversed(strides)) + [1.0]
    if any(s != int(s) for s in strides):
        return np.ones(1, np.int64)
    return np.array(strides, np.int64)


def _extents(shape: tuple[int, ...], axes: np.ndarray, nbytes: int) -> np.ndarray:
    if len(axes) == 1:
        return np.array([nbytes], np.int64)
    outer = np.array(shape[:-1], np.int64)
    return np.concatenate([outer, [int(axes[-2])]])  # innermost: its whole row of bytes


def _split(values: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Row-major split of byte offsets (any sign, split as sign × split of |v|)."""
    v = np.asarray(values, np.int64)
    sign, rest = np.sign(v), np.abs(v)
    digits = np.empty(v.shape + (len(strides),), np.int64)
    for i, s in enumerate(strides):
        digits[..., i] = rest // s
        rest = rest % s
    return digits * sign[..., None]


def _linear_map(terms, strides: np.ndarray, extents: np.ndarray) -> tuple | None:
    """(strides, gcd, weight, radix) of the map over these axes, or None when an access
    leaves an axis."""
    start, values, coefs = terms
    c0 = _split(start, strides)                          # [A, n_axes]
    cv = _split(values, strides)                          # [A, T, n_axes]
    reach = cv * coefs[..., None]
    lo = c0 + np.minimum(reach, 0).sum(axis=1)
    hi = c0 + np.maximum(reach, 0).sum(axis=1)
    if len(start) and ((lo < 0).any() or (hi >= extents).any()):
        return None
    used = np.concatenate([c0, cv[coefs > 0]], axis=0)
    gcd = np.gcd.reduce(np.abs(used), axis=0) if len(used) else np.zeros(len(strides), np.int64)
    gcd = np.maximum(gcd, 1)
    radix = (hi.max(axis=0) // gcd + 1) if len(start) else np.ones(len(strides), np.int64)
    weight = np.ones(len(strides), np.int64)
    for i in range(len(strides) - 2, -1, -1):
        weight[i] = weight[i + 1] * radix[i + 1]
    return strides, gcd, weight, radix.astype(np.int64)
