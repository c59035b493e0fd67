"""The L2 cache: one LRU shared by all SMs, over the units the schedules access.

A unit is one tile (or tile row) of one tensor, named by the byte address of its first
element (:mod:`memsim.trace.program`). The cache holds at most ``capacity_bytes`` of
units (the profile's ``l2_bytes``); it is

- **LRU, byte-capacity**: an access moves its unit to the most-recent end; a miss inserts
  it there and then evicts from the least-recent end while the resident bytes exceed the
  capacity (a unit larger than the whole cache evicts everything, itself included). The
  resident set is therefore always the longest most-recent prefix of the recency stack
  that fits, and a larger cache holds a superset of a smaller one's units: misses and
  write-backs never increase with capacity (LRU's inclusion property).
- **write-back, write-allocate**: a store makes its unit resident and dirty without
  reading HBM (stores write whole units); a dirty unit costs one HBM write when evicted or
  when the cache is flushed at the end of the run.
- **cold**: empty at the start of the first kernel, kept across the kernels of one call.

Not modelled: 32 B sectors and 128 B lines (a unit is all-or-nothing), the two partitions
of H100-class parts, set associativity, persisting-access controls.

State, a tuple of numpy arrays mutated in place (see :func:`new_state`):
``table`` int32[2^k] hash slots → entry (−1 empty; linear probing, Fibonacci hashing);
``ent`` int64[E, 8] per entry (one 64-byte row): key, tensor, prev, next (the LRU list,
−1 terminated; ``next`` also chains the free list), dirty, 3 unused; ``size`` float64[E] bytes;
``meta_i`` = [most recent entry, least recent entry, first free entry, hash shift];
``meta_f`` = [resident bytes, capacity bytes].

The functions are compiled without numba's reference counting (``_nrt=False``): passing
arrays to a helper then costs nothing, where reference counting made each call ~20 ns.
Nothing here allocates; the caller owns every array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

KEY, TENSOR, PREV, NEXT, DIRTY = 0, 1, 2, 3, 4
HEAD, TAIL, FREE, SHIFT = 0, 1, 2, 3
USED, CAPACITY = 0, 1
HBM_READ, HBM_WRITE = 2, 3          # columns of the caller's per-tensor statistics
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier

_jit = njit(cache=True, _nrt=False, inline="always")


def new_state(capacity_bytes: float, max_entries: int) -> tuple:
    """An empty cache able to hold ``max_entries`` units at once.

    The hash table has ≥ 1.25 slots per entry: at most 80 % full even if the bound is
    reached (linear probing needs an empty slot to stop), while the units actually resident
    are usually far fewer, so it stays small enough for the CPU's own caches."""
    entries = max(int(max_entries), 1) + 1
    if entries >= 2**31 - 1:
        raise ValueError(f"{entries} L2 entries exceed the int32 hash table")
    bits = max(4, int(np.ceil(np.log2(entries * 1.25))))
    ent = _aligned_rows(entries)
    ent[:, PREV] = -1
    ent[:, NEXT] = np.arange(1, entries + 1)
    ent[-1, NEXT] = -1
    return (np.full(1 << bits, -1, np.int32), ent, np.zeros(entries),
            np.array([-1, -1, 0, 64 - bits], np.int64), np.array([0.0, float(capacity_bytes)]))


def _aligned_rows(entries: int) -> np.ndarray:
    """int64[entries, 8] zeros whose rows start on 64-byte boundaries: one entry, one CPU
    cache line (5 columns are used; a hit touches the entry and its LRU neighbours)."""
    raw = np.zeros(entries * 8 + 8, np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + entries * 8].reshape(entries, 8)


def max_resident_units(unit_bytes: np.ndarray, multiplicity: np.ndarray,
                       capacity_bytes: float) -> int:
    """Upper bound on units resident at once: the most of the smallest units that fit
    (``multiplicity`` bounds how many distinct units of each size exist), plus one."""
    order = np.argsort(unit_bytes, kind="stable")
    size = np.maximum(unit_bytes[order], 1e-9)
    mult = multiplicity[order].astype(np.float64)
    before = np.concatenate([[0.0], np.cumsum(size * mult)[:-1]])
    fit = np.clip(np.floor((capacity_bytes - before) / size), 0, mult)
    return int(min(fit.sum(), 2**40)) + 1


@_jit
def _slot(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@_jit
def find(table, ent, meta_i, key):
    """Entry holding ``key``, or −1."""
    mask = len(table) - 1
    i = _slot(key, meta_i[SHIFT])
    while True:
        e = table[i]
        if e < 0 or ent[e, KEY] == key:
            return e
        i = (i + 1) & mask


@_jit
def _unlink(ent, meta_i, e):
    p, n = ent[e, PREV], ent[e, NEXT]
    if p >= 0:
        ent[p, NEXT] = n
    else:
        meta_i[HEAD] = n
    if n >= 0:
        ent[n, PREV] = p
    else:
        meta_i[TAIL] = p


@_jit
def _push_front(ent, meta_i, e):
    h = meta_i[HEAD]
    ent[e, PREV] = -1
    ent[e, NEXT] = h
    if h >= 0:
        ent[h, PREV] = e
    else:
        meta_i[TAIL] = e
    meta_i[HEAD] = e


@_jit
def _table_remove(table, ent, meta_i, key):
    """Delete ``key`` from the linear-probing table (backward-shift deletion)."""
    mask = len(table) - 1
    shift = meta_i[SHIFT]
    i = _slot(key, shift)
    while ent[table[i], KEY] != key:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        e = table[j]
        if e < 0:
            break
        home = _slot(ent[e, KEY], shift)
        # move e into the hole at i unless its home slot lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
            table[i] = e
            i = j
    table[i] = -1


@_jit
def _evict_tail(table, ent, size, meta_i, meta_f, stats):
    """Evict the least recent unit; a dirty one is written back to HBM."""
    e = meta_i[TAIL]
    _unlink(ent, meta_i, e)
    _table_remove(table, ent, meta_i, ent[e, KEY])
    meta_f[USED] -= size[e]
    if ent[e, DIRTY]:
        stats[ent[e, TENSOR], HBM_WRITE] += size[e]
    ent[e, NEXT] = meta_i[FREE]
    meta_i[FREE] = e


@_jit
def access(table, ent, size, meta_i, meta_f, key, nbytes, tensor, is_write, stats):
    """One access of unit ``key`` of ``nbytes`` bytes of ``tensor``; True on a hit.

    A load miss adds ``nbytes`` to stats[tensor, HBM_READ]; evicted dirty units add their
    bytes to stats[their tensor, HBM_WRITE].
    """
    e = find(table, ent, meta_i, key)
    if e >= 0:
        if e != meta_i[HEAD]:
            _unlink(ent, meta_i, e)
            _push_front(ent, meta_i, e)
        if is_write:
            ent[e, DIRTY] = 1
        return True
    if not is_write:
        stats[tensor, HBM_READ] += nbytes
    if meta_i[FREE] < 0:        # cannot happen with new_state(max_resident_units(...))
        _evict_tail(table, ent, size, meta_i, meta_f, stats)
    e = meta_i[FREE]
    meta_i[FREE] = ent[e, NEXT]
    ent[e, KEY] = key
    ent[e, TENSOR] = tensor
    ent[e, DIRTY] = 1 if is_write else 0
    size[e] = nbytes
    mask = len(table) - 1
    i = _slot(key, meta_i[SHIFT])
    while table[i] >= 0:
        i = (i + 1) & mask
    table[i] = e
    _push_front(ent, meta_i, e)
    meta_f[USED] += nbytes
    while meta_f[USED] > meta_f[CAPACITY] and meta_i[TAIL] >= 0:
        _evict_tail(table, ent, size, meta_i, meta_f, stats)
    return False


@_jit
def flush(table, ent, size, meta_i, meta_f, stats):
    """Write back every dirty unit (end of the run); units stay resident, now clean.
    Returns the bytes written back."""
    e = meta_i[HEAD]
    total = 0.0
    while e >= 0:
        if ent[e, DIRTY]:
            stats[ent[e, TENSOR], HBM_WRITE] += size[e]
            total += size[e]
            ent[e, DIRTY] = 0
        e = ent[e, NEXT]
    return total


@_jit
def resident(table, ent, meta_i, key):
    """Whether unit ``key`` is in the cache (for tests and inspection)."""
    return find(table, ent, meta_i, key) >= 0
