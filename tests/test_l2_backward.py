"""The closed-form L2 estimate of the backward passes (memsim/algorithms/_l2_backward.py)
against the trace-driven model, which plays the same kernels' blocks through an LRU L2.

- Property (any draw): FA-1's backward (Algorithm 4) and eager standard attention's five
  autograd kernels agree with the trace within 10 % on HBM bytes, MHA and GQA, causal and
  full, on GPUs with a small L2 and few SMs, so that cheap shapes reach the regimes long
  contexts reach on the real part.
- Golden: A100 80GB, H 16 / D 64 and H 32 / K 8 / D 128, causal and full, as measured
  when written; FA-2's causal backward at 16K with GQA is a known miss (strict xfail).
- Laws of the cross-kernel carry rule.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.algorithms._l2_backward import carried_fraction
from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.trace.simulate import simulate

H100 = load_gpu("h100-sxm")
A100 = load_gpu("a100-sxm4-80gb")


def _small_gpu(gpu, l2_bytes: int, sm_count: int):
    spec = gpu.spec.model_copy(update={"l2_bytes": l2_bytes, "sm_count": sm_count})
    return gpu.model_copy(update={"spec": spec})


def _ratio(p: AttentionProblem, gpu, algorithm: str) -> float:
    """Closed-form / trace HBM bytes on the same tiling."""
    est, tiling = attention_cost(p, gpu, algorithm, l2_estimate=True)
    return est.hbm_bytes / simulate(p, gpu, algorithm, tiling).cost.hbm_bytes


@settings(max_examples=20, deadline=None)
@given(alg=st.sampled_from(["flash1", "standard"]), N=st.integers(1536, 4096),
       H=st.sampled_from([4, 8, 16]), k_div=st.integers(0, 3), D=st.sampled_from([64, 128]),
       B=st.integers(1, 2), causal=st.booleans(), l2_mib=st.sampled_from([1, 2, 4, 8]),
       sms=st.sampled_from([4, 8, 16]))
def test_backward_estimate_and_trace_agree(alg, N, H, k_div, D, B, causal, l2_mib,
                                           sms) -> None:
    """Measured when written (2026-12-01, /tmp scripts, 480 random draws of this domain
    with N from 512, seeds 1–32): FA-1 and standard all within 10 % for N ≥ 1536, range
    0.95–1.06; below, a head with a few query tiles or a problem that nearly fits the L2
    sits on a threshold of the closed form's step (FA-1 N = 711: 0.88, standard N = 558:
    1.30). Before: no L2 estimate for either (FA-1 up to 20× the trace, standard 1.2–1.6×)."""
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=max(1, H >> k_div),
                         head_dim=D, mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, _small_gpu(H100, l2_mib * 2**20, sms), alg)
    assert abs(r - 1) < 0.10, r


# (algorithm, H, K, D, N, causal): estimate / trace as measured when written (2026-12-01)
GOLDEN = [
    ("flash1", 16, 16, 64, 4096, True, 1.000), ("flash1", 32, 8, 128, 4096, False, 1.000),
    ("flash1", 32, 8, 128, 16384, True, 1.000),
    ("standard", 16, 16, 64, 4096, True, 1.000), ("standard", 32, 8, 128, 4096, False, 1.000),
    ("standard", 16, 16, 64, 1024, True, 1.033),
    ("flash2", 16, 16, 64, 4096, True, 1.033), ("flash2", 32, 8, 128, 4096, False, 1.000),
    ("flash2", 32, 8, 128, 32768, True, 0.982), ("flash2", 32, 8, 128, 16384, False, 1.015),
]


@pytest.mark.parametrize(("alg", "H", "K", "D", "N", "causal", "ratio"), GOLDEN)
def test_backward_estimate_agrees_with_the_trace_on_a100(alg, H, K, D, N, causal,
                                                         ratio) -> None:
    """A100 80GB, B 1, backward: the ratio as measured when written, and within 10 %.
    Before (no backward L2 model for FA-1 and standard, FA-2's per-wave rule):
    FA-1 H 16 4K causal 10.7, standard 4K 1.17–1.53, FA-2 32K causal 0.47; before the
    cross-kernel rule was handoff_hit_fraction's (2026-12-01): standard H 16 1K causal
    1.046, FA-2 H 16 4K causal 1.082; before standard's tiling took its SRAM at the fp32
    compute width of a bf16 call (eager branch, 2026-12-01: 3 → 1 block per SM for these
    128 × 128 tiles): standard H 16 1K causal 1.018; before the eager backward ran at the
    fp32 compute width with autograd's kernels (dO cast up, tmp = dP ∘ P and the softmax
    backward, the scale gradients, the casts back; eager branch, 2026-12-01): 1.058."""
    p = AttentionProblem(batch=1, seq_len=N, heads=H, kv_heads=K, head_dim=D,
                         mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, A100, alg)
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10


@pytest.mark.xfail(strict=True, reason="FA-2 causal backward with GQA past the L2: which "
                   "head groups pay a staggered start-up depends on how key tiles per "
                   "group and slots interleave; the closed form charges it to the first "
                   "group, or to every other one when a group fills about one generation "
                   "(A100 16K 0.51, H100 16K 1.22 and 32K 0.42; A100 32K 0.98). In the "
                   "trace every later group starts a shrinking lock-step batch, then "
                   "sub-batches of g blocks c steps apart, and pays a staggered ramp "
                   "(docs/DESIGN.md §The L2 model, Backward)")
@pytest.mark.parametrize(("gpu", "N"), [(A100, 16384), (H100, 16384), (H100, 32768)])
def test_fa2_causal_gqa_backward_known_misses(gpu, N: int) -> None:
    p = AttentionProblem(batch=1, seq_len=N, heads=32, kv_heads=8, head_dim=128,
                         mask=Mask(), **{"pass": "backward"})
    assert abs(_ratio(p, gpu, "flash2") - 1) < 0.10


@given(footprint=st.floats(0, 1e9), z=st.floats(0, 1e8), y=st.floats(0, 1e8),
       groups=st.integers(1, 10_000), cap=st.floats(1, 1e9), more=st.floats(0, 1e9))
def test_carried_fraction_laws(footprint, z, y, groups, cap, more) -> None:
    """A share in [0, 1]; all of it when kernel k fits and kernel k + 1 brings in no more
    per group than it leaves behind; none when both kernels' bytes overflow the L2 at
    every point of the order; never less with more L2 (LRU's inclusion property)."""
    f = float(carried_fraction(footprint, z, y, groups, cap))
    assert 0.0 <= f <= 1.0
    second = footprint + groups * (y - z)
    if footprint <= cap and y <= z:
        assert f == 1.0
    if min(footprint, second) > cap:
        assert f == 0.0
    assert float(carried_fraction(footprint, z, y, groups, cap + more)) >= f
