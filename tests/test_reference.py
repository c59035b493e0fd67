"""kernels/reference.py against the textbook formula softmax(QKᵀ/√D + M)·V.

The textbook is written out here once more, row by row with plain loops, so that
reference.attention is not checked against itself; every algorithm's float64 replay
(standard, FlashAttention-1 and -2, split-KV, DSA) is then checked against it on random
shapes, masks and tiles. The tile walk of the references is tied to memsim.geometry's exact
tile sums, the same counts the analytic model and the kernels use.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memsim.kernels import reference
from memsim.kernels.common import key_range_host, mask_spec

from memsim.geometry import geometry_of, tile_sums
from memsim.problem import Mask

RTOL = 1e-10


def textbook_rows(q, k, v, visible):
    """O and logsumexp, one query row and head at a time with explicit sums."""
    B, N, H, D = q.shape
    S, K, Dv = k.shape[1], k.shape[2], v.shape[-1]
    o = np.zeros((B, N, H, Dv))
    lse = np.full((B, H, N), -np.inf)
    for b in range(B):
        for h in range(H):
            kh = h // (H // K)
            for i in range(N):
                keys = [j for j in range(S) if visible[i, j]]
                if not keys:
                    continue
                s = [float(np.dot(q[b, i, h], k[b, j, kh])) / math.sqrt(D) for j in keys]
                top = max(s)
                w = [math.exp(x - top) for x in s]
                total = sum(w)
                o[b, i, h] = sum(wj * v[b, j, kh] for wj, j in zip(w, keys, strict=True)) / total
                lse[b, h, i] = top + math.log(total)
    return o, lse


@st.composite
def masks(draw, S: int, with_topk: bool = False) -> Mask:
    kinds = ["full", "causal", "window", "band", "chunk"] + (["topk"] if with_topk else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "full":
        return Mask(causal=False)
    if kind == "causal":
        return Mask()
    if kind == "window":
        return Mask(window=draw(st.integers(1, S + 2)))
    if kind == "band":
        return Mask(causal=False, window=draw(st.integers(1, 2 * S + 2)))
    if kind == "chunk":
        return Mask(chunk=draw(st.integers(1, S + 2)))
    return Mask(top_k=draw(st.integers(1, S + 2)))


@st.composite
def problems(draw, with_topk: bool = False):
    """Random q, k, v (float64, GQA), a mask and tiles."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    K = draw(st.integers(1, 2))
    H = K * draw(st.integers(1, 3))
    N = draw(st.integers(1, 12))
    S = N + draw(st.integers(0, 9))
    D, Dv = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    q = rng.standard_normal((2, N, H, D))
    k = rng.standard_normal((2, S, K, D))
    v = rng.standard_normal((2, S, K, Dv))
    tiles = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return q, k, v, draw(masks(S, with_topk)), tiles


def close(a, b) -> bool:
    return np.allclose(a, b, rtol=RTOL, atol=RTOL) and np.array_equal(np.isinf(a), np.isinf(b))


@settings(max_examples=40)
@given(problems(with_topk=True))
def test_attention_is_the_textbook_formula(case) -> None:
    q, k, v, mask, _ = case
    vis = reference.visible(mask, q.shape[1], k.shape[1])
    o, lse = reference.attention(q, k, v, mask)
    o_want, lse_want = textbook_rows(q, k, v, vis)
    assert close(o, o_want) and close(lse, lse_want)


@given(problems(with_topk=True))
def test_every_mask_shows_each_row_one_contiguous_range_with_itself(case) -> None:
    """What the kernels assume: row i sees exactly [jlo, jhi] of memsim's key range at
    its position, and that range holds the query itself, so no row is fully masked."""
    q, k, _, mask, _ = case
    N, S = q.shape[1], k.shape[1]
    vis = reference.visible(mask, N, S)
    spec = mask_spec(mask)
    for i in range(N):
        p = S - N + i
        lo, hi = key_range_host(spec, p, p, S)
        assert vis[i, p] and np.flatnonzero(vis[i]).tolist() == list(range(lo, hi + 1))


@given(problems())
def test_reference_tile_walk_matches_the_analytic_tile_sums(case) -> None:
    q, k, _, mask, (br, bc) = case
    N, S = q.shape[1], k.shape[1]
    tiles = list(reference.query_tiles(mask_spec(mask), N, S, br, bc))
    sums = tile_sums(N, S, br, bc, geometry_of(mask))
    keys = [min(S, (t1 + 1) * bc) - t0 * bc for _, _, t0, t1 in tiles]
    assert len(tiles) == sums.q_tiles
    assert sum(t1 - t0 + 1 for _, _, t0, t1 in tiles) == sums.pairs
    assert sum(keys) == sums.key_loads
    assert sum(r * n for (_, r, _, _), n in zip(tiles, keys, strict=True)) == sums.area


@given(problems())
def test_flash2_replay_is_exact(case) -> None:
    q, k, v, mask, (br, bc) = case
    o, lse = reference.flash2(q, k, v, mask, br, bc)
    o_want, lse_want = reference.attention(q, k, v, mask)
    assert close(o, o_want) and close(lse, lse_want)


@given(problems())
def test_flash1_replay_is_exact(case) -> None:
    q, k, v, mask, (br, bc) = case
    o, ell, m = reference.flash1(q, k, v, mask, br, bc)
    o_want, lse_want = reference.attention(q, k, v, mask)
    logits = np.where(reference.visible(mask, q.shape[1], k.shape[1]),
                      reference.scores(q, k), -np.inf)
    assert close(o, o_want) and close(m, logits.max(axis=-1))
    assert close(m + np.log(ell), lse_want)


@given(problems())
def test_standard_replay_keeps_s_and_p_of_the_active_tiles(case) -> None:
    q, k, v, mask, (br, bc) = case
    N, S = q.shape[1], k.shape[1]
    out = reference.standard(q, k, v, mask, br, bc)
    o_want, _ = reference.attention(q, k, v, mask)
    vis = reference.visible(mask, N, S)
    assert close(out["o"], o_want)
    assert not np.isnan(out["s"][..., vis]).any()               # every visible key written
    assert np.isneginf(out["s"][..., ~vis & ~np.isnan(out["s"][0, 0])]).all()
    assert np.allclose(np.nansum(out["p"], axis=-1), 1.0)


@given(problems(), st.integers(1, 6))
def test_split_kv_partials_combine_to_attention(case, splits: int) -> None:
    q, k, v, mask, (_, bc) = case
    out = reference.split_kv(q, k, v, mask, bc, splits)
    o_want, _ = reference.attention(q, k, v, mask)
    assert close(out["o"], o_want)
    empty = np.isneginf(out["lse_part"]).all(axis=(0, 1, 3))  # O = 0, lse = −∞ (FA-2)
    assert not empty[: (~empty).sum()].any()            # the non-empty splits come first
    assert (out["o_part"][:, :, empty] == 0).all()


def test_a_split_can_leave_a_row_with_no_key() -> None:
    """Decoding N = 4 queries at positions 62..65 with Bc = 16 and one split per tile: the
    last split holds keys 64, 65 only, which the query at 62 does not see. Its partial is
    O = 0, lse = −∞ (no NaN), and the combination is still exact."""
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal(s) for s in ((1, 4, 2, 8), (1, 66, 1, 8), (1, 66, 1, 8)))
    out = reference.split_kv(q, k, v, Mask(), 16, 5)
    assert np.isneginf(out["lse_part"][0, :, 4, 0]).all()
    assert (out["o_part"][0, :, 4, 0] == 0).all()
    assert close(out["o"], reference.attention(q, k, v, Mask())[0])


def test_a_fully_masked_row_gives_zero_and_minus_infinity_not_nan() -> None:
    """No memsim mask masks a whole row (see above), so the convention is checked on the
    softmax itself: a row of −∞ logits."""
    logits = np.array([[1.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    p, lse = reference.softmax_rows(logits)
    assert (p[1] == 0).all() and np.isneginf(lse[1]) and np.isclose(p[0].sum(), 1.0)


def test_large_logits_do_not_overflow() -> None:
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal(s) for s in ((1, 9, 2, 16), (1, 9, 2, 16), (1, 9, 2, 4)))
    o, lse = reference.flash2(q * 40, k * 40, v, Mask(), 4, 4)
    assert np.isfinite(o).all() and np.isfinite(lse).all() and lse.max() > 700
    assert close(o, reference.attention(q * 40, k * 40, v, Mask())[0])


@given(problems(with_topk=True), st.integers(1, 6))
def test_dsa_indexer_top_k_and_gather(case, top_k: int) -> None:
    q, k, v, _, (br, bc) = case
    B, N, _, D = q.shape
    S = k.shape[1]
    rng = np.random.default_rng(0)
    qi, w, ki = rng.standard_normal((B, N, 3, D)), rng.standard_normal((B, N, 3)), k[:, :, 0]
    logits = reference.indexer_logits(qi, w, ki, br, bc)
    for b in range(B):
        for i in range(N):
            p = S - N + i
            want = [sum(w[b, i, h] * max(0.0, qi[b, i, h] @ ki[b, j]) for h in range(3))
                    for j in range(p + 1)]
            assert np.allclose(logits[b, i, : p + 1], want)
            assert not np.isfinite(logits[b, i, p + 1:]).any()
    chosen = reference.top_k(logits, top_k)
    counts = reference.selected_counts(N, S, top_k)
    idx = np.full((B, N, top_k), -1)
    for b in range(B):
        for i in range(N):
            row = sorted(chosen[b][i])
            assert len(row) == counts[i] and max(row) <= S - N + i
            left = set(range(S - N + i + 1)) - chosen[b][i]
            assert not left or max(logits[b, i, j] for j in left) <= min(
                logits[b, i, j] for j in row)
            idx[b, i, : counts[i]] = row
    o, _ = reference.sparse_attention(q, k, v, idx, counts)
    keep = np.zeros((N, S), bool)
    for i in range(N):
        keep[i, idx[0, i, : counts[i]]] = True
    assert close(o[:1], textbook_rows(q[:1], k[:1], v[:1], keep)[0])


def test_top_k_covering_every_key_is_causal_attention() -> None:
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal(s) for s in ((1, 7, 2, 8), (1, 10, 2, 8), (1, 10, 2, 8)))
    counts = reference.selected_counts(7, 10, 64)
    idx = np.broadcast_to(np.arange(10), (1, 7, 10))
    o, lse = reference.sparse_attention(q, k, v, idx, counts)
    o_want, lse_want = reference.attention(q, k, v, Mask())
    assert close(o, o_want) and close(lse, lse_want)


@pytest.mark.parametrize("splits", [1, 2, 3, 7])
def test_sparse_partials_combine_to_sparse_attention(splits: int) -> None:
    rng = np.random.default_rng()
    q, k = rng.standard_normal((1, 3, 2, 8)), rng.standard_normal((1, 14, 1, 8))
    counts = reference.selected_counts(3, 14, 16)
    idx = np.stack([np.concatenate([rng.permutation(c), -np.ones(16 - c, int)])
                    for c in counts])[None]
    o_part, lse_part = reference.sparse_partials(q, k, None, idx, counts, 16, 4, splits, 4)
    used = ~np.isnan(lse_part[0, 0, :, 0])
    w = np.exp(lse_part[:, :, used] - lse_part[:, :, used].max(axis=2, keepdims=True))
    o = np.einsum("bhsn,bhsnd->bnhd", w, o_part[:, :, used]) / w.sum(axis=2).transpose(
        0, 2, 1)[..., None]
    assert close(o, reference.sparse_attention(q, k, None, idx, counts, 4)[0])
