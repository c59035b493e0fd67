"""The attention problem: shapes, head layout, mask, dtype and pass.

Notation (docs/DESIGN.md §"Notation"): B batch, N query length, S key/value length, H query heads,
K key/value heads, D head dimension of Q and K, Dv head dimension of V.

Positions. The N queries are the *last* N of the S positions: query i (0 ≤ i < N) sits at
position ``S - N + i``. Prefill has N = S; decoding one token has N = 1.

Masks (which keys j a query at position p sees), kept apart from the algorithm:

- full: every key (encoders, cross attention);
- causal: j ≤ p;
- sliding window W, causal: p - W < j ≤ p (W keys including itself; Mistral, Gemma local);
- sliding window W, bidirectional: |p - j| ≤ W // 2 (ModernBERT local, window 128 = ±64);
- chunked local C: ⌊j / C⌋ = ⌊p / C⌋ and j ≤ p (Llama 4 iRoPE local layers);
- top-k k: k keys chosen by an indexer among the causal ones (DeepSeek Sparse Attention);
  the query at position p attends to min(k, p + 1) keys.

Head layouts: MHA (K = H), GQA (1 < K < H, K divides H), MQA (K = 1), MLA (DeepSeek-V2 §2.1:
a latent of ``head_dim`` elements per token shared by all heads, whose first ``head_dim_v``
elements also serve as V, so the KV cache holds one vector per token, not two).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memsim.limits import (
    MAX_BATCH,
    MAX_HEAD_DIM,
    MAX_HEADS,
    MAX_TOKENS,
)
from memsim.units import INDEXER_HEAD_DIM, INDEXER_HEADS, Dtype

Layout = Literal["mha", "gqa", "mqa", "mla"]
Pass = Literal["forward", "backward", "forward+backward"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Mask(BaseModel):
    """Which keys each query sees. Fields combine: a window or chunk implies its own rule."""

    model_config = _FROZEN

    causal: bool = True
    window: int | None = Field(default=None, gt=0, le=MAX_TOKENS,
                               description="sliding window W, tokens")
    chunk: int | None = Field(default=None, gt=0, le=MAX_TOKENS,
                              description="chunked local attention C, tokens")
    top_k: int | None = Field(default=None, gt=0, le=MAX_TOKENS,
                              description="keys chosen per query, tokens")

    @model_validator(mode="after")
    def _one_pattern(self) -> Mask:
        given = [n for n in ("window", "chunk", "top_k") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"{given[0]}={getattr(self, given[0])} cannot be combined with "
                             + " and ".join(f"{n}={getattr(self, n)}" for n in given[1:])
                             + "; choose one pattern")
        if (self.chunk is not None or self.top_k is not None) and not self.causal:
            raise ValueError("causal=False is not supported with a chunk or top_k mask "
                             "(both are causal; drop --bidirectional)")
        return self

    @property
    def kind(self) -> str:
        """One of 'full', 'causal', 'window', 'chunk', 'topk'."""
        if self.window is not None:
            return "window"
        if self.chunk is not None:
            return "chunk"
        if self.top_k is not None:
            return "topk"
        return "causal" if self.causal else "full"

    def describe(self) -> str:
        k = self.kind
        if k == "window":
            return f"{'causal' if self.causal else 'bidirectional'} window {self.window}"
        if k == "chunk":
            return f"chunked local {self.chunk}"
        if k == "topk":
            return f"top-{self.top_k}"
        return k


class Indexer(BaseModel):
    """DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2-Exp report §1).

    Score I_{t,s} = Σ_j w_{t,j} · ReLU(q_{t,j} · k_s) over ``heads`` heads of ``head_dim``;
    one shared indexer key per token, stored at ``dtype`` plus one fp32 scale per
    ``scale_block`` elements (132 B per token at D_I = 128, fp8).
    """

    model_config = _FROZEN

    heads: int = Field(default=INDEXER_HEADS, gt=0, le=MAX_HEADS)
    head_dim: int = Field(default=INDEXER_HEAD_DIM, gt=0, le=MAX_HEAD_DIM)
    dtype: Dtype = "fp8"
    scale_block: int = Field(default=128, gt=0, le=MAX_HEAD_DIM)
    logits_chunk: int = Field(
        default=8192, gt=0, le=MAX_TOKENS,
        description="query tokens (whole batch) whose fp32 logits are materialised at once "
                    "(serving engines prefill a bounded number of batched tokens per step)")


class AttentionProblem(BaseModel):
    """One attention call: ``q: (B, N, H, D)``, ``k: (B, S, K, D)``, ``v: (B, S, K, Dv)``."""

    batch: int = Field(gt=0, le=MAX_BATCH)
    seq_len: int = Field(gt=0, le=MAX_TOKENS, description="N, query tokens")
    kv_len: int | None = Field(default=None, gt=0, le=MAX_TOKENS,
                               description="S, key/value tokens (default N)")
    heads: int = Field(gt=0, le=MAX_HEADS, description="H, query heads")
    kv_heads: int | None = Field(default=None, gt=0, le=MAX_HEADS,
                                 description="K, key/value heads (default H)")
    head_dim: int = Field(gt=0, le=MAX_HEAD_DIM, description="D, of Q and K")
    head_dim_v: int | None = Field(default=None, gt=0, le=MAX_HEAD_DIM,
                                   description="Dv (default D)")
    dtype: Dtype = "bf16"
    mla: bool = Field(default=False, description="V is a slice of the shared latent K")
    mask: Mask = Mask()
    indexer: Indexer | None = None
    pass_: Pass = Field(default="forward", alias="pass")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> AttentionProblem:
        s, k = self.S, self.K
        if self.seq_len > s:
            raise ValueError(f"seq_len={self.seq_len} must not exceed kv_len={s}")
        if self.heads % k:
            raise ValueError(f"kv_heads={k} must divide heads={self.heads}")
        if self.mla and k != 1:
            raise ValueError(f"kv_heads={k} must be 1 with mla (one latent shared by all heads)")
        if self.mla and self.Dv > self.head_dim:
            raise ValueError(f"head_dim_v={self.Dv} must not exceed head_dim={self.head_dim} "
                             "with mla (V is a slice of the latent)")
        return self

    # Short names of the notation, always resolved (no None).
    @property
    def B(self) -> int:
        return self.batch

    @property
    def N(self) -> int:
        return self.seq_len

    @property
    def S(self) -> int:
        return self.kv_len if self.kv_len is not None else self.seq_len

    @property
    def H(self) -> int:
        return self.heads

    @property
    def K(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def D(self) -> int:
        return self.head_dim

    @property
    def Dv(self) -> int:
        return self.head_dim_v if self.head_dim_v is not None else self.head_dim

    @property
    def layout(self) -> Layout:
        if self.mla:
            return "mla"
        if self.K == self.H:
            return "mha"
        return "mqa" if self.K == 1 else "gqa"
