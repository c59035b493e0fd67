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

Tiles: hopper/tile_size.h ``tile_size_fwd_sm90`` (16-bit inputs, paged non-TMA; a window
makes the kernel "local", not causal) and heuristics.h ``use_one_mma_wg`` (one 64-row
warpgroup when D ∈ {64, 128}, no window and at most 64 packed rows); source read at
vllm-project/flash-attention @617264c1.
"""

from __future__ import annotations

import numpy as np

from memsim.geometry import _ceil_div, floor_sum


def tile(D: int, Dv: int, local: bool, packed_rows, elem_bytes: float = 2
         ) -> tuple[np.ndarray, np.ndarray]:
    """(kBlockM, kBlockN) of FA3's forward on SM90 with paged non-TMA K/V for head sizes
    ``D``/``Dv``, a sliding window (``local``) or not, ``packed_rows`` = N·G (arrays,
    broadcasting) and 16-bit or (``elem_bytes`` 1) e4m3 inputs (the FP8 prefill tiles with
    two-level accumulation)."""
    rows = np.asarray(packed_rows)
    small = (D in (64, 128)) and D == Dv and not local
    small = small & (rows <= 64)
    if elem_bytes == 1:
        if D <= 64:
            m, n = 192, 128
        elif D <= 96:
            m, n = 128, 128
        elif D <= 128:
            m, n = 128, 192
        elif D <= 192:
            m, n = 128, 96
        else:
            m, n = 128, 64 if local else 128
        return np.where(small, 64, m), np.where(small, 128 if D <= 96 else 96, n)
    if D <= 64:
        if Dv == 512:
            m, n = 64, 64
        elif Dv == 256:
            m, n = 128, 96
        else:
            m, n = 192, 160 if local else 128
        return np.where(small, 64, m), np.where(small, 192, n)
    if D <= 96:
        return np.full(rows.shape, 192), np.full(rows.shape, 128)
    if D <= 128:
        return np.where(small, 64, 128), np.full(rows.shape, 128)
    if D <= 192:
        return np.full(rows.shape, 128), np.full(rows.shape, 96)
    if D <= 256:
        return np.full(rows.shape, 128), np.full(rows.shape, 64 if local else 80)
    # D > 256: no FA3 kernel; vLLM runs FlashAttention-4 (memsim.attention.vllm_fa4),
    # whose SM90 tiles are 64 × 64 (flash_attn/cute/interface.py _tile_size_fwd_sm90)
    return np.full(rows.shape, 64), np.full(rows.shape, 64)


def work(N, S, group: int, D: int, Dv: int, window: int | None, elem_bytes: float = 2):
    """FA3's tile work for one (sequence, KV head): ``N`` queries (the last N of ``S``
    keys), ``group`` query heads per KV head, causal, an optional sliding ``window``
    (arrays N, S, broadcasting). Returns (kBlockM, kBlockN, m-blocks, tile pairs summed over
    the m-blocks, tile pairs of the longest m-block); exact (floor sums, no loop over the
    m-blocks).

    m-block i holds packed rows [i·Mb, min((i+1)·Mb, N·G)), i.e. tokens t0 = ⌊i·Mb/G⌋ to
    t1 = ⌊(min((i+1)·Mb, N·G) − 1)/G⌋; with o = S − N its key tiles run from
    ⌊max(0, t0 + o − W + 1)/Nb⌋ to ⌈(t1 + o + 1)/Nb⌉ (hopper/block.h ``get_n_block_min_max``).
    """
    N, S = np.broadcast_arrays(np.asarray(N, dtype=np.int64), np.asarray(S, dtype=np.int64))
    G = int(group)
    local = window is not None
    Mb, Nb = tile(D, Dv, local, N * G, elem_bytes)
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
    lo = np.zeros(N.shape)
    lo_last = np.zeros(N.shape)
    if local:
        W = int(window)
        c = o - W + 1
        # lo_i = ⌊max(0, ⌊i·Mb/G⌋ + c)/Nb⌋: zero until i0, then ⌊(i·Mb + c·G)/(G·Nb)⌋
        i0 = np.clip(_ceil_div(-c * G, Mb), 0, m)
        i0 = np.where(c >= 0, 0, i0)
        lo = floor_sum(m - i0, G * Nb, Mb, Mb * i0 + c * G)
        t0_last = ((m - 1) * Mb) // G
        lo_last = (np.maximum(0, t0_last + c) // Nb).astype(float)
    pairs = hi - lo
    longest = hi_last - lo_last
    if local:
        # a windowed m-block's keys: its tokens (at most ⌈Mb/G⌉, at most N) plus the
        # window, at most S; one tile more where they straddle tile edges (an upper
        # bound on the longest m-block, not its exact count)
        keys = np.minimum(np.minimum(_ceil_div(Mb, G), N) + int(window) - 1, S)
        longest = np.maximum(longest, np.minimum(_ceil_div(S, Nb), _ceil_div(keys, Nb) + 1))
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
