"""The hot loops (numba): blocks placed on SM slots, then their steps replayed through
the L2 in time order.

Phase 1, block scheduler (:func:`schedule_blocks`). The GPU has SMs × R block slots
(R resident blocks per SM, :func:`memsim.trace.timing.resident_blocks_per_sm`); slot s
belongs to SM s mod SMs, so the first wave spreads over all SMs before doubling up.
Blocks start in launch order; each takes the slot that becomes free first at the moment
the previous block there finished — list scheduling, as the hardware block dispatcher
does. A block's duration is the sum of its steps' durations, which do not depend on L2
hits (:mod:`memsim.trace.timing`), so placement and start times are exact and known
before any access is replayed. Waves and the tail effect come out of this.

Time is an integer count of ticks (:data:`memsim.trace.timing.TICKS_PER_CYCLE` per cycle
of the profile's SM clock), in phase 1 and phase 2 alike: sums of durations are exact, so
blocks with the same steps end at the same tick whatever order their durations were
added in, and a tie between slots is a real tie, not the last bits of a running float
sum. Ties go to the lowest slot: at a tick where several slots free up, the block goes to
the one of lowest residency rank (s div SMs), then lowest SM. Where an SM's slots free up
at the same tick (equal-block waves) this puts a block on an SM with a free first-rank
slot before one running more blocks, as the dispatcher places a block on the SM with the
most free resources (Gilman, Ogden, Guo and Walls, "Demystifying the placement policies
of the NVIDIA GPU thread block scheduler for concurrent kernels", SIGMETRICS Perform.
Eval. Rev. 48(3), 2020, measured on Pascal, Volta and Turing); the paper is claimed for
that case only: where slots free up at different ticks, the earliest-free slot takes the
block whatever its SM's load, a choice of this model. Among equals the SM order is an
arbitrary but fixed choice (the hardware's is not documented).

Phase 2, replay (:func:`replay`). Steps issue their accesses at their start times. The
replay walks time in windows one (longest) step long; in each window it visits the busy
slots in slot order and runs every step of theirs that starts inside the window. The L2
therefore sees concurrent blocks interleaved step by step, in time order up to one step.
That order depends on the schedule only — never on hits or misses — so a larger cache
sees the same access sequence (LRU's inclusion property then holds exactly). The walk
(:func:`walk`) writes the units in that order into a buffer, as dense unit ids
(:mod:`memsim.trace.unit_ids`); :func:`drain` passes a full buffer through the L2
(:mod:`memsim.trace.l2`) while the walk fills the next.

Top-k selection model (DSA's gather): query position p with k selected keys reads keys
0 … p when p + 1 ≤ k, else the k keys ⌊i·(p + 1)/k⌋, i = 0 … k − 1 — spread evenly over
the visible prefix, near and far alike (distinct because (p + 1)/k ≥ 1).

Everything is compiled without numba's reference counting (``_nrt=False``; see l2.py):
nothing is allocated here, the caller passes every array.
"""

from __future__ import annotations

import numpy as np

from memsim.trace.jit_setup import jit
from memsim.trace.l2 import DIRECT, access_direct_run, entry, hit, miss
from memsim.trace.program import GATHER, STORE

_jit = jit(nogil=True)  # nogil: the walk and the L2 run in parallel
_inline = jit(inline="always")
# The walk's rare paths (a slot's next run or block, multi-unit and gathered accesses, the
# event log) are called, not inlined: the hot loop then keeps more of its values in
# registers (FA-2 causal GQA 128K on h100-sxm: 11.2 → 9.7 ns per step, CPU time).



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
def schedule_blocks(template_ticks, n_blocks, n_slots, blk_slot, blk_start, blk_end,
                    slot_blocks, slot_busy, ht, hs):
    """List-schedule ``n_blocks`` blocks (block L lasts ``template_ticks[L % T]`` ticks,
    :data:`memsim.trace.timing.TICKS_PER_CYCLE`) on ``n_slots`` slots; fills the block log
    and per-slot counts (int64 ticks); returns the makespan in ticks. ``ht``/``hs``: int64
    heap arrays of n_slots entries. Integer time: equal durations give equal end times
    whatever the order they were added in, so ties are exact (lowest slot first)."""
    n_template = len(template_ticks)
    for s in range(n_slots):       # equal times, increasing slots: already a heap
        ht[s] = 0
        hs[s] = s
    makespan = 0
    for L in range(n_blocks):
        t = ht[0]
        s = hs[0]
        d = template_ticks[L % n_template]
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


# Columns of the packed per-access rows (one 64-byte cache line per access), read when a
# slot starts a run and by the L2 on a miss. Unit addresses are dense ids
# (memsim.trace.unit_ids): A_FIRST, A_STEP and A_USTRIDE in ids.
A_KIND, A_TENSOR, A_FIRST, A_STEP, A_UNITS, A_USTRIDE, A_GATHER, A_BYTES = range(8)
# Columns of the packed per-run rows: accesses, iterations, units and events per
# iteration, ticks per iteration (memsim.trace.timing.TICKS_PER_CYCLE).
R_ACC0, R_ACC1, R_COUNT, R_UNITS, R_EVENTS, R_DUR = range(6)
#: Units per buffer between the walk of the steps and the L2 (within a CPU's L2 cache).
CHUNK_UNITS = 1 << 16


def pack_program(block_run_ptr, run_count, run_acc_ptr, run_units, run_compute,
                 run_ticks, acc) -> tuple:
    """The program as :func:`replay` reads it: (block_run_ptr, runs int64[R, 6] (column
    R_DUR: ticks per iteration), accesses int64[A, 8], accesses as float64 (same memory:
    column A_BYTES holds bytes), gather_pos, gather_k, gather_first).
    ``acc``: the program's access fields with addresses and strides in unit ids."""
    runs = np.zeros((len(run_count), 6), np.int64)
    runs[:, R_ACC0] = run_acc_ptr[:-1]
    runs[:, R_ACC1] = run_acc_ptr[1:]
    runs[:, R_COUNT] = run_count
    runs[:, R_UNITS] = run_units
    runs[:, R_EVENTS] = run_units + run_compute
    runs[:, R_DUR] = run_ticks
    accs = np.zeros((len(acc["kind"]), 8), np.int64)
    for col, name in ((A_KIND, "kind"), (A_TENSOR, "tensor"), (A_FIRST, "address"),
                      (A_STEP, "step_bytes"), (A_UNITS, "units"),
                      (A_USTRIDE, "unit_stride_bytes")):
        accs[:, col] = acc[name]
    accs[:, A_GATHER] = acc["kind"] == GATHER
    accs_f = accs.view(np.float64)
    accs_f[:, A_BYTES] = acc["unit_bytes"]
    return (np.asarray(block_run_ptr, np.int64), runs, accs, accs_f,
            np.asarray(acc["gather_pos"], np.int64), np.asarray(acc["gather_k"], np.int64),
            np.asarray(acc["gather_first"], np.int64))


# Columns of a slot's state (int64): the block list position, current run, end run,
# iteration and iteration count, the run's events and units per iteration and accesses,
# the time of the next step and the step's duration (ticks); then, per access of the
# current run, S_ACC_COLS columns from S_HEAD on: the next unit id (offsets and
# iterations applied), the id step per iteration, the id stride between units, units,
# access index (~index for a store), gathered. A step reads only its slot's row, not the
# program's rows (each a CPU cache line away; the slots in flight run different template
# blocks): those are read once per run.
(S_POS, S_RUN, S_END, S_IT, S_COUNT, S_EVENTS, S_UNITS, S_NACC, S_TIME, S_DUR,
 S_HEAD) = range(11)
C_KEY, C_STEP, C_USTRIDE, C_UNITS, C_ACC, C_GATHER = range(6)
S_ACC_COLS = 6


@_jit
def _load_run(prog, off, sl, s, r):
    """Slot s starts run r: its counts, duration and accesses (ids at iteration 0)."""
    runs, accs = prog[1], prog[2]
    sl[s, S_RUN] = r
    sl[s, S_IT] = 0
    sl[s, S_COUNT] = runs[r, R_COUNT]
    sl[s, S_EVENTS] = runs[r, R_EVENTS]
    sl[s, S_UNITS] = runs[r, R_UNITS]
    sl[s, S_DUR] = runs[r, R_DUR]
    a0 = runs[r, R_ACC0]
    sl[s, S_NACC] = runs[r, R_ACC1] - a0
    for a in range(a0, runs[r, R_ACC1]):
        c = S_HEAD + (a - a0) * S_ACC_COLS
        gathered = accs[a, A_GATHER]
        sl[s, c + C_KEY] = accs[a, A_FIRST] + off[s, accs[a, A_TENSOR]]
        sl[s, c + C_STEP] = 0 if gathered else accs[a, A_STEP]
        sl[s, c + C_USTRIDE] = accs[a, A_USTRIDE]
        sl[s, c + C_UNITS] = accs[a, A_UNITS]
        sl[s, c + C_ACC] = ~a if accs[a, A_KIND] == STORE else a   # stores: negative
        sl[s, c + C_GATHER] = gathered


@_jit
def _load_block(prog, n_batch, offsets, slot_ptr, slot_order, blk_start, off, sl, s):
    """Slot s starts its next block that has steps; False when it has none left."""
    block_run_ptr = prog[0]
    stride_b, stride_g, gdiv = offsets
    n_template = len(block_run_ptr) - 1
    while True:
        pos = sl[s, S_POS] + 1
        sl[s, S_POS] = pos
        if pos >= slot_ptr[s + 1]:
            return False
        L = slot_order[pos]
        tb = L % n_template
        if block_run_ptr[tb + 1] > block_run_ptr[tb]:
            break
    inst = L // n_template
    b = inst % n_batch
    g = inst // n_batch
    for x in range(len(stride_b)):
        off[s, x] = b * stride_b[x] + (g // gdiv[x]) * stride_g[x]
    sl[s, S_END] = block_run_ptr[tb + 1]
    sl[s, S_TIME] = blk_start[L]
    _load_run(prog, off, sl, s, block_run_ptr[tb])
    return True


@_jit
def _emit_access(prog, row, c, it, buf_key, buf_acc, n):
    """The units of one multi-unit or gathered access of a step (see _emit_step)."""
    acc_gpos, acc_gk, acc_gfirst = prog[4], prog[5], prog[6]
    key = row[c + C_KEY]
    units = row[c + C_UNITS]
    a = row[c + C_ACC]
    ustride = row[c + C_USTRIDE]
    if row[c + C_GATHER]:
        first = acc_gfirst[a] + it * units
        for u in range(units):
            buf_key[n] = key + selected_key(acc_gpos[a], acc_gk[a], first + u) * ustride
            buf_acc[n] = a
            n += 1
    else:
        for u in range(units):
            buf_key[n] = key + u * ustride
            buf_acc[n] = a
            n += 1
        row[c + C_KEY] = key + row[c + C_STEP]
    return n


@_inline
def _emit_step(prog, row, it, buf_key, buf_acc, n):
    """Append the units of a slot's step (``row``: its row of the slot state; iteration
    ``it`` of its run) to the buffer, in access order, and advance its accesses to the
    next iteration; returns the new fill.
    (One unit of an affine access — K or V tile — is the common case: no inner loop.)"""
    for m in range(row[S_NACC]):
        c = S_HEAD + m * S_ACC_COLS
        if row[c + C_UNITS] == 1 and not row[c + C_GATHER]:
            key = row[c + C_KEY]
            buf_key[n] = key
            buf_acc[n] = row[c + C_ACC]
            n += 1
            row[c + C_KEY] = key + row[c + C_STEP]
        else:
            n = _emit_access(prog, row, c, it, buf_key, buf_acc, n)
    return n


@_jit
def drain(prog, l2, stats, buf_key, buf_acc, n, rec_h, rec_at):
    """Pass the first n buffered units through the L2 in order (hits to the event log when
    recording: ``rec_at`` ≥ 0 is where the buffer's first unit is logged). A hit needs
    only the unit and whether it is a store (the sign of its access index); a miss also
    the access's bytes and tensor. Dense ids are their own entries (l2.entry): their loop
    is :func:`memsim.trace.l2.access_direct_run` (one loop per kind of key, no per-unit
    branch between them: FA-2 causal GQA 128K h100-sxm, 4.2 → 3.9 ns per unit)."""
    accs, accs_f = prog[2], prog[3]
    if l2[8][DIRECT]:
        access_direct_run(l2, stats, buf_key, buf_acc, n, accs_f, accs, (A_BYTES, A_TENSOR),
                          rec_h, rec_at)
        return
    for j in range(n):
        a = buf_acc[j]
        key = buf_key[j]
        e = entry(l2, key)
        if e >= 0:
            hit(l2, e, a < 0)
        else:
            b = ~a if a < 0 else a
            miss(l2, key, accs_f[b, A_BYTES], accs[b, A_TENSOR], a < 0, stats)
        if rec_at >= 0:
            rec_h[rec_at + j] = e >= 0


@_jit
def _log_step(rec, at, n0, n, t, block, buf_key, buf_acc):
    """Event log of one step's units buffered at n0 … n (time, block, access, unit id)."""
    rec_t, rec_b, rec_a, rec_k = rec[0], rec[1], rec[2], rec[3]
    for j in range(n0, n):
        rec_t[at + j] = t
        rec_b[at + j] = block
        a = buf_acc[j]
        rec_a[at + j] = ~a if a < 0 else a
        rec_k[at + j] = buf_key[j]


# The walk's resumable position (int64): initialised, busy slots in the list, next one
# to visit, slots kept for the next window, events so far, finished, end of the current
# window (ticks).
W_STARTED, W_ACTIVE, W_NEXT, W_KEPT, W_EVENTS, W_DONE, W_WINDOW_END = range(7)
#: Steps a walk takes at most before it returns (so Ctrl-C is seen within milliseconds).
WALK_STEPS = 1 << 20


@_jit
def walk(prog, n_batch, offsets, window_ticks, slot_ptr, slot_order, blk_start, emit, rec,
         rec_at, off, sl, active, state, buf_key, buf_acc):
    """Walk the placed blocks' steps in time order, from where ``state`` left off, and
    buffer the units they touch (when ``emit``) until the next step would overflow the
    buffer or WALK_STEPS steps were taken; returns the units buffered.

    Time order (integer ticks): windows one (longest) step long; in each, the busy slots
    in slot order, each running every step of its own that starts inside the window.
    ``rec_at`` ≥ 0: log the buffered units (time, block, access, unit id) from that index
    of ``rec`` on."""
    cap = len(buf_key)
    if not state[W_STARTED]:
        state[W_STARTED] = 1
        n_active = 0
        for s in range(len(slot_ptr) - 1):
            sl[s, S_POS] = slot_ptr[s] - 1
            if _load_block(prog, n_batch, offsets, slot_ptr, slot_order, blk_start, off,
                           sl, s):
                active[n_active] = s
                n_active += 1
        state[W_ACTIVE] = state[W_NEXT] = state[W_KEPT] = n_active
    n_active, i, kept = state[W_ACTIVE], state[W_NEXT], state[W_KEPT]
    window_end = state[W_WINDOW_END]
    events = state[W_EVENTS]
    n = 0
    steps = 0
    while True:
        if i == n_active:                       # window done: the next one
            n_active = kept
            if n_active == 0:
                state[W_DONE] = 1
                break
            window_end += window_ticks
            i = 0
            kept = 0
        s = active[i]
        row = sl[s]                           # 1-D: constant columns, no 2-D indexing
        alive = True
        paused = False
        t = row[S_TIME]
        while t < window_end:                   # every step that starts in the window
            if (emit and n + row[S_UNITS] > cap) or steps == WALK_STEPS:
                paused = True                   # resume here, at slot s and time t
                break
            it = row[S_IT]
            events += row[S_EVENTS]
            steps += 1
            if emit:
                n0 = n
                n = _emit_step(prog, row, it, buf_key, buf_acc, n)
                if rec_at >= 0:
                    _log_step(rec, rec_at, n0, n, t, slot_order[row[S_POS]], buf_key,
                              buf_acc)
            t += row[S_DUR]
            if it + 1 < row[S_COUNT]:
                row[S_IT] = it + 1
            elif row[S_RUN] + 1 < row[S_END]:
                _load_run(prog, off, sl, s, row[S_RUN] + 1)
            elif _load_block(prog, n_batch, offsets, slot_ptr, slot_order, blk_start, off,
                             sl, s):
                t = row[S_TIME]
            else:
                alive = False
                break
        row[S_TIME] = t
        if paused:
            break
        if alive:
            active[kept] = s
            kept += 1
        i += 1
    state[W_ACTIVE], state[W_NEXT], state[W_KEPT] = n_active, i, kept
    state[W_WINDOW_END] = window_end
    state[W_EVENTS] = events
    return n


def replay(prog, n_batch, offsets, window_ticks, slot_ptr, slot_order, blk_start,
           l2_on, l2, stats, rec, rec_n, scratch, parallel: bool = True,
           drain_fn=None) -> int:
    """Replay every step of the placed blocks through the L2 (phase 2); returns events.

    ``prog``: :func:`pack_program`'s tuple (step durations included). ``offsets``: (batch
    stride, group stride, group divisor) per tensor, in unit ids. Blocks of slot s are
    ``slot_order[slot_ptr[s]:slot_ptr[s+1]]`` in start order. Adds the L2's HBM reads and
    write-backs to ``stats`` [tensor, 4] (columns HBM_READ, HBM_WRITE; global bytes do not
    depend on the replay: the caller counts them from the program). ``rec``/``rec_n``:
    event log (time, block, access, unit id, hit) of capacity len(rec[0]) (0: not
    recording). The work of the steps (FLOPs, SRAM bytes, busy time per resource) does not
    depend on the replay either; the caller sums it from the program.

    :func:`walk` fills one of two unit buffers while :func:`drain` passes the other
    through the L2 in a second thread (both release the GIL; ``parallel=False`` or a
    single CPU: one thread); the L2 still sees the units in walk order, buffer after
    buffer. Ctrl-C stops the replay between two walks. ``drain_fn``: another cache with
    :func:`drain`'s signature and ``l2`` its state (the line model,
    :func:`memsim.trace.l2_lines.drain`); default the tile L2.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    parallel = parallel and (os.cpu_count() or 1) > 1
    drain_units = drain if drain_fn is None else drain_fn
    off, sl, active, state, buffers = scratch
    recording = len(rec[0]) > 0
    logged = int(rec_n[0])
    state[:] = 0
    pool, pending, k = None, None, 0
    try:
        while not state[W_DONE]:
            buf_key, buf_acc = buffers[k]
            n = walk(prog, n_batch, offsets, window_ticks, slot_ptr, slot_order, blk_start,
                     l2_on or recording, rec, logged if recording else -1, off, sl, active,
                     state, buf_key, buf_acc)
            if pending is not None:
                pending.result()
                pending = None
            if n and l2_on:
                args = (prog, l2, stats, buf_key, buf_acc, n, rec[4],
                        logged if recording else -1)
                if not parallel or (state[W_DONE] and pool is None):
                    drain_units(*args)          # one buffer held it all: no thread
                else:
                    pool = pool or ThreadPoolExecutor(1, thread_name_prefix="memsim-l2")
                    pending = pool.submit(drain_units, *args)
            logged += n
            k ^= 1
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if recording:
        rec_n[0] = logged
    return int(state[W_EVENTS])


def new_scratch(n_slots: int, n_tensors: int, max_step_units: int = 0,
                max_run_accesses: int = 0) -> tuple:
    """Working arrays of :func:`replay`: per-slot address offsets, per-slot state (columns
    S_*), the busy-slot list, the walk's position (W_*), and two unit buffers (keys,
    accesses) of at least ``max_step_units`` each."""
    i64 = np.int64
    cap = max(CHUNK_UNITS, int(max_step_units))
    return (np.zeros((n_slots, n_tensors), i64),
            np.zeros((n_slots, S_HEAD + S_ACC_COLS * max(int(max_run_accesses), 1)), i64),
            np.zeros(n_slots, i64), np.zeros(8, i64),
            tuple((np.zeros(cap, i64), np.zeros(cap, np.int32)) for _ in range(2)))


def new_record(capacity: int) -> tuple:
    """An event log able to hold ``capacity`` units (0: recording off): time (ticks),
    block, access (index into the kernel's program), unit id, hit."""
    i64 = np.int64
    return (np.zeros(capacity, i64), np.zeros(capacity, i64), np.zeros(capacity, np.int32),
            np.zeros(capacity, i64), np.zeros(capacity, np.bool_))
