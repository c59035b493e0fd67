"""The cost curve: $ per million tokens by token position, marginal and average.

Two questions, both answered at every position p (1-based: the token that attends to p
keys, itself included):

- **marginal**: what the token at position p costs. Prefill: per token of the chunk of
  ``chunk`` tokens that ends at p (N = min(chunk, p) queries against S = p keys). Decode:
  per token of one decode step whose new token is at p (N = 1, S = p; with MTP the step
  verifies K + 1 tokens and yields ``tokens_per_step``). This is the curve DeepSeek
  published for V3.2-Exp against V3.1-Terminus (report Fig. 3).
- **average**: what a token costs averaged over a request of p tokens. Prefill: a whole
  prompt of p tokens prefilled in chunks of ``chunk`` (= ``memsim predict --context p
  --prefill-chunk chunk``). Decode: the mean of the marginal decode cost over positions
  1..p, by the trapezoid rule over the curve's positions (exact where the cost is affine
  in the position, as dense decode is).

``memsim predict --context L --prefill-chunk C`` answers the same questions at one point:
its prefill is the average prefill at p = L, its decode the marginal decode at p = L + 1,
its ``fits`` the point's (a test holds them together). Memory is that of a serving engine
with chunked prefill: the batch's cache plus one engine step of at most ``chunk`` tokens.
Every point says whether its batch fits; ``batch="max"`` prices each position at the
largest batch that fits there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from memsim.inference.capacity import fits, max_batch
from memsim.inference.deployment import Setup, _positive_int
from memsim.inference.phases import _phase, decode_phase, prefill_phase
from memsim.inference.pricing import usd_per_million_tokens

DEFAULT_CHUNK = 2048  # tokens per prefill chunk (vLLM's default max_num_batched_tokens)


def positions(max_context: int, points: int) -> np.ndarray:
    """``points`` positions spaced evenly up to ``max_context`` (distinct, ≥ 1)."""
    p = np.linspace(max_context / points, max_context, points).round().astype(np.int64)
    return np.unique(np.maximum(p, 1))


def cost_curve(setup: Setup, max_context: int, points: int = 32, batch: int | str = 1,
               chunk: int = DEFAULT_CHUNK) -> list[dict[str, Any]]:
    """Marginal and average $ per million tokens at each position, prefill and decode.

    One dict per position: ``position``, ``batch``, ``fits``, ``prefill_usd_per_million_tokens``
    (marginal), ``prefill_average_usd_per_million_tokens``, ``decode_usd_per_million_tokens``
    (marginal), ``decode_average_usd_per_million_tokens`` (None for encoders, and every
    price None where ``batch="max"`` finds nothing that fits).
    """
    _positive_int("max_context", max_context)
    _positive_int("points", points)
    _positive_int("chunk", chunk)
    p = positions(max_context, points)
    if setup.prefill_chunk is None:  # memory of a serving engine prefilling in chunks
        setup = replace(setup, prefill_chunk=chunk)
    if batch == "max":
        B = max_batch(setup, p)
    else:
        _positive_int("batch", batch)
        B = np.full(p.shape, int(batch), dtype=np.int64)
    ok = B > 0
    Bs = np.where(ok, B, 1)
    marginal, average = _prefill_usd(setup, p, Bs, chunk)
    dec, dec_avg = _decode_usd(setup, p, Bs)
    fit = ok & fits(setup, p, Bs)

    def price(x: Any, i: int) -> float | None:
        return None if x is None or not ok[i] else float(x[i])

    return [{"position": int(pi), "batch": int(B[i]), "fits": bool(fit[i]),
             "prefill_usd_per_million_tokens": price(marginal, i),
             "prefill_average_usd_per_million_tokens": price(average, i),
             "decode_usd_per_million_tokens": price(dec, i),
             "decode_average_usd_per_million_tokens": price(dec_avg, i)}
            for i, pi in enumerate(p)]


def _prefill_usd(setup: Setup, p: np.ndarray, B: np.ndarray, chunk: int
                 ) -> tuple[Any, Any]:
    """Marginal (the chunk ending at p) and average (a whole prompt of p) prefill $/M."""
    G, price = setup.n_gpus, setup.price
    N = np.minimum(p, chunk)
    pre = _phase(setup, "prefill", B, N, p).time_s
    marginal = usd_per_million_tokens(pre, B * N, G, price)
    whole = prefill_phase(replace(setup, prefill_chunk=chunk), p, B).time_s
    return marginal, usd_per_million_tokens(whole, B * p, G, price)


def _decode_usd(setup: Setup, p: np.ndarray, B: np.ndarray) -> tuple[Any, Any]:
    """Marginal decode $/M at p and its mean over positions 1..p (trapezoid)."""
    dec = decode_phase(setup, p - 1, B)
    if dec is None:
        return None, None
    marginal = usd_per_million_tokens(dec.time_s, B * setup.tokens_per_step, setup.n_gpus,
                                      setup.price)
    first = decode_phase(setup, np.zeros(1, dtype=np.int64), B[:1])
    at_1 = usd_per_million_tokens(first.time_s, B[:1] * setup.tokens_per_step,
                                  setup.n_gpus, setup.price)
    xs = np.concatenate(([1], p))
    ys = np.concatenate((at_1, marginal))
    area = np.cumsum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2)  # ∫ from 1 to each p
    span = p - 1
    return marginal, np.where(span > 0, area / np.maximum(span, 1), marginal)
