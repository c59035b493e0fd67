"""The line-level L2 (``simulate(..., l2_model="lines")``): sectors, lines, sets and ways.

The tile L2 (:mod:`memsim.trace.l2`) keeps whole tile units; this one sees the bytes a
tile really covers. The engine walks the same schedule (blocks in launch order, tiles of
the same :class:`~memsim.tiling.Tiling`) and buffers the same unit ids
(:mod:`memsim.trace.engine`); :func:`drain` expands each unit into the 32 B sectors of the
128 B lines it touches and passes them through a set-associative cache:

- **Geometry of a unit** (:func:`unit_geometry`): a tile is a box of the tensor's
  row-major index space (:mod:`memsim.trace.layout`): along each axis it spans the step
  at which that kernel's accesses of the tensor move along the axis (the gcd of their
  starts, iteration steps, unit strides, batch and head-group strides: Br rows, Bc keys,
  hpb heads, Dv of an MLA latent row) or, on an axis they never move along, the whole
  axis (D), clipped at the tensor's end (ragged tiles); where that does not multiply out
  to the unit's bytes, the innermost extent is what the bytes leave (MLA's V: the first
  Dv elements of a latent row; DSA's last slice of a top-k row). The box becomes contiguous
  segments — the inner axes merged while they are whole — repeated over at most three
  outer axes (rows of hpb·D·e bytes every H·D·e bytes for a Q tile; rows of c keys for a
  score tile). A segment that starts or ends inside a 32 B sector touches the whole
  sector: rows that are not multiples of 32 B (D·e = 72 B, fp32 logsumexp rows of
  5 rows …) waste the rest of the sector, and consecutive rows share sectors.
- **Cache**: ``l2_bytes / (l2_line_bytes · l2_ways)`` sets of ``l2_ways`` lines. The set
  of a line is its 128 B line address modulo the sets (``l2_set_hash = "modulo"``) or a
  multiplicative (Fibonacci) hash of it modulo the sets (``"hashed"``: NVIDIA's slice and
  set hash is undocumented; any hash that spreads power-of-two strides is the model).
  Replacement: LRU within a set (undocumented too; the profiles' sources say so).
- **Sector-granular fills** (NVIDIA, Greg Smith, forums.developer.nvidia.com/t/312884: a
  line is 4 × 32 B sectors; Nsight Compute counts DRAM traffic in sectors): a load that
  misses a sector reads that sector (32 B) from DRAM, not the line; a miss on the line
  takes the set's least recently used way, writing back its dirty sectors.
- **Write-back, write-allocate**: a store makes its sectors valid and dirty without a
  DRAM read (partial sectors included: L2 keeps byte masks). Dirty sectors reach DRAM
  when their line is evicted, or at :func:`flush` (the end of the call, or before a
  cold kernel): outside the kernel's window, as Nsight Compute's per-kernel
  ``dram__bytes_write.sum`` sees it.
- **Partitions** (``l2_partitions``, H100: 2 × 25 MB): not simulated. Data read by SMs
  of both halves is replicated in both while it fits one section and served across
  beyond (RRZE gpu-benches, see :attr:`memsim.hardware.GPU.l2_dram_capacity_bytes`):
  that changes where a hit is served and its bandwidth, not whether a re-read reaches
  DRAM, so the sets span the whole ``l2_bytes`` as one cache.

State (numpy arrays, mutated in place): ``entry`` int64[sets · ways], each set's ways in
recency order (most recent first; a hit moves its way to the front, a miss drops the
last), one int64 per way packing the line address (bits 0–39), the valid and dirty
sector masks (40–47, 48–55) and the tensor the line belongs to (56–62; tensors are
256 B aligned, so a line holds one), −1 for an empty way — a set is one 128 B stretch of
memory, so a lookup costs one CPU cache miss; ``meta`` int64 [sets, ways, hashed,
line bytes, sector bytes].

Speed: a few million sector accesses per second (``memsim trace --l2-model lines``
reports its events/s); the tile L2 stays the default.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.engine import A_TENSOR
from memsim.trace.jit_setup import jit
from memsim.trace.l2 import HBM_READ, HBM_WRITE
from memsim.trace.layout import Layout
from memsim.trace.program import GATHER, KernelProgram
from memsim.trace.unit_ids import UnitIds, _split

M_SETS, M_WAYS, M_HASHED, M_LINE, M_SECTOR = range(5)
#: Geometry columns per access: segment bytes, then (count, stride bytes) × 3 levels.
G_SEG, G_C1, G_S1, G_C2, G_S2, G_C3, G_S3 = range(7)
MAX_AXES = 8
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_jit = jit(nogil=True)
_inline = jit(inline="always")


def cache_shape(capacity_bytes: float, line_bytes: int, sector_bytes: int,
                ways: int) -> tuple[int, int]:
    """(sets, ways) of a cache of ``capacity_bytes``: ⌊capacity / (line · ways)⌋ sets (at
    least one; a capacity under one set's bytes keeps fewer ways)."""
    if line_bytes % sector_bytes or not 1 <= line_bytes // sector_bytes <= 8:
        raise ValueError(f"line {line_bytes} B must hold 1-8 sectors of {sector_bytes} B")
    lines = int(capacity_bytes // line_bytes)
    if lines < ways:
        return (1, max(lines, 1))
    return (lines // ways, ways)


def new_state(capacity_bytes: float, line_bytes: int, sector_bytes: int, ways: int,
              hashed: bool) -> tuple:
    """An empty line cache (see module docstring)."""
    sets, ways = cache_shape(capacity_bytes, line_bytes, sector_bytes, ways)
    return (np.full(sets * ways, -1, np.int64),
            np.array([sets, ways, int(hashed), line_bytes, sector_bytes], np.int64))


def state_for_gpu(gpu, capacity_bytes: float) -> tuple:
    """:func:`new_state` from the profile's line, sector, ways and set hash."""
    s = gpu.spec
    missing = [f for f in ("l2_line_bytes", "l2_sector_bytes", "l2_ways", "l2_set_hash")
               if getattr(s, f) is None]
    if missing:
        from memsim.errors import InputError

        raise InputError("l2_model", "lines", f"needs {', '.join(missing)} in the profile of "
                         f"{gpu.name}")
    return new_state(capacity_bytes, s.l2_line_bytes, s.l2_sector_bytes, s.l2_ways,
                     s.l2_set_hash == "hashed")


# ---------------------------------------------------------------- unit geometry (numpy)

def _axis_gcds(tensor, rows: list[np.ndarray]) -> np.ndarray:
    """gcd per axis (in elements) of the element offsets in ``rows`` (each int64[n])."""
    strides = np.array(tensor.strides_elems, np.int64)
    g = np.zeros(len(strides), np.int64)
    for v in rows:
        if len(v):
            g = np.gcd(g, np.gcd.reduce(np.abs(_split(v, strides)), axis=0))
    return g


def _elements(values: np.ndarray, elem_bytes: float) -> np.ndarray | None:
    v = np.asarray(values, np.float64) / elem_bytes
    return v.astype(np.int64) if np.all(v == np.round(v)) else None


def unit_geometry(layout: Layout, k: KernelProgram, batch: int, groups: int
                  ) -> tuple[np.ndarray, int]:
    """Per access of kernel ``k`` (int64[A, 7], columns G_*): the contiguous segment of a
    unit and the (count, stride) of up to three outer axes (see module docstring); and
    how many accesses fell back to one contiguous segment of the unit's bytes (a box
    that does not multiply out to the unit's bytes, sub-byte offsets, > 3 outer axes)."""
    acc = k.acc
    n = len(acc["kind"])
    geom = np.zeros((n, 7), np.int64)
    geom[:, [G_C1, G_C2, G_C3]] = 1
    geom[:, G_SEG] = np.ceil(acc["unit_bytes"]).astype(np.int64)
    count = np.repeat(k.run_count, np.diff(k.run_acc_ptr))
    fallbacks = 0
    for x, t in enumerate(layout.tensors):
        m = np.flatnonzero(acc["tensor"] == x)
        if not len(m):
            continue
        e = t.elem_bytes
        gathered = acc["kind"][m] == GATHER
        start = _elements(acc["address"][m] - t.base_address, e)
        step = _elements(np.where((count[m] > 1) & ~gathered, acc["step_bytes"][m], 0), e)
        ustride = _elements(np.where(acc["units"][m] > 1, acc["unit_stride_bytes"][m], 0), e)
        outer = _elements(np.array([t.batch_stride_bytes if batch > 1 else 0,
                                    t.group_stride_bytes if groups > 1 else 0]), e)
        if start is None or step is None or ustride is None or outer is None:
            fallbacks += len(m)
            continue
        shape = np.array(t.shape, np.int64)
        gcd = _axis_gcds(t, [start, step, ustride, outer])
        c0 = _split(start, np.array(t.strides_elems, np.int64))
        ext = np.where(gcd > 0, np.minimum(gcd, shape - c0), shape)
        elems = acc["unit_bytes"][m] / e
        # a partial row (MLA's V: the first Dv of a latent row that no access of this
        # kernel moves along): the innermost extent is what the unit's bytes leave
        outer_elems = np.prod(ext[:, :-1], axis=1).astype(np.float64)
        inner = elems / outer_elems
        solve = (np.prod(ext, axis=1) != elems) & (inner == np.round(inner)) & (
            c0[:, -1] + inner <= shape[-1])
        ext[solve, -1] = inner[solve].astype(np.int64)
        ok = np.prod(ext, axis=1).astype(np.float64) == elems
        stride_bytes = np.array(t.strides_elems, np.float64) * e
        for row, a in enumerate(m):
            if not ok[row]:
                fallbacks += 1
                continue
            ex = ext[row]
            i = len(shape) - 1
            seg = int(ex[i])
            while i > 0 and ex[i] == shape[i]:
                i -= 1
                seg *= int(ex[i])
            levels = [(int(ex[j]), stride_bytes[j]) for j in range(i - 1, -1, -1) if ex[j] > 1]
            seg_bytes = seg * e
            if len(levels) > 3 or seg_bytes != int(seg_bytes) or any(
                    s != int(s) for _, s in levels):
                fallbacks += 1
                continue
            geom[a, G_SEG] = int(seg_bytes)
            for lv, (c, s) in enumerate(levels):
                geom[a, G_C1 + 2 * lv] = c
                geom[a, G_S1 + 2 * lv] = int(s)
    return geom, fallbacks


def address_tables(ids: UnitIds) -> tuple:
    """Per tensor (first id, base address) and per axis (digit weight, radix, bytes per
    digit), padded to MAX_AXES axes: what :func:`drain` needs to turn a unit id back into
    its byte address (:meth:`UnitIds.addresses`, in numba)."""
    n = len(ids.tensors)
    first = np.zeros(n, np.int64)
    base = np.zeros(n, np.int64)
    weight = np.ones((n, MAX_AXES), np.int64)
    radix = np.ones((n, MAX_AXES), np.int64)
    digit_bytes = np.zeros((n, MAX_AXES), np.int64)
    for x, t in enumerate(ids.tensors):
        k = len(t.weight)
        if k > MAX_AXES:
            raise ValueError(f"tensor {x} has {k} axes; the line model takes {MAX_AXES}")
        first[x], base[x] = t.first_id, t.base_address
        weight[x, :k], radix[x, :k] = t.weight, t.radix
        digit_bytes[x, :k] = t.gcd * t.stride_bytes
    return first, base, weight, radix, digit_bytes


def kernel_state(cache: tuple, geometry: np.ndarray, tables: tuple) -> tuple:
    """What :func:`drain` takes as its ``l2`` for one kernel: the cache, the kernel's unit
    geometry and the id → address tables."""
    return cache + (geometry,) + tuple(tables)


# ---------------------------------------------------------------- the hot loop (numba)

@_inline
def _popcount(v):
    c = 0
    while v:
        c += v & 1
        v >>= 1
    return c


@_inline
def _set_of(line, meta):
    sets = meta[M_SETS]
    if meta[M_HASHED]:             # the top 32 bits of a Fibonacci hash, scaled to sets
        h = (np.uint64(line) * _GOLDEN) >> np.uint64(32)
        return np.int64((h * np.uint64(sets)) >> np.uint64(32))
    return line % sets


def set_index(lines: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """The set of each line address in ``lines`` (int64 array of line numbers, address //
    line bytes) in the cache ``meta`` (:func:`new_state`'s second array): the hot loop's
    own index (:func:`_set_of`), run by numpy over the whole array."""
    return np.asarray(_set_of.py_func(np.asarray(lines, dtype=np.int64), meta),
                      dtype=np.int64)


VALID_SHIFT, DIRTY_SHIFT, OWNER_SHIFT = 40, 48, 56   # the line address: bits 0-39
_LINE_MASK = (1 << VALID_SHIFT) - 1


@_jit
def line_access(st, line, mask, is_write, x, stats):
    """One access of the sectors ``mask`` of line ``line`` (tensor ``x``); True when every
    sector hit. Missing sectors of a load add 32 B each to stats[x, HBM_READ]; an evicted
    line's dirty sectors add to stats[its tensor, HBM_WRITE]."""
    entry, meta = st[0], st[1]
    ways = meta[M_WAYS]
    sector = meta[M_SECTOR]
    base = _set_of(line, meta) * ways
    hit_way = base + ways - 1               # a miss drops the least recent way
    e = entry[hit_way]
    found = False
    for w in range(base, base + ways):
        v = entry[w]
        if v < 0:
            hit_way = w                     # empty ways come last
            e = v
            break
        if (v & _LINE_MASK) == line:
            hit_way = w
            e = v
            found = True
            break
    if found:
        valid = (e >> VALID_SHIFT) & 0xFF
        dirty = (e >> DIRTY_SHIFT) & 0xFF
        missing = mask & ~valid
        if not is_write and missing:
            stats[x, HBM_READ] += _popcount(missing) * sector
        valid |= mask
        if is_write:
            dirty |= mask
        new = (e & _LINE_MASK) | (valid << VALID_SHIFT) | (dirty << DIRTY_SHIFT) | (
            ((e >> OWNER_SHIFT) & 0x7F) << OWNER_SHIFT)
    else:
        if e >= 0:                          # evict the least recent line
            dirty = (e >> DIRTY_SHIFT) & 0xFF
            if dirty:
                stats[(e >> OWNER_SHIFT) & 0x7F, HBM_WRITE] += _popcount(dirty) * sector
        if not is_write:
            stats[x, HBM_READ] += _popcount(mask) * sector
        missing = mask
        new = line | (mask << VALID_SHIFT) | ((mask if is_write else 0) << DIRTY_SHIFT) | (
            np.int64(x) << OWNER_SHIFT)
    for w in range(hit_way, base, -1):      # move to the front
        entry[w] = entry[w - 1]
    entry[base] = new
    return found and missing == 0


@_inline
def _segment(st, start, nbytes, is_write, x, stats):
    """The sectors of bytes [start, start + nbytes), line by line; True if all hit."""
    meta = st[1]
    lb, sb = meta[M_LINE], meta[M_SECTOR]
    first = start // sb
    last = (start + nbytes - 1) // sb
    per_line = lb // sb
    all_hit = True
    s = first
    while s <= last:
        line = s // per_line
        end = min(last, (line + 1) * per_line - 1)
        mask = 0
        for q in range(s - line * per_line, end - line * per_line + 1):
            mask |= 1 << q
        if not line_access(st, line, mask, is_write, x, stats):
            all_hit = False
        s = end + 1
    return all_hit


@_inline
def _address(st, x, key):
    first, base, weight, radix, digit_bytes = st[3], st[4], st[5], st[6], st[7]
    rel = key - first[x]
    addr = base[x]
    for i in range(weight.shape[1]):
        addr += ((rel // weight[x, i]) % radix[x, i]) * digit_bytes[x, i]
    return addr


@_jit
def drain(prog, st, stats, buf_key, buf_acc, n, rec_h, rec_at):
    """:func:`memsim.trace.engine.drain` for the line cache: each buffered unit (id, access
    index, negative for a store) expanded to its segments' sectors (module docstring)."""
    accs = prog[2]
    geom = st[2]
    for j in range(n):
        a = buf_acc[j]
        is_write = a < 0
        b = ~a if is_write else a
        x = accs[b, A_TENSOR]
        addr = _address(st, x, buf_key[j])
        seg = geom[b, G_SEG]
        all_hit = True
        for l3 in range(geom[b, G_C3]):
            for l2 in range(geom[b, G_C2]):
                for l1 in range(geom[b, G_C1]):
                    s = addr + l1 * geom[b, G_S1] + l2 * geom[b, G_S2] + l3 * geom[b, G_S3]
                    if not _segment(st, s, seg, is_write, x, stats):
                        all_hit = False
        if rec_at >= 0:
            rec_h[rec_at + j] = all_hit


@_jit
def flush(st, stats):
    """Write back every dirty sector (end of the run); lines stay resident, clean.
    Returns the bytes written back."""
    entry, meta = st[0], st[1]
    total = 0.0
    for w in range(len(entry)):
        e = entry[w]
        if e < 0:
            continue
        dirty = (e >> DIRTY_SHIFT) & 0xFF
        if dirty:
            nbytes = _popcount(dirty) * meta[M_SECTOR]
            stats[(e >> OWNER_SHIFT) & 0x7F, HBM_WRITE] += nbytes
            total += nbytes
            entry[w] = e & ~(np.int64(0xFF) << DIRTY_SHIFT)
    return total


__all__ = ["cache_shape", "drain", "flush", "kernel_state", "line_access", "new_state",
           "state_for_gpu", "unit_geometry"]
