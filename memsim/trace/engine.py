"""The hot loops (numba): blocks placed on SM slots, then their steps replayed through
the L2 in time order.

Phase 1, block scheduler (:func:`schedule_blocks`). The GPU has SMs × R block slots
(R resident blocks per SM, :func:`memsim.trace.timing.resident_blocks_per_sm`); slot s
belongs to SM s mod SMs, so the first wave spreads over all SMs before doubling up.
Blocks start in launch order; each takes the slot that becomes free first (ties: lowest
slot) at the moment the previous block there finished — list scheduling, as the hardware
block dispatcher does. A block's duration is the sum of its steps' durations, which do
not depend on L2 hits (:mod:`memsim.trace.timing`), so placement and start times are
exact and known before any access is replayed. Waves and the tail effect come out of
this.

Phase 2, replay (:func:`replay`). Steps issue their accesses at their start times. The
replay walks time in windows one (longest) step long; in each window it visits the busy
slots in slot order and runs every step of theirs that starts inside the window. The L2
therefore sees concurrent blocks interleaved step by step, in time order up to one step.
That order depends on the schedule only — never on hits or misses — so a larger cache
sees the same access sequence (LRU's inclusion property then holds exactly).

Top-k selection model (DSA's gather): query position p with k selected keys reads keys
0 … p when p + 1 ≤ k, else the k keys ⌊i·(p + 1)/k⌋, i = 0 … k − 1 — spread evenly over
the visible prefix, near and far alike (distinct because (p + 1)/k ≥ 1).

Everything is compiled without numba's reference counting (``_nrt=False``; see l2.py):
nothing is allocated here, the caller passes every array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from memsim.trace.l2 import access
from memsim.trace.program import GATHER, STORE

_jit = njit(cache=True, _nrt=False, nogil=True)  # nogil: Ctrl-C reaches the caller promptly
_inline = njit(cache=True, _nrt=False, inline="always")

# Columns of the per-tensor statistics array.
GLOBAL_READ, GLOBAL_WRITE, HBM_READ, HBM_WRITE = 0, 1, 2, 3


@_inline
def selected_key(p, k, i):
    """The i-th key (0 ≤ i < min(k, p + 1)) selected for query position p (see above)."""
    if p + 1 <= k:
        return i
    return (i * (p + 1)) // k


@_inline
def _before(t1, s1, t2, s2):
    return t1 < t2 or (t1 == t2 and s1 < s2)


@_jit
def _sift_down(ht, hs, n, i):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _before(ht[c + 1], hs[c + 1], ht[c], hs[c]):
            c += 1
        if not _before(ht[c], hs[c], ht[i], hs[i]):
            return
        ht[i], ht[c] = ht[c], ht[i]
        hs[i], hs[c] = hs[c], hs[i]
        i = c


@_jit
def schedule_blocks(template_s, n_blocks, n_slots, blk_slot, blk_start, blk_end,
                    slot_blocks, slot_busy, ht, hs):
    """List-schedule ``n_blocks`` blocks (block L lasts ``template_s[L % T]`` seconds) on
    ``n_slots`` slots; fills the block log and per-slot counts; returns the makespan.
    ``ht``/``hs``: heap arrays of n_slots entries."""
    n_template = len(template_s)
    for s in range(n_slots):       # equal times, increasing slots: already a heap
        ht[s] = 0.0
        hs[s] = s
    makespan = 0.0
    for L in range(n_blocks):
        t = ht[0]
        s = hs[0]
        d = template_s[L % n_template]
        blk_slot[L] = s
        blk_start[L] = t
        blk_end[L] = t + d
        slot_blocks[s] += 1
        slot_busy[s] += d
        if t + d > makespan:
            makespan = t + d
        ht[0] = t + d
        _sift_down(ht, hs, n_slots, 0)
    return makespan


# Columns of the packed per-access rows (one 64-byte cache line per access: the slots
# in flight run different template blocks, so separate arrays cost a line each).
A_KIND, A_TENSOR, A_ADDRESS, A_STEP, A_UNITS, A_USTRIDE, A_GATHER, A_BYTES = range(8)
# Columns of the packed per-run rows.
R_ACC0, R_ACC1, R_COUNT, R_COMPUTE, R_DUR = range(5)


def pack_program(block_run_ptr, run_count, run_acc_ptr, run_compute, run_dur, acc) -> tuple:
    """The program as :func:`replay` reads it: (block_run_ptr, runs int64[R, 5], runs as
    float64 (same memory: column R_DUR holds seconds), accesses int64[A, 8], accesses as
    float64 (column A_BYTES holds bytes), gather_pos, gather_k, gather_first)."""
    runs = np.zeros((len(run_count), 5), np.int64)
    runs[:, R_ACC0] = run_acc_ptr[:-1]
    runs[:, R_ACC1] = run_acc_ptr[1:]
    runs[:, R_COUNT] = run_count
    runs[:, R_COMPUTE] = run_compute
    runs_f = runs.view(np.float64)
    runs_f[:, R_DUR] = run_dur
    accs = np.zeros((len(acc["kind"]), 8), np.int64)
    for col, name in ((A_KIND, "kind"), (A_TENSOR, "tensor"), (A_ADDRESS, "address"),
                      (A_STEP, "step_bytes"), (A_UNITS, "units"),
                      (A_USTRIDE, "unit_stride_bytes")):
        accs[:, col] = acc[name]
    accs[:, A_GATHER] = acc["kind"] == GATHER
    accs_f = accs.view(np.float64)
    accs_f[:, A_BYTES] = acc["unit_bytes"]
    return (np.asarray(block_run_ptr, np.int64), runs, runs_f, accs, accs_f,
            np.asarray(acc["gather_pos"], np.int64), np.asarray(acc["gather_k"], np.int64),
            np.asarray(acc["gather_first"], np.int64))


@_jit
def replay(prog, n_batch, offsets, window_s, slot_ptr, slot_order, blk_start,
           l2_on, l2, stats, rec, rec_n, scratch):
    """Replay every step of the placed blocks through the L2 (phase 2); returns events.

    ``prog``: :func:`pack_program`'s tuple (step durations included).
    ``offsets``: (batch stride, group stride, group divisor) per tensor. Blocks of slot s
    are ``slot_order[slot_ptr[s]:slot_ptr[s+1]]`` in start order. Accumulates into
    ``stats`` [tensor, 4] (global read/write, HBM read/write bytes). ``rec``/``rec_n``:
    event log (time, block, tensor, address, bytes, kind, hit) of capacity len(rec[0])
    (0: not recording). The work of the steps (FLOPs, SRAM bytes, busy time per
    resource) does not depend on the replay; the caller sums it from the program.
    """
    block_run_ptr, runs, runs_f, accs, accs_f, acc_gpos, acc_gk, acc_gfirst = prog
    stride_b, stride_g, gdiv = offsets
    table, ent, size, meta_i, meta_f = l2
    rec_t, rec_b, rec_x, rec_a, rec_y, rec_k, rec_h = rec
    off, s_pos, s_run, s_end, s_it, s_time, active = scratch
    rec_cap = len(rec_t)
    recording = rec_cap > 0
    n_tensors = len(stride_b)
    n_template = len(block_run_ptr) - 1
    n_slots = len(slot_ptr) - 1
    events = 0

    n_active = 0
    for s in range(n_slots):
        s_pos[s] = slot_ptr[s] - 1
        s_run[s] = 0
        s_end[s] = 0            # no block loaded yet: the loop below loads the first
        if slot_ptr[s + 1] > slot_ptr[s]:
            active[n_active] = s
            n_active += 1
    window_end = 0.0
    while n_active > 0:
        window_end += window_s
        kept = 0
        for i in range(n_active):
            s = active[i]
            alive = True
            t = s_time[s]
            r = s_run[s]
            it = s_it[s]
            while True:
                if r == s_end[s]:                   # block done (or none yet): next one
                    s_pos[s] += 1
                    if s_pos[s] == slot_ptr[s + 1]:
                        alive = False
                        break
                    L = slot_order[s_pos[s]]
                    tb = L % n_template
                    inst = L // n_template
                    b = inst % n_batch
                    g = inst // n_batch
                    for x in range(n_tensors):
                        off[s, x] = b * stride_b[x] + (g // gdiv[x]) * stride_g[x]
                    r = block_run_ptr[tb]
                    s_end[s] = block_run_ptr[tb + 1]
                    it = 0
                    t = blk_start[L]
                    continue
                if t >= window_end:
                    break
                for a in range(runs[r, R_ACC0], runs[r, R_ACC1]):
                    x = accs[a, A_TENSOR]
                    kind = accs[a, A_KIND]
                    nbytes = accs_f[a, A_BYTES]
                    units = accs[a, A_UNITS]
                    ustride = accs[a, A_USTRIDE]
                    gathered = accs[a, A_GATHER] != 0
                    is_write = kind == STORE
                    base = accs[a, A_ADDRESS] + off[s, x]
                    if not gathered:
                        base += it * accs[a, A_STEP]
                    # global (and, without the L2, HBM) bytes: once per access, not per unit
                    stats[x, GLOBAL_WRITE if is_write else GLOBAL_READ] += nbytes * units
                    events += units
                    if not l2_on:
                        stats[x, HBM_WRITE if is_write else HBM_READ] += nbytes * units
                        if not recording:
                            continue
                    for u in range(units):
                        if gathered:
                            key = selected_key(acc_gpos[a], acc_gk[a],
                                               acc_gfirst[a] + it * units + u)
                            addr = base + key * ustride
                        else:
                            addr = base + u * ustride
                        hit = False
                        if l2_on:
                            hit = access(table, ent, size, meta_i, meta_f, addr, nbytes, x,
                                         is_write, stats)
                        if recording and rec_n[0] < rec_cap:
                            j = rec_n[0]
                            rec_t[j] = t
                            rec_b[j] = slot_order[s_pos[s]]
                            rec_x[j] = x
                            rec_a[j] = addr
                            rec_y[j] = nbytes
                            rec_k[j] = kind
                            rec_h[j] = hit
                            rec_n[0] = j + 1
                if runs[r, R_COMPUTE]:
                    events += 1
                t += runs_f[r, R_DUR]
                it += 1
                if it == runs[r, R_COUNT]:
                    r += 1
                    it = 0
            s_time[s] = t
            s_run[s] = r
            s_it[s] = it
            if alive:
                active[kept] = s
                kept += 1
        n_active = kept
    return events


def new_scratch(n_slots: int, n_tensors: int) -> tuple:
    """Working arrays of :func:`replay`: per-slot address offsets, position in the slot's
    block list, run, end run, iteration, time of the next step, and the busy-slot list."""
    i64 = np.int64
    return (np.zeros((n_slots, n_tensors), i64), np.zeros(n_slots, i64),
            np.zeros(n_slots, i64), np.zeros(n_slots, i64), np.zeros(n_slots, i64),
            np.zeros(n_slots), np.zeros(n_slots, i64))


def new_record(capacity: int) -> tuple:
    """An event log able to hold ``capacity`` events (0: recording off)."""
    return (np.zeros(capacity), np.zeros(capacity, np.int64), np.zeros(capacity, np.int16),
            np.zeros(capacity, np.int64), np.zeros(capacity, np.float32),
            np.zeros(capacity, np.int8), np.zeros(capacity, np.bool_))
