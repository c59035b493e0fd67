"""Predictions of a deployment: vectorised arrays, the ``memsim predict --json`` dict, the
smallest TP degree that fits, warnings and the one-sentence takeaway."""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.errors import InputError
from memsim.inference.capacity import max_batch, step_workspace_bytes
from memsim.inference.deployment import (
    TP_CANDIDATES,
    Setup,
    _positive_array,
    _positive_int,
)
from memsim.inference.memory import vram
from memsim.inference.phases import decode_phase, prefill_phase
from memsim.inference.pricing import usd_per_million_tokens


def _dominant(operators_s: dict[str, Any], top: int = 3) -> list[dict[str, float]]:
    total = sum(float(v) for v in operators_s.values()) or 1.0
    ranked = sorted(operators_s.items(), key=lambda kv: -float(kv[1]))[:top]
    return [{"operator": k, "time_s": float(v), "share": float(v) / total} for k, v in ranked]


def min_gpus_to_fit(setup: Setup, context: Any, batch: Any) -> Any:
    """Smallest TP degree in :data:`TP_CANDIDATES` that fits (arrays: per element; 0 = none)."""
    best = np.zeros(np.broadcast(np.asarray(context), np.asarray(batch)).shape, dtype=np.int64)
    for G in TP_CANDIDATES:
        if any(g.attention.heads % G for g in setup.model.groups):
            continue
        s = setup.with_tp(G)
        fits = vram(s, context, batch, step_workspace_bytes(s, context, batch))["fits"]
        best = np.where((best == 0) & fits, G, best)
        if np.all(best > 0):
            break
    return best


def predict_arrays(setup: Setup, context: Any, batch: Any,
                   with_min_gpus: bool = True) -> dict[str, Any]:
    """Vectorised prediction: every value an array over the broadcast (context, batch).

    ``batch`` is the deployment's batch (all attention replicas together). Decode's
    ``time_per_token_s`` is the time between two tokens of one sequence (the step time over
    the tokens a step yields with MTP); $ is for all ``setup.n_gpus`` GPUs.
    """
    ctx = _positive_array("context", context)
    B = _positive_array("batch", batch)
    ctx, B = np.broadcast_arrays(ctx, B)
    pre = prefill_phase(setup, ctx, B)
    dec = decode_phase(setup, ctx, B)
    workspace = pre.workspace_bytes if setup.prefill_chunk is None else \
        step_workspace_bytes(setup, ctx, B)
    v = vram(setup, ctx, B, workspace)
    if with_min_gpus:
        v["min_gpus_to_fit"] = min_gpus_to_fit(setup, ctx, B)
    G, price = setup.n_gpus, setup.price
    out: dict[str, Any] = {"vram": v}
    pre_t = pre.time_s
    out["prefill"] = {"time_s": pre_t, "tokens_per_s": B * ctx / pre_t,
                      "usd_per_million_tokens": usd_per_million_tokens(pre_t, B * ctx, G, price),
                      "operators_s": pre.operators_s}
    if dec is not None:
        step, per_step = dec.time_s, setup.tokens_per_step
        out["decode"] = {"time_per_token_s": step / per_step, "step_time_s": step,
                         "tokens_per_step": per_step + 0 * step,
                         "tokens_per_s": B * per_step / step,
                         "usd_per_million_tokens": usd_per_million_tokens(step, B * per_step,
                                                                          G, price),
                         "operators_s": dec.operators_s}
    else:
        out["decode"] = None
    return out


def warnings_for(setup: Setup, context: int) -> list[str]:
    """Warnings (not errors): context beyond the trained length."""
    limit = setup.model.max_position_embeddings
    if context > limit:
        return [f"context={context} exceeds the model's max_position_embeddings={limit}; "
                "quality beyond the trained length is not modelled"]
    return []


def deployment(setup: Setup) -> dict[str, Any]:
    """The deployment in full, as JSON: GPUs, parallelism, dtypes, MTP, price."""
    return {"gpus": setup.n_gpus, "tp": setup.tp, "pp": setup.pp, "ep": setup.ep,
            "dp_attention": setup.dp_attention, "attention_replicas": setup.attention_dp,
            "context_parallel": setup.context_parallel,
            "attention": setup.attention, "weight_dtype": setup.weight_dtype,
            "kv_dtype": setup.kv_dtype, "mtp": setup.mtp,
            "acceptance": setup.acceptance if setup.mtp else None,
            "usd_per_gpu_hour": setup.price, "prefill_chunk": setup.prefill_chunk}


def resolve_batch(setup: Setup, context: int, batch: int | str) -> int:
    """``batch`` as an integer: ``"max"`` is the largest batch that fits (exit 2 if none)."""
    if batch != "max":
        _positive_int("batch", batch)
        return int(batch)
    best = int(max_batch(setup, context))
    if best == 0:
        raise InputError("batch", "max", f"nothing fits: not even {setup.attention_dp} "
                         f"sequence(s) of {context} tokens fit on {setup.n_gpus} × "
                         f"{setup.gpu.name} with this deployment")
    return best


def predict(setup: Setup, context: int, batch: int | str = 1) -> dict[str, Any]:
    """One prediction as a JSON-able dict (the ``memsim predict --json`` contract).

    ``batch="max"`` predicts at the largest batch that fits (:func:`max_batch`).
    """
    _positive_int("context", context)
    batch = resolve_batch(setup, context, batch)
    r = predict_arrays(setup, context, batch)
    v = r["vram"]
    best = int(v["min_gpus_to_fit"])
    vram_out = {k: _scalar(val) for k, val in v.items() if k != "kv_cache_by_layer_kind"}
    vram_out["fits"] = bool(v["fits"])
    vram_out["min_gpus_to_fit"] = best or None
    vram_out["kv_cache_by_layer_kind"] = {k: float(x) for k, x in
                                          v["kv_cache_by_layer_kind"].items()}
    vram_out["per_gpu"] = True
    p = r["prefill"]
    out: dict[str, Any] = {
        "model": setup.model.name, "gpu": setup.gpu.name, "context": context, "batch": batch,
        **deployment(setup), "all_global": setup.all_global, "vram": vram_out,
        "prefill": {"time_s": _scalar(p["time_s"]), "tokens": context * batch,
                    "tokens_per_s": _scalar(p["tokens_per_s"]),
                    "usd_per_million_tokens": _scalar(p["usd_per_million_tokens"]),
                    "operators_s": {k: _scalar(x) for k, x in p["operators_s"].items()},
                    "dominant": _dominant(p["operators_s"])},
    }
    d = r["decode"]
    if d is None:
        out["decode"] = {"time_per_token_s": None, "tokens_per_s": None,
                         "usd_per_million_tokens": None, "operators_s": {}, "dominant": [],
                         "note": "encoder model: no autoregressive decode"}
    else:
        out["decode"] = {"time_per_token_s": _scalar(d["time_per_token_s"]),
                         "step_time_s": _scalar(d["step_time_s"]),
                         "tokens_per_step": _scalar(d["tokens_per_step"]),
                         "position": context,
                         "tokens_per_s": _scalar(d["tokens_per_s"]),
                         "usd_per_million_tokens": _scalar(d["usd_per_million_tokens"]),
                         "operators_s": {k: _scalar(x) for k, x in d["operators_s"].items()},
                         "dominant": _dominant(d["operators_s"])}
    out["warnings"] = warnings_for(setup, context)
    out["takeaway"] = takeaway(out)
    return out


def _scalar(x: Any) -> Any:
    a = np.asarray(x)
    if a.dtype == bool:
        return bool(a)
    return float(a)


def takeaway(pred: dict[str, Any]) -> str:
    """One sentence: does it fit, what the memory is, what dominates."""
    v = pred["vram"]
    gib = 2**30
    if v["fits"]:
        fit = f"fits on {pred['gpus']} × {pred['gpu']} ({v['total_bytes'] / gib:.1f} of " \
              f"{v['capacity_bytes'] / gib:.1f} GiB per GPU"
    else:
        need = v["min_gpus_to_fit"]
        fit = (f"does not fit on {pred['gpus']} × {pred['gpu']}: short by "
               f"{v['shortfall_bytes'] / gib:.1f} GiB per GPU"
               + (f", needs {need} GPUs" if need else ", not even on 64 GPUs")
               + f" ({v['total_bytes'] / gib:.1f} GiB per GPU")
    kv_share = v["kv_cache_bytes"] / v["total_bytes"]
    pre = pred["prefill"]["dominant"][0]["operator"]
    text = f"{fit}, KV cache {kv_share:.0%}); prefill is dominated by {pre}"
    if pred["decode"]["dominant"]:
        text += f", decode by {pred['decode']['dominant'][0]['operator']}"
    return text + "."
