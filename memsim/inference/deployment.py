"""What is served and how (:class:`Setup`) and the checks of its inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.algorithms import ALGORITHMS
from memsim.errors import InputError
from memsim.hardware import GPU
from memsim.models import LayerGroup, ModelConfig
from memsim.problem import Mask
from memsim.units import dtype_bytes

ATTENTION_CHOICES = ("auto", *ALGORITHMS)
TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
COMPUTE_DTYPES = ("fp32", "fp16", "bf16", "fp8")
# vLLM's default gpu_memory_utilization = 0.9 leaves 10 % of HBM to the CUDA context, NCCL
# buffers and allocator fragmentation (docs.vllm.ai, EngineArgs).
DEFAULT_RESERVE_FRACTION = 0.10


# DeepSeek-V3 report (arXiv 2412.19437) §5.4.3: the second token predicted by MTP is
# accepted 85-90 % of the time; 0.85 is the default acceptance of a draft token.
DEFAULT_ACCEPTANCE = 0.85
# FlashMLA (github.com/deepseek-ai/FlashMLA, README "FP8 KV cache"): one fp32 scale per 128
# fp8 elements of the latent (656 B per token for V3.2: 512 fp8 + 4·4 B scales + 64 bf16 RoPE).
DEFAULT_KV_SCALE_BLOCK = 128


@dataclass(frozen=True)
class Setup:
    """What is served and how: model, GPU, parallelism, attention algorithm, dtypes, price.

    Parallelism over ``gpus`` GPUs (default ``tp``·``pp``): ``pp`` pipeline stages of
    W = gpus/pp GPUs each. Inside a stage, attention (and the dense projections next to it)
    runs tensor-parallel over ``tp`` GPUs; ``dp_attention`` makes attention data-parallel
    over D = W/tp replicas, each holding only its own sequences' KV cache, while the MLPs
    run tensor-parallel over all W GPUs of the stage on the gathered tokens (SGLang's DP
    attention). ``ep`` = W spreads the routed experts over the W GPUs whole (expert
    parallelism with all-to-all dispatch and combine; DeepSeek-V3 report §3.4); ``ep`` = 1
    splits every expert W ways instead.

    ``context_parallel`` splits each prompt's tokens over the D attention replicas in
    prefill (a long prompt's time to first token), instead of giving each replica its own
    prompts. ``mtp`` draft tokens per decode step are verified together, each accepted with
    probability ``acceptance`` (multi-token prediction or speculative decoding).
    ``all_global`` treats every windowed or chunked layer as global (what a calculator that
    ignores the layer pattern predicts); ``prefill_chunk`` runs prefill in chunks of that many
    tokens (chunked prefill: smaller activations, weights re-read per chunk).
    ``backend`` (trtllm, vllm, sglang) picks the fitted kernel classes of :mod:`memsim.ops`
    that time the GEMMs, MoE layers, collectives and attention kernels (None: trtllm).
    """

    model: ModelConfig
    gpu: GPU
    tp: int = 1
    attention: str = "auto"
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    usd_per_gpu_hour: float | None = None
    prefill_chunk: int | None = None
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION
    all_global: bool = False
    gpus: int | None = None
    pp: int = 1
    ep: int = 1
    dp_attention: bool = False
    mtp: int = 0
    acceptance: float = DEFAULT_ACCEPTANCE
    kv_scale_block: int = DEFAULT_KV_SCALE_BLOCK
    context_parallel: bool = False
    backend: str | None = None  # kernel classes of memsim.ops (None: ops.DEFAULT_BACKEND)

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_parallelism(self)
        _check_decoding(self)

    @property
    def price(self) -> float:
        """$ per GPU-hour: the override, else the profile's price."""
        return self.usd_per_gpu_hour or self.gpu.price.usd_per_gpu_hour

    @property
    def n_gpus(self) -> int:
        """GPUs of the deployment (``gpus``, else tp·pp)."""
        return self.gpus or self.tp * self.pp

    @property
    def stage_gpus(self) -> int:
        """W: GPUs of one pipeline stage; the MLPs are split W ways."""
        return self.n_gpus // self.pp

    @property
    def attention_dp(self) -> int:
        """D = W/tp: data-parallel attention replicas of a stage (1 without DP attention)."""
        return self.stage_gpus // self.tp

    @property
    def tokens_per_step(self) -> float:
        """Tokens a decode step produces per sequence: 1 + the expected accepted drafts.

        A chain of K drafts each accepted with probability a (stopping at the first
        rejection) yields (1 − a^(K+1)) / (1 − a) tokens, the verified one included
        (Leviathan et al. arXiv 2211.17192 eq. 1).
        """
        return tokens_per_step(self.mtp, self.acceptance)

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        if not self.all_global:
            return self.model.groups
        out = []
        for g in self.model.groups:
            mask = g.attention.mask
            if mask.window is not None or mask.chunk is not None:
                mask = Mask(causal=mask.causal)
            out.append(replace(g, attention=replace(g.attention, mask=mask)))
        return tuple(out)

    def with_tp(self, tp: int) -> Setup:
        """The model at TP ``tp`` alone (one stage of tp GPUs: no DP attention, EP or CP)."""
        return replace(self, tp=tp, gpus=None, pp=1, ep=1, dp_attention=False,
                       context_parallel=False)


def tokens_per_step(mtp: Any, acceptance: float) -> Any:
    """(1 − a^(K+1)) / (1 − a) tokens per decode step for K drafts accepted with probability
    a each (Leviathan et al. arXiv 2211.17192 eq. 1); K + 1 at a = 1. ``mtp`` may be an
    array."""
    K = np.asarray(mtp, dtype=float)
    if acceptance >= 1:
        return K + 1
    return (1 - acceptance ** (K + 1)) / (1 - acceptance)


def _check_choices(s: Setup) -> None:
    """Algorithm, dtypes, price, chunk and reserve."""
    if s.attention not in ATTENTION_CHOICES:
        from memsim.errors import closest

        raise InputError("attention", s.attention, "must be one of "
                         + ", ".join(ATTENTION_CHOICES)
                         + closest(s.attention, ATTENTION_CHOICES))
    for name in ("weight_dtype", "kv_dtype", "act_dtype"):
        try:
            dtype_bytes(getattr(s, name))
        except InputError as exc:
            raise InputError(name, exc.value, exc.rule) from None
    for name in ("kv_dtype", "act_dtype"):  # these feed tensor-core matmuls
        if getattr(s, name) not in COMPUTE_DTYPES:
            raise InputError(name, getattr(s, name),
                             f"must be one of {', '.join(COMPUTE_DTYPES)}")
    if s.usd_per_gpu_hour is not None and not 0 < s.usd_per_gpu_hour < math.inf:
        raise InputError("price", s.usd_per_gpu_hour, "must be > 0 $ per GPU-hour")
    if s.prefill_chunk is not None:
        _positive_int("prefill_chunk", s.prefill_chunk)
    if not 0 <= s.reserve_fraction < 1:
        raise InputError("reserve_fraction", s.reserve_fraction, "must be in [0, 1)")
    _positive_int("kv_scale_block", s.kv_scale_block)


def _check_parallelism(s: Setup) -> None:
    """The rules a combination of gpus, tp, pp, ep and DP attention must keep."""
    for name in ("tp", "pp", "ep"):
        _positive_int(name, getattr(s, name))
    if s.gpus is not None:
        _positive_int("gpus", s.gpus)
    m = s.model
    for g in m.groups:
        if g.attention.heads % s.tp:
            raise InputError("tp", s.tp, f"must divide the query heads "
                             f"({g.attention.heads}) of {m.name}")
    if s.pp > m.num_layers:
        raise InputError("pp", s.pp, f"must not exceed the {m.num_layers} layers of {m.name}")
    if s.n_gpus % (s.tp * s.pp):
        raise InputError("gpus", s.n_gpus, f"must be a multiple of tp·pp = {s.tp * s.pp}")
    if s.attention_dp > 1 and not s.dp_attention:
        raise InputError("gpus", s.n_gpus, f"must equal tp·pp = {s.tp * s.pp} unless "
                         "--dp-attention spreads attention over gpus/(tp·pp) replicas")
    if s.dp_attention and not m.decoder:
        raise InputError("dp_attention", True, f"needs a decoder with a KV cache; {m.name} "
                         "is an encoder")
    if s.dp_attention and s.attention_dp < 2:
        raise InputError("dp_attention", True, f"needs at least 2 attention replicas: gpus "
                         f"({s.n_gpus}) must be ≥ 2·tp·pp = {2 * s.tp * s.pp}")
    if s.context_parallel and not s.dp_attention:
        raise InputError("context_parallel", True, "needs --dp-attention: a prompt is split "
                         "over the attention replicas")
    if s.ep > 1:
        experts = max((g.mlp.experts for g in m.groups), default=0)
        if not experts:
            raise InputError("ep", s.ep, f"needs a mixture-of-experts model; {m.name} has "
                             "no routed experts")
        if s.ep > experts:
            raise InputError("ep", s.ep, f"must not exceed the {experts} routed experts of "
                             f"{m.name}")
        if s.ep != s.stage_gpus:
            raise InputError("ep", s.ep, f"must be 1 or the GPUs of a stage, gpus/pp = "
                             f"{s.stage_gpus} (experts spread over every GPU of a stage)")


def _check_decoding(s: Setup) -> None:
    if isinstance(s.mtp, bool) or not isinstance(s.mtp, int | np.integer) or s.mtp < 0:
        raise InputError("mtp", s.mtp, "must be a non-negative integer")
    if s.mtp and not s.model.decoder:
        raise InputError("mtp", s.mtp, f"needs a decoder; {s.model.name} is an encoder")
    if not 0 <= s.acceptance <= 1:
        raise InputError("acceptance", s.acceptance, "must be in [0, 1]")


def _ceiling(field: str) -> int:
    """memsim.limits' ceiling for a Setup or prediction size (sizes that feed int64 arrays)."""
    from memsim import limits

    return {"context": limits.MAX_CONTEXT, "max_context": limits.MAX_CONTEXT,
            "batch": limits.MAX_BATCH, "points": limits.MAX_POINTS,
            "tp": limits.MAX_TP, "pp": limits.MAX_TP, "ep": limits.MAX_TP,
            "gpus": limits.MAX_TP}.get(field, limits.MAX_TOKENS)


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise InputError(field, value, "must be a positive integer")
    if value > _ceiling(field):
        raise InputError(field, value, f"must be at most {_ceiling(field)} (memsim's ceiling)")


def _positive_array(field: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or np.any(arr <= 0):
        raise InputError(field, value if arr.ndim == 0 else arr.tolist(),
                         "must be a positive integer")
    if np.any(arr > _ceiling(field)):
        raise InputError(field, value if arr.ndim == 0 else arr.max().item(),
                         f"must be at most {_ceiling(field)} (memsim's ceiling)")
    return arr.astype(np.int64)
