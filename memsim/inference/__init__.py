"""Whole-model inference: per-layer operators, VRAM, prefill and decode time, tensor
parallelism, $ per million tokens and the cost curve by token position.

Every layer's operators go through the one roofline (:mod:`memsim.roofline`); the attention
operator's FLOPs, bytes and workspace come from the attention algorithms
(:mod:`memsim.algorithms`), never from a formula here. Context ``L`` and batch ``B`` may be
numpy arrays (broadcast together): one call evaluates a whole grid (``memsim sweep``).

Conventions
-----------
- Prefill processes ``B`` sequences of ``L`` tokens (N = S = L). Decode produces the next
  token at position ``L`` for each of ``B`` sequences: N = 1 query against S = L + 1 keys.
- Under tensor parallelism over G GPUs (Megatron-LM, Shoeybi et al. arXiv 1909.08053 §3)
  weights, query heads and KV heads are split G ways; a model with fewer KV heads than G
  keeps one KV head per GPU, and an MLA latent is replicated on every GPU. DP attention,
  expert, pipeline and context parallelism: :class:`~.deployment.Setup`. Every number in
  the VRAM breakdown is *per GPU*; time is the wall time of the GPUs working together, and
  $ counts all of them.
- Linear layers cost 2 FLOPs per weight per token (Kaplan et al. arXiv 2001.08361 Table 1)
  and read their weights once per step plus their input and output activations.

Layout: :mod:`.deployment` (Setup: parallelism, dtypes, MTP, and their rules),
:mod:`.pricing` ($ algebra), :mod:`.operators` (GEMMs, element-wise, touched experts),
:mod:`.comm` (collectives, through :mod:`memsim.ops.comm`), :mod:`.mlp` (the MLP block under
TP, DP attention and EP), :mod:`.attention_call` (attention through the algorithms),
:mod:`.phases` (prefill/decode of every layer, chunks, pipeline, MTP), :mod:`.memory`
(VRAM per GPU), :mod:`.capacity` (the batch that fits), :mod:`.prediction`, :mod:`.curve`
(marginal and average cost by position), :mod:`.sweeps`. The deployment search is
:mod:`memsim.planning`.
"""

from memsim.inference.attention_call import _attention_call, _AttnCall, attention_cost
from memsim.inference.capacity import fits, max_batch
from memsim.inference.curve import cost_curve
from memsim.inference.deployment import (
    ATTENTION_CHOICES,
    COMPUTE_DTYPES,
    DEFAULT_RESERVE_FRACTION,
    TP_CANDIDATES,
    Setup,
)
from memsim.inference.memory import activation_bytes, kv_cache_bytes, vram
from memsim.inference.operators import GEMM_TILE, all_reduce_time_s, touched_experts
from memsim.inference.phases import Phase, decode_phase, decode_step, prefill_phase
from memsim.inference.prediction import (
    min_gpus_to_fit,
    predict,
    predict_arrays,
    takeaway,
    warnings_for,
)
from memsim.inference.pricing import usd_per_million_tokens
from memsim.inference.sweeps import SWEEP_FIELDS, sweep, sweep_task

__all__ = [
    "ATTENTION_CHOICES", "COMPUTE_DTYPES", "DEFAULT_RESERVE_FRACTION", "GEMM_TILE", "SWEEP_FIELDS",
    "TP_CANDIDATES", "Phase", "Setup", "_AttnCall", "_attention_call", "activation_bytes",
    "all_reduce_time_s", "attention_cost", "cost_curve", "decode_phase", "kv_cache_bytes",
    "decode_step", "fits", "max_batch", "min_gpus_to_fit", "predict", "predict_arrays",
    "prefill_phase", "sweep", "sweep_task",
    "takeaway", "touched_experts", "usd_per_million_tokens", "vram", "warnings_for",
]
