"""The cost curve: $ per million tokens of the token at each position."""

from __future__ import annotations

import numpy as np

from memsim.inference.deployment import Setup, _positive_int
from memsim.inference.phases import _phase, decode_phase
from memsim.inference.pricing import usd_per_million_tokens


def cost_curve(setup: Setup, max_context: int, points: int = 32, batch: int = 1,
               chunk: int = 2048) -> list[dict[str, float]]:
    """Marginal $ per million tokens of the token at position p, for prefill and decode.

    Prefill: the cost per token of prefilling the ``chunk`` tokens that end at position p
    (N = min(chunk, p) queries against S = p keys, B sequences). Decode: one decode step at
    position p, per token of the batch. Positions are spaced evenly up to ``max_context``.
    This is the curve DeepSeek published for V3.2-Exp against V3.1-Terminus (report Fig. 3).
    """
    _positive_int("max_context", max_context)
    _positive_int("points", points)
    _positive_int("batch", batch)
    p = np.unique(np.linspace(max_context / points, max_context, points).round().astype(int))
    p = np.maximum(p, 1)
    N = np.minimum(p, chunk)
    pre = _phase(setup, "prefill", batch, N, p).time_s
    pre_usd = usd_per_million_tokens(pre, batch * N, setup.tp, setup.price)
    dec = decode_phase(setup, p - 1, batch)
    dec_usd = (usd_per_million_tokens(dec.time_s, batch, setup.tp, setup.price)
               if dec is not None else None)
    return [{"position": int(pi), "prefill_usd_per_million_tokens": float(pre_usd[i]),
             "decode_usd_per_million_tokens": None if dec_usd is None else float(dec_usd[i])}
            for i, pi in enumerate(p)]
