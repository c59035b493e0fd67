"""Float64 numpy references: the textbook formula and every algorithm's own decomposition.

:func:`attention` is the textbook formula, O = softmax(QKᵀ/√D + M)·V with M = 0 where a key
is visible and −∞ where it is masked. The others replay an algorithm's schedule in float64
— the same active tiles, the same online softmax, the same split of the key range, the same
intermediates (S and P of standard attention, ℓ and m of FlashAttention-1, the fp32
partials of split-KV decoding, the indexer logits and top-k of DSA) — so a kernel can be
checked stage by stage, and each reference is itself tested against :func:`attention`.

Shapes (docs/DESIGN.md §"Notation"): ``q: (B, N, H, D)``, ``k: (B, S, K, D)``, ``v: (B, S, K, Dv)``
(under MLA ``v`` is ``None`` and V = K[..., :Dv]), ``o: (B, N, H, Dv)``, softmax statistics
``(B, H, N)``, scores ``(B, H, N, S)``. A row that sees no key gets O = 0, ℓ = 0,
m = logsumexp = −∞ (no NaN).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from memsim.problem import Mask

from .common import MaskSpec, ceil_div, key_range_host, mask_spec

F64 = np.float64


# ---- the textbook formula --------------------------------------------------------------


def visible(mask: Mask, N: int, S: int) -> np.ndarray:
    """(N, S) bool: whether query row i (position S − N + i) sees key j (memsim.problem)."""
    p = (S - N + np.arange(N))[:, None]
    j = np.arange(S)[None, :]
    kind = mask.kind
    if kind == "full":
        return np.ones((N, S), bool)
    if kind in ("causal", "topk"):
        return j <= p
    if kind == "window" and mask.causal:
        return (j <= p) & (j > p - mask.window)
    if kind == "window":
        return np.abs(p - j) <= mask.window // 2
    return (j <= p) & (j // mask.chunk == p // mask.chunk)


def values(k: np.ndarray, v: np.ndarray | None, dv: int) -> np.ndarray:
    """V: ``v``, or under MLA (``v is None``) the first ``dv`` elements of the latent K."""
    return k[..., :dv] if v is None else v


def scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """QKᵀ/√D in float64, (B, H, N, S); query head h reads KV head h // (H/K)."""
    B, N, H, D = q.shape
    group = H // k.shape[2]
    kh = np.repeat(k.astype(F64), group, axis=2)               # (B, S, H, D)
    return np.einsum("bnhd,bshd->bhns", q.astype(F64), kh) / np.sqrt(D)


def softmax_rows(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row softmax of logits with −∞ for masked entries: (P, logsumexp); an all −∞ row
    gives P = 0 and logsumexp = −∞."""
    mx = logits.max(axis=-1, keepdims=True)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    e = np.exp(logits - safe)
    den = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(den[..., 0] > 0, np.log(den[..., 0]) + safe[..., 0], -np.inf)
    return p, lse


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray | None, mask: Mask,
              dv: int | None = None,
              rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Textbook softmax(QKᵀ/√D + M)·V: (o (B, N, H, Dv), logsumexp (B, H, N)); with
    ``rows``, of those query rows only (B, len(rows), H, Dv) and (B, H, len(rows))."""
    B, N, H, D = q.shape
    S, K = k.shape[1], k.shape[2]
    rows = np.arange(N) if rows is None else np.asarray(rows)
    val = values(k, v, dv or D)
    logits = np.where(visible(mask, N, S)[rows], scores(q[:, rows], k), -np.inf)
    p, lse = softmax_rows(logits)
    vh = np.repeat(val.astype(F64), H // K, axis=2)           # (B, S, H, Dv)
    return np.einsum("bhns,bshd->bnhd", p, vh), lse


# ---- tiles ----------------------------------------------------------------------------


def query_tiles(spec: MaskSpec, N: int, S: int, block_q: int,
                block_kv: int) -> Iterator[tuple[int, int, int, int]]:
    """(first row, rows, first key tile, last key tile) of each query tile."""
    for i0 in range(0, N, block_q):
        rows = min(block_q, N - i0)
        lo = S - N + i0
        kmin, kmax = key_range_host(spec, lo, lo + rows - 1, S)
        yield i0, rows, kmin // block_kv, kmax // block_kv


def split_ranges(first: int, last: int, splits: int) -> list[tuple[int, int]]:
    """Tile ranges [a, b] of the non-empty splits when tiles first..last are cut into
    ranges of ⌈n/splits⌉ (memsim.algorithms.flash_decode.active_splits)."""
    n = last - first + 1
    per = ceil_div(n, splits)
    return [(first + s * per, min(last, first + (s + 1) * per - 1))
            for s in range(splits) if s * per < n]


# ---- standard attention ------------------------------------------------------------------


def standard(q, k, v, mask: Mask, block_q: int, block_kv: int,
             dv: int | None = None) -> dict[str, np.ndarray]:
    """S, P (B, H, N, S) and O as the three kernels leave them: S and P hold the active
    tiles only (NaN elsewhere: never written), S = −∞ and P = 0 at masked entries."""
    B, N, H, D = q.shape
    S = k.shape[1]
    full = np.where(visible(mask, N, S), scores(q, k), -np.inf)
    s_out = np.full((B, H, N, S), np.nan)
    for i0, rows, t0, t1 in query_tiles(mask_spec(mask), N, S, block_q, block_kv):
        cols = slice(t0 * block_kv, min(S, (t1 + 1) * block_kv))
        s_out[:, :, i0:i0 + rows, cols] = full[:, :, i0:i0 + rows, cols]
    written = ~np.isnan(s_out)
    p, _ = softmax_rows(np.where(written, s_out, -np.inf))
    p_out = np.where(written, p, np.nan)
    val = values(k, v, dv or D)
    vh = np.repeat(val.astype(F64), H // k.shape[2], axis=2)
    o = np.einsum("bhns,bshd->bnhd", p, vh)
    return {"s": s_out, "p": p_out, "o": o}


# ---- FlashAttention-2 and split-KV: online softmax over the active tiles ----------------


def _online(q, k, v, mask: Mask, i0: int, rows: int, t0: int, t1: int, block_kv: int,
            dv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Online softmax of query rows i0..i0+rows−1 over key tiles t0..t1 (FA-2 Alg. 1):
    unnormalised O (B, H, rows, Dv), m and ℓ (B, H, rows)."""
    B, N, H, D = q.shape
    S = k.shape[1]
    vis = visible(mask, N, S)[i0:i0 + rows]
    val = values(k, v, dv)
    group = H // k.shape[2]
    acc = np.zeros((B, H, rows, dv))
    m = np.full((B, H, rows), -np.inf)
    ell = np.zeros((B, H, rows))
    for t in range(t0, t1 + 1):
        cols = slice(t * block_kv, min(S, (t + 1) * block_kv))
        s = scores(q[:, i0:i0 + rows], k[:, cols])
        s = np.where(vis[:, cols], s, -np.inf)
        m_new = np.maximum(m, s.max(axis=-1))
        m_use = np.where(np.isfinite(m_new), m_new, 0.0)
        alpha = np.exp(m - m_use)
        p = np.exp(s - m_use[..., None])
        vh = np.repeat(val[:, cols].astype(F64), group, axis=2)
        acc = acc * alpha[..., None] + np.einsum("bhrs,bshd->bhrd", p, vh)
        ell = ell * alpha + p.sum(axis=-1)
        m = m_new
    return acc, m, ell


def _finish(acc, m, ell):
    """O = acc/ℓ and logsumexp = m + log ℓ, with 0 and −∞ for a row that saw no key."""
    o = np.divide(acc, ell[..., None], out=np.zeros_like(acc), where=ell[..., None] > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(ell > 0, m + np.log(ell), -np.inf)
    return o, lse


def flash2(q, k, v, mask: Mask, block_q: int, block_kv: int,
           dv: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FlashAttention-2 forward in float64: (o (B, N, H, Dv), logsumexp (B, H, N))."""
    B, N, H, D = q.shape
    dv = dv or (D if v is None else v.shape[-1])
    o = np.empty((B, N, H, dv))
    lse = np.empty((B, H, N))
    for i0, rows, t0, t1 in query_tiles(mask_spec(mask), N, k.shape[1], block_q, block_kv):
        ot, lt = _finish(*_online(q, k, v, mask, i0, rows, t0, t1, block_kv, dv))
        o[:, i0:i0 + rows] = ot.transpose(0, 2, 1, 3)
        lse[:, :, i0:i0 + rows] = lt
    return o, lse


def split_kv(q, k, v, mask: Mask, block_kv: int, splits: int,
             dv: int | None = None) -> dict[str, np.ndarray]:
    """Split-KV decoding: all N queries form one tile; its active key tiles are cut into
    ``splits`` ranges. ``o_part (B, H, splits, N, Dv)`` and ``lse_part (B, H, splits, N)``
    are the normalised partials of every split, an empty one's O = 0 and lse = −∞ (what
    FA-2's split kernel writes for it); ``o`` their logsumexp-weighted combination."""
    B, N, H, D = q.shape
    S = k.shape[1]
    dv = dv or (D if v is None else v.shape[-1])
    [(_, _, t0, t1)] = query_tiles(mask_spec(mask), N, S, N, block_kv)
    o_part = np.zeros((B, H, splits, N, dv))
    lse_part = np.full((B, H, splits, N), -np.inf)
    for s, (a, b) in enumerate(split_ranges(t0, t1, splits)):
        o_part[:, :, s], lse_part[:, :, s] = _finish(
            *_online(q, k, v, mask, 0, N, a, b, block_kv, dv))
    mx = lse_part.max(axis=2, keepdims=True)
    w = np.exp(lse_part - np.where(np.isfinite(mx), mx, 0.0))   # (B, H, splits, N)
    den = w.sum(axis=2)
    o = np.einsum("bhsn,bhsnd->bnhd", w, o_part)
    o = o / np.where(den > 0, den, 1.0).transpose(0, 2, 1)[..., None]
    return {"o_part": o_part, "lse_part": lse_part, "o": o}


# ---- FlashAttention-1: outer loop over K/V tiles, O, ℓ, m through HBM -------------------


def flash1(q, k, v, mask: Mask, block_q: int, block_kv: int,
           dv: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FlashAttention-1 Algorithm 1 in float64: (o (B, N, H, Dv), ℓ, m (B, H, N)).

    O is kept normalised after every tile (line 12); ℓ and m are the running sum and max.
    """
    B, N, H, D = q.shape
    S = k.shape[1]
    dv = dv or (D if v is None else v.shape[-1])
    val = values(k, v, dv)
    group = H // k.shape[2]
    vis = visible(mask, N, S)
    tiles = list(query_tiles(mask_spec(mask), N, S, block_q, block_kv))
    o = np.zeros((B, H, N, dv))
    ell = np.zeros((B, H, N))
    m = np.full((B, H, N), -np.inf)
    for t in range(min(t[2] for t in tiles), max(t[3] for t in tiles) + 1):
        cols = slice(t * block_kv, min(S, (t + 1) * block_kv))
        vh = np.repeat(val[:, cols].astype(F64), group, axis=2)
        for i0, rows, t0, t1 in tiles:
            if not t0 <= t <= t1:
                continue
            r = slice(i0, i0 + rows)
            s = np.where(vis[r, cols], scores(q[:, r], k[:, cols]), -np.inf)
            m_t = s.max(axis=-1)                                   # line 9
            p = np.exp(s - np.where(np.isfinite(m_t), m_t, 0.0)[..., None])
            l_t = p.sum(axis=-1)
            m_new = np.maximum(m[:, :, r], m_t)                    # line 11
            m_use = np.where(np.isfinite(m_new), m_new, 0.0)
            a_old = np.exp(m[:, :, r] - m_use)
            a_new = np.exp(m_t - m_use)
            l_new = a_old * ell[:, :, r] + a_new * l_t
            num = (ell[:, :, r] * a_old)[..., None] * o[:, :, r] + a_new[..., None] * (
                np.einsum("bhrs,bshd->bhrd", p, vh))
            o[:, :, r] = np.divide(num, l_new[..., None], out=np.zeros_like(num),
                                   where=l_new[..., None] > 0)       # line 12
            ell[:, :, r], m[:, :, r] = l_new, m_new
    return o.transpose(0, 2, 1, 3), ell, m


# ---- DeepSeek Sparse Attention ------------------------------------------------------------


def indexer_logits(q_i: np.ndarray, w: np.ndarray, k_i: np.ndarray, index_block_q: int,
                   block_kv: int) -> np.ndarray:
    """Lightning indexer I[b, i, j] = Σ_h w[b,i,h]·ReLU(q_i[b,i,h]·k_i[b,j]) (DeepSeek-V3.2-Exp
    §1), causal: ``q_i (B, N, H_I, D_I)``, ``w (B, N, H_I)``, ``k_i (B, S, D_I)`` →
    ``(B, N, S)`` over the active causal tiles (query tiles of ``index_block_q``), −∞ at
    masked entries of those tiles, NaN outside them (never written)."""
    B, N, _, _ = q_i.shape
    S = k_i.shape[1]
    dots = np.einsum("bnhd,bsd->bnhs", q_i.astype(F64), k_i.astype(F64))
    full = np.einsum("bnh,bnhs->bns", w.astype(F64), np.maximum(dots, 0.0))
    full = np.where(visible(Mask(causal=True), N, S)[None], full, -np.inf)
    out = np.full((B, N, S), np.nan)
    for i0, rows, t0, t1 in query_tiles(mask_spec(Mask()), N, S, index_block_q, block_kv):
        cols = slice(t0 * block_kv, min(S, (t1 + 1) * block_kv))
        out[:, i0:i0 + rows, cols] = full[:, i0:i0 + rows, cols]
    return out


def selected_counts(N: int, S: int, top_k: int) -> np.ndarray:
    """(N,) keys chosen per query: min(k, p + 1) at position p = S − N + i."""
    return np.minimum(top_k, S - N + np.arange(N) + 1)


def top_k(logits: np.ndarray, top_k: int) -> list[list[set[int]]]:
    """Per (batch, query) the set of the min(k, p + 1) keys of largest logit (NaN and −∞
    never chosen)."""
    B, N, S = logits.shape
    counts = selected_counts(N, S, top_k)
    out = []
    for b in range(B):
        rows = []
        for i in range(N):
            row = np.where(np.isfinite(logits[b, i]), logits[b, i], -np.inf)
            order = np.argsort(-row, kind="stable")[: counts[i]]
            rows.append({int(j) for j in order})
        out.append(rows)
    return out


def sparse_attention(q, k, v, indices: np.ndarray, counts: np.ndarray,
                     dv: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Attention of each query over its gathered keys ``indices[b, i, :counts[i]]``:
    (o (B, N, H, Dv), logsumexp (B, H, N))."""
    return _gathered(q, k, v, indices, np.zeros_like(counts), counts, dv)


def sparse_partials(q, k, v, indices: np.ndarray, counts: np.ndarray, top_k: int,
                    block_kv: int, splits: int,
                    dv: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split sparse attention (dsa when decoding): the ⌈min(k, S)/Bc⌉ gathered tiles are cut
    into ``splits`` ranges; ``o_part (B, H, splits, N, Dv)`` and ``lse_part (B, H, splits,
    N)`` are the normalised partials of the non-empty ranges (NaN beyond them). A range
    past a query's own selection gives O = 0, lse = −∞."""
    B, N, H, D = q.shape
    dv = dv or (D if v is None else v.shape[-1])
    tiles = ceil_div(min(top_k, k.shape[1]), block_kv)
    o_part = np.full((B, H, splits, N, dv), np.nan)
    lse_part = np.full((B, H, splits, N), np.nan)
    for s, (a, b) in enumerate(split_ranges(0, tiles - 1, splits)):
        first = np.minimum(counts, a * block_kv)
        end = np.minimum(counts, (b + 1) * block_kv)
        o, lse_part[:, :, s] = _gathered(q, k, v, indices, first, end, dv)
        o_part[:, :, s] = o.transpose(0, 2, 1, 3)
    return o_part, lse_part


def _gathered(q, k, v, indices, first, end, dv):
    """Attention of query i over keys ``indices[b, i, first[i]:end[i]]``."""
    B, N, H, D = q.shape
    S = k.shape[1]
    keep = np.zeros((B, N, S), bool)
    for b in range(B):
        for i in range(N):
            keep[b, i, indices[b, i, first[i]:end[i]]] = True
    dv = dv or (D if v is None else v.shape[-1])
    val = values(k, v, dv)
    logits = np.where(keep[:, None], scores(q, k), -np.inf)
    p, lse = softmax_rows(logits)
    vh = np.repeat(val.astype(F64), H // k.shape[2], axis=2)
    return np.einsum("bhns,bshd->bnhd", p, vh), lse
