"""Eager QKᵀ as cuBLAS runs it: a GEMM of 128 × 128 output tiles of S, each thread block
loading its own 128 rows of Q and 128 columns of Kᵀ (memsim.algorithms.standard,
GEMM_TILE_KEYS), so each query tile's Q rows are read once per output tile — the analytic
count and the trace's schedule (memsim.trace.sched_standard._qk_gemm) alike."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.algorithms._arrays import from_problem
from memsim.algorithms.standard import (
    GEMM_TILE_KEYS,
    _q_reread_hit_fraction,
    _q_rereads,
    q_loads,
    q_reload_tiles,
)
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling
from memsim.trace.simulate import simulate

GPU = load_gpu("h100-sxm")


@given(S=st.integers(1, 5000), Bc=st.sampled_from([16, 32, 64, 128]))
def test_key_tiles_dividing_the_gemm_tile_load_q_once_per_output_tile(S: int, Bc: int) -> None:
    """Key tiles that divide the GEMM's 128 keys group into its output tiles: Q is loaded
    ⌈S/128⌉ times, whatever Bc."""
    assert GEMM_TILE_KEYS == 128
    assert q_reload_tiles(Bc) * Bc == GEMM_TILE_KEYS
    assert q_loads(S, Bc) == math.ceil(S / GEMM_TILE_KEYS)


def test_key_tiles_wider_than_the_gemm_tile_load_q_once_each() -> None:
    """Bc = 256 (given explicitly) spans two GEMM output tiles; the schedule loads Q once
    per key tile — ⌈S/256⌉."""
    assert q_reload_tiles(256) == 1
    assert q_loads(1000, 256) == 4


@settings(max_examples=10, deadline=None)
@given(S=st.integers(1, 700), Bc=st.sampled_from([16, 32, 64, 128]),
       causal=st.booleans())
def test_the_traced_qk_kernel_reads_q_once_per_gemm_output_tile(S: int, Bc: int,
                                                                causal: bool) -> None:
    """With the L2 off, the trace's QKᵀ kernel reads the scaled Q (fp32, B·N·H·D·4 bytes)
    ⌈S/128⌉ times and the scaled K once per query tile — the first principles of a GEMM
    tiled 128 × 128, here for N = 128 queries (one query tile), any key count and mask
    (eager attention computes every score)."""
    N, H, D = min(S, 128), 2, 64
    p = AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=H, head_dim=D, dtype="bf16",
                         mask=Mask(causal=causal))
    t = default_tiling(p, GPU, "standard", block_q=128, block_kv=Bc)
    trace = simulate(p, GPU, "standard", t, l2=False)
    qk = next(k for k in trace.kernels if k.name == "standard.qk")
    q_bytes, k_bytes, s_bytes = N * H * D * 4, S * H * D * 4, H * N * S * 4
    assert qk.global_read_bytes == q_bytes * math.ceil(S / 128) + k_bytes
    assert qk.global_write_bytes == s_bytes


def test_the_h100_ncu_case_rereads_q_seven_times_from_the_l2() -> None:
    """The committed Nsight Compute case (sdpa-math, B 1, H 32, N = S = 1024, D 128, bf16
    in, fp32 compute, causal): S has 8 GEMM column tiles, so QKᵀ reads the fp32 Q
    (16.8 MB) 7 times more than once: 117.4 MB more global reads than a QKᵀ holding its
    Q rows. The re-reads hit the L2 — between two loads of a Q tile the 256 blocks (all
    of them, fewer than H100's 264 slots) touch 256 · (64 KiB of Q + 2 · 32 KiB of S) +
    32 head groups · 2 · 32 KiB of K = 35.65 MB of the 50 MiB — in the closed form and
    in the trace (the scaled Q's HBM reads stay one copy); an L2 of 35 MB would miss."""
    p = AttentionProblem(batch=1, seq_len=1024, heads=32, head_dim=128, dtype="bf16",
                         mask=Mask(causal=True))
    t = default_tiling(p, GPU, "standard")
    assert (t.block_q, t.block_kv) == (128, 64)
    q_bytes = 1024 * 32 * 128 * 4
    assert 7 * q_bytes == pytest.approx(117.4e6, rel=1e-3)
    x = replace(from_problem(p, t, GPU), e=np.asarray([4.0]))
    assert _q_rereads(x).global_read_bytes == 7 * q_bytes
    assert _q_reread_hit_fraction(x) == 1.0
    assert _q_reread_hit_fraction(replace(x, l2_bytes=35_651_584.0)) == 1.0
    assert _q_reread_hit_fraction(replace(x, l2_bytes=35e6)) == 0.0
    trace = simulate(p, GPU, "standard", t)
    q = next(x for x in trace.tensors if x["name"] == "q_scaled")
    assert q["global_read_bytes"] == 8 * q_bytes
    assert q["hbm_read_bytes"] <= q_bytes


def test_the_gemm_schedule_refuses_a_tile_count_q_loads_does_not_give() -> None:
    """The schedule's Q loads per query tile are memsim.algorithms.standard.q_loads (its
    one home): 2 key tiles of 64 per 128-key output tile build; 3 (6 loads over 16 key
    tiles, not 8) raise."""
    from memsim.trace.layout import Layout
    from memsim.trace.sched_standard import build_blockskip
    from memsim.trace.tiles import dims_of

    p = AttentionProblem(batch=1, seq_len=1024, heads=2, head_dim=64, dtype="bf16",
                         mask=Mask(causal=False))
    d = dims_of(p, default_tiling(p, GPU, "standard", block_q=128, block_kv=64))
    assert len(build_blockskip(d, Layout(), gemm_key_tiles=int(q_reload_tiles(64)))) == 3
    with pytest.raises(ValueError, match="q_loads 8"):
        build_blockskip(d, Layout(), gemm_key_tiles=3)
