"""DeepSeek Sparse Attention (DeepSeek-V3.2-Exp tech report §1; inference/model.py):
a lightning indexer scores every preceding key, a top-k keeps k of them per query, and
attention runs over those k entries only — on the MQA mode of MLA, where one latent
(kv_lora_rank + rope dims) per token is shared by all heads.

Three kernels, per batch:
    indexer   I_{t,s} = Σ_j w_{t,j}·ReLU(q_{t,j}·k_s), causal, tiled like FA-2 with all
              H_I indexer heads and Br_I query tokens in one block (one shared indexer key
              per token):
              read q_I N·H_I·D_I·e_I, w N·H_I·4, keys key_loads·(D_I·e_I + 4 per fp8 scale block)
              write logits area·4 (fp32, as the reference ``fp8_index`` returns them)
              FLOPs area·H_I·2·D_I (fp8 tensor cores) + area·H_I·3 (ReLU, weight, sum)
    top-k     read logits area·4, write indices Σ_p min(k, p+1)·4 (int32)
    sparse    per query token and head group: read indices, gather min(k, p+1) latents
              (D + Dv')·e each, read Q, write O and logsumexp; FLOPs sel·hpb·2·(D + Dv)
where sel = Σ_p min(k, p + 1) over the query positions p (report: O(L·k) main attention;
the indexer stays O(L²) but at H_I·D_I fp8 instead of H·(D + Dv)).
The indexer's FLOPs count as matmul FLOPs; the roofline prices every matmul at the
problem's dtype, which is conservative for the fp8 indexer. Forward only (inference).
"""

from __future__ import annotations

import numpy as np

from memsim.algorithms._arrays import Arrays
from memsim.cost import Cost
from memsim.geometry import MaskGeometry, capped_prefix_sum, tile_sums
from memsim.tiling import FP32_BYTES as F4

NAME = "dsa"
PASSES = ("forward",)
INDEX_BYTES = 4  # int32 top-k indices


def forward(x: Arrays) -> Cost:
    HI, DI, eI = x.index_heads, x.index_head_dim, x.index_e
    B, N, S, e, D, Dv = x.B, x.N, x.S, x.e, x.D, x.Dv
    # indexer: causal, H_I heads per block, Br query tokens per tile
    t = tile_sums(N, S, x.index_Br, x.Bc, MaskGeometry("causal"))
    ix_read = B * (N * HI * (DI * eI + F4) + t.key_loads * x.index_key_bytes)
    ix_write = B * t.area * F4
    # top-k selection: min(k, p + 1) keys per query position p
    sel = capped_prefix_sum(S - N, S, x.top_k)
    tk_read, tk_write = B * t.area * F4, B * sel * INDEX_BYTES
    # sparse attention over the gathered latents, hpb heads per block
    g, hpb = x.groups, x.hpb
    sp_read = g * (sel * INDEX_BYTES + sel * (D + x.dv_load) * e + N * hpb * D * e)
    sp_write = g * N * hpb * (Dv * e + F4)
    reads = ix_read + tk_read + sp_read
    writes = ix_write + tk_write + sp_write
    staged = B * (N * HI * DI * eI + t.key_loads * x.index_key_bytes) + g * (
        sel * (D + x.dv_load) * e + N * hpb * D * e)
    return Cost(
        matmul_flops=B * t.area * HI * 2 * DI + g * hpb * sel * 2 * (D + Dv),
        vector_flops=B * t.area * (3 * HI + 1) + g * hpb * (4 * sel + N * (Dv + 2)),
        exp_ops=g * hpb * sel,
        global_read_bytes=reads, global_write_bytes=writes,
        hbm_read_bytes=reads, hbm_write_bytes=writes,
        sram_write_bytes=staged, sram_read_bytes=staged * x.warps,
        # dense fp32 logits (B·N·S, as allocated by the reference), indices, logsumexp
        workspace_bytes=B * N * S * F4 + B * N * x.top_k * INDEX_BYTES + B * x.H * N * F4,
        launches=3.0 + 0 * g,
        blocks=B * t.q_tiles + B * N + g * N,
    )


def selected_keys(N, S, top_k) -> np.ndarray:
    """Σ over query positions of min(k, p + 1): keys the sparse kernel gathers per head."""
    return capped_prefix_sum(np.asarray(S) - np.asarray(N), S, top_k)
