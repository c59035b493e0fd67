"""FlashAttention-3's prefill work as vLLM and SGLang run it on Hopper: tiles, CTA tiles,
and the tile pairs on the busiest SM.

vLLM (``FlashAttentionImpl``) and SGLang call FA3's ``flash_attn_varlen_func`` on the paged
KV cache. With vLLM's 64-token pages no Hopper tile's ``kBlockN`` (80-192) divides the
page, so FA3 loads K/V without TMA (flash-attention hopper/flash_api.cpp
``get_pagedkv_tma``: ``page_size % kBlockN == 0``) and then always packs the query heads
of a KV head into one CTA tile (``get_pack_gqa``: "Always enable PackGQA for ...
PagedKVNonTMA"): a CTA tile (m-block) holds ``kBlockM`` rows of (token, head) pairs, the
heads fastest, so it covers ``kBlockM / G`` tokens of one KV head. Its K/V tiles run from
the first key its window reaches to the last key its last token sees (causal), each a
whole ``kBlockM × kBlockN`` MMA and softmax (masked entries included). The persistent
scheduler hands m-blocks to the SMs longest first, so the busiest SM does the larger of
its share of all tile pairs and the longest m-block.

Tiles: hopper/tile_size.h ``tile_size_fwd_sm90`` (:func:`tile_size_fwd_sm90`, the one
transcription, which :mod:`memsim.ops.encoder` shares for its TMA, non-causal call; here
paged non-TMA, a window making the kernel "local", not causal) and heuristics.h
``use_one_mma_wg`` (one 64-row warpgroup when D ∈ {64, 128}, no window and at most 64
packed rows); source read at vllm-project/flash-attention @617264c1.
"""

from __future__ import annotations

import numpy as np

from memsim.geometry import _ceil_div, floor_sum


def tile_size_fwd_sm90(head_dim: int, head_dim_v: int, causal: bool, local: bool,
                       elem_bytes: float = 2, paged_kv_non_tma: bool = False,
                       one_mma_wg: bool = False) -> tuple[int, int]:
    """(kBlockM, kBlockN) of FA3's SM90 forward kernel: hopper/tile_size.h
    ``tile_size_fwd_sm90`` at vllm-project/flash-attention @617264c1, line by line, for
    ``v_colmajor`` and ``softcap`` false (vLLM passes neither) and the FP8 two-level
    accumulation build (FLASHATTENTION_DISABLE_FP8_TWO_LEVEL_ACCUMULATION unset).
    ``head_dim``, ``head_dim_v``: the kernel's instantiated (rounded) sizes; ``elem_bytes``
    2 (16-bit) or 1 (e4m3); ``paged_kv_non_tma``: a paged KV cache loaded without TMA;
    ``one_mma_wg``: :func:`use_one_mma_wg`. Its MmaPV_is_RS and IntraWGOverlap flags are
    not returned."""
    d, dv = head_dim, head_dim_v
    if elem_bytes == 2:
        if d <= 64:
            if dv == 512:
                return 64, 64
            if dv == 256:
                return 128, 96
            if one_mma_wg:
                return 64, 192
            return 192, 128 if causal else 160 if local or paged_kv_non_tma else 192
        if d <= 96:
            return 192, 128 if local or paged_kv_non_tma else 144
        if d <= 128:
            narrow = causal or local or paged_kv_non_tma
            if one_mma_wg:
                return 64, 128 if narrow else 176
            return 128, 128 if narrow else 160
        if d <= 192:
            return 128, 96 if paged_kv_non_tma or local else 128 if dv <= 128 else 96
        return 128, 64 if local else 80
    # FP8: decode tiles with one MMA warpgroup, else the two-level accumulation's tiles
    if one_mma_wg:
        return (64, 128) if d <= 96 else (64, 96)
    if d <= 64:
        return 192, 128
    if d <= 96:
        return 128, 128
    if d <= 128:
        return 128, 192
    if d <= 192:
        return 128, 96
    return 128, 64 if local else 128


def use_one_mma_wg(head_dim: int, head_dim_v: int, local: bool, packed_rows) -> np.ndarray:
    """Whether FA3 runs one 64-row MMA warpgroup (arrays like ``packed_rows`` = seqlen_q ·
    query heads per KV head): hopper/heuristics.h ``use_one_mma_wg`` (d ∈ {64, 128}, not
    local, at most 64 packed rows) and flash_fwd_launch_template.h's gate on it
    (``kHeadDimV == kHeadDim``), @617264c1."""
    rows = np.asarray(packed_rows)
    return (head_dim in (64, 128)) & (head_dim_v == head_dim) & (not local) & (rows <= 64)


def sm90_tile(head_dim: int, head_dim_v: int, causal: bool, local: bool, one_mma_wg,
              elem_bytes: float = 2, paged_kv_non_tma: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tile_size_fwd_sm90` over an array of ``one_mma_wg`` (:func:`use_one_mma_wg`):
    (kBlockM, kBlockN) arrays of its shape."""
    one = np.asarray(one_mma_wg, dtype=bool)
    m1, n1 = tile_size_fwd_sm90(head_dim, head_dim_v, causal, local, elem_bytes,
                                paged_kv_non_tma, one_mma_wg=True)
    m0, n0 = tile_size_fwd_sm90(head_dim, head_dim_v, causal, local, elem_bytes,
                                paged_kv_non_tma, one_mma_wg=False)
    return np.where(one, m1, m0), np.where(one, n1, n0)


def is_local(window: int | None, kv_len) -> np.ndarray:
    """FA3's ``is_local`` for a causal sliding ``window`` (keys per query, None: none) over
    ``kv_len`` keys (array): a window reaching every key is none (hopper/flash_api.cpp
    @617264c1 l. 638: ``window_size_left >= max_seqlen_k - 1`` → -1, vLLM passing W − 1),
    and the kernel runs causal (:func:`is_causal`), with its tiles."""
    S = np.asarray(kv_len)
    if window is None:
        return np.zeros(S.shape, dtype=bool)
    return S > int(window)


def is_causal(window: int | None, kv_len, max_seqlen_q, head_dim: int,
              paged: bool = True) -> np.ndarray:
    """FA3's ``params.is_causal`` as vLLM calls it (``causal=True``, window (W − 1, 0) or
    none; arrays ``kv_len``, ``max_seqlen_q`` broadcasting), hopper/flash_api.cpp
    @617264c1 l. 638-645: a window reaching every key is none (:func:`is_local`);
    ``window_size_right >= max_seqlen_q - 1`` → -1 (vLLM's right edge 0 at one query per
    sequence, set back to 0 by ``is_causal``: no change); with one query per sequence
    (``max_seqlen_q == 1``) and no window, causal = non-causal for the mask, and FA3 keeps
    causal only at 64 < ``head_dim`` ≤ 128 with a ``paged`` cache (its "special case of
    hdim 128 ... kBlockN=128"), else ``is_causal = false``; a window: local, not causal."""
    local = is_local(window, kv_len)
    one_query = np.asarray(max_seqlen_q) == 1
    keeps = 64 < head_dim <= 128 and paged
    return ~local & ~(one_query & (not keeps))


def tile(D: int, Dv: int, local, packed_rows, elem_bytes: float = 2, causal=None
         ) -> tuple[np.ndarray, np.ndarray]:
    """(kBlockM, kBlockN) of FA3's forward on SM90 as vLLM calls it on its paged cache
    (K/V without TMA) for head sizes ``D``/``Dv``, ``packed_rows`` = N·G, ``local``
    (:func:`is_local`) and ``causal`` (:func:`is_causal`; None: causal unless ``local``)
    (arrays, broadcasting), 16-bit or (``elem_bytes`` 1) e4m3 inputs: :func:`sm90_tile`."""
    rows = np.asarray(packed_rows)
    loc = np.asarray(local, dtype=bool)
    cau = ~loc if causal is None else np.asarray(causal, dtype=bool) & ~loc
    if D > 256 and elem_bytes != 1:
        # no FA3 kernel; vLLM runs FlashAttention-4 (memsim.attention.vllm_fa4), whose SM90
        # tiles are 64 × 64 (flash_attn/cute/interface.py _tile_size_fwd_sm90). Known gap:
        # e4m3 above 256 keeps FA3's hdim-256 tiles (only B200's proxy rows reach it)
        shape = np.broadcast_shapes(rows.shape, loc.shape, cau.shape)
        return np.full(shape, 64), np.full(shape, 64)
    (mc, nc), (mn, nn), (ml, nl) = (
        sm90_tile(D, Dv, c, lo, use_one_mma_wg(D, Dv, lo, rows), elem_bytes,
                  paged_kv_non_tma=True)
        for c, lo in ((True, False), (False, False), (False, True)))
    return (np.where(loc, ml, np.where(cau, mc, mn)),
            np.where(loc, nl, np.where(cau, nc, nn)))


def work(N, S, group: int, D: int, Dv: int, window: int | None, elem_bytes: float = 2):
    """FA3's tile work for one (sequence, KV head): ``N`` queries (the last N of ``S``
    keys), ``group`` query heads per KV head, causal, an optional sliding ``window`` (local
    where :func:`is_local`: one that reaches every key is none)
    (arrays N, S, broadcasting). Returns (kBlockM, kBlockN, m-blocks, tile pairs summed over
    the m-blocks, tile pairs of the longest m-block); exact (floor sums, no loop over the
    m-blocks).

    m-block i holds packed rows [i·Mb, min((i+1)·Mb, N·G)), i.e. tokens t0 = ⌊i·Mb/G⌋ to
    t1 = ⌊(min((i+1)·Mb, N·G) − 1)/G⌋; with o = S − N its key tiles run from
    ⌊max(0, t0 + o − W + 1)/Nb⌋ to ⌈(t1 + o + 1)/Nb⌉ (hopper/block.h ``get_n_block_min_max``).
    """
    N, S = np.broadcast_arrays(np.asarray(N, dtype=np.int64), np.asarray(S, dtype=np.int64))
    G = int(group)
    local = is_local(window, S)
    Mb, Nb = tile(D, Dv, local, N * G, elem_bytes, is_causal(window, S, N, D))
    Mb, Nb = Mb.astype(np.int64), Nb.astype(np.int64)
    o = S - N
    R = N * G
    m = _ceil_div(R, Mb)
    # hi_i = ⌈(t1_i + o + 1)/Nb⌉ = ⌊(((i+1)·Mb − 1) + (o + Nb)·G) / (G·Nb)⌋ for full blocks;
    # the last block ends at token N − 1
    full = m - 1
    hi = floor_sum(full, G * Nb, Mb, Mb - 1 + (o + Nb) * G)
    hi_last = _ceil_div(N + o, Nb).astype(float)
    hi = hi + hi_last
    pairs, longest = hi, hi_last
    if local.any():
        W = int(window)
        c = o - W + 1
        # lo_i = ⌊max(0, ⌊i·Mb/G⌋ + c)/Nb⌋: zero until i0, then ⌊(i·Mb + c·G)/(G·Nb)⌋
        i0 = np.clip(_ceil_div(-c * G, Mb), 0, m)
        i0 = np.where(c >= 0, 0, i0)
        lo = floor_sum(m - i0, G * Nb, Mb, Mb * i0 + c * G)
        t0_last = ((m - 1) * Mb) // G
        lo_last = (np.maximum(0, t0_last + c) // Nb).astype(float)
        # a windowed m-block's keys: its tokens (at most ⌈Mb/G⌉, at most N) plus the
        # window, at most S; one tile more where they straddle tile edges (an upper
        # bound on the longest m-block, not its exact count)
        keys = np.minimum(np.minimum(_ceil_div(Mb, G), N) + W - 1, S)
        windowed = np.maximum(hi_last - lo_last,
                              np.minimum(_ceil_div(S, Nb), _ceil_div(keys, Nb) + 1))
        pairs = np.where(local, hi - lo, hi)
        longest = np.where(local, windowed, hi_last)
    return Mb, Nb, m, pairs, longest


def busiest_sm(B, K: int, pairs, longest, m_blocks, sm_count: int):
    """Tile pairs and m-blocks on the busiest SM of FA3's persistent, longest-first
    scheduler over ``B`` sequences × ``K`` KV heads: the larger of an even share and the
    longest m-block; at least one m-block (arrays)."""
    B = np.asarray(B, dtype=float)
    total = B * K * np.asarray(pairs, dtype=float)
    tiles = np.maximum(total / sm_count, np.asarray(longest, dtype=float))
    blocks = np.maximum(B * K * np.asarray(m_blocks, dtype=float) / sm_count, 1.0)
    return tiles, blocks
