"""The closed-form L2 reuse estimate lies between compulsory traffic and no reuse."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memsim.algorithms import compulsory_bytes
from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask

H100 = load_gpu("h100-sxm")

masks = st.sampled_from([Mask(causal=False), Mask(), Mask(window=300), Mask(chunk=256)])


@given(N=st.integers(1, 20_000), extra=st.integers(0, 20_000), mask=masks,
       alg=st.sampled_from(["flash2", "standard", "standard_blockskip", "flash1"]),
       K=st.sampled_from([1, 4, 16]),
       pass_=st.sampled_from(["forward", "backward", "forward+backward"]))
def test_estimate_between_compulsory_and_no_reuse(N, extra, mask, alg, K, pass_) -> None:
    p = AttentionProblem(batch=2, seq_len=N, kv_len=N + extra, heads=16, kv_heads=K,
                         head_dim=64, mask=mask, **{"pass": pass_})
    plain, tiling = attention_cost(p, H100, alg)
    est, _ = attention_cost(p, H100, alg, tiling, l2_estimate=True)
    assert est.global_bytes == plain.global_bytes          # L2 sees every request
    assert est.flops == plain.flops
    assert compulsory_bytes(p) <= est.hbm_bytes * (1 + 1e-12)
    assert est.hbm_bytes <= plain.hbm_bytes


def test_long_prefill_estimate_near_compulsory_on_h100() -> None:
    """FA-2 at N = 32K, H = 32, D = 128: q-tile-first blocks of one head stream the same
    K/V tiles, and one head's K/V (16 MiB) fits the 50 MiB L2 → close to reading each
    tensor once (the trace-driven model checks this against a simulated L2)."""
    p = AttentionProblem(batch=1, seq_len=32768, heads=32, head_dim=128, mask=Mask())
    plain, tiling = attention_cost(p, H100, "flash2")
    est, _ = attention_cost(p, H100, "flash2", tiling, l2_estimate=True)
    assert est.hbm_bytes < 1.05 * compulsory_bytes(p) + 32 * 128 * 4 * 32768
    assert plain.hbm_bytes > 10 * est.hbm_bytes


def test_estimate_agrees_with_the_trace_driven_model() -> None:
    """The closed form against the simulated schedule through a 50 MiB LRU L2 (H100).

    Measured when written (2026-11-22): ratios 0.94–1.00 over these shapes; the full-mask
    case is lowest because its blocks drift apart across waves, which the closed form's
    lock-step waves ignore. Tolerance 10 %.
    """
    from memsim.trace.simulate import simulate

    shapes = [(4096, 32, 32, Mask()), (16384, 32, 8, Mask()), (8192, 32, 32, Mask(causal=False)),
              (8192, 32, 32, Mask(window=1024))]
    for alg in ("flash2", "standard"):
        for N, H, K, mask in shapes:
            p = AttentionProblem(batch=1, seq_len=N, heads=H, kv_heads=K, head_dim=128,
                                 mask=mask)
            plain, tiling = attention_cost(p, H100, alg)
            est, _ = attention_cost(p, H100, alg, tiling, l2_estimate=True)
            traced = simulate(p, H100, alg, tiling).cost
            assert abs(est.hbm_bytes / traced.hbm_bytes - 1) < 0.10, (alg, N, mask)
            assert traced.hbm_bytes < plain.hbm_bytes


def test_backward_estimate_agrees_with_the_trace_driven_model() -> None:
    """FA-2's backward (grid = key tiles × batch × head groups, its own 128 × 128 or
    64 × 128 tiles, one block per SM): the blocks of a group in flight walk the same query
    tiles, so Q, dO, logsumexp, Δ and the dQ accumulator are read about once per group.
    Measured when written (2026-11-30): A100 80GB, B 8, H 16, N 4096, D 64, causal —
    1.15 GB both (no reuse 7.45 GB). Tolerance 10 %."""
    from memsim.trace.simulate import simulate

    a100 = load_gpu("a100-sxm4-80gb")
    shapes = [(a100, 2, 16, 16, 4096, 64, Mask()), (H100, 1, 32, 8, 8192, 128, Mask()),
              (H100, 1, 16, 16, 4096, 128, Mask(causal=False))]
    for gpu, B, H, K, N, D, mask in shapes:
        p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=K, head_dim=D, mask=mask,
                             **{"pass": "backward"})
        plain, tiling = attention_cost(p, gpu, "flash2")
        est, _ = attention_cost(p, gpu, "flash2", tiling, l2_estimate=True)
        traced = simulate(p, gpu, "flash2", tiling).cost
        assert abs(est.hbm_bytes / traced.hbm_bytes - 1) < 0.10, (N, D, mask)
        assert est.hbm_bytes < 0.5 * plain.hbm_bytes


def _small_gpu(gpu, l2_bytes: int, sm_count: int):
    """``gpu`` with a smaller L2 and fewer SMs (the closed form and the trace both read
    spec.l2_bytes and spec.sm_count), so small, cheap shapes reach the regimes long
    contexts reach on the real part: K/V spans larger than the L2, several waves per
    head group, waves straddling two groups."""
    spec = gpu.spec.model_copy(update={"l2_bytes": l2_bytes, "sm_count": sm_count})
    return gpu.model_copy(update={"spec": spec})


def _estimate_and_trace_hbm_bytes(p: AttentionProblem, gpu, algorithm: str
                                  ) -> tuple[float, float]:
    """HBM bytes of the closed-form L2 estimate and of the trace, on the same tiling."""
    from memsim.trace.simulate import simulate

    est, tiling = attention_cost(p, gpu, algorithm, l2_estimate=True)
    return est.hbm_bytes, simulate(p, gpu, algorithm, tiling).cost.hbm_bytes


#: estimate / trace bounds of the forward property, by (algorithm, causal): the range of
#: `python -m benchmarks.l2_draws --algorithm A [--causal] --seed S --draws 80`, S = 31–33
#: (240 draws each; 2026-12-02, branch walkdown), rounded out — not 10 % where the closed
#: form steps at a threshold the trace crosses over a few blocks:
#: FA-1 full 238/240 within 10 %, 0.95–1.40 (B 2, N 474, H 16, K 4, D 64, 4 MiB, 8 SMs:
#: 1.396, unexplained); FA-1 causal 236/240, 0.748–1.171 (B 2, H 8, 1 MiB, 16 SMs:
#: N 144, K 4, D 128 and N 342, K 8, D 64; remeasured on this state, seeds 31–33);
#: FA-2 full 230/240, 0.50–1.16 (B 1, N 11019, H 16, D 128, 1 MiB, 16 SMs: 0.498, the
#: blocks drift out of the lock-step waves the closed form assumes); FA-2 causal 227/240,
#: 0.57–1.24 (B 2, N 1151, H 16, K 8, D 128, 1 MiB, 8 SMs: 0.566, the later groups'
#: windows stream more Q and O than the rule's one clump; docs/DESIGN.md §"The L2
#: model" has the rule that counts them, not kept). Standard: the docstring below.
FORWARD_BOUNDS = {
    ("flash1", False): (0.8, 1.45), ("flash1", True): (0.7, 1.2),
    ("standard", False): (0.85, 1.2), ("standard", True): (0.8, 1.2),
    ("flash2", False): (0.45, 1.2), ("flash2", True): (0.5, 1.3),
}


@settings(max_examples=30, deadline=None)
@example(alg="flash2", N=700, H=16, k_div=0, D=64, B=1, causal=True, l2_mib=2, sms=16)
@example(alg="flash2", N=1490, H=16, k_div=0, D=64, B=1, causal=True, l2_mib=2.25, sms=16)
@example(alg="flash2", N=3220, H=4, k_div=2, D=64, B=1, causal=True, l2_mib=1, sms=16)
@example(alg="flash2", N=1151, H=16, k_div=1, D=128, B=2, causal=True, l2_mib=1, sms=8)
@example(alg="flash2", N=11019, H=16, k_div=0, D=128, B=1, causal=False, l2_mib=1, sms=16)
@example(alg="flash1", N=1315, H=4, k_div=1, D=64, B=1, causal=True, l2_mib=1, sms=4)
@example(alg="flash1", N=144, H=8, k_div=1, D=128, B=2, causal=True, l2_mib=1, sms=16)
@example(alg="flash1", N=342, H=8, k_div=0, D=64, B=2, causal=True, l2_mib=1, sms=16)
@example(alg="standard", N=449, H=4, k_div=0, D=64, B=1, causal=True, l2_mib=4, sms=8)
@example(alg="flash1", N=474, H=16, k_div=2, D=64, B=2, causal=False, l2_mib=4, sms=8)
@example(alg="flash1", N=95, H=8, k_div=1, D=128, B=2, causal=False, l2_mib=1, sms=4)
@given(alg=st.sampled_from(["flash1", "flash2", "standard"]), N=st.integers(64, 16384),
       H=st.sampled_from([4, 8, 16]), k_div=st.integers(0, 3),
       D=st.sampled_from([64, 128]), B=st.integers(1, 2), causal=st.booleans(),
       l2_mib=st.sampled_from([1, 2, 4, 8]), sms=st.sampled_from([4, 8, 16]))
def test_forward_estimate_and_trace_agree(alg, N, H, k_div, D, B, causal, l2_mib,
                                          sms) -> None:
    """One L2 answer, random shapes: the forward's closed-form HBM bytes against the
    trace's on a shrunken GPU (1–8 MiB L2, 4–16 SMs), so that K/V spans, FA-1's
    per-row state and standard's S and P pass the L2 at small N — MHA and GQA, causal
    and full masks. Bounds: FORWARD_BOUNDS, with the draws that set them; standard
    (2026-12-01, 200 draws, numpy seeds 31–32): full 0.91–1.02, causal 0.85–1.15 (B 2,
    N 139, H 8, D 64, causal, 2 MiB: 1.152, the math backend's elementwise hand-offs;
    B 1, N 449, H 4, K 4, D 64, causal, 4 MiB, 8 SMs: 0.847, main and this branch alike,
    2026-12-02, a hypothesis draw — unexplained, the S/P hand-offs near the L2).
    Misses sit where one generation, wave or kernel more or less overflows the L2: the
    closed form steps there, the trace crosses over a few blocks.

    The @examples: FA-2 causal B 1, H 16, D 64, 16 SMs at N 700 (2 MiB) and N 1490
    (2.25 MiB), groups sharing a wave; N 3220, H 4, K 1, 1 MiB, one head group with
    Q ≥ slots, 0.899 (the first group's generations: in generation 2 the windows hold
    24 K/V tiles and 8 tiles of Q and O, 1.036 of the 1.049 MB, so 2 of each clump's
    19 re-reads miss, where the closed form's step charges none); B 2, N 1151, H 16,
    K 8, D 128, 1 MiB, 8 SMs 0.566 (the later groups' windows stream more than one
    clump's Q and O); FA-2 full N 11019, 0.498; FA-1 causal B 1, N 1315,
    H 4, K 2, D 64, 1 MiB, 4 SMs 0.797 → 1.007 (a re-touch's span holds K/V tile j's
    Bc keys, not the mean tile); FA-1 full N 474, 1.396, and N 95, 1.00 (2.01 with
    every re-touch's tile taken as Bc keys: at N < 2·Bc the only re-touched tile is
    the ragged last one); FA-1 causal N 144 and N 342, the range's ends (0.748,
    1.171). History and open leads: docs/DESIGN.md §"The L2 model"."""
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=max(1, H >> k_div),
                         head_dim=D, mask=Mask(causal=causal))
    est, traced = _estimate_and_trace_hbm_bytes(p, _small_gpu(H100, l2_mib * 2**20, sms),
                                                alg)
    lo, hi = FORWARD_BOUNDS[(alg, causal)]
    assert lo <= est / traced <= hi, (est, traced)


def test_flash1_causal_retouch_span_holds_a_full_kv_tile() -> None:
    """FA-1 forward, causal, B 1, N 1315, H 4, K 2, D 64 on a 1 MiB, 4-SM GPU: estimate /
    trace 0.797 before (main, 2026-12-02: the K/V tile in a state re-touch's span taken
    as the mean tile, which the ragged last tile makes smaller) and 1.007 after (tile j's
    Bc keys, :meth:`Arrays._retouch_tile_keys`; branch walkdown). Measured by this test's
    own computation; the property's bound (0.7) lets 0.797 pass, this one does not."""
    p = AttentionProblem(batch=1, seq_len=1315, heads=4, kv_heads=2, head_dim=64,
                         mask=Mask(causal=True))
    est, traced = _estimate_and_trace_hbm_bytes(p, _small_gpu(H100, 2**20, 4), "flash1")
    assert abs(est / traced - 1) < 0.05, (est, traced)


@pytest.mark.parametrize(("N", "H", "K", "causal", "ratio"), [
    (65536, 8, 8, False, 1.042),    # waves straddling two heads re-read K/V
    (262144, 2, 2, True, 0.996),    # staggered causal blocks thrash: 237 GB of 275 GB
])
def test_long_context_estimate_agrees_with_the_trace_on_h100(N, H, K, causal,
                                                             ratio) -> None:
    """Past the L2 on the real part (H100, D 128, FA-2 forward): estimate / trace as
    measured when written (2026-12-01); before, 0.61 and about 0.01. Since both walk
    each query tile's key tiles down, as FA-2 does (2026-12-02, branch revwalk): the
    causal case 0.938 → 0.996 (trace 173 → 237 GB: two reads of a tile are two blocks'
    end gap apart, δ more than their start gap; estimate 236 GB). Since flash2 runs 2
    blocks per SM, not 3 (255 registers per thread, ptxas; 2026-12-02, branch regs): the
    full case 1.014 → 1.042, the causal one within 0.02 of 0.996. Tolerance 10 %."""
    p = AttentionProblem(batch=1, seq_len=N, heads=H, kv_heads=K, head_dim=128,
                         mask=Mask(causal=causal))
    est, traced = _estimate_and_trace_hbm_bytes(p, H100, "flash2")
    assert est / traced == pytest.approx(ratio, abs=0.02)
    assert abs(est / traced - 1) < 0.10


@pytest.mark.parametrize(("causal", "ratio"), [(False, 1.001), (True, 1.059)])
def test_three_read_softmax_sweeps_its_rows(causal: bool, ratio: float) -> None:
    """Eager standard with rows of S longer than PyTorch's shared-memory softmax takes
    (S·e ≥ 48 KiB: cunn_SoftMaxForward reads the row three times — max, sum, output): the
    trace sweeps the whole row before each next read (memsim.trace.sched_standard), so a
    block's rows in flight (4 MiB each here) push its tiles out between sweeps and S is
    read from HBM three times, as the closed form charges. Estimate / trace on H100 as
    measured when written (2026-12-01); before, the trace re-read each tile in the same
    step (the second read always hit): 1.104 and 1.147. Tolerance 10 %."""
    p = AttentionProblem(batch=1, seq_len=256, kv_len=32768, heads=4, head_dim=64,
                         mask=Mask(causal=causal))
    est, traced = _estimate_and_trace_hbm_bytes(p, H100, "standard")
    assert est / traced == pytest.approx(ratio, abs=0.02)
    assert abs(est / traced - 1) < 0.10
