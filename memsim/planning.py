"""``memsim plan``: the cheapest deployment of a model on a GPU that meets latency targets.

The search follows how large models are served today: prefill and decode run on separate
deployments (disaggregated serving; DeepSeek's inference system, github.com/deepseek-ai/
open-infra-index, "Day 6": prefill on 4 nodes with EP32, decode on 18 nodes with EP144),
each chosen on its own:

- **decode**: every structure (GPU count, TP, PP, DP attention, EP) × a grid of batches
  (those that do not fit at the full context are rejected) × MTP depths 0..``max_mtp``
  (searched only when asked: a model needs an MTP module or a draft model to use it),
  priced at the mean decode position
  (isl + osl/2: decode time is affine in the position for dense attention, so the mean
  position gives the mean cost); the time between two tokens of a user (TPOT) must meet
  ``tpot_ms``. The cheapest $ per million output tokens wins; the Pareto front of tokens/s
  per GPU against tokens/s per user is returned with it.
- **prefill**: every structure × a few batches of whole prompts of ``isl`` tokens, each
  attention replica with its own prompts or (DP attention) every prompt split over the
  replicas (context parallelism); the time to the first token (TTFT: the whole batch's
  prefill) must meet ``ttft_ms``.

Structures whose pipeline stages have the same shape share one vectorised evaluation of
their layers over every batch and MTP depth (a pipeline only re-slices the batch into
micro-batches and adds sends), so the search evaluates thousands of deployments per
second (``make bench``). Groups are independent tasks: ``executor`` (any
``concurrent.futures.Executor``, Dask's or Ray's) runs them in parallel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.errors import InputError
from memsim.inference.curve import DEFAULT_CHUNK
from memsim.inference.deployment import Setup, _positive_int, tokens_per_step
from memsim.inference.memory import vram
from memsim.inference.phases import (
    decode_layers,
    pipelined_decode,
    pipelined_prefill,
    prefill_layers,
)
from memsim.inference.pricing import usd_per_million_tokens

# One NVLink/NVSwitch domain: 8 GPUs per HGX/DGX node (NVIDIA DGX H100 user guide); tensor
# parallelism stays inside it.
NODE_GPUS = 8
PP_CHOICES = (1, 2, 4, 8)
# sequences per attention replica tried by every decode structure: 1 to 16,384, 4 % apart
BATCH_GRID = np.unique(np.geomspace(1, 1 << 14, 256).round().astype(np.int64))
PREFILL_BATCHES = (1, 2, 4, 8)  # prompts per attention replica in one prefill
PP_PREFILL_CHUNK = 8192  # a pipelined prefill needs micro-batches: chunks of this many tokens


@dataclass(frozen=True)
class Query:
    """What to serve: model and GPU names, lengths (tokens), targets (ms), limits."""

    model: str
    gpu: str
    isl: int
    osl: int
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    max_gpus: int = 64
    price: float | None = None
    weight_dtype: str = "auto"
    kv_dtype: str = "bf16"
    acceptance: float | None = None
    max_mtp: int = 0
    max_context: int | None = None

    @property
    def context(self) -> int:
        """Tokens each sequence holds at the end: memory must fit this (default isl + osl)."""
        return self.max_context or self.isl + self.osl


def structures(base: Setup, max_gpus: int) -> list[dict[str, Any]]:
    """Every valid (gpus, tp, pp, dp_attention, ep) up to ``max_gpus`` GPUs."""
    m = base.model
    heads = math.gcd(*(g.attention.heads for g in m.groups))
    experts = max((g.mlp.experts for g in m.groups), default=0)
    counts = sorted({1 << i for i in range(max_gpus.bit_length()) if 1 << i <= max_gpus}
                    | {max_gpus})
    out = []
    for n in counts:
        for tp in (t for t in (1, 2, 4, 8) if t <= min(n, NODE_GPUS) and heads % t == 0):
            for pp in (p for p in PP_CHOICES if p <= m.num_layers and n % (tp * p) == 0):
                d = n // (tp * pp)
                if d > 1 and not m.decoder:
                    continue
                w = n // pp
                for ep in (1, w) if experts and 1 < w <= experts else (1,):
                    out.append({"gpus": n, "tp": tp, "pp": pp, "dp_attention": d > 1,
                                "ep": ep})
    return out


def stage_groups(structs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Structures grouped by their stage's shape (tp, W = gpus/pp, ep, DP attention): a
    pipeline's layers cost the same per micro-batch whatever the number of stages, so each
    group's layers are evaluated once and every pipeline depth derived from them."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for st in structs:
        key = (st["tp"], st["gpus"] // st["pp"], st["ep"], st["dp_attention"])
        groups.setdefault(key, []).append(st)
    return list(groups.values())


def evaluate_group(q: Query, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decode and prefill candidates of every structure of one stage-shape group, as arrays
    (one task of the search): decode over the batch grid × MTP depths at the mean decode
    position, memory at the full context; prefill of a few batches of whole prompts."""
    stage = _setup(q, group[0])
    D, mid = stage.attention_dp, q.isl + q.osl // 2
    K = np.arange(q.max_mtp + 1)[:, None]
    micro = (BATCH_GRID * D)[None, :] + 0 * K
    layers = decode_layers(stage, mid, micro, K) if stage.model.decoder else None
    # prefill variants: each replica its own prompts; or (DP attention) every prompt split
    # over the replicas (context parallelism: a long prompt's TTFT)
    variants = [(False, np.asarray(PREFILL_BATCHES) * D)]
    if stage.dp_attention:
        variants.append((True, np.asarray(PREFILL_BATCHES)))
    chunks_needed = {None if st["pp"] == 1 else PP_PREFILL_CHUNK for st in group}
    prefill = {(cp, chunk): prefill_layers(
        replace(stage, prefill_chunk=chunk, context_parallel=cp), q.isl, b)
        for cp, b in variants for chunk in chunks_needed}
    out = []
    for st in group:
        s = _setup(q, st)
        decode: dict[str, Any] = {}
        if layers is not None:
            ph = pipelined_decode(s, layers, micro, K, mid)
            B = micro * s.pp
            # a decode deployment's steps are small: memory is the cache and one engine step
            engine = replace(s, prefill_chunk=DEFAULT_CHUNK)
            decode = {"batch": B, "mtp": K + 0 * B, "step_s": ph.time_s,
                      "tokens_per_step": tokens_per_step(K, s.acceptance) + 0 * ph.time_s,
                      "fits": vram(engine, q.context, B, ph.workspace_bytes)["fits"]}
        pre_rows = []
        for cp, b in variants:
            sp = replace(s, prefill_chunk=None if s.pp == 1 else PP_PREFILL_CHUNK,
                         context_parallel=cp)
            whole, chunks, chunk_tokens = prefill[(cp, sp.prefill_chunk)]
            pre = pipelined_prefill(sp, whole, chunks, b, chunk_tokens)
            pre_rows.append({"context_parallel": cp, "batch": b, "time_s": pre.time_s,
                             "fits": vram(sp, q.isl, b, pre.workspace_bytes)["fits"]})
        out.append({"structure": st, "decode": decode, "prefill": pre_rows})
    return out


def _setup(q: Query, struct: dict[str, Any]) -> Setup:
    from memsim.hardware import load_gpu
    from memsim.models import load_model

    gpu = load_gpu(q.gpu)
    weights = q.weight_dtype
    if weights == "auto":  # fp8 where the GPU has fp8 tensor cores (DeepSeek-V3 §3.3)
        weights = "fp8" if gpu.spec.fp8_tensor_flop_per_s else "bf16"
    extra = {} if q.acceptance is None else {"acceptance": q.acceptance}
    return Setup(load_model(q.model), gpu, weight_dtype=weights, kv_dtype=q.kv_dtype,
                 usd_per_gpu_hour=q.price, **struct, **extra)


# ---- choosing -------------------------------------------------------------------------


def _rows(q: Query, results: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Flatten the structures' arrays into decode and prefill candidate rows (fitting only)."""
    decode, prefill = [], []
    price = q.price or _gpu_price(q.gpu)
    for r in results:
        st, d, p = r["structure"], r["decode"], r["prefill"]
        for idx in zip(*np.nonzero(d["fits"]), strict=True) if d else ():
            B, step = int(d["batch"][idx]), float(d["step_s"][idx])
            per = float(d["tokens_per_step"][idx])
            decode.append({**st, "batch": B, "mtp": int(d["mtp"][idx]),
                           "tpot_s": step / per, "tokens_per_s_per_user": per / step,
                           "tokens_per_s_per_gpu": B * per / step / st["gpus"],
                           "usd_per_million_tokens": float(usd_per_million_tokens(
                               step, B * per, st["gpus"], price))})
        for v in p:
            for i in np.nonzero(v["fits"])[0]:
                B, t = int(v["batch"][i]), float(v["time_s"][i])
                prefill.append({**st, "context_parallel": v["context_parallel"], "batch": B,
                                "ttft_s": t,
                                "tokens_per_s_per_gpu": B * q.isl / t / st["gpus"],
                                "usd_per_million_tokens": float(usd_per_million_tokens(
                                    t, B * q.isl, st["gpus"], price))})
    return decode, prefill


def _gpu_price(gpu: str) -> float:
    from memsim.hardware import load_gpu

    return load_gpu(gpu).price.usd_per_gpu_hour


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows no other row beats on both tokens/s per GPU and tokens/s per user, fastest
    per user first."""
    ranked = sorted(rows, key=lambda r: (-r["tokens_per_s_per_user"],
                                         -r["tokens_per_s_per_gpu"]))
    front: list[dict[str, Any]] = []
    best = -1.0
    for r in ranked:
        if r["tokens_per_s_per_gpu"] > best:
            front.append(r)
            best = r["tokens_per_s_per_gpu"]
    return front


def _cheapest(rows: list[dict[str, Any]], ok: Any) -> dict[str, Any] | None:
    good = [r for r in rows if ok(r)]
    return min(good, key=lambda r: (r["usd_per_million_tokens"], r["gpus"]), default=None)


def plan(q: Query, executor: Any = None) -> dict[str, Any]:
    """The cheapest prefill and decode deployments meeting the targets, and the front.

    Returns JSON-able: ``query``, ``prefill`` and ``decode`` (the chosen deployment with its
    latency, throughput and $ per million tokens, or None when nothing meets the target),
    ``front`` (decode Pareto front), ``structures``, ``evaluated`` (deployments evaluated)
    and ``seconds``.
    """
    import time

    _check_query(q)
    t0 = time.perf_counter()
    base = _setup(q, {})
    structs = structures(base, q.max_gpus)
    groups = stage_groups(structs)
    if executor is None:
        results = [r for g in groups for r in evaluate_group(q, g)]
    else:
        futures = [executor.submit(evaluate_group, q, g) for g in groups]
        results = [r for f in futures for r in f.result()]
    evaluated = sum(int(np.size(r["decode"].get("batch", []))) + sum(
        int(np.size(v["batch"])) for v in r["prefill"]) for r in results)
    decode, prefill = _rows(q, results)
    if not decode and not prefill:
        raise InputError("max-gpus", q.max_gpus, f"nothing fits: {base.model.name} at "
                         f"{q.context:,} tokens needs more than {q.max_gpus} × {q.gpu}")
    tpot = q.tpot_ms / 1e3 if q.tpot_ms else math.inf
    ttft = q.ttft_ms / 1e3 if q.ttft_ms else math.inf
    return {
        "query": {**q.__dict__, "context": q.context, "weight_dtype": base.weight_dtype,
                  "decoder": base.model.decoder,
                  "usd_per_gpu_hour": base.price, "acceptance": base.acceptance},
        "decode": _cheapest(decode, lambda r: r["tpot_s"] <= tpot),
        "prefill": _cheapest(prefill, lambda r: r["ttft_s"] <= ttft),
        "front": pareto_front(decode),
        "structures": len(structs), "evaluated": evaluated,
        "seconds": time.perf_counter() - t0,
    }


def _check_query(q: Query) -> None:
    for name in ("isl", "osl", "max_gpus"):
        _positive_int(name, getattr(q, name))
    if q.max_context is not None and q.isl + q.osl > q.max_context:
        raise InputError("isl+osl", q.isl + q.osl, f"must not exceed --context "
                         f"{q.max_context}")
    if isinstance(q.max_mtp, bool) or not isinstance(q.max_mtp, int) or q.max_mtp < 0:
        raise InputError("max-mtp", q.max_mtp, "must be a non-negative integer")
    for name in ("ttft_ms", "tpot_ms", "price"):
        value = getattr(q, name)
        if value is not None and not value > 0:
            raise InputError(name.replace("_", "-"), value, "must be > 0")
