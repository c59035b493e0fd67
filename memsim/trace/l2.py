"""The L2 cache: one LRU shared by all SMs, over the units the schedules access.

A unit is one tile (or tile row) of one tensor, named by the byte address of its first
element (:mod:`memsim.trace.program`) or, in the engine, by its dense integer id
(:mod:`memsim.trace.unit_ids`: a one-to-one map of those addresses). The cache holds at
most ``capacity_bytes`` of units (the profile's ``l2_bytes``); it is

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

Not modelled here: 32 B sectors and 128 B lines (a unit is all-or-nothing), set
associativity (:mod:`memsim.trace.l2_lines` models them: ``l2_model="lines"``),
persisting-access controls. The two partitions of H100-class parts change where a hit is
served, not whether a re-read reaches DRAM, so the capacity is the whole L2
(:attr:`memsim.hardware.GPU.l2_dram_capacity_bytes` gives the source).

State, a tuple of numpy arrays mutated in place (see :func:`new_state`), E entries:

- ``table`` int32[2^k]: slot → entry (−1 empty), keys placed by Fibonacci hashing with
  linear probing. When the keys are dense ids (:mod:`memsim.trace.unit_ids`) and few
  enough (``direct``), there is no table: the entry of a key is the key itself, and
  the entry arrays have one row per id.
- ``key`` int64[E], ``tensor`` int32[E], ``dirty`` uint8[E], ``size`` float64[E]: the
  unit each entry holds; ``free`` int32[E]: a stack of the free entries (hashed only).
- Recency, a lazy-deletion queue: every access appends its entry to ``queue`` int32[Q]
  and records the position in ``qpos`` int32[E] (−1: not resident). A queue record is
  live iff its entry's ``qpos`` still points at it; live records are the resident units
  from least to most recent, so the LRU unit is the first live record from ``QTAIL``. A
  hit is two stores (no list to relink); when the queue is full its live records are
  compacted to the front (at most E of Q ≥ 4E: amortised under 1.5 moves per access).
- ``meta_i`` = [queue head, queue tail, free entries, hash multiplier, hash shift, direct];
  ``meta_f`` = [resident bytes, capacity bytes].

The functions are compiled without numba's reference counting (``_nrt=False``,
:func:`memsim.trace.jit_setup.jit`): passing
arrays to a helper then costs nothing, where reference counting made each call ~20 ns.
Nothing here allocates; the caller owns every array.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.jit_setup import jit

QHEAD, QTAIL, NFREE, MULT, SHIFT, DIRECT = range(6)
USED, CAPACITY = 0, 1
HBM_READ, HBM_WRITE = 2, 3          # columns of the caller's per-tensor statistics
_GOLDEN = 0x9E3779B97F4A7C15        # Fibonacci hashing multiplier
#: Dense keys are their own entries when there are at most max(this, 8 × entries).
DIRECT_MAX_IDS = 1 << 21

_jit = jit(inline="always")


def new_state(capacity_bytes: float, max_entries: int, key_limit: int | None = None, *,
              queue_slots: int | None = None) -> tuple:
    """An empty cache able to hold ``max_entries`` units at once; ``key_limit``: keys are
    known to lie in [0, key_limit) (dense ids), else any int64. ``queue_slots``: length
    of the recency queue (default max(4 E, 4096); more than E).

    Dense keys are their own entries when there are at most max(2^21, 8 E) of them (17 B
    per id). Otherwise the hash table has ≥ 1.25 slots per entry: at most 80 % full even
    if the bound is reached (linear probing needs an empty slot to stop), while the units
    actually resident are usually far fewer, so it stays small enough for the CPU's own
    caches."""
    entries = max(int(max_entries), 1) + 1
    if entries >= 2**31 - 1:
        raise ValueError(f"{entries} L2 entries exceed the int32 hash table")
    queue = max(4 * entries, 1 << 12) if queue_slots is None else int(queue_slots)
    if queue <= entries:
        raise ValueError(f"queue_slots={queue} must exceed the {entries} entries")
    direct = key_limit is not None and key_limit <= max(DIRECT_MAX_IDS, 8 * entries)
    bits = max(4, int(np.ceil(np.log2(entries * 1.25))))
    rows = int(key_limit) if direct else entries
    i32 = np.int32
    return (np.full(1 if direct else 1 << bits, -1, i32),
            np.zeros(1 if direct else rows, np.int64), np.full(rows, -1, i32),
            np.zeros(rows, i32), np.zeros(rows, np.uint8), np.zeros(rows),
            np.zeros(queue, i32), np.arange(entries - 1, -1, -1, dtype=i32),
            np.array([0, 0, entries, _GOLDEN - (1 << 64), 64 - bits, direct], np.int64),
            np.array([0.0, float(capacity_bytes)]))


def resident_bytes(state: tuple) -> float:
    """Bytes of the units resident now."""
    return float(state[-1][USED])


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
def _slot(key, meta_i):
    return np.int64((np.uint64(key) * np.uint64(meta_i[MULT])) >> np.uint64(meta_i[SHIFT]))


@_jit
def _find_slot(table, keys, meta_i, key):
    """Slot of the hash table holding ``key``, or the empty slot where it would go."""
    mask = len(table) - 1
    i = _slot(key, meta_i)
    while True:
        e = table[i]
        if e < 0 or keys[e] == key:
            return i
        i = (i + 1) & mask


@_jit
def entry(l2, key):
    """The entry holding unit ``key``, or −1 when it is not resident."""
    table, keys, qpos, meta_i = l2[0], l2[1], l2[2], l2[8]
    if meta_i[DIRECT]:
        return key if qpos[key] >= 0 else -1
    return table[_find_slot(table, keys, meta_i, key)]


@_jit
def _compact(queue, qpos, tail):
    """Move the queue's live records from ``tail`` on to its front, in order; returns the
    new head (the tail is then 0)."""
    h = 0
    for m in range(tail, len(queue)):
        v = queue[m]
        if qpos[v] == m:
            queue[h] = v
            qpos[v] = h
            h += 1
    return h


@_jit
def _touch(queue, qpos, meta_i, e):
    """Make entry ``e`` the most recent: append it to the queue (compacting it if full)."""
    h = meta_i[QHEAD]
    if h == len(queue):
        h = _compact(queue, qpos, meta_i[QTAIL])
        meta_i[QTAIL] = 0
    queue[h] = e
    qpos[e] = h
    meta_i[QHEAD] = h + 1


@_jit
def _table_remove(table, keys, meta_i, i):
    """Empty slot ``i`` and shift later keys of its probe run back into the hole
    (backward-shift deletion)."""
    mask = len(table) - 1
    j = i
    while True:
        j = (j + 1) & mask
        e = table[j]
        if e < 0:
            break
        home = _slot(keys[e], meta_i)
        # move e into the hole at i unless its home slot lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
            table[i] = e
            i = j
    table[i] = -1


@_jit
def _evict_lru(l2, stats):
    """Evict the least recent unit; a dirty one is written back to HBM."""
    table, keys, qpos, tensor, dirty, size, queue, free, meta_i, meta_f = l2
    while True:                      # skip the stale records (entries accessed since)
        m = meta_i[QTAIL]
        e = queue[m]
        meta_i[QTAIL] = m + 1
        if qpos[e] == m:
            break
    qpos[e] = -1
    meta_f[USED] -= size[e]
    if dirty[e]:
        stats[tensor[e], HBM_WRITE] += size[e]
    if not meta_i[DIRECT]:
        _table_remove(table, keys, meta_i, _find_slot(table, keys, meta_i, keys[e]))
        free[meta_i[NFREE]] = e
        meta_i[NFREE] += 1


@_jit
def hit(l2, e, is_write):
    """A hit on entry ``e`` (≥ 0, from :func:`entry`): the most recent now, dirty if
    written."""
    qpos, dirty, queue, meta_i = l2[2], l2[4], l2[6], l2[8]
    if is_write:
        dirty[e] = 1
    _touch(queue, qpos, meta_i, e)


@_jit
def miss(l2, key, nbytes, x, is_write, stats):
    """A miss on unit ``key`` (not resident) of ``nbytes`` bytes of tensor ``x``: a load
    adds ``nbytes`` to stats[x, HBM_READ]; the unit becomes the most recent; the least
    recent ones are evicted while the resident bytes exceed the capacity, dirty ones
    adding their bytes to stats[their tensor, HBM_WRITE]."""
    table, keys, qpos, tensor, dirty, size, queue, free, meta_i, meta_f = l2
    if not is_write:
        stats[x, HBM_READ] += nbytes
    if meta_i[DIRECT]:
        e = key
    else:
        if meta_i[NFREE] == 0:   # cannot happen with new_state(max_resident_units(...))
            _evict_lru(l2, stats)
        meta_i[NFREE] -= 1
        e = free[meta_i[NFREE]]
        keys[e] = key
        table[_find_slot(table, keys, meta_i, key)] = e
    tensor[e] = x
    dirty[e] = 1 if is_write else 0
    size[e] = nbytes
    _touch(queue, qpos, meta_i, e)
    meta_f[USED] += nbytes
    while meta_f[USED] > meta_f[CAPACITY] and meta_i[QTAIL] < meta_i[QHEAD]:
        _evict_lru(l2, stats)


@_jit
def access(l2, key, nbytes, x, is_write, stats):
    """One access of unit ``key`` of ``nbytes`` bytes of tensor ``x``; True on a hit
    (:func:`hit`, :func:`miss`)."""
    e = entry(l2, key)
    if e >= 0:
        hit(l2, e, is_write)
        return True
    miss(l2, key, nbytes, x, is_write, stats)
    return False


@jit(nogil=True)   # called once per buffer, not inlined: compiled on its own it runs faster
def access_direct_run(l2, stats, keys, acc, n, unit_bytes, unit_tensor, column, hits_out,
                      out_at):
    """:func:`access` of the first ``n`` units ``keys`` in order, in a cache of dense keys
    (``direct``: a key is its own entry). Unit j is a store iff ``acc[j]`` < 0; with
    b = acc[j] (~acc[j] for a store) its bytes are ``unit_bytes[b, column[0]]`` and its
    tensor ``unit_tensor[b, column[1]]`` (the caller's 2-D tables, read in place). When
    ``out_at`` ≥ 0, whether unit j hit goes to ``hits_out[out_at + j]``.

    The same updates, in the same order, as :func:`hit` and :func:`miss` one unit at a
    time (statistics and resident bytes bit-identical), with the queue's head and tail
    and the resident bytes held in local variables over the run instead of loaded from and
    stored to ``meta_i``/``meta_f`` per unit (a dependency chain through memory on every
    access). Compiled on its own, not inlined into the engine's drain (inlined, with
    column views for the tables, hit-heavy streams ran ~15 % slower). Speed: the
    measurement docs/DESIGN.md §"The L2 model" (Trace, tiles) cites, FA-2 causal N 131072
    h100-sxm, 2026-12-02, a 2-core machine at load 5–19, four runs of main and of this
    loop interleaved: the L2's CPU time per unit, medians 29.8 → 27.1 ns, the ranges
    overlapping (29.4–34.6 against 21.9–32.4 ns), so the gain is not resolved there."""
    qpos, tensor, dirty, size, queue, meta_i, meta_f = (l2[2], l2[3], l2[4], l2[5], l2[6],
                                                         l2[8], l2[9])
    head, tail = meta_i[QHEAD], meta_i[QTAIL]
    used, capacity = meta_f[USED], meta_f[CAPACITY]
    for j in range(n):
        a = acc[j]
        key = keys[j]
        if head == len(queue):
            head = _compact(queue, qpos, tail)
            tail = 0
        hits = qpos[key] >= 0
        queue[head] = key                          # the most recent now (_touch)
        qpos[key] = head
        head += 1
        if hits:
            if a < 0:
                dirty[key] = 1
        else:                                      # (miss)
            b = ~a if a < 0 else a
            x = unit_tensor[b, column[1]]
            nbytes = unit_bytes[b, column[0]]
            if a >= 0:
                stats[x, HBM_READ] += nbytes
            tensor[key] = x
            dirty[key] = 1 if a < 0 else 0
            size[key] = nbytes
            used += nbytes
            while used > capacity and tail < head:  # evict the least recent (_evict_lru)
                e = queue[tail]
                while qpos[e] != tail:             # a stale record: accessed since
                    tail += 1
                    e = queue[tail]
                tail += 1
                qpos[e] = -1
                used -= size[e]
                if dirty[e]:
                    stats[tensor[e], HBM_WRITE] += size[e]
        if out_at >= 0:
            hits_out[out_at + j] = hits
    meta_i[QHEAD], meta_i[QTAIL] = head, tail
    meta_f[USED] = used


@_jit
def flush(l2, stats):
    """Write back every dirty unit (end of the run), most recent first; units stay
    resident, now clean. Returns the bytes written back."""
    qpos, tensor, dirty, size, queue, meta_i = l2[2], l2[3], l2[4], l2[5], l2[6], l2[8]
    total = 0.0
    for m in range(meta_i[QHEAD] - 1, meta_i[QTAIL] - 1, -1):
        e = queue[m]
        if qpos[e] == m and dirty[e]:
            stats[tensor[e], HBM_WRITE] += size[e]
            total += size[e]
            dirty[e] = 0
    return total


@_jit
def resident(l2, key):
    """Whether unit ``key`` is in the cache (for tests and inspection)."""
    return entry(l2, key) >= 0
