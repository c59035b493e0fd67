"""DeepSeek Sparse Attention (DeepSeek-V3.2-Exp tech report §1; inference/model.py):
a lightning indexer scores every preceding key, a top-k keeps k of them per query, and
attention runs over those k entries only — on the MQA mode of MLA, where one latent
(kv_lora_rank + rope dims) per token is shared by all heads.

Kernels, per batch (s = ``kv_splits``; s > 1 only when decoding, N ≤ Br_I):
    indexer   I_{t,s} = Σ_j w_{t,j}·ReLU(q_{t,j}·k_s), causal, tiled like FA-2 with all
              H_I indexer heads and Br_I query tokens in one block (one shared indexer key
              per token). When decoding, the single query tile's key tiles are split over
              s' blocks (logits of different keys are independent: no reduction).
              read q_I, w  s'·N·H_I·(D_I·e_I + 4), keys key_loads·(D_I·e_I + 4 per fp8
              scale block); write logits area·4 (fp32, as the reference ``fp8_index``)
              FLOPs area·H_I·2·D_I at the indexer's dtype (fp8: the fp8 tensor rate)
    top-k     read logits area·4, write int32 indices Σ_p min(k, p+1)·4
    sparse    per query token and head group: gather min(k, p+1) latents (D + Dv')·e,
              read the indices and Q, write O and logsumexp; FLOPs sel·hpb·2·(D + Dv).
              When decoding with s > 1 (Flash-Decoding over the selection): the
              ⌈min(k, S)/Bc⌉ gathered tiles are split over s'' blocks per query, each
              reading Q and writing an fp32 partial (Dv + 1 per row); a reduce kernel
              reads the partials and writes O.
Under the L2 estimate (``Arrays.slots`` set), the sparse gathers pass through L2: when the
latent cache of the sequences in flight fits in L2, each sequence's latents reach HBM once
(at most min(S, sel) keys), every further gather is an L2 hit (the trace shows 97.6 % for
V3.2 prefill at TP8); otherwise every gather is charged to HBM, as without the estimate.
where sel = Σ_p min(k, p + 1) over the query positions p (report: O(L·k) main attention;
the indexer stays O(L²) but at H_I·D_I in fp8 instead of H·(D + Dv)). The logits of at
most ``logits_chunk`` query tokens of the whole batch are materialised at once (workspace:
serving engines prefill a bounded number of batched tokens per step). Forward only.
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import Arrays
from memsim.algorithms._tiles import (
    INDEX_BLOCK_Q,
    forward_tiles_backward,
    sm_filling_splits,
)
from memsim.algorithms.flash_decode import active_splits
from memsim.cost import Cost
from memsim.geometry import MaskGeometry, capped_prefix_sum, floor_sum, tile_sums
from memsim.units import ACCUM_BYTES as F4
from memsim.units import DTYPE_BYTES, dtype_bytes, scaled_row_bytes
from memsim.units import INT32_BYTES as INDEX_BYTES

NAME = "dsa"
PASSES = ("forward",)

# What the rest of memsim asks of dsa (docs/DESIGN.md §"The algorithm registry").
LABEL = "sparse top-k (DSA)"  # in tables and report pages
MASKS = ("topk",)
DECODES = False  # prefill and decode; it splits keys only when N ≤ the indexer's tile
SCHEDULE = "dsa"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = "dsa"  # Numba kernels: kernels/dsa.py
UPCASTS_16BIT = False  # computes in its inputs' dtype


def default_block_q(heads_per_block: int, N: int) -> int:
    """A sparse-attention block holds one query token's packed heads."""
    return 1


def indexer_sram_bytes(t):
    """SRAM of an indexer block: its query tile Br_I·H_I·D_I·e_I and one key tile
    Bc·(D_I·e_I + fp32 scales)."""
    return (t.index_block_q * t.index_heads * t.index_head_dim * t.index_elem_bytes
            + t.block_kv * scaled_row_bytes(t.index_head_dim, t.index_elem_bytes))


def sram_bytes(t):
    """max(sparse attention: rows·D + Bc·(D + Dv'), indexer) at the storage widths."""
    dv_load = np.where(t.mla, 0, t.head_dim_v)
    sparse = (t.rows * t.head_dim + t.block_kv * (t.head_dim + dv_load)) * t.elem_bytes
    return np.maximum(sparse, indexer_sram_bytes(t))


def extra_fields(problem, index_block_q: int | None = None) -> dict:
    """The indexer's Tiling fields: the problem's indexer (default :class:`Indexer`)."""
    from memsim.problem import Indexer

    idx = problem.indexer or Indexer()
    return dict(index_heads=idx.heads, index_head_dim=idx.head_dim,
                index_elem_bytes=dtype_bytes(idx.dtype),
                index_block_q=INDEX_BLOCK_Q if index_block_q is None else index_block_q)


def shrink_first(t, limit_bytes: int) -> dict | None:
    """Halve the indexer's query tile first while the indexer alone does not fit."""
    if t.index_block_q > 1 and indexer_sram_bytes(t) > limit_bytes:
        return {"index_block_q": t.index_block_q // 2}
    return None


def splits_keys(t, N) -> bool:
    """Decoding: all N queries in one indexer tile; then keys are split over blocks."""
    return t.index_block_q >= N


def kv_splits(gpu, B, N, S, H, t, geometry):
    """Enough blocks to fill every SM once when decoding (N ≤ Br_I), else 1."""
    B, N = np.broadcast_arrays(np.asarray(B, dtype=np.int64), np.asarray(N, dtype=np.int64))
    return np.where(N <= t.index_block_q, sm_filling_splits(gpu, B, H, t.heads_per_block), 1)


def forward(x: Arrays) -> Cost:
    HI, DI, eI = x.index_heads, x.index_head_dim, x.index_e
    B, N, S, e, D, Dv = x.B, x.N, x.S, x.e, x.D, x.Dv
    decoding = (x.splits > 1) & (x.index_Br >= N)
    # indexer: causal, H_I heads per block, Br_I query tokens per tile
    t = tile_sums(N, S, x.index_Br, x.Bc, MaskGeometry("causal"))
    s_ix = np.where(decoding, active_splits(t.pairs, x.splits), 1)
    ix_read = B * (s_ix * N * HI * (DI * eI + F4) + t.key_loads * x.index_key_bytes)
    ix_hbm_keys = x.hbm_key_loads(t, x.index_key_bytes, Br=x.index_Br,
                                  geometry=MaskGeometry("causal"))
    ix_hbm = ix_read - B * (t.key_loads - ix_hbm_keys) * x.index_key_bytes
    ix_write = B * t.area * F4
    ix_flops = B * t.area * HI * 2 * DI
    fp8 = np.asarray(eI) == DTYPE_BYTES["fp8"]
    # top-k selection: min(k, p + 1) keys per query position p
    sel = capped_prefix_sum(S - N, S, x.top_k)
    tk_read, tk_write = B * t.area * F4, B * sel * INDEX_BYTES
    # sparse attention over the gathered latents, hpb heads per block
    g, hpb = x.groups, x.hpb
    sel_tiles = -(-np.minimum(x.top_k, S) // x.Bc)
    s_sp = np.where(decoding, active_splits(sel_tiles, x.splits), 1)
    split = s_sp > 1
    q_bytes = s_sp * N * hpb * D * e
    partial = np.where(split, s_sp * N * hpb * (Dv + 1) * F4, 0)
    out = N * hpb * np.where(split, Dv * e, Dv * e + F4)
    sp_read = g * (sel * INDEX_BYTES + sel * (D + x.dv_load) * e + q_bytes + partial)
    sp_write = g * (partial + out)
    reads = ix_read + tk_read + sp_read
    writes = ix_write + tk_write + sp_write
    latent = (D + x.dv_load) * e
    gathered = g * sel * latent
    if x.slots is not None:
        blocks_per_seq = np.maximum((x.H // hpb) * N * s_sp, 1)
        in_flight = np.clip(x.slots // blocks_per_seq, 1, np.maximum(B, 1))
        fits = in_flight * S * latent <= x.l2_bytes
        gathered_hbm = np.where(fits, B * np.minimum(S, sel) * latent, gathered)
    else:
        gathered_hbm = gathered
    hbm_reads = ix_hbm + tk_read + sp_read - gathered + gathered_hbm
    staged = (B * (s_ix * N * HI * DI * eI + t.key_loads * x.index_key_bytes)
              + g * (sel * (D + x.dv_load) * e + q_bytes))
    logits_rows = np.minimum(B * N, x.index_chunk)   # query tokens scored at once, batch-wide
    return Cost(
        matmul_flops=np.where(fp8, 0, ix_flops) + g * hpb * sel * 2 * (D + Dv),
        fp8_matmul_flops=np.where(fp8, ix_flops, 0.0),
        vector_flops=(B * t.area * (3 * HI + 1) + g * hpb * (4 * sel + N * (Dv + 2))
                      + np.where(split, g * hpb * s_sp * N * (2 * Dv + 2), 0)),
        # P = exp(S − m) per gathered key, one rescale per row and gathered tile (online
        # softmax, as in flash2), one weight per split in the reduce
        exp_ops=g * hpb * (sel + gathered_tiles(N, S, x.top_k, x.Bc)
                           + np.where(split, s_sp * N, 0)),
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=hbm_reads, hbm_write_bytes=writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        # fp32 logits of one chunk of queries, indices, logsumexp or split partials
        # (float64 first: B·N·k overflows int64 at N = k = 10⁹)
        workspace_bytes=(logits_rows * S * F4 + np.float64(INDEX_BYTES) * B * N * x.top_k
                         + B * x.H * N * np.where(split, s_sp * (Dv + 1), 1) * F4),
        launches=3.0 + split,
        blocks=B * t.q_tiles * s_ix + B * N + g * N * s_sp + np.where(split, g, 0),
    )


def selected_keys(N, S, top_k) -> np.ndarray:
    """Σ over query positions of min(k, p + 1): keys the sparse kernel gathers per head."""
    return capped_prefix_sum(np.asarray(S) - np.asarray(N), S, top_k)


def gathered_tiles(N, S, top_k, Bc) -> np.ndarray:
    """Σ over query positions p of ⌈min(k, p + 1)/Bc⌉: the key tiles the sparse kernel
    gathers per head (float64, numpy-broadcasting)."""
    N, S, k, Bc = (np.asarray(v, dtype=np.int64) for v in (N, S, top_k, Bc))
    o = S - N
    split = np.clip(k - 1, o - 1, S - 1)                 # last p with p + 1 ≤ k
    # ⌈(p + 1)/Bc⌉ = ⌊(p + Bc)/Bc⌋ for p = o .. split, then ⌈k/Bc⌉ for the rest
    below = floor_sum(split - o + 1, Bc, 1, o + Bc)
    return below + (S - 1 - split) * (-(-k // Bc)).astype(np.float64)


backward_tiling = forward_tiles_backward
