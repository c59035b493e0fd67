"""The attention block's projections of one layer as the GEMMs the frameworks launch.

- Multi-head / grouped-query attention: one fused QKV GEMM (h → (H + 2K)·D / tp) before the
  attention and the output GEMM (H·Dv / tp → h) after it (TensorRT-LLM's fused QKV linear,
  vLLM's ``QKVParallelLinear``).
- Multi-head latent attention (DeepSeek-V2 §2.1, arXiv 2405.04434; TensorRT-LLM
  ``modeling_deepseekv3.py``, and aiconfigurator ``sdk/models/deepseek.py``'s granular
  MLA operators): the fused down-projection ``fused_a`` (W^DQ, W^DKV and W^KR together:
  h → q_lora + kv_lora + rope, not split by TP), then W^UQ/W^QR (q_lora → H·(nope + rope) /
  tp). Prefill decompresses the keys and values with W^UK/W^UV (kv_lora → H·(nope + v) /
  tp); decode absorbs W^UK into the query and W^UV into the output (V2 §2.1.2, "absorbed"
  MQA over the latent), per head batched GEMMs of T × nope × kv_lora before the attention
  and T × kv_lora × v after it, timed here as one GEMM of the same weights and FLOPs
  (m = T, k = nope, n = H·kv_lora / tp, and k = kv_lora, n = H·v / tp), or for DeepSeek's
  geometry as :func:`memsim.ops.mla.bmm` times those batched kernels. A DSA indexer's
  projections (V3.2-Exp ``Indexer``: wq_b, wk, weights_proj) are one more GEMM.

Every GEMM goes through :func:`memsim.inference.operators.linear_s` (the backend's fitted
GEMM class), so each pays its own launch floor, as the measured kernels do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.inference.operators import linear_s
from memsim.models import Attention


def projections_s(setup: Any, a: Attention, phase: str, T: Any, w_b: float, a_b: float,
                  dtype: str) -> tuple[Any, Any]:
    """(seconds before the attention, seconds after it) of one layer's projections on one
    GPU for ``T`` tokens (array), tensor-parallel over ``setup.tp``."""
    h, G = setup.model.hidden_size, setup.tp

    def gemm(k: float, n: float) -> Any:
        return linear_s(setup, T, k, n, w_b, a_b, dtype)

    if a.mla is None:
        o_params = a.heads * a.head_dim_v * h
        in_params = a.weight_params(h) - o_params
        return gemm(h, in_params / (G * h)), gemm(o_params / (G * h), h)
    m, H = a.mla, a.heads
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    down = (m.q_lora_rank or 0) + m.kv_lora_rank + m.qk_rope_head_dim
    before = gemm(h, down)
    before = before + (gemm(m.q_lora_rank, H * qk / G) if m.q_lora_rank
                       else gemm(h, H * qk / G))
    if a.indexer is not None:
        ix = a.indexer
        ix_params = ((m.q_lora_rank or h) * ix.heads * ix.head_dim + h * ix.head_dim
                     + h * ix.heads)
        before = before + gemm(h, ix_params / h)
    o = gemm(H * m.v_head_dim / G, h)
    if phase == "prefill":  # K and V decompressed from the latent
        return before + gemm(m.kv_lora_rank, H * (m.qk_nope_head_dim + m.v_head_dim) / G), o
    from memsim.ops import mla

    if (m.kv_lora_rank, m.qk_nope_head_dim, m.v_head_dim) == (mla.KV_LORA_RANK, mla.QK_NOPE,
                                                             mla.V_HEAD):
        # DeepSeek's absorbed BMMs as their own kernels (memsim.ops.mla.bmm, fitted class)
        kw = {"dtype": "fp8" if dtype.startswith("fp8") else "bf16", "gpu": setup.gpu,
              "backend": setup.backend}
        T = np.maximum(np.asarray(T, dtype=float), 1.0)
        return (before + mla.bmm(T, H // G, op="pre", **kw).time_s,
                mla.bmm(T, H // G, op="post", **kw).time_s + o)
    absorb_k = gemm(m.qk_nope_head_dim, H * m.kv_lora_rank / G)
    absorb_v = gemm(m.kv_lora_rank, H * m.v_head_dim / G)
    return before + absorb_k, absorb_v + o
