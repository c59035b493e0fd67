"""Every kernel family in the CUDA simulator on hypothesis-drawn awkward shapes against its
float64 reference: lengths, head dimensions, head groups, tiles and masks drawn so that
tiles rarely divide anything, rows can see no key of their first tiles (window < Bc),
threads own several rows, and one shape exercises the online-softmax update
(kernels/common.online_softmax_step) that flash1, flash2 and the DSA sparse kernel share.

The simulator is slow, so shapes are tiny and each property draws few examples
(:data:`EXAMPLES`; `make test-deep` keeps the same count, drawn afresh)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memsim.kernels.registry import explicit_tiling, mismatches, run_once

from memsim.algorithms import ALGORITHMS, tiles_queries
from memsim.problem import AttentionProblem, Indexer, Mask

#: The algorithms with Numba kernels whose query tile is free (Br rows): the prefill kernels.
PREFILL_KERNELS = [n for n, m in ALGORITHMS.items() if m.KERNEL_FAMILY and tiles_queries(n)]
EXAMPLES = settings(max_examples=4, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def dense_masks(draw: st.DrawFn, N: int) -> Mask:
    kind = draw(st.sampled_from(["full", "causal", "window", "band", "chunk"]))
    size = draw(st.integers(1, N + 4))
    return {"full": Mask(causal=False), "causal": Mask(), "window": Mask(window=size),
            "band": Mask(causal=False, window=size), "chunk": Mask(chunk=size)}[kind]


def _check(problem: AttentionProblem, algorithm: str, seed: int, **tiles) -> None:
    tiling = explicit_tiling(problem, algorithm, **tiles)
    bufs, _ = run_once(problem, tiling, np.random.default_rng(seed))
    bad = mismatches(problem, tiling, bufs)
    assert not bad, f"{problem} {tiling.describe()} seed={seed}: {bad}"
    assert not any(np.isnan(np.asarray(v, dtype=np.float64)).any()
                   for k, v in bufs.items() if k in ("o", "lse"))


@EXAMPLES
@given(algorithm=st.sampled_from(PREFILL_KERNELS), data=st.data(),
       seed=st.integers(0, 2**32 - 1))
def test_prefill_kernels_match_the_reference(algorithm: str, data: st.DataObject,
                                             seed: int) -> None:
    N = data.draw(st.integers(1, 23), label="N")
    S = N + data.draw(st.integers(0, 13), label="S - N")
    K = data.draw(st.sampled_from([1, 2]), label="K")
    H = K * data.draw(st.sampled_from([1, 2, 3]), label="H/K")
    D = data.draw(st.sampled_from([4, 8, 12]), label="D")
    p = AttentionProblem(batch=data.draw(st.integers(1, 2)), seq_len=N, kv_len=S, heads=H,
                         kv_heads=K, head_dim=D, dtype=data.draw(st.sampled_from(["fp32",
                                                                                 "fp16"])),
                         mask=data.draw(dense_masks(N)))
    Br = data.draw(st.sampled_from([3, 4, 8]), label="Br")
    Bc = data.draw(st.sampled_from([3, 4, 8]), label="Bc")
    threads = data.draw(st.sampled_from([4, 8, 32]), label="threads")
    _check(p, algorithm, seed, block_q=Br, block_kv=Bc, threads=threads)


@EXAMPLES
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_split_kv_decoding_matches_the_reference(data: st.DataObject, seed: int) -> None:
    N = data.draw(st.integers(1, 3), label="N")
    S = N + data.draw(st.integers(0, 40), label="S - N")
    p = AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=2, kv_heads=1,
                         head_dim=data.draw(st.sampled_from([4, 8])), dtype="fp32",
                         mask=data.draw(dense_masks(N)))
    _check(p, "flash_decode", seed, block_q=N, block_kv=data.draw(st.sampled_from([3, 8])),
           kv_splits=data.draw(st.integers(1, 5)), threads=8)


@EXAMPLES
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_dsa_matches_the_reference(data: st.DataObject, seed: int) -> None:
    N = data.draw(st.integers(1, 12), label="N")
    S = N + data.draw(st.integers(0, 12), label="S - N")
    mla = data.draw(st.booleans(), label="mla")
    D = data.draw(st.sampled_from([8, 12]), label="D")
    p = AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=2, kv_heads=1, head_dim=D,
                         head_dim_v=D // 2 if mla else D, mla=mla, dtype="fp32",
                         mask=Mask(top_k=data.draw(st.integers(1, S + 2), label="k")),
                         indexer=Indexer(heads=2, head_dim=8, dtype="fp32"))
    index_block_q = data.draw(st.sampled_from([2, 16]), label="Br_I")
    splits = data.draw(st.integers(1, 3), label="splits") if index_block_q >= N else 1
    _check(p, "dsa", seed, block_q=1, block_kv=data.draw(st.sampled_from([3, 4])),
           index_block_q=index_block_q, kv_splits=splits, threads=8)


@given(st.one_of(st.just(float("-inf")), st.floats(-80, 80)),
       st.one_of(st.just(float("-inf")), st.floats(-80, 80)))
def test_the_shared_online_softmax_step_never_makes_nan(m_old: float, m_tile: float) -> None:
    """The device function itself (callable on the host in the simulator): max, a finite
    shift, and alpha = exp(m_old − shift) in [0, 1] — 0, not NaN, while both are −∞."""
    from memsim.kernels.common import online_softmax_step
    from numba import float32

    m_new, m_use, alpha = online_softmax_step(float32(m_old), float32(m_tile))
    assert m_new == max(float32(m_old), float32(m_tile))
    assert np.isfinite(m_use) and 0.0 <= alpha <= 1.0
    if m_new == float("-inf"):
        assert m_use == 0.0 and alpha == 0.0
