"""memsim.roofline: the one place where time comes from a Cost and a GPU.

Each expected time is computed here from the profile's peak × efficiency, independently of
roofline()'s own arithmetic, on hand-built Costs whose answer is known.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.cost import Cost
from memsim.hardware import gpu_names, load_gpu
from memsim.roofline import BOUND_EXPLANATIONS, TERMS, busiest_sm_blocks, roofline

H100 = load_gpu("h100-sxm")
A100 = load_gpu("a100-sxm4-80gb")  # no fp8 tensor cores


def test_each_term_is_work_over_the_achievable_rate() -> None:
    """One second of work per resource, from the profile's peak × efficiency factor."""
    s, f = H100.spec, H100.efficiency
    sram_peak = s.sram_bytes_per_clock_per_sm * s.sm_count * s.boost_clock_hz  # FA-3 §1
    cost = Cost(
        matmul_flops=s.bf16_tensor_flop_per_s * f.tensor,
        vector_flops=s.fp32_flop_per_s * f.fp32,
        exp_ops=s.exp_per_s * f.exp,
        hbm_read_bytes=s.hbm_bandwidth_bytes_per_s * f.hbm_bandwidth / 2,
        hbm_write_bytes=s.hbm_bandwidth_bytes_per_s * f.hbm_bandwidth / 2,
        global_read_bytes=s.l2_bandwidth_bytes_per_s * f.l2_bandwidth,
        sram_read_bytes=sram_peak * f.sram_bandwidth,
    )
    t = roofline(cost, H100, "bf16")
    for name in TERMS:
        assert t.terms_s[name] == pytest.approx(1.0, rel=1e-12), name


def test_compute_adds_memory_overlaps_and_launches_add_to_both() -> None:
    """compute = matmul + vector + exp (FA-3 §3.1: same warps issue them), memory = max of
    the levels; lower = max(compute, memory) + launch, upper = compute + memory + launch."""
    s, f = H100.spec, H100.efficiency
    cost = Cost(
        matmul_flops=2.0 * s.bf16_tensor_flop_per_s * f.tensor,     # 2 s
        vector_flops=0.5 * s.fp32_flop_per_s * f.fp32,              # 0.5 s
        exp_ops=1.0 * s.exp_per_s * f.exp,                          # 1 s
        hbm_read_bytes=4.0 * s.hbm_bandwidth_bytes_per_s * f.hbm_bandwidth,  # 4 s
        global_read_bytes=0.5 * s.l2_bandwidth_bytes_per_s * f.l2_bandwidth,  # 0.5 s
        launches=3.0,
    )
    t = roofline(cost, H100, "bf16")
    launch = 3 * s.kernel_launch_overhead_s
    assert t.compute_s == pytest.approx(3.5)
    assert t.memory_s == pytest.approx(4.0)
    assert t.launch_s == pytest.approx(launch)
    assert t.lower_s == pytest.approx(4.0 + launch)
    assert t.upper_s == pytest.approx(7.5 + launch)
    assert t.time_s == t.lower_s
    assert t.bound == "hbm"
    assert t.arithmetic_intensity_flop_per_byte == pytest.approx(
        cost.flops / cost.hbm_bytes)


def test_overlapped_exponentials_hide_under_the_matmuls() -> None:
    """exp_overlaps (two warpgroups taking turns): compute = max(matmul, exp) + vector, so
    the exponentials cost nothing while the matmuls take longer, and bind once they are
    longer; never more than the sum."""
    s, f = H100.spec, H100.efficiency
    cost = Cost(
        matmul_flops=2.0 * s.bf16_tensor_flop_per_s * f.tensor,     # 2 s
        vector_flops=0.5 * s.fp32_flop_per_s * f.fp32,              # 0.5 s
        exp_ops=1.0 * s.exp_per_s * f.exp,                          # 1 s
    )
    hidden = roofline(cost, H100, "bf16", exp_overlaps=True)
    assert hidden.compute_s == pytest.approx(2.5)
    assert roofline(cost, H100, "bf16").compute_s == pytest.approx(3.5)
    slow_exp = replace(cost, exp_ops=3.0 * s.exp_per_s * f.exp)     # 3 s
    assert roofline(slow_exp, H100, "bf16", exp_overlaps=True).compute_s == pytest.approx(3.5)


def test_matmul_unit_and_dtype_pick_the_peak() -> None:
    s, f = H100.spec, H100.efficiency
    cost = Cost(matmul_flops=1e12)
    assert roofline(cost, H100, "fp16").terms_s["matmul"] == pytest.approx(
        1e12 / (s.fp16_tensor_flop_per_s * f.tensor))
    assert roofline(cost, H100, "fp32").terms_s["matmul"] == pytest.approx(
        1e12 / (s.tf32_tensor_flop_per_s * f.tensor))     # fp32 matmuls run as tf32
    assert roofline(cost, H100, "bf16", matmul_unit="fp32").terms_s["matmul"] == pytest.approx(
        1e12 / (s.fp32_flop_per_s * f.fp32))             # memsim's Numba kernels


def test_fp8_matmuls_run_at_the_fp8_rate_where_there_is_one() -> None:
    """DSA's fp8 indexer: the fp8 tensor rate on H100; upcast to the dtype's rate on A100."""
    cost = Cost(fp8_matmul_flops=1e12)
    h = H100.spec.fp8_tensor_flop_per_s * H100.efficiency.tensor
    assert roofline(cost, H100, "bf16").terms_s["matmul"] == pytest.approx(1e12 / h)
    assert A100.spec.fp8_tensor_flop_per_s is None
    a = A100.spec.bf16_tensor_flop_per_s * A100.efficiency.tensor
    assert roofline(cost, A100, "bf16").terms_s["matmul"] == pytest.approx(1e12 / a)


def test_wave_quantisation_stretches_per_sm_work_only() -> None:
    """132 SMs × 2 blocks each = 264 slots. 265 blocks need 2 waves; the busiest SM runs 3
    blocks where the average is 265/132, and a block alone on its SM uses the whole SM, so
    per-SM work (compute, SRAM) is stretched by 3·132/265; HBM and L2 are chip-wide."""
    cost = Cost(matmul_flops=1e12, hbm_read_bytes=1e9, sram_read_bytes=1e9, blocks=265.0)
    flat = roofline(cost, H100, "bf16")
    waved = roofline(cost, H100, "bf16", blocks_per_sm=2)
    stretch = 3 * 132 / 265
    assert waved.waves == 2
    assert waved.wave_efficiency == pytest.approx(1 / stretch)
    assert waved.terms_s["matmul"] == pytest.approx(flat.terms_s["matmul"] * stretch)
    assert waved.terms_s["sram"] == pytest.approx(flat.terms_s["sram"] * stretch)
    assert waved.terms_s["hbm"] == flat.terms_s["hbm"]
    full = roofline(Cost(matmul_flops=1e12, blocks=528.0), H100, "bf16", blocks_per_sm=2)
    assert (full.waves, full.wave_efficiency) == (2, 1.0)   # two full waves: nothing idle
    assert flat.waves == 1 and flat.wave_efficiency == 1.0  # no occupancy given


def test_fewer_blocks_than_slots_but_one_per_sm_are_not_stretched() -> None:
    """132 decode blocks with 4 slots per SM: one block per SM uses the SM's whole shared-
    memory bandwidth and tensor cores (the old slot-based stretch made them 4x slower)."""
    cost = Cost(matmul_flops=1e12, sram_read_bytes=1e10, blocks=132.0)
    t = roofline(cost, H100, "bf16", blocks_per_sm=4)
    assert t.wave_efficiency == 1.0
    assert t.terms_s["sram"] == roofline(cost, H100, "bf16").terms_s["sram"]
    half = roofline(Cost(sram_read_bytes=1e10, blocks=66.0), H100, "bf16", blocks_per_sm=4)
    assert half.wave_efficiency == pytest.approx(0.5)  # half the SMs idle


def test_a_class_floor_replaces_the_launch_constant() -> None:
    cost = Cost(hbm_read_bytes=1e6, launches=2.0)
    assert roofline(cost, H100).launch_s == 2 * H100.spec.kernel_launch_overhead_s
    assert roofline(cost, H100, floor_s=13e-6).launch_s == 13e-6


def test_no_hbm_traffic_has_infinite_intensity() -> None:
    t = roofline(Cost(matmul_flops=1e9), H100, "bf16")
    assert t.arithmetic_intensity_flop_per_byte == float("inf")
    assert t.bound == "matmul"


def test_vectorised_roofline_equals_one_call_per_element() -> None:
    rng = np.random.default_rng(0)
    n = 64
    cost = Cost(matmul_flops=rng.uniform(0, 1e13, n), vector_flops=rng.uniform(0, 1e11, n),
                exp_ops=rng.uniform(0, 1e10, n), hbm_read_bytes=rng.uniform(0, 1e10, n),
                global_read_bytes=rng.uniform(0, 3e10, n), sram_read_bytes=rng.uniform(0, 1e11, n),
                launches=np.full(n, 2.0), blocks=rng.integers(1, 2000, n).astype(float))
    bps = rng.integers(1, 4, n)
    many = roofline(cost, H100, "bf16", blocks_per_sm=bps)
    for i in range(n):
        one = roofline(cost.item(i), H100, "bf16", blocks_per_sm=int(bps[i]))
        assert many.lower_s[i] == pytest.approx(one.lower_s, rel=1e-15)
        assert many.upper_s[i] == pytest.approx(one.upper_s, rel=1e-15)
        assert many.bound[i] == one.bound


def test_timing_to_dict_is_plain_json() -> None:
    d = roofline(Cost(matmul_flops=1e9, hbm_read_bytes=1e6, launches=1.0), H100).to_dict()
    assert d["time_s"] == d["lower_s"] and set(d["terms_s"]) == set(TERMS)
    assert d["bound"] in BOUND_EXPLANATIONS
    assert all(isinstance(v, float) for v in d["terms_s"].values())


costs = st.builds(
    Cost, **{name: st.floats(0, 1e15) for name in (
        "matmul_flops", "fp8_matmul_flops", "vector_flops", "exp_ops", "global_read_bytes",
        "global_write_bytes", "hbm_read_bytes", "hbm_write_bytes", "sram_read_bytes",
        "sram_write_bytes")},
    launches=st.floats(0, 10), blocks=st.floats(0, 1e7))


@given(costs, st.sampled_from(gpu_names()), st.sampled_from(["tensor", "fp32"]),
       st.one_of(st.none(), st.integers(1, 32)))
def test_lower_le_upper_le_twice_lower(cost: Cost, gpu: str, unit: str,
                                       bps: int | None) -> None:
    """Scaling book's T_lower ≤ T_upper ≤ 2·T_lower, for any non-negative Cost; the binding
    term is the largest one."""
    t = roofline(cost, load_gpu(gpu), "bf16", matmul_unit=unit, blocks_per_sm=bps)
    assert 0 <= t.lower_s <= t.upper_s <= 2 * t.lower_s * (1 + 1e-12)
    assert t.terms_s[t.bound] == max(t.terms_s.values())


def test_a_stream_term_joins_the_memory_levels() -> None:
    """``stream_s`` (a decode kernel's blocks streaming at their own latency-bound pace) is
    one more memory level: the max with HBM, L2 and shared memory, named when it binds;
    without it the timing has no such term."""
    s, f = H100.spec, H100.efficiency
    cost = Cost(hbm_read_bytes=4.0 * s.hbm_bandwidth_bytes_per_s * f.hbm_bandwidth)  # 4 s
    plain = roofline(cost, H100, "bf16")
    assert "stream" not in plain.terms_s
    slow = roofline(cost, H100, "bf16", stream_s=5.0)
    assert slow.memory_s == pytest.approx(5.0) and slow.bound == "stream"
    assert slow.lower_s - plain.lower_s == pytest.approx(1.0)
    fast = roofline(cost, H100, "bf16", stream_s=3.0)
    assert fast.memory_s == pytest.approx(4.0) and fast.bound == "hbm"
    assert fast.lower_s == pytest.approx(plain.lower_s)
    assert "stream" in BOUND_EXPLANATIONS


def test_busiest_sm_holds_the_ceiling_of_blocks_over_sms() -> None:
    """132 SMs: 1 or 132 blocks put one on the busiest SM, 133 and 264 two, 265 three;
    no blocks still count one (the wave stretch's and decode terms' floor)."""
    got = busiest_sm_blocks(np.array([0, 1, 132, 133, 264, 265]), 132)
    assert got.tolist() == [1, 1, 1, 2, 2, 3]
