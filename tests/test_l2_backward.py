"""The closed-form L2 estimate of the backward passes (memsim/algorithms/_l2_backward.py)
against the trace-driven model, which plays the same kernels' blocks through an LRU L2.

- Property (any draw): FA-1's backward (Algorithm 4) and eager standard attention's five
  autograd kernels agree with the trace within 10 % on HBM bytes, FA-2's within
  FA2_BACKWARD_BOUNDS, MHA and GQA, causal and full, on GPUs with a small L2 and few SMs,
  so that cheap shapes reach the regimes long contexts reach on the real part.
- Golden: A100 80GB, H 16 / D 64 and H 32 / K 8 / D 128, causal and full, as measured
  when written; FA-2's causal GQA backward on A100 and H100, 16K-128K; FA-2's causal
  backward on A100 at 32K, where two heads' rows share the L2.
- Laws of the cross-kernel carry rule.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.algorithms._arrays import from_problem, wave_boundaries
from memsim.algorithms._l2_backward import carried_fraction, fa2_kv_next_head_hit_fraction
from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling
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


#: FA-2's estimate / trace bounds in the backward property, by causal: the spread
#: measured when written (see the property's docstring), rounded out — tighter than the
#: forward's (tests/test_l2_estimate.py, FORWARD_BOUNDS); FA-1 and standard: 10 %
FA2_BACKWARD_BOUNDS = {False: (0.9, 1.2), True: (0.65, 1.2)}


@settings(max_examples=20, deadline=None)
@given(alg=st.sampled_from(["flash1", "standard", "flash2"]), N=st.integers(1536, 4096),
       H=st.sampled_from([4, 8, 16]), k_div=st.integers(0, 3), D=st.sampled_from([64, 128]),
       B=st.integers(1, 2), causal=st.booleans(), l2_mib=st.sampled_from([1, 2, 4, 8]),
       sms=st.sampled_from([4, 8, 16]))
def test_backward_estimate_and_trace_agree(alg, N, H, k_div, D, B, causal, l2_mib,
                                           sms) -> None:
    """Measured when written (2026-12-01, /tmp scripts, 480 random draws of this domain
    with N from 512, seeds 1–32): FA-1 and standard all within 10 % for N ≥ 1536, range
    0.95–1.06; below, a head with a few query tiles or a problem that nearly fits the L2
    sits on a threshold of the closed form's step (FA-1 N = 711: 0.88, standard N = 558:
    1.30). Before: no L2 estimate for either (FA-1 up to 20× the trace, standard 1.2–1.6×).
    FA-2 (bwdl2, 2026-12-01, 120 draws, numpy seeds 51–52): full 74/76 within 10 %
    (0.98–1.12), causal 39/44 (0.74–1.10); before one block per query head and the
    waves' offsets (seed 51), full 25/35 (0.62–1.12), causal 19/25 (0.68–1.19). The
    causal misses sit where a head after the first starts staggered in the slots the
    previous head frees (the closed form charges those heads one read per wave).
    Bounds: FA2_BACKWARD_BOUNDS."""
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=max(1, H >> k_div),
                         head_dim=D, mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, _small_gpu(H100, l2_mib * 2**20, sms), alg)
    if alg == "flash2":
        lo, hi = FA2_BACKWARD_BOUNDS[causal]
        assert lo <= r <= hi, r
    else:
        assert abs(r - 1) < 0.10, r


# (algorithm, H, K, D, N, causal): estimate / trace as measured when written (2026-12-01)
GOLDEN = [
    ("flash1", 16, 16, 64, 4096, True, 1.000), ("flash1", 32, 8, 128, 4096, False, 1.000),
    ("flash1", 32, 8, 128, 16384, True, 1.000),
    ("standard", 16, 16, 64, 4096, True, 1.000), ("standard", 32, 8, 128, 4096, False, 1.000),
    ("standard", 16, 16, 64, 1024, True, 1.033),
    ("flash2", 16, 16, 64, 4096, True, 1.033), ("flash2", 32, 8, 128, 4096, False, 1.000),
    ("flash2", 32, 8, 128, 16384, False, 1.023),
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
    128 × 128 tiles): standard H 16 1K causal 1.018; before FA-2's backward ran one block
    per query head (bwdl2, 2026-12-01): FA-2 H 32 / K 8 16K full 1.015 (0.799 per head
    before the waves' offsets: wave_boundaries); standard H 16 1K causal 1.058 before the
    eager backward ran at the fp32 compute width with autograd's kernels (dO cast up,
    tmp = dP ∘ P and the softmax backward, the scale gradients, the casts back; eager
    branch, 2026-12-01)."""
    p = AttentionProblem(batch=1, seq_len=N, heads=H, kv_heads=K, head_dim=D,
                         mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, A100, alg)
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10


@pytest.mark.parametrize(("K", "ratio"), [(8, 1.055), (32, 1.062)])
def test_fa2_causal_backward_later_heads_share_the_l2(K: int, ratio: float) -> None:
    """A100 80GB, 32K, H 32, D 128, causal: one head's query rows fit in the L2, two do
    not, and the heads straddle the slots, so every head re-reads at the generation
    boundaries as the first does (trace: about 1.37 N rows per later head). Estimate /
    trace as measured when written (2026-12-02); before, the closed form charged the
    later heads one read per row (K 8 0.895, MHA 0.881, a strict xfail)."""
    p = AttentionProblem(batch=1, seq_len=32768, heads=32, kv_heads=K, head_dim=128,
                         mask=Mask(), **{"pass": "backward"})
    r = _ratio(p, A100, "flash2")
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10


def test_fa2_causal_backward_a_later_head_pays_the_generations() -> None:
    """One more head (H 3 → 4, A100 32K, D 128, causal) costs in the estimate what it
    costs in the trace, within 10 %: the added head straddles the slots with its
    neighbours, whose rows do not fit in the L2 together, so it re-reads at its
    generation boundaries as the first head does (measured when written, 2026-12-02:
    1.064; 0.883 when later heads were charged one read per row)."""
    def bytes_of(H: int) -> tuple[float, float]:
        p = AttentionProblem(batch=1, seq_len=32768, heads=H, kv_heads=H, head_dim=128,
                             mask=Mask(), **{"pass": "backward"})
        est, tiling = attention_cost(p, A100, "flash2", l2_estimate=True)
        return est.hbm_bytes, simulate(p, A100, "flash2", tiling).cost.hbm_bytes

    (est3, trace3), (est4, trace4) = bytes_of(3), bytes_of(4)
    assert abs((est4 - est3) / (trace4 - trace3) - 1) < 0.10


@pytest.mark.parametrize(("gpu", "N", "causal", "ratio"), [
    (A100, 16384, True, 1.035), (H100, 16384, True, 0.997), (H100, 32768, True, 0.994),
    (H100, 65536, True, 0.997), (H100, 131072, True, 0.999), (H100, 16384, False, 0.990)])
def test_fa2_gqa_backward_follows_the_trace(gpu, N: int, causal: bool, ratio: float
                                            ) -> None:
    """H 32, K 8, D 128: estimate / trace as measured when written (2026-12-01, bwdl2).
    Before, causal, strict xfails (A100 16K 0.51, H100 16K 1.22, 32K 0.42; 64K 0.23,
    128K 0.45): the trace packed the 4 query heads of a KV head into one block as the
    forward does, so which head group paid the staggered start-up depended on how key
    tiles per group and slots interleaved. FA-2's backward launches one block per query
    head (flash_bwd_launch_template.h, grid (key tiles, B, H)), so a GQA head's blocks
    run as an MHA head's do, reading its KV head's K/V from L2 where the previous head
    left them (fa2_kv_next_head_hit_fraction). Full mask at 16K: 132 slots hold one
    head's 128 blocks and 4 of the next, whose rows both fit (1.000 before). H100 64K,
    128K: 1.046, 1.014 before every head was charged the generations (2026-12-02)."""
    p = AttentionProblem(batch=1, seq_len=N, heads=32, kv_heads=8, head_dim=128,
                         mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, gpu, "flash2")
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10


def test_fa2_gqa_backward_runs_one_block_per_query_head() -> None:
    """FA-2's backward under GQA (H 8, K 2): the dq/dk/dv kernel has B·H·key-tiles blocks,
    each reading its KV head's K and V, and writes dK, dV per query head (dk_expanded,
    dv_expanded), which two sum kernels reduce over the H/K heads of each KV head
    (flash_api.cpp, mha_bwd: at::sum_out)."""
    p = AttentionProblem(batch=2, seq_len=1024, heads=8, kv_heads=2, head_dim=64,
                         mask=Mask(), **{"pass": "backward"})
    _, tiling = attention_cost(p, H100, "flash2")
    trace = simulate(p, H100, "flash2", tiling, l2=False)
    main = next(k for k in trace.kernels if k.name == "flash2.bwd")
    key_tiles = -(-1024 // tiling.backward_tiles[1])
    assert main.blocks == 2 * 8 * key_tiles
    assert [k.name for k in trace.kernels][-2:] == ["flash2.bwd_sum_dk", "flash2.bwd_sum_dv"]
    tensors = {t["name"]: t for t in trace.tensors}
    kv_bytes = 2 * 1024 * 2 * 64 * 2                      # one of K, V: B·S·K·D·e
    assert tensors["k"]["global_read_bytes"] == 4 * kv_bytes   # H/K heads read each
    assert tensors["dk_expanded"]["global_write_bytes"] == 4 * kv_bytes
    assert tensors["dk"]["global_write_bytes"] == kv_bytes


def _h100_backward_sums(heads: int, kv_heads: int):
    """FA-2's backward arrays and tile sums on H100 (B 1, N 8192, D 128, causal)."""
    p = AttentionProblem(batch=1, seq_len=8192, heads=heads, kv_heads=kv_heads, head_dim=128,
                         mask=Mask(), **{"pass": "backward"})
    _, tiling = attention_cost(p, H100, "flash2")
    x = from_problem(p, tiling, H100).backward()
    return x, x.tiles()


def test_next_head_kv_hit_fraction_laws() -> None:
    """All of a KV head's K/V tiles hit for the next head when two heads' query rows, K/V
    and dK/dV fit the L2, none when even one head's rows beside them overflow, the share
    in between under a causal mask; never less with more L2."""
    x, t = _h100_backward_sums(heads=8, kv_heads=2)
    row, kv = 1000.0, 4e6
    frac = lambda cap: float(fa2_kv_next_head_hit_fraction(  # noqa: E731
        replace(x, l2_bytes=cap), t, row, kv)[0])
    two_heads, one_head = 2 * kv + 2 * 8192 * row, 2 * kv + 8192 * row
    assert frac(two_heads) == 1.0
    assert frac(one_head * 0.99) == 0.0
    middle = frac((one_head + two_heads) / 2)
    assert 0.0 < middle < 1.0
    fracs = [frac(one_head * 0.9 + i * 1e6) for i in range(30)]
    assert fracs == sorted(fracs)


@given(blocks=st.integers(1, 3000), slots=st.integers(1, 600), shared=st.booleans())
def test_wave_boundaries_laws(blocks, slots, shared) -> None:
    """A group of equal blocks in lock-step waves crosses ⌊(o + blocks − 1)/slots⌋ wave
    boundaries at offset o: the expected count over the offsets is ⌊(blocks − 1)/d⌋·d/slots
    (d = gcd) when groups share the waves, ⌈blocks/slots⌉ − 1 alone; only boundaries with a
    neighbour in a wave are slanted or both, and both only when one boundary is crossed."""
    plain, slanted, both = (float(v) for v in wave_boundaries(blocks, slots, shared))
    d = math.gcd(blocks, slots)
    total = (blocks - 1) // d * d / slots if shared else -(-blocks // slots) - 1
    assert plain + slanted + both == pytest.approx(total)
    assert min(plain, slanted, both) >= 0
    if not shared:
        assert slanted == both == 0
    if blocks > 2 * slots:
        assert both == 0


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


def test_next_head_kv_hit_fraction_falls_with_the_batch() -> None:
    """FA-2's backward grid is (key tiles, B, H) with the batch between two heads
    (flash_bwd_launch_template.h, grid_n(num_n_block, params.b, params.h)): the B − 1
    other batches' K, V, dK, dV and query rows lie between two heads' reads of a KV
    head's tile, so the share still in L2 never grows with B and falls to none."""
    x, t = _h100_backward_sums(heads=32, kv_heads=8)
    row, kv = 1000.0, 4e6
    cap = 2 * kv + 2 * 8192 * row                          # two heads of one batch fit
    fracs = [float(fa2_kv_next_head_hit_fraction(
        replace(x, B=x.B * 0 + b, l2_bytes=cap), t, row, kv)[0]) for b in range(1, 9)]
    assert fracs[0] == 1.0
    assert fracs == sorted(fracs, reverse=True)
    assert fracs[-1] == 0.0


@pytest.mark.parametrize(("B", "hpb", "ratio"), [(4, 1, 1.020), (8, 1, 1.020),
                                                 (4, 4, 1.000), (8, 4, 1.000)])
def test_fa2_gqa_backward_with_batches_follows_the_trace(B: int, hpb: int,
                                                         ratio: float) -> None:
    """H100, H 32, K 8, D 128, causal, N 8K, with one head per forward block and with the
    default packing of 4: the trace launches the backward's blocks in the real grid's
    order either way (template: the group's heads' key tiles; launch order (tiles, B, H):
    KernelProgram.launch_order). Estimate / trace as measured when written (2026-12-02,
    fixbwd; packing 4: trace128). Before the batch term in fa2_kv_next_head_hit_fraction:
    0.942 (B 4), 0.941 (B 8) — the closed form took the next head's K/V reads from L2
    with B − 1 batches in between. Before the trace followed the grid with the packing of
    4 (it ran a group's heads batch by batch): 1.083 (B 4 and 8)."""
    p = AttentionProblem(batch=B, seq_len=8192, heads=32, kv_heads=8, head_dim=128,
                         mask=Mask(causal=True), **{"pass": "backward"})
    tiling = default_tiling(p, H100, "flash2", heads_per_block=hpb)
    est, _ = attention_cost(p, H100, "flash2", tiling, l2_estimate=True)
    r = est.hbm_bytes / simulate(p, H100, "flash2", tiling).cost.hbm_bytes
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10


@settings(max_examples=12, deadline=None)
@given(N=st.integers(1536, 4096), H=st.sampled_from([4, 8, 16]), k_div=st.integers(1, 3),
       D=st.sampled_from([64, 128]), B=st.integers(2, 4), causal=st.booleans(),
       l2_mib=st.sampled_from([1, 2, 4, 8]), sms=st.sampled_from([4, 8, 16]))
def test_fa2_gqa_backward_with_batches_and_packing_agrees(N, H, k_div, D, B, causal,
                                                          l2_mib, sms) -> None:
    """FA-2's GQA backward with B > 1 on the default tiling (the forward packs the H/K
    heads of a KV head, up to 4, into a block): estimate / trace within 10 % on GPUs with a
    small L2 and few SMs. Measured when written (trace128, 2026-12-02, 40 draws of this
    domain, Python random seed 1): 0.989–1.084, median 1.000, 2 of 40 beyond 5 %; before
    the trace launched the backward's blocks in the real grid's order (a group's heads
    ran batch by batch): 0.995–1.0995, median 1.017, 14 of 40 beyond 5 %."""
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=max(1, H >> k_div),
                         head_dim=D, mask=Mask(causal=causal), **{"pass": "backward"})
    r = _ratio(p, _small_gpu(H100, l2_mib * 2**20, sms), "flash2")
    assert abs(r - 1) < 0.10, r


@pytest.mark.parametrize(("mask", "ratio"), [(Mask(window=512), 0.984),
                                             (Mask(window=512, causal=False), 0.977),
                                             (Mask(chunk=1024), 1.000)])
def test_fa2_local_mask_backward_next_head_rows(mask: Mask, ratio: float) -> None:
    """Window, band and chunk masks: between two heads' reads of a K/V tile lie N + about
    a key's mean rows (area / S) query rows, not the full mask's 2·N
    (fa2_kv_next_head_hit_fraction). A 2 MiB, 8-SM part, N 1536, H 8, K 2, D 64: the
    next head's K/V hit where two heads' rows would not fit. Estimate / trace as
    measured when written (2026-12-02, fixbwd); before (local masks taken as full):
    1.066, 1.059, 1.083."""
    p = AttentionProblem(batch=1, seq_len=1536, heads=8, kv_heads=2, head_dim=64,
                         mask=mask, **{"pass": "backward"})
    r = _ratio(p, _small_gpu(H100, 2 << 20, 8), "flash2")
    assert r == pytest.approx(ratio, abs=0.02)
    assert abs(r - 1) < 0.10
