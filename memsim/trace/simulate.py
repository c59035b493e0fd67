"""Public entry point of the trace-driven model: :func:`simulate` → :class:`TraceResult`.

    >>> from memsim.problem import AttentionProblem, Mask
    >>> from memsim.trace import simulate
    >>> p = AttentionProblem(batch=1, seq_len=4096, heads=32, head_dim=128, mask=Mask())
    >>> r = simulate(p, "h100-sxm", "flash2")
    >>> r.cost.hbm_bytes <= r.cost.global_bytes
    True

The schedule of the algorithm (:mod:`memsim.trace.schedule`) is played out block by block
on the GPU's SM slots (:mod:`memsim.trace.engine`), every tile access passing through the
L2 (:mod:`memsim.trace.l2`); time follows :mod:`memsim.trace.timing`. The result carries
the same :class:`~memsim.cost.Cost` record as the analytic model, so the two can be
compared field by field: with the L2 off, global and HBM bytes and FLOPs equal the
analytic ones exactly; with it on, HBM bytes fall between the compulsory traffic and the
analytic count.

Memory use is O(blocks), not O(tiles): the schedule is run-length encoded per template
block (one batch, one head group) and nothing per event is stored unless ``record=True``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memsim.algorithms import compute_types
from memsim.cost import Cost
from memsim.errors import InputError
from memsim.trace import engine
from memsim.trace import l2 as l2_model
from memsim.trace.program import WORK_FIELDS, KernelProgram
from memsim.trace.schedule import Schedule, build_schedule
from memsim.trace.timing import (
    STEP_TERMS,
    KernelTime,
    kernel_time,
    resident_blocks_per_sm,
    slot_rates,
    step_durations,
    ticks_per_s,
    to_ticks,
)
from memsim.trace.unit_ids import UnitIds, unit_ids

L2_MODELS = ("tiles", "lines")       # simulate(l2_model=...): memsim.trace.l2, l2_lines
DEFAULT_EVENT_BUDGET = 1_000_000_000   # tile events; ~20 s at 50 M events/s
MAX_RECORDED_EVENTS = 20_000_000       # --save-trace keeps at most this many events
WORK_COLUMNS = WORK_FIELDS.index("global_bytes")  # the FLOP and SRAM columns


@dataclass(frozen=True)
class KernelTrace:
    """One simulated kernel launch (counts scaled to all heads when sampling)."""

    name: str
    blocks: int
    blocks_simulated: int
    resident_blocks_per_sm: int   # blocks sharing an SM: min(occupancy, ⌈blocks / SMs⌉)
    waves: int
    max_blocks_per_slot: int
    wave_efficiency: float        # busy slot-time / (slots × makespan) of the simulated part
    makespan_s: float
    time_s: float
    bound: str
    global_read_bytes: float
    global_write_bytes: float
    hbm_read_bytes: float
    hbm_write_bytes: float        # written back during the kernel (what Nsight Compute counts)
    events: int
    sram_bytes_per_block: int
    hbm_write_after_bytes: float = 0.0  # still dirty in L2 at its end, written back later


@dataclass(frozen=True)
class TraceResult:
    """What one simulated attention call cost (see module docstring).

    ``cost``: the Cost record (FLOPs, global = L2 bytes, HBM bytes, SRAM bytes, workspace,
    launches, blocks). ``l2_hit_rate``: fraction of global read bytes served by L2.
    ``waves`` = ⌈blocks / (SMs × blocks_per_sm)⌉ of the whole grid; the scheduler's own
    account of the tail is in each kernel's ``max_blocks_per_slot`` and
    ``wave_efficiency``. ``events``: tile operations simulated (accesses + math steps).
    ``heads_sample``: query heads replayed through the L2 (all unless sampled); their bytes
    are scaled by ``heads_scale`` to all heads (FLOPs and time are counted for all).
    ``cost.hbm_write_bytes`` counts every write-back the call
    causes, including ``hbm_write_after_bytes``: lines still dirty in L2 when its last
    kernel ends (or before a cold L2), which reach DRAM after the kernels' windows — Nsight
    Compute's per-kernel dram__bytes_write does not see them (``hbm_write_in_kernels_bytes``
    is what it measures).
    """

    problem: object
    gpu: object
    algorithm: str
    tiling: object
    cost: Cost
    l2: bool
    l2_capacity_bytes: float
    l2_hit_rate: float
    waves: int
    blocks_per_sm: int
    slots: int
    events: int
    time_s: float
    bound: str
    heads_sample: int
    heads_scale: float
    kernels: tuple[KernelTrace, ...]
    hbm_write_after_bytes: float
    tensors: tuple[dict, ...]
    l2_model: str = "tiles"
    _blocks_log: tuple = field(default=(), repr=False)
    _events_log: tuple = field(default=(), repr=False)

    @property
    def hbm_write_in_kernels_bytes(self) -> float:
        """DRAM writes inside the kernels' windows (as Nsight Compute counts them)."""
        return self.cost.hbm_write_bytes - self.hbm_write_after_bytes

    @property
    def achieved_hbm_bytes_per_s(self) -> float:
        return self.cost.hbm_bytes / self.time_s

    @property
    def achieved_l2_bytes_per_s(self) -> float:
        return self.cost.global_bytes / self.time_s

    @property
    def achieved_flop_per_s(self) -> float:
        return self.cost.flops / self.time_s

    def to_dict(self) -> dict:
        """The JSON contract of ``memsim trace --json``."""
        c = self.cost.to_dict()
        p = self.problem
        return {
            "model": "trace",
            "algorithm": self.algorithm,
            "gpu": self.gpu.name,
            "problem": p.model_dump(by_alias=True),
            "layout": p.layout,
            "mask": p.mask.describe(),
            "l2": "on" if self.l2 else "off",
            "l2_model": self.l2_model,
            "l2_capacity_bytes": self.l2_capacity_bytes,
            "l2_hit_rate": self.l2_hit_rate,
            **{k: c[k] for k in (
                "flops", "matmul_flops", "fp8_matmul_flops", "vector_flops", "exp_ops",
                "global_bytes", "global_read_bytes", "global_write_bytes", "hbm_bytes",
                "hbm_read_bytes", "hbm_write_bytes", "sram_bytes", "sram_read_bytes",
                "sram_write_bytes", "workspace_bytes", "launches", "blocks")},
            "waves": self.waves,
            "blocks_per_sm": self.blocks_per_sm,
            "slots": self.slots,
            "events": self.events,
            "time_s": self.time_s,
            "bound": self.bound,
            "achieved_hbm_bytes_per_s": self.achieved_hbm_bytes_per_s,
            "achieved_l2_bytes_per_s": self.achieved_l2_bytes_per_s,
            "achieved_flop_per_s": self.achieved_flop_per_s,
            "hbm_write_in_kernels_bytes": self.hbm_write_in_kernels_bytes,
            "hbm_write_after_bytes": self.hbm_write_after_bytes,
            "heads_sample": self.heads_sample,
            "heads_scale": self.heads_scale,
            "kernels": [vars(k) for k in self.kernels],
            "tensors": list(self.tensors),
            "tiling": self.tiling.model_dump() | {"sram_bytes": self.tiling.sram_bytes,
                                                   "rows": self.tiling.rows},
        }

    def save(self, path: str | Path) -> Path:
        """Write the trace as a compressed .npz: summary (JSON), per-tensor and per-kernel
        tables, the block log (kernel, slot, SM, start, end) and, if recorded, the event
        log (time_s, block, tensor, address, bytes, kind 0 load/1 store/2 gather, hit)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "summary_json": np.array(json.dumps(self.to_dict())),
            "tensor_name": np.array([t["name"] for t in self.tensors]),
            "tensor_base_address": np.array([t["base_address"] for t in self.tensors],
                                            np.int64),
            "tensor_bytes": np.array([t["bytes"] for t in self.tensors]),
        }
        if self._blocks_log:
            kern, slot, start, end = self._blocks_log
            arrays |= {"block_kernel": kern, "block_slot": slot,
                       "block_sm": (slot % self.gpu.spec.sm_count).astype(np.int32),
                       "block_start_s": start, "block_end_s": end}
        if self._events_log:
            names = ("time_s", "block", "tensor", "address", "bytes", "kind", "hit")
            arrays |= {f"event_{n}": a for n, a in zip(names, self._events_log, strict=True)}
        from memsim.files import atomic_open

        with atomic_open(path, "save_trace", "wb") as f:
            np.savez_compressed(f, **arrays)
        return path


def simulate(problem, gpu, algorithm: str = "flash2", tiling=None, l2: bool = True,
             heads_sample: int | None = None, event_budget: int = DEFAULT_EVENT_BUDGET, *,
             l2_bytes: int | None = None, matmul_unit: str = "tensor",
             record: bool = False, cold_kernels: bool = False,
             l2_model: str = "tiles") -> TraceResult:
    """Play ``algorithm``'s schedule for ``problem`` on ``gpu`` (profile or name).

    ``tiling``: default from :func:`memsim.tiling.default_tiling`. ``l2``: switch the L2
    model off to send every access to HBM. ``l2_bytes``: override the profile's L2
    capacity. ``heads_sample``: replay this many query heads (a multiple of
    heads_per_block, consecutive from the middle of the grid) through their share of the
    L2 and scale their bytes to all heads; every block is still placed, so the time is
    exact. ``event_budget``: refuse
    traces that need more tile events. ``record``: keep the event log (for
    :meth:`TraceResult.save`). ``cold_kernels``: every kernel starts with an empty L2,
    the dirty lines of the one before written back in between (outside any kernel, so in
    ``hbm_write_after_bytes``) — what Nsight Compute's default ``--cache-control all``
    does ("flush all GPU caches before each kernel replay pass"), so its per-kernel DRAM
    counters are compared with this. ``l2_model``: ``"tiles"`` (default: an LRU of whole
    tile units, :mod:`memsim.trace.l2`) or ``"lines"`` (32 B sectors of 128 B lines in a
    set-associative cache from the profile, :mod:`memsim.trace.l2_lines`; slower).
    """
    from memsim.algorithms import check_supported
    from memsim.hardware import load_gpu
    from memsim.tiling import default_tiling

    if isinstance(gpu, str):
        gpu = load_gpu(gpu)
    check_supported(algorithm, problem)
    if l2_model not in L2_MODELS:
        raise InputError("l2_model", l2_model, f"must be one of {', '.join(L2_MODELS)}")
    if matmul_unit not in ("tensor", "fp32"):
        raise InputError("matmul_unit", matmul_unit, "must be 'tensor' or 'fp32'")
    from memsim.limits import MAX_EVENT_BUDGET, check_size

    check_size("event_budget", event_budget, MAX_EVENT_BUDGET)
    if tiling is None:
        tiling = default_tiling(problem, gpu, algorithm)
    tiling.check_fits(gpu.spec.shared_memory_per_block_max_bytes, f" per block on {gpu.name}")
    bps = tiling.blocks_per_sm(gpu)
    if bps < 1:
        raise InputError("tiling", tiling.describe(), f"fits no block on an SM of {gpu.name} "
                         "(threads × registers per thread exceed the SM's)")
    _check_query_tiles(problem.N, tiling.block_q, event_budget)
    schedule = build_schedule(problem, tiling, algorithm, heads_sample,
                              gpu.spec.shared_memory_per_block_max_bytes)
    if schedule.G_sim < schedule.dims.G and not all(k.per_head or k.once
                                                    for k in schedule.kernels):
        raise InputError("heads_sample", heads_sample, f"does not apply to {algorithm}: "
                         "some of its kernels run per batch, not per head group")
    limit = gpu.spec.shared_memory_per_block_max_bytes
    for k in schedule.kernels:
        if k.sram_bytes > limit:
            raise InputError("tiling", tiling.describe(), f"kernel {k.name} holds "
                             f"{k.sram_bytes} B of SRAM per block, more than the {limit} B "
                             f"of {gpu.name}")
    events_needed = schedule.events()
    if events_needed > event_budget:
        d = schedule.dims
        raise InputError("event_budget", event_budget,
                         f"is too small: this trace needs {events_needed:,} tile events; "
                         f"raise --event-budget to {events_needed:,}, or simulate a subset "
                         f"of the {d.H} heads and scale with --heads-sample "
                         f"(a multiple of heads_per_block={d.hpb})")
    if record and events_needed > MAX_RECORDED_EVENTS:
        raise InputError("save_trace", f"{events_needed:,} events",
                         f"exceeds the {MAX_RECORDED_EVENTS:,} events a saved trace may hold; "
                         "use --heads-sample or a smaller problem")
    capacity = 0.0
    if l2:
        capacity = float(l2_bytes) if l2_bytes is not None else gpu.l2_dram_capacity_bytes
    return _run(schedule, problem, gpu, algorithm, tiling, bps, l2, capacity, matmul_unit,
                record, events_needed, cold_kernels, l2_model if l2 else "tiles")


def _kernel_blocks_per_sm(k: KernelProgram, gpu, tiling, bps: int) -> int:
    """Resident blocks per SM of kernel ``k``: the Tiling's occupancy, unless the kernel
    runs threads of its own (FA-2's backward): then its own shared memory and threads."""
    if not k.threads:
        return bps
    from memsim.algorithms._tiles import blocks_per_sm

    return max(1, int(blocks_per_sm(gpu, k.sram_bytes, k.threads,
                                    tiling.registers_per_thread)))


def _program_tuple(k: KernelProgram, ticks: np.ndarray, ids: UnitIds) -> tuple:
    return engine.pack_program(k.block_run_ptr, k.run_count, k.run_acc_ptr,
                               k.run_units().astype(np.int64), k.run_has_compute(), ticks,
                               ids.program(k))


def _place_blocks(k: KernelProgram, ticks: np.ndarray, n_blocks: int, n_slots: int,
                  batch: int) -> tuple:
    """Phase 1: list-schedule the grid in its launch order (:meth:`KernelProgram.
    launch_order`); ``ticks``: each run's ticks per iteration. Returns (makespan, (slot,
    start, end) per block id, busy time and blocks per slot, each slot's block ids in
    start order as (slot_ptr, slot_order), and each block id's launch position); times
    in int64 ticks (:data:`memsim.trace.timing.TICKS_PER_CYCLE`), exact sums."""
    csum = np.concatenate([[0], np.cumsum(k.run_count * ticks)])
    template_ticks = csum[k.block_run_ptr[1:]] - csum[k.block_run_ptr[:-1]]
    ids = k.launch_order(batch, n_blocks // max(k.template_blocks, 1))
    if ids is not None:                    # durations in launch order
        template_ticks = template_ticks[ids % k.template_blocks]
    i64 = np.int64
    blk_slot = np.zeros(n_blocks, i64)
    blk_start, blk_end = np.zeros(n_blocks, i64), np.zeros(n_blocks, i64)
    slot_blocks, slot_busy = np.zeros(n_slots, i64), np.zeros(n_slots, i64)
    makespan = engine.schedule_blocks(template_ticks.astype(i64), n_blocks, n_slots,
                                      blk_slot, blk_start, blk_end, slot_blocks, slot_busy,
                                      np.zeros(n_slots, i64), np.zeros(n_slots, i64))
    slot_order = np.argsort(blk_slot, kind="stable")
    position = np.arange(n_blocks)
    if ids is not None:                    # from launch positions to block ids
        slot_order = ids[slot_order]
        position = np.empty_like(ids)
        position[ids] = np.arange(n_blocks)
        blk_slot, blk_start, blk_end = blk_slot[position], blk_start[position], blk_end[position]
    slot_ptr = np.zeros(n_slots + 1, np.int64)
    np.cumsum(slot_blocks, out=slot_ptr[1:])
    return (int(makespan), (blk_slot, blk_start, blk_end), slot_busy, slot_blocks,
            slot_ptr, slot_order, position)


def _sampled_slots(schedule: Schedule, k: KernelProgram, blk_slot: np.ndarray,
                   position: np.ndarray, n_slots: int) -> tuple:
    """(slot_ptr, slot_order) of the placed blocks that belong to the sampled head groups
    (block id L: template L mod T, instance L div T = batch + B · group; ``position``: its
    launch position, the start order within a slot)."""
    if not k.per_head:
        raise ValueError(f"{k.name}: a heads sample needs per-head kernels")
    L = np.arange(len(blk_slot))
    group = (L // k.template_blocks) // schedule.dims.B
    keep = L[np.isin(group, schedule.sampled_groups())]
    slot_order = keep[np.lexsort((position[keep], blk_slot[keep]))]
    slot_ptr = np.zeros(n_slots + 1, np.int64)
    np.cumsum(np.bincount(blk_slot[keep], minlength=n_slots), out=slot_ptr[1:])
    return slot_ptr, slot_order


def _sampled_l2_fraction(schedule: Schedule, gpu, bps: int) -> float:
    """The share of the L2 the replayed head groups of a heads sample get.

    The grid runs group after group (the group is the slowest grid index), so about
    n = slots / (blocks per group) groups are in flight at once. The sample is G_sim
    consecutive groups (:meth:`Schedule.sampled_groups`), replayed with each other as
    neighbours: when n ≤ G_sim they hold the whole L2, else their G_sim/n share of it
    (spatially sampled cache simulation scales the cache with the sample: Waldspurger
    et al., SHARDS, FAST 2015).
    """
    d = schedule.dims
    if schedule.G_sim == d.G:
        return 1.0
    per_group = max(k.template_blocks for k in schedule.kernels) * d.B
    in_flight = gpu.spec.sm_count * bps / max(per_group, 1)
    return min(1.0, schedule.G_sim / max(in_flight, 1e-9))


def _l2_state(schedule: Schedule, capacity: float, n_ids: int | None = None) -> tuple:
    """A cache sized for the most units that can be resident at once."""
    sizes, mult = [np.zeros(1)], [np.zeros(1)]
    for k in schedule.kernels:
        units = k.acc["units"].astype(np.float64)
        per_run = np.repeat(k.run_count * schedule.instances(k), np.diff(k.run_acc_ptr))
        sizes.append(k.acc["unit_bytes"])
        mult.append(per_run * units)
    sizes, mult = np.concatenate(sizes), np.concatenate(mult)
    bound = l2_model.max_resident_units(sizes[mult > 0], mult[mult > 0], capacity)
    return l2_model.new_state(capacity, bound, n_ids)


def _run(schedule: Schedule, problem, gpu, algorithm, tiling, bps: int, l2_on: bool,
         capacity: float, matmul_unit: str, record: bool, events_needed: int,
         cold_kernels: bool = False, l2_kind: str = "tiles") -> TraceResult:
    layout, d = schedule.layout, schedule.dims
    n_tensors = len(layout.tensors)
    sim_capacity = capacity * _sampled_l2_fraction(schedule, gpu, bps)
    ids = unit_ids(layout, schedule.kernels, d.B,
                   [schedule.instances(k, simulated=False) for k in schedule.kernels])
    lines = l2_kind == "lines"
    if lines:
        from memsim.trace import l2_lines

        tables = l2_lines.address_tables(ids)

    def empty_l2():
        if lines:
            return l2_lines.state_for_gpu(gpu, sim_capacity)
        return _l2_state(schedule, sim_capacity, ids.n_ids)

    l2 = empty_l2() if lines or l2_on else l2_model.new_state(0.0, 1)
    offsets = ids.offsets(layout)
    rec = engine.new_record(events_needed if record else 0)
    rec_n = np.zeros(1, np.int64)
    # Sampling runs only when every kernel runs per head group or once per call
    # (simulate refuses it otherwise). A kernel's bytes scale by Schedule.scale: a
    # per-group kernel's from the sampled groups to all, a once-per-call kernel's (all its
    # blocks replayed) not at all. A tensor shared by all groups (eager standard's (N, S)
    # mask) is read by each, its global bytes scale like the rest (its HBM bytes,
    # compulsory once, are then over-counted by G / G_sim).
    totals = np.zeros((n_tensors, 4))
    work_total = np.zeros(WORK_COLUMNS)
    kernels, logs, logs_ev, events_total, launch_offset = [], [], [], 0, 0
    dtype, matmul_unit = compute_types(algorithm, problem.dtype, matmul_unit)
    tps = ticks_per_s(gpu)
    for ki, k in enumerate(schedule.kernels):
        n_blocks = k.template_blocks * schedule.instances(k, simulated=False)
        k_bps = _kernel_blocks_per_sm(k, gpu, tiling, bps)
        resident = resident_blocks_per_sm(gpu, k_bps, n_blocks)
        k_slots = gpu.spec.sm_count * resident
        rates = slot_rates(gpu, dtype, resident, matmul_unit)
        dur, term = step_durations(k.run_work, rates)
        ticks = to_ticks(dur, gpu)
        # phase 1 places every block (exact times: step durations do not depend on hits);
        # with a heads sample only the sampled groups' blocks are replayed (phase 2)
        placed = _place_blocks(k, ticks, n_blocks, k_slots, d.B)
        makespan, blocks_log, slot_busy, slot_blocks, slot_ptr, slot_order, position = placed
        if schedule.G_sim < d.G and not k.once:
            slot_ptr, slot_order = _sampled_slots(schedule, k, blocks_log[0], position,
                                                  k_slots)
        stats = np.zeros((n_tensors, 4))
        stats[:, :2] = k.global_bytes_per_instance(n_tensors) * schedule.instances(k)
        if not l2_on:
            stats[:, 2:] = stats[:, :2]
        instances = schedule.instances(k, simulated=False)
        work = k.work_per_instance()[:WORK_COLUMNS] * instances
        busy = np.bincount(term, weights=k.run_count * dur, minlength=len(STEP_TERMS))
        busy = busy * instances
        rec_start = int(rec_n[0])
        window_ticks = max(int(ticks.max()) if len(ticks) else 0, 1)
        events = 0
        if k.runs:
            cache, drain_fn = l2, None
            if lines:
                geometry, _ = l2_lines.unit_geometry(layout, k, min(d.B, instances),
                                                     max(instances // d.B, 1))
                cache = l2_lines.kernel_state(l2, geometry, tables)
                drain_fn = l2_lines.drain
            events = engine.replay(
                _program_tuple(k, ticks, ids), d.B, offsets, window_ticks,
                slot_ptr, slot_order, blocks_log[1], l2_on, cache, stats, rec, rec_n,
                engine.new_scratch(k_slots, n_tensors, int(k.run_units().max()),
                                   int(np.diff(k.run_acc_ptr).max())), drain_fn=drain_fn)
        if record:
            logs_ev.append(_event_log(k, ids, rec, rec_start, int(rec_n[0]), launch_offset,
                                      tps))
        last = ki == len(schedule.kernels) - 1
        flushed = np.zeros((n_tensors, 4))
        if l2_on and (last or cold_kernels or schedule.kernels[ki + 1].cold_l2):
            # dirty units reach HBM after the kernel
            (l2_lines if lines else l2_model).flush(l2, flushed)
            if not last:                           # the rest of the network runs between
                l2 = empty_l2()
        scale = schedule.scale(k)
        scaled = stats * scale
        after = float((flushed * scale)[:, 3].sum())
        totals += (stats + flushed) * scale
        work_total += work
        events_total += int(events)
        makespan_s = makespan / tps
        timing = kernel_time(gpu, makespan_s, scaled[:, 0].sum() + scaled[:, 1].sum(),
                             scaled[:, 2].sum() + scaled[:, 3].sum(), busy)
        kernels.append(_kernel_trace(k, schedule, gpu.spec.sm_count * k_bps, resident,
                                     makespan_s, timing, scaled, events,
                                     slot_busy / tps, slot_blocks, after))
        logs.append((np.full(n_blocks, ki, np.int16), blocks_log[0].astype(np.int32),
                     blocks_log[1] / tps, blocks_log[2] / tps))
        launch_offset += n_blocks
    if events_total != events_needed:
        raise AssertionError(f"simulated {events_total} events, schedule has {events_needed}")
    return _result(schedule, problem, gpu, algorithm, tiling, bps, l2_on, capacity, totals,
                   work_total, kernels, events_total, logs, l2_kind,
                   tuple(np.concatenate(parts) for parts in zip(*logs_ev, strict=True))
                   if record else ())


def _event_log(k: KernelProgram, ids: UnitIds, rec: tuple, start: int, end: int,
               launch_offset: int, tps: float) -> tuple:
    """The engine's log of kernel k's units (time in ticks, ``tps`` per second, block,
    access, unit id, hit) as the saved trace holds it: time (s), block (numbered across
    kernels), tensor, address, bytes, kind, hit."""
    t, block, acc, key, hit = (a[start:end] for a in rec)
    return (t / tps, block + launch_offset, k.acc["tensor"][acc].astype(np.int16),
            ids.addresses(key), k.acc["unit_bytes"][acc].astype(np.float32),
            k.acc["kind"][acc].astype(np.int8), hit)


def _check_query_tiles(N: int, block_q: int, event_budget: int) -> None:
    """Refuse before building the schedule, which walks every query tile: each one is at
    least one event, and memsim walks at most MAX_ENUMERATED_TILES of them."""
    from memsim.limits import MAX_ENUMERATED_TILES

    q_tiles = -(-N // block_q)
    if q_tiles > min(event_budget, MAX_ENUMERATED_TILES):
        raise InputError("block_q", block_q, f"makes {q_tiles:,} query tiles of seq_len={N}, "
                         f"more than the trace walks (at most "
                         f"{min(event_budget, MAX_ENUMERATED_TILES):,}); choose a larger "
                         "--block-q or a shorter --seq-len")


def _kernel_trace(k, schedule, n_slots, resident, makespan, timing: KernelTime, scaled,
                  events, slot_busy, slot_blocks, after: float) -> KernelTrace:
    full = k.template_blocks * schedule.instances(k, simulated=False)
    busy_total = float(slot_busy.sum())
    used_slots = len(slot_busy)
    return KernelTrace(
        name=k.name, blocks=full, blocks_simulated=k.template_blocks * schedule.instances(k),
        resident_blocks_per_sm=resident,
        waves=max(1, math.ceil(full / n_slots)), max_blocks_per_slot=int(slot_blocks.max()),
        wave_efficiency=busy_total / (used_slots * makespan) if makespan > 0 else 1.0,
        makespan_s=makespan, time_s=timing.time_s, bound=timing.bound,
        global_read_bytes=float(scaled[:, 0].sum()), global_write_bytes=float(scaled[:, 1].sum()),
        hbm_read_bytes=float(scaled[:, 2].sum()), hbm_write_bytes=float(scaled[:, 3].sum()),
        events=int(events), sram_bytes_per_block=k.sram_bytes, hbm_write_after_bytes=after)


def _result(schedule, problem, gpu, algorithm, tiling, bps, l2_on, capacity, totals,
            work, kernels, events, logs, l2_kind, events_log) -> TraceResult:
    layout = schedule.layout
    matmul, fp8, vector, exp_ops, sram_r, sram_w = (float(w) for w in work)
    g_r, g_w, h_r, h_w = (float(totals[:, i].sum()) for i in range(4))
    cost = Cost(
        matmul_flops=matmul, fp8_matmul_flops=fp8, vector_flops=vector, exp_ops=exp_ops,
        global_read_bytes=g_r, global_write_bytes=g_w, hbm_read_bytes=h_r,
        hbm_write_bytes=h_w, sram_read_bytes=sram_r, sram_write_bytes=sram_w,
        workspace_bytes=layout.bytes_by_role("workspace"),
        launches=float(len(kernels)), blocks=float(sum(k.blocks for k in kernels)))
    slots = gpu.spec.sm_count * bps
    by_bound: dict[str, float] = {}
    for k in kernels:
        by_bound[k.bound] = by_bound.get(k.bound, 0.0) + k.time_s
    tensors = tuple({
        "name": t.name, "role": t.role, "shape": list(t.shape), "elem_bytes": t.elem_bytes,
        "base_address": t.base_address, "bytes": t.nbytes,
        "global_read_bytes": float(totals[i, 0]), "global_write_bytes": float(totals[i, 1]),
        "hbm_read_bytes": float(totals[i, 2]), "hbm_write_bytes": float(totals[i, 3]),
    } for i, t in enumerate(layout.tensors))
    blocks_log = tuple(np.concatenate(parts) for parts in zip(*logs, strict=True)) if logs else ()
    d = schedule.dims
    return TraceResult(
        problem=problem, gpu=gpu, algorithm=algorithm, tiling=tiling, cost=cost, l2=l2_on,
        l2_capacity_bytes=capacity, l2_hit_rate=1.0 - h_r / g_r if l2_on and g_r > 0 else 0.0,
        waves=max(1, math.ceil(cost.blocks / slots)), blocks_per_sm=bps, slots=slots,
        events=events, time_s=float(sum(k.time_s for k in kernels)),
        bound=max(by_bound, key=by_bound.get), heads_sample=schedule.G_sim * d.hpb,
        heads_scale=d.G / schedule.G_sim, kernels=tuple(kernels), tensors=tensors,
        hbm_write_after_bytes=sum(k.hbm_write_after_bytes for k in kernels), l2_model=l2_kind,
        _blocks_log=blocks_log, _events_log=events_log)


__all__ = ["DEFAULT_EVENT_BUDGET", "KernelTrace", "TraceResult", "simulate"]
