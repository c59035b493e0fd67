"""The trace-driven model's consistency laws (issue 4), as hypothesis properties over the
algorithm registry, every mask each algorithm runs, and tilings that fit.

- L2 off: trace global bytes, HBM bytes and FLOPs equal the analytic model's exactly (and
  so do its other Cost fields: the schedule and the formulas are two derivations of the
  same counts from the Tiling and the mask geometry).
- L2 on: compulsory ≤ trace HBM ≤ analytic HBM; FLOPs and global bytes unchanged; HBM
  bytes non-increasing in the L2 capacity (and capacity 0 is the same as no L2).
- waves = ⌈blocks / (SMs × blocks per SM)⌉; time non-decreasing in N; more SMs never
  slower.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memsim.algorithms import ALGORITHMS, compulsory_bytes
from memsim.attention import predict
from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import default_tiling
from memsim.trace import simulate
from memsim.trace.timing import ticks_per_s

GPUS = ("h100-sxm", "a100-sxm4-40gb")
LAW_FIELDS = ("matmul_flops", "fp8_matmul_flops", "global_read_bytes", "global_write_bytes",
              "hbm_read_bytes", "hbm_write_bytes")
# Per-slot rates are chip rates / (SMs × blocks per SM): scaling both by 3 may round the
# last bit of a step duration, so times that are equal in exact arithmetic may differ there.
ROUNDING = 1e-12
OTHER_FIELDS = ("vector_flops", "exp_ops", "sram_read_bytes", "sram_write_bytes", "launches",
                "blocks")


DENSE_KINDS = ("full", "causal", "window", "band", "chunk")
# every algorithm with every mask it runs (band: bidirectional window)
PAIRS = [(a, k) for a in ALGORITHMS for k in (("topk",) if a == "dsa" else DENSE_KINDS)]
PER_PAIR = settings(max_examples=12)


def _mask(draw, algorithm: str, S: int, kinds) -> Mask:
    if algorithm == "dsa":
        return Mask(top_k=draw(st.integers(1, 400)))
    kind = draw(st.sampled_from(kinds or DENSE_KINDS))
    if kind in ("full", "causal"):
        return Mask(causal=kind == "causal")
    if kind == "chunk":
        return Mask(chunk=draw(st.integers(1, 300)))
    return Mask(window=draw(st.integers(1, S + 20)), causal=kind == "window")


@st.composite
def cases(draw, algorithms=tuple(ALGORITHMS), max_n: int = 300, mask_kinds=None):
    """(algorithm, problem, GPU name, tiling) with a tiling that fits the GPU."""
    algorithm = draw(st.sampled_from(algorithms))
    gpu_name = draw(st.sampled_from(GPUS))
    gpu = load_gpu(gpu_name)
    H = draw(st.sampled_from([1, 2, 4, 8]))
    mla = draw(st.booleans())
    K = 1 if mla else draw(st.sampled_from([k for k in (1, 2, 4, 8) if H % k == 0]))
    D = draw(st.sampled_from([16, 40, 64, 128]))
    Dv = D - 8 * draw(st.integers(0, 1)) if mla else draw(st.sampled_from([D, 32]))
    N = draw(st.integers(1, 16 if algorithm == "flash_decode" else max_n))
    S = N + draw(st.integers(0, 300))
    group = H // K
    try:
        problem = AttentionProblem(
            batch=draw(st.integers(1, 2)), seq_len=N, kv_len=S, heads=H, kv_heads=K,
            head_dim=D, head_dim_v=Dv, mla=mla, dtype=draw(st.sampled_from(
                ["bf16", "fp16", "fp32"] + ["fp8"] * (gpu.spec.fp8_tensor_flop_per_s is not None)
            )), mask=_mask(draw, algorithm, S, mask_kinds),
            indexer=Indexer(heads=draw(st.sampled_from([4, 16, 64])),
                            head_dim=draw(st.sampled_from([32, 64, 128])),
                            dtype=draw(st.sampled_from(["fp8", "bf16"])))
            if algorithm == "dsa" else None)
        tiling = default_tiling(
            problem, gpu, algorithm,
            block_q=None if algorithm == "flash_decode" else draw(
                st.sampled_from([None, 16, 32, 64, 128])),
            block_kv=draw(st.sampled_from([None, 16, 32, 64, 128])),
            heads_per_block=draw(st.sampled_from([d for d in (None, 1, 2, 4, 8)
                                                  if d is None or group % d == 0])),
            kv_splits=draw(st.sampled_from([None, 1, 3, 8])) if algorithm == "flash_decode"
            else None)
    except (InputError, ValidationError):
        assume(False)
    return algorithm, problem, gpu_name, tiling


def wave_blocks(trace) -> float:
    """The trace's blocks as the analytic Cost counts them: every kernel's, except
    Flash-Decoding's reduce kernel (memsim.algorithms.flash_decode counts the split
    kernel's blocks, which set the waves; the reduce kernel's B·G blocks are tiny)."""
    return float(sum(k.blocks for k in trace.kernels if k.name != "flash_decode.reduce"))


def _pair_case(data, algorithm: str, kind: str):
    return data.draw(cases((algorithm,), mask_kinds=(kind,)))


@pytest.mark.parametrize("algorithm,kind", PAIRS)
@PER_PAIR
@given(st.data())
def test_l2_off_equals_the_analytic_model_exactly(algorithm, kind, data) -> None:
    algorithm, problem, gpu, tiling = _pair_case(data, algorithm, kind)
    analytic = predict(problem, gpu, algorithm, tiling).cost
    trace = simulate(problem, gpu, algorithm, tiling, l2=False)
    for field in LAW_FIELDS + OTHER_FIELDS:
        value = wave_blocks(trace) if field == "blocks" else getattr(trace.cost, field)
        assert value == getattr(analytic, field), field
    assert trace.l2_hit_rate == 0.0


@pytest.mark.parametrize("algorithm,kind", PAIRS)
@PER_PAIR
@given(st.data())
def test_l2_on_lies_between_compulsory_and_analytic(algorithm, kind, data) -> None:
    algorithm, problem, gpu, tiling = _pair_case(data, algorithm, kind)
    analytic = predict(problem, gpu, algorithm, tiling).cost
    trace = simulate(problem, gpu, algorithm, tiling).cost
    assert compulsory_bytes(problem) <= trace.hbm_bytes <= analytic.hbm_bytes
    assert trace.hbm_read_bytes <= analytic.hbm_read_bytes
    assert trace.hbm_write_bytes <= analytic.hbm_write_bytes
    assert trace.flops == analytic.flops
    assert trace.global_bytes == analytic.global_bytes


@pytest.mark.parametrize("algorithm,kind", PAIRS)
@PER_PAIR
@given(st.data(), st.lists(st.integers(0, 2 * 2**20), min_size=2, max_size=3))
def test_hbm_bytes_never_grow_with_l2_capacity(algorithm, kind, data, capacities) -> None:
    algorithm, problem, gpu, tiling = _pair_case(data, algorithm, kind)
    hbm = [simulate(problem, gpu, algorithm, tiling, l2_bytes=c).cost
           for c in sorted(capacities)]
    for small, large in zip(hbm, hbm[1:], strict=False):
        assert large.hbm_read_bytes <= small.hbm_read_bytes
        assert large.hbm_write_bytes <= small.hbm_write_bytes
    if min(capacities) == 0:      # an L2 of capacity 0 is no L2
        off = simulate(problem, gpu, algorithm, tiling, l2=False).cost
        assert (hbm[0].hbm_read_bytes, hbm[0].hbm_write_bytes) == (
            off.hbm_read_bytes, off.hbm_write_bytes)


@given(cases())
def test_waves_are_blocks_over_slots(case) -> None:
    algorithm, problem, gpu, tiling = case
    trace = simulate(problem, gpu, algorithm, tiling)
    analytic_blocks = predict(problem, gpu, algorithm, tiling).cost.blocks
    gpu = load_gpu(gpu)
    slots = gpu.spec.sm_count * tiling.blocks_per_sm(gpu)
    assert trace.slots == slots
    assert wave_blocks(trace) == analytic_blocks
    assert trace.waves == max(1, math.ceil(trace.cost.blocks / slots))
    for k in trace.kernels:       # the scheduler placed every block somewhere
        assert k.waves == max(1, math.ceil(k.blocks / slots))
        assert k.max_blocks_per_slot >= min(k.waves, k.blocks)


@given(cases(max_n=200), st.integers(1, 300), st.booleans())
def test_time_never_decreases_with_n(case, extra, l2) -> None:
    algorithm, problem, gpu, tiling = case
    gpu = load_gpu(gpu)
    if algorithm == "flash_decode":   # decoding N ≤ 16 tokens against a fixed cache
        n = min(problem.N + extra, 16, problem.S)
        smaller, larger = problem, problem.model_copy(update={"seq_len": n})
    else:
        smaller = problem.model_copy(update={"seq_len": problem.N, "kv_len": problem.N})
        larger = problem.model_copy(update={"seq_len": problem.N + extra,
                                            "kv_len": problem.N + extra})
    fixed = dict(block_q=None if algorithm == "flash_decode" else tiling.block_q,
                 block_kv=tiling.block_kv, heads_per_block=tiling.heads_per_block,
                 kv_splits=tiling.kv_splits if algorithm == "flash_decode" else (
                     1 if algorithm == "dsa" else None))
    t = [simulate(p, gpu, algorithm, default_tiling(p, gpu, algorithm, **fixed), l2=l2).time_s
         for p in (smaller, larger)]
    assert t[1] >= t[0] * (1 - ROUNDING)


def more_sms(gpu, factor: int):
    """The GPU with ``factor`` × the SMs, each like the original (per-SM compute units,
    shared memory and L2 port scale the chip totals); HBM unchanged."""
    s = gpu.spec
    scaled = {k: getattr(s, k) * factor for k in (
        "fp32_flop_per_s", "tf32_tensor_flop_per_s", "fp16_tensor_flop_per_s",
        "bf16_tensor_flop_per_s", "fp8_tensor_flop_per_s", "int8_tensor_op_per_s",
        "exp_per_s", "l2_bandwidth_bytes_per_s") if getattr(s, k) is not None}
    return gpu.model_copy(update={"spec": s.model_copy(update={
        "sm_count": s.sm_count * factor, **scaled})})


@given(cases(), st.integers(2, 3), st.booleans())
def test_more_sms_are_never_slower(case, factor, l2) -> None:
    algorithm, problem, gpu, tiling = case
    gpu = load_gpu(gpu)
    bigger = more_sms(gpu, factor)
    assert bigger.sram_bandwidth_bytes_per_s == factor * gpu.sram_bandwidth_bytes_per_s
    t = [simulate(problem, g, algorithm, tiling, l2=l2).time_s for g in (gpu, bigger)]
    assert t[1] <= t[0] * (1 + ROUNDING)


def test_uniform_blocks_fill_exactly_the_waves() -> None:
    """Full mask, tiles dividing N and S: every block is equally long, so the scheduler
    runs ⌈blocks/slots⌉ blocks on the busiest slot — no more."""
    gpu = load_gpu("h100-sxm")
    p = AttentionProblem(batch=3, seq_len=1024, heads=32, head_dim=64, mask=Mask(causal=False))
    trace = simulate(p, gpu, "flash2")
    (k,) = trace.kernels
    assert k.blocks == 3 * 32 * 1024 // trace.tiling.block_q
    assert k.max_blocks_per_slot == k.waves == math.ceil(k.blocks / trace.slots) > 1
    assert np.isclose(k.wave_efficiency, k.blocks / (trace.slots * k.waves))


@settings(max_examples=15)
@given(st.integers(1, 3), st.sampled_from([(8, 8), (16, 4), (32, 8), (12, 12)]),
       st.sampled_from([64, 128]), st.sampled_from([512, 1024, 2048]),
       st.sampled_from(["h100-sxm", "a100-sxm4-80gb"]))
def test_equal_blocks_tie_exactly_and_fill_round_robin_waves(batch, heads, head_dim, n,
                                                             gpu) -> None:
    """The tie rule is well defined (issue 13): a full mask with tiles dividing N gives
    every block the same steps, so all blocks last the same number of ticks, every wave's
    slots free up at one tick, and the ties go to the lowest slots — the i-th block
    launched runs on slot i mod slots from ⌊i / slots⌋ × its duration. (With the step
    times summed in floats, the end times differed in their last bits and those bits
    picked the slots after the first wave.)"""
    p = AttentionProblem(batch=batch, seq_len=n, heads=heads[0], kv_heads=heads[1],
                         head_dim=head_dim, mask=Mask(causal=False))
    trace = simulate(p, gpu, "flash2")
    assume(n % trace.tiling.block_q == 0)
    _, slot, start_s, end_s = trace._blocks_log      # seconds: back to the engine's ticks
    start, end = (np.rint(t * ticks_per_s(trace.gpu)).astype(np.int64)
                  for t in (start_s, end_s))
    slots = trace.gpu.spec.sm_count * trace.kernels[0].resident_blocks_per_sm
    launch = np.lexsort((slot, start))                 # launch order = start, then slot
    assert len(set((end - start).tolist())) == 1
    i = np.arange(len(launch))
    assert (slot[launch] == i % slots).all()
    assert (start[launch] == (i // slots) * (end - start)[0]).all()


@settings(max_examples=20)
@given(cases(algorithms=("standard", "flash2", "flash1")), st.booleans())
def test_a_flushed_l2_before_every_kernel_never_reads_less(case, backward) -> None:
    """cold_kernels (Nsight Compute's cache flush before each kernel): the resident units
    of a cold LRU are a most-recent prefix of the warm one's, so every read that hits cold
    hits warm: HBM reads never fall; a one-kernel call is unchanged; global bytes are."""
    algorithm, problem, gpu, tiling = case
    if backward:
        problem = problem.model_copy(update={"pass_": "forward+backward"})
    try:
        warm = simulate(problem, gpu, algorithm, tiling)
    except InputError:
        assume(False)
    cold = simulate(problem, gpu, algorithm, tiling, cold_kernels=True)
    assert cold.cost.hbm_read_bytes >= warm.cost.hbm_read_bytes
    assert cold.cost.global_bytes == warm.cost.global_bytes
    total = cold.hbm_write_in_kernels_bytes + cold.hbm_write_after_bytes
    assert total == pytest.approx(cold.cost.hbm_write_bytes, rel=1e-12)
    if len(warm.kernels) == 1:
        assert cold.cost == warm.cost
        assert cold.hbm_write_after_bytes == warm.hbm_write_after_bytes
