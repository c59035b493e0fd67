"""The trace simulator's parts against independent references: the L2 against a
pure-Python LRU, the block scheduler against heapq list scheduling, event counts and
addresses against the tile geometry, plus heads sampling, the event budget, the SRAM
check and saved traces."""

from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.attention import predict
from memsim.errors import InputError
from memsim.geometry import MaskGeometry, tile_sums
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import default_tiling
from memsim.trace import engine, simulate
from memsim.trace import l2 as l2_model
from memsim.trace.layout import Layout
from memsim.trace.program import GATHER, LOAD, Access, KernelBuilder
from memsim.trace.schedule import build_schedule
from memsim.trace.unit_ids import unit_ids

GPU = load_gpu("h100-sxm")


def reference_lru(accesses, sizes, capacity):
    """Byte-capacity LRU, write-back/write-allocate, in plain Python: (hits, HBM read
    bytes, HBM write bytes including the final flush, those write bytes per key)."""
    cache: OrderedDict[int, bool] = OrderedDict()     # key -> dirty, least recent first
    used, hits, read = 0.0, [], 0.0
    written_by_key = [0.0] * len(sizes)
    for key, is_write in accesses:
        if key in cache:
            cache.move_to_end(key)
            cache[key] = cache[key] or is_write
            hits.append(True)
            continue
        hits.append(False)
        read += 0.0 if is_write else sizes[key]
        cache[key] = is_write
        used += sizes[key]
        while used > capacity and cache:
            old, dirty = cache.popitem(last=False)
            used -= sizes[old]
            written_by_key[old] += sizes[old] if dirty else 0.0
    for key, dirty in cache.items():
        written_by_key[key] += sizes[key] if dirty else 0.0
    return hits, read, sum(written_by_key), written_by_key


@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=400),
       st.lists(st.sampled_from([64.0, 256.0, 1000.0, 4096.0]), min_size=41, max_size=41),
       st.integers(0, 40_000), st.booleans(), st.booleans())
def test_l2_is_exactly_a_byte_capacity_lru(accesses, sizes, capacity, dense, short) -> None:
    """Keyed by address (hashed) or by dense id (direct); ``short``: a recency queue of
    one slot more than the entries, compacted every few accesses."""
    keys = list(range(41)) if dense else [(1 << 32) + 4096 * k for k in range(41)]
    bound = l2_model.max_resident_units(np.array(sizes), np.full(41, 1.0), capacity)
    state = l2_model.new_state(capacity, bound, 41 if dense else None,
                               queue_slots=bound + 2 if short else None)
    assert state[-2][l2_model.DIRECT] == dense
    stats = np.zeros((1, 4))
    hits = [l2_model.access(state, keys[k], sizes[k], 0, w, stats) for k, w in accesses]
    l2_model.flush(state, stats)
    ref_hits, ref_read, ref_written, _ = reference_lru(accesses, sizes, capacity)
    assert hits == ref_hits
    assert stats[0, 2] == ref_read and stats[0, 3] == ref_written
    assert l2_model.resident_bytes(state) <= capacity


@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=400),
       st.lists(st.sampled_from([64.0, 256.0, 1000.0, 4096.0]), min_size=41, max_size=41),
       st.integers(0, 40_000), st.booleans())
def test_l2_dense_run_is_the_same_lru(accesses, sizes, capacity, short) -> None:
    """l2.access_direct_run (the engine's dense-key loop) against the plain Python LRU:
    the same hits, HBM reads and write-backs per tensor and resident bytes, over a
    store/load stream of dense ids (tensor k % 3), the queue compacted often when
    ``short``."""
    bound = l2_model.max_resident_units(np.array(sizes), np.full(41, 1.0), capacity)
    state = l2_model.new_state(capacity, bound, 41, queue_slots=bound + 2 if short else None)
    assert state[-2][l2_model.DIRECT]
    table = np.zeros((41, 2))
    table[:, 0] = sizes
    tensors = np.zeros((41, 2), np.int64)
    tensors[:, 1] = np.arange(41) % 3
    keys = np.array([k for k, _ in accesses] or [0], np.int64)
    acc = np.array([~k if w else k for k, w in accesses] or [0], np.int32)
    hits = np.zeros(len(keys), np.bool_)
    stats = np.zeros((3, 4))
    l2_model.access_direct_run(state, stats, keys, acc, len(accesses), table, tensors,
                               (0, 1), hits, 0)
    l2_model.flush(state, stats)
    ref_hits, ref_read, ref_written, ref_written_by_key = reference_lru(accesses, sizes,
                                                                        capacity)
    assert list(hits[:len(accesses)]) == ref_hits
    assert stats[:, 2].sum() == ref_read and stats[:, 3].sum() == ref_written
    read = [sizes[k] if not w and not h else 0.0
            for (k, w), h in zip(accesses, ref_hits, strict=True)]
    assert stats[:, 2].tolist() == [sum(r for (k, _), r in zip(accesses, read, strict=True)
                                        if k % 3 == x) for x in range(3)]
    assert stats[:, 3].tolist() == [sum(ref_written_by_key[k] for k in range(41) if k % 3 == x)
                                    for x in range(3)]
    assert l2_model.resident_bytes(state) <= capacity


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=60), st.integers(1, 9),
       st.integers(1, 4))
def test_block_scheduler_is_list_scheduling(durations, n_slots, repeats) -> None:
    """Durations in integer ticks; ties (equal end times) go to the lowest slot."""
    template = np.array(durations, np.int64)
    n = len(durations) * repeats
    i64 = np.int64
    slot, start, end = np.zeros(n, i64), np.zeros(n, i64), np.zeros(n, i64)
    per_slot, busy = np.zeros(n_slots, i64), np.zeros(n_slots, i64)
    makespan = engine.schedule_blocks(template, n, n_slots, slot, start, end, per_slot, busy,
                                      np.zeros(n_slots, i64), np.zeros(n_slots, i64))
    heap = [(0, s) for s in range(n_slots)]
    for i in range(n):                                   # earliest free slot, lowest first
        t, s = heapq.heappop(heap)
        assert (slot[i], start[i]) == (s, t)
        heapq.heappush(heap, (t + template[i % len(template)], s))
    assert makespan == max(t for t, _ in heap)
    assert per_slot.sum() == n and busy.sum() == template.sum() * repeats


@given(st.lists(st.lists(st.tuples(st.integers(1, 5), st.floats(1e-9, 1e-5)), min_size=1,
                         max_size=4), min_size=1, max_size=3),
       st.lists(st.integers(0, 2), min_size=1, max_size=40), st.integers(1, 8),
       st.randoms(use_true_random=False))
def test_placement_does_not_depend_on_where_equal_blocks_are_stored(pool, blocks, n_slots,
                                                                   rng) -> None:
    """Issue 13's tie-break defect: blocks made of the same steps (``pool`` entries: runs
    of (iterations, seconds per iteration)) must end at the same time wherever their runs
    sit in the program — a running float sum of the run times gave them end times that
    differed in the last bits, and those bits decided which slot got the next block.
    Storing the same launch sequence's blocks in another order (the launch order maps
    them back) leaves every block's slot and start unchanged; equal blocks last equally."""
    from types import SimpleNamespace

    from memsim.trace.simulate import _place_blocks
    from memsim.trace.timing import to_ticks

    blocks = [b % len(pool) for b in blocks]
    stored = list(range(len(blocks)))
    rng.shuffle(stored)                   # stored block j is launch position stored[j]

    def place(order):                     # order[j]: launch position of stored block j
        runs = [run for j in order for run in pool[blocks[j]]]
        count = np.array([c for c, _ in runs], np.int64)
        ptr = np.cumsum([0] + [len(pool[blocks[j]]) for j in order])
        launch = np.argsort(order)        # stored ids in launch order
        k = SimpleNamespace(run_count=count, block_run_ptr=ptr, template_blocks=len(order),
                            launch_order=lambda batch, instances: launch)
        ticks = to_ticks(np.array([d for _, d in runs]), GPU)
        _, (slot, start, end), *_ = _place_blocks(k, ticks, len(order), n_slots, 1)
        by_position = np.empty_like(launch)
        by_position[np.asarray(order)] = np.arange(len(order))
        return slot[by_position], start[by_position], (end - start)[by_position]

    slot, start, length = place(list(range(len(blocks))))
    slot2, start2, length2 = place(stored)
    assert (slot == slot2).all() and (start == start2).all() and (length == length2).all()
    for kind in set(blocks):
        assert len({int(x) for x, b in zip(length, blocks, strict=True) if b == kind}) == 1


@given(st.integers(0, 5000), st.integers(1, 3000))
def test_selected_keys_are_distinct_and_visible(p, k) -> None:
    keys = [engine.selected_key(p, k, i) for i in range(min(k, p + 1))]
    assert len(set(keys)) == len(keys) == min(k, p + 1)
    assert 0 <= min(keys) and max(keys) <= p


def test_event_count_follows_the_tile_geometry() -> None:
    """flash2, per block: Q load, 3 events per key tile (K, V, math), store O, lse + math."""
    p = AttentionProblem(batch=2, seq_len=777, kv_len=900, heads=6, kv_heads=2, head_dim=64,
                         mask=Mask(window=300))
    tiling = default_tiling(p, GPU, "flash2", block_q=64, block_kv=32)
    t = tile_sums(777, 900, 64, 32, MaskGeometry("window", w=300))
    groups = 2 * 6 // tiling.heads_per_block
    expected = groups * (4 * t.q_tiles + 3 * t.pairs)
    assert simulate(p, GPU, "flash2", tiling).events == expected
    assert build_schedule(p, tiling, "flash2").events() == expected


def test_blocks_of_one_head_read_the_same_key_tile_addresses() -> None:
    """Every K tile of head group g is read at one address by each query tile that sees it,
    and the address is that of k[b, j·Bc, kv_head, 0] in the (B, S, K, D) layout."""
    p = AttentionProblem(batch=2, seq_len=256, heads=4, kv_heads=2, head_dim=32,
                         mask=Mask(causal=False))
    tiling = default_tiling(p, GPU, "flash2", block_q=64, block_kv=64, heads_per_block=1)
    trace = simulate(p, GPU, "flash2", tiling, record=True, l2=False)
    times, block, tensor, addr, nbytes, kind, hit = trace._events_log
    k = next(t for t in trace.tensors if t["name"] == "k")
    k_id = [t["name"] for t in trace.tensors].index("k")
    loads = addr[tensor == k_id]
    e = 2
    expected = {k["base_address"] + ((b * 256 + j * 64) * 2 + h) * 32 * e
                for b in range(2) for j in range(4) for h in range(2)}
    assert set(loads.tolist()) == expected
    counts = np.unique(loads, return_counts=True)[1]
    assert (counts == 2 * 4).all()      # 4 query tiles × 2 query heads per KV head
    assert not hit.any() and (kind[tensor == k_id] == 0).all()


@pytest.mark.parametrize("algorithm,problem", [
    ("flash2", AttentionProblem(batch=1, seq_len=300, heads=8, kv_heads=2, head_dim=64)),
    ("flash1", AttentionProblem(batch=1, seq_len=300, heads=8, kv_heads=2, head_dim=64)),
    ("standard", AttentionProblem(batch=1, seq_len=300, heads=8, kv_heads=2, head_dim=64)),
    ("flash_decode", AttentionProblem(batch=1, seq_len=4, kv_len=3000, heads=8, kv_heads=2,
                                      head_dim=128)),
    ("dsa", AttentionProblem(batch=1, seq_len=300, heads=8, kv_heads=1, head_dim=576,
                             head_dim_v=512, mla=True, mask=Mask(top_k=64),
                             indexer=Indexer())),
])
def test_schedule_sram_matches_the_tiling_footprint(algorithm, problem) -> None:
    tiling = default_tiling(problem, GPU, algorithm)
    sram = max(k.sram_bytes for k in build_schedule(problem, tiling, algorithm).kernels)
    if algorithm == "dsa":            # a sparse block holds one token, not block_q tokens
        assert 0 < sram <= tiling.sram_bytes
    else:
        assert sram == tiling.sram_bytes


def test_heads_sample_scales_to_the_exact_totals_with_l2_off() -> None:
    p = AttentionProblem(batch=2, seq_len=500, heads=16, kv_heads=4, head_dim=64,
                         mask=Mask(chunk=128))
    tiling = default_tiling(p, GPU, "flash2")
    full = predict(p, GPU, "flash2", tiling).cost
    sampled = simulate(p, GPU, "flash2", tiling, l2=False, heads_sample=4)
    assert sampled.heads_sample == 4 and sampled.heads_scale == 4.0
    assert sampled.cost.hbm_bytes == full.hbm_bytes
    assert sampled.cost.flops == full.flops
    assert sampled.events * 4 == simulate(p, GPU, "flash2", tiling, l2=False).events


@pytest.mark.parametrize("bad", [0, 3, 17])
def test_heads_sample_must_be_a_multiple_of_heads_per_block(bad) -> None:
    p = AttentionProblem(batch=1, seq_len=64, heads=16, kv_heads=4, head_dim=64)
    with pytest.raises(InputError, match="heads_sample"):
        simulate(p, GPU, "flash2", heads_sample=bad)


def test_event_budget_says_how_many_events_and_suggests_sampling() -> None:
    p = AttentionProblem(batch=1, seq_len=2048, heads=8, head_dim=64)
    needed = simulate(p, GPU, "flash2").events
    with pytest.raises(InputError) as err:
        simulate(p, GPU, "flash2", event_budget=needed - 1)
    assert f"{needed:,}" in str(err.value) and "--heads-sample" in str(err.value)
    assert simulate(p, GPU, "flash2", event_budget=needed).events == needed


def test_a_pass_the_algorithm_lacks_is_refused_with_a_reason() -> None:
    p = AttentionProblem(batch=1, seq_len=1, kv_len=64, heads=2, head_dim=64,
                         **{"pass": "backward"})
    with pytest.raises(InputError, match="not modelled for flash_decode"):
        simulate(p, GPU, "flash_decode")


def test_a_smaller_sram_limit_than_the_tiling_needs_is_an_error() -> None:
    p = AttentionProblem(batch=1, seq_len=256, heads=2, head_dim=128)
    tiling = default_tiling(p, GPU, "flash2", block_q=128, block_kv=128)
    small = GPU.model_copy(update={"spec": GPU.spec.model_copy(update={
        "shared_memory_per_block_max_bytes": tiling.sram_bytes - 1})})
    with pytest.raises(InputError, match="SRAM"):
        simulate(p, small, "flash2", tiling)


def test_saved_trace_holds_blocks_and_events(tmp_path) -> None:
    p = AttentionProblem(batch=1, seq_len=200, heads=2, head_dim=64)
    trace = simulate(p, GPU, "standard", record=True)
    path = trace.save(tmp_path / "t.npz")
    with np.load(path) as z:
        assert len(z["event_address"]) == trace.events - _math_steps(p)
        assert len(z["block_slot"]) == trace.cost.blocks
        assert (z["block_end_s"] >= z["block_start_s"]).all()
        # bf16 inputs: eager standard's S and P are fp32 (memsim/trace/sched_standard.py)
        assert set(z["tensor_name"]) >= {"q", "k", "v", "o", "q32", "scores", "probs32"}
        hits = z["event_hit"][z["event_kind"] == 0]
        assert 0 < hits.mean() < 1


def _math_steps(p: AttentionProblem) -> int:
    """Events that are math steps, not accesses (the event log lists accesses only)."""
    schedule = build_schedule(p, default_tiling(p, GPU, "standard"), "standard")
    return sum(int((k.run_count * k.run_has_compute()).sum()) * schedule.instances(k)
               for k in schedule.kernels)


def test_l2_keeps_a_head_that_fits_and_misses_once_per_tile() -> None:
    """One head's K and V (2 × 2048 × 64 × 2 B = 512 KiB) fit in L2: every K/V tile comes
    from HBM once, however many query tiles read it."""
    p = AttentionProblem(batch=1, seq_len=2048, heads=1, head_dim=64, mask=Mask(causal=False))
    trace = simulate(p, GPU, "flash2")
    by_name = {t["name"]: t for t in trace.tensors}
    for name in ("k", "v"):
        assert by_name[name]["hbm_read_bytes"] == by_name[name]["bytes"]
        assert by_name[name]["global_read_bytes"] == 16 * by_name[name]["bytes"]


def _golden_cases():
    import json

    from trace_golden import CASES, GOLDEN

    recorded = json.loads(GOLDEN.read_text())["cases"]
    return [pytest.param(p, a, kw, recorded[cid], id=cid) for cid, p, a, kw in CASES]


@pytest.mark.parametrize(("problem", "algorithm", "kwargs", "expected"), _golden_cases())
def test_results_are_bit_identical_to_the_recorded_golden(problem, algorithm, kwargs,
                                                          expected) -> None:
    """The engine's speed work changes no result: bytes per tensor and kernel, hits, time,
    events and the event log equal what the engine gave before it (tests/trace_golden.py;
    the file names the commit). Exact: floats compared with ==."""
    import json

    from trace_golden import run_case, summary

    got = json.loads(json.dumps(summary(run_case(problem, algorithm, kwargs))))
    assert got == expected


def _unit_addresses(schedule, kernel, acc, offsets) -> np.ndarray:
    """Every unit ``kernel`` touches, in plain Python loops over the engine's formula
    (program.py's docstring), with ``acc``'s addresses and ``offsets`` (bytes or ids)."""
    stride_b, stride_g, div = offsets
    run = np.repeat(np.arange(kernel.runs), np.diff(kernel.run_acc_ptr))
    out = []
    for inst in range(schedule.instances(kernel, simulated=False)):
        b, g = inst % schedule.dims.B, inst // schedule.dims.B
        for a in range(len(acc["kind"])):
            x = acc["tensor"][a]
            base = acc["address"][a] + b * stride_b[x] + (g // div[x]) * stride_g[x]
            units = acc["units"][a]
            for it in range(kernel.run_count[run[a]]):
                for u in range(units):
                    if acc["kind"][a] == GATHER:
                        key = engine.selected_key(acc["gather_pos"][a], acc["gather_k"][a],
                                                  acc["gather_first"][a] + it * units + u)
                        out.append(base + key * acc["unit_stride_bytes"][a])
                    else:
                        out.append(base + it * acc["step_bytes"][a]
                                   + u * acc["unit_stride_bytes"][a])
    return np.array(out, np.int64)


@settings(max_examples=12)
@given(algorithm=st.sampled_from(["flash2", "flash1", "standard", "dsa"]),
       N=st.integers(1, 200), kv=st.sampled_from([1, 2, 4]), causal=st.booleans(),
       pass_=st.sampled_from(["forward", "forward+backward"]))
def test_unit_ids_name_the_same_units_as_addresses(algorithm, N, kv, causal, pass_) -> None:
    """The dense ids (memsim.trace.unit_ids) are a one-to-one map of the byte addresses
    the schedule touches, below n_ids, and map back to them."""
    mask = Mask(top_k=16) if algorithm == "dsa" else Mask(causal=causal)
    p = AttentionProblem(batch=2, seq_len=N, heads=4, kv_heads=1 if algorithm == "dsa" else kv,
                         head_dim=32, mask=mask, indexer=Indexer() if algorithm == "dsa" else None,
                         **{"pass": "forward" if algorithm == "dsa" else pass_})
    schedule = build_schedule(p, default_tiling(p, GPU, algorithm), algorithm)
    ids = unit_ids(schedule.layout, schedule.kernels, schedule.dims.B,
                   [schedule.instances(k, simulated=False) for k in schedule.kernels])
    addresses = np.concatenate([_unit_addresses(schedule, k, k.acc,
                                                schedule.layout.offset_tables())
                                for k in schedule.kernels])
    keys = np.concatenate([_unit_addresses(schedule, k, ids.program(k),
                                           ids.offsets(schedule.layout))
                           for k in schedule.kernels])
    _, by_address = np.unique(addresses, return_inverse=True)
    _, by_key = np.unique(keys, return_inverse=True)
    assert (by_address == by_key).all()
    assert 0 <= keys.min() and keys.max() < ids.n_ids
    assert (ids.addresses(keys) == addresses).all()


def _one_tensor_kernel(address, step, count) -> tuple:
    layout = Layout()
    layout.add("t", (8, 4, 8), 2, "input")        # 8 rows of 4 heads of 16 bytes
    kb = KernelBuilder("k", 1, per_head=False)
    kb.run(0, 0, count, [Access(LOAD, 0, layout[0].base_address + address, 16.0,
                                step_bytes=step)])
    return layout, kb.build()


def test_unit_ids_are_compact_and_fall_back_to_bytes_when_an_access_crosses_an_axis():
    layout, k = _one_tensor_kernel(16, 128, 4)    # head 1 of rows 0, 2, 4, 6
    ids = unit_ids(layout, [k], 1, [1])
    assert ids.tensors[0].radix.tolist() == [4, 2, 1]  # rows / 2 × heads 0-1 (bytes: 26)
    layout, k = _one_tensor_kernel(8, 24, 5)      # 1.5 heads a step: crosses heads
    ids = unit_ids(layout, [k], 1, [1])
    assert len(ids.tensors[0].radix) == 1          # one byte axis
    keys = ids.program(k)["address"][0] + np.arange(5) * ids.program(k)["step_bytes"][0]
    assert (ids.addresses(keys) == layout[0].base_address + 8 + 24 * np.arange(5)).all()
    layout, k = _one_tensor_kernel(8, 128, 5)     # the last step leaves the tensor
    with pytest.raises(ValueError, match="outside"):
        unit_ids(layout, [k], 1, [1])


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("case", ["flash2_record", "dsa_record", "flash2_fwd_bwd"])
def test_small_buffers_and_either_thread_layout_give_the_golden_results(
        case, parallel, monkeypatch) -> None:
    """Buffers of 64 units (hundreds of walk/drain hand-overs, the event log written in
    pieces), with the L2 in its own thread or not: the recorded results exactly."""
    import functools
    import json

    from trace_golden import CASES, GOLDEN, run_case, summary

    problem, algorithm, kwargs = next((p, a, kw) for cid, p, a, kw in CASES if cid == case)
    monkeypatch.setattr(engine, "CHUNK_UNITS", 64)
    monkeypatch.setattr(engine, "replay", functools.partial(engine.replay, parallel=parallel))
    got = json.loads(json.dumps(summary(run_case(problem, algorithm, kwargs))))
    assert got == json.loads(GOLDEN.read_text())["cases"][case]
