"""Rows far slower than their neighbours: fallback kernels, not the kernel a class models.

A measured curve (the rows whose ``curve`` columns are all equal, ordered by the class's size
``axis``: batch for prefill, cached tokens for decode) grows smoothly with size. A row whose
latency is ``ratio`` times the larger of its two neighbours' (or its one neighbour's, at an
end of the curve) is a spike no size step explains: a different, slower kernel ran (e.g. a
decode row 20× its neighbours). Such rows are flagged, excluded from scoring and fitting, and
counted in the summary. The test uses the measurements only, never memsim's prediction, so a
wrong model cannot hide its misses by calling them outliers.

A whole curve can be a fallback too, where a class names ``siblings``: the columns that, held
equal, leave curves doing the same work at their smallest size (MoE: the same shape under
another routing ``distribution``; at one token every routing sends the token to ``top_k``
experts). A curve whose smallest-size row takes ``SIBLING_RATIO`` times the fastest sibling's
at that size ran another kernel for the whole sweep (:func:`slow_curves`).

And where a class names ``split`` columns (MoE: ``moe_tp_size``, ``moe_ep_size``), a curve
is measured against the curves that do a superset of its work: the same shape, routing and
size split fewer ways (every split column ≤ its own, one smaller). Cutting the experts' columns
(TP) or the experts (EP: the busiest rank holds a subset of all experts) leaves a GPU no more
rows, weights or tiles than the whole, so the same kernel is never slower; a curve whose rows
take ``DOMINATED_RATIO`` times the fastest of those curves' (median over the sizes) ran a
fallback kernel for the whole sweep, with every routing of its shape, so
:func:`slow_curves` cannot see it (:func:`dominated_curves`).
"""

from __future__ import annotations

import numpy as np

from memsim.silicon.tables import Rows

DEFAULT_RATIO = 5.0
# aiconfigurator-core 0.12.0 moe_perf, the first row of each curve against the fastest of its
# routing siblings: 95 % of Hopper TensorRT-LLM curves within 1.2x, 1 % at 2-8x (whole curves
# 2-7x slower at every size, different ones on H100 and H200); B200 all within 2.5x
SIBLING_RATIO = 2.0
# the same table, each curve's median ratio to the fastest curve doing a superset of its work
# (h100_sxm + h200_sxm, trtllm and vllm, 13 000 curves): every fp8_block and vLLM fp8 curve
# <= 1.0, the bulk of the others 0.5-1.1; 5 % of TensorRT-LLM bf16 and fp8 curves form a
# second mode at 1.5-4 (2-2.5 most often); B200 (unseen): 0.1 % of its rows above 1.5
DOMINATED_RATIO = 1.5


def spikes(latency: np.ndarray, curve_id: np.ndarray, axis: np.ndarray,
           ratio: float = DEFAULT_RATIO) -> np.ndarray:
    """Bool mask of the rows whose latency exceeds ``ratio`` × every neighbour's on their
    curve. ``curve_id``: an int per row naming its curve; ``axis``: the size along it.
    A curve of one row has no neighbours and is never flagged."""
    n = len(latency)
    order = np.lexsort((axis, curve_id))
    lat, cid = np.asarray(latency, float)[order], curve_id[order]
    same_prev = np.r_[False, cid[1:] == cid[:-1]]
    same_next = np.r_[cid[:-1] == cid[1:], False]
    prev = np.where(same_prev, np.r_[np.nan, lat[:-1]], np.nan)
    nxt = np.where(same_next, np.r_[lat[1:], np.nan], np.nan)
    neighbour = np.fmax(prev, nxt)            # the larger neighbour; NaN if there is none
    flagged = np.zeros(n, dtype=bool)
    flagged[order] = np.isfinite(neighbour) & (lat > ratio * neighbour)
    return flagged


def slow_curves(latency: np.ndarray, curve_id: np.ndarray, sibling_id: np.ndarray,
                axis: np.ndarray, ratio: float = SIBLING_RATIO) -> np.ndarray:
    """Bool mask of the rows of every curve whose row at its smallest ``axis`` value takes more
    than ``ratio`` × the fastest row of its siblings (equal ``sibling_id``) at that value."""
    lat, cid = np.asarray(latency, float), np.asarray(curve_id)
    ax, sid = np.asarray(axis, float), np.asarray(sibling_id)
    if len(lat) == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((ax, cid))
    first = order[np.r_[True, cid[order][1:] != cid[order][:-1]]]   # each curve's first row
    _, key = np.unique(np.stack([sid[first].astype(float), ax[first]], axis=1), axis=0,
                       return_inverse=True)
    key = key.reshape(-1)
    fastest = np.full(int(key.max(initial=-1)) + 1, np.inf)
    np.minimum.at(fastest, key, lat[first])
    slow_cids = cid[first][lat[first] > ratio * fastest[key]]
    return np.isin(cid, slow_cids)


def _groups(key: np.ndarray) -> list[np.ndarray]:
    """Row indices per distinct value of ``key`` (ascending values; each group's rows in
    their original order); none for no rows."""
    if len(key) == 0:
        return []
    order = np.argsort(key, kind="stable")
    k = key[order]
    bounds = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def dominated_curves(latency: np.ndarray, curve_id: np.ndarray, peer_id: np.ndarray,
                     split: np.ndarray, axis: np.ndarray,
                     ratio: float = DOMINATED_RATIO) -> np.ndarray:
    """Bool mask of the rows of every curve that is ``ratio`` × slower than the curves doing a
    superset of its work (module docstring). ``peer_id``: equal for curves that differ only
    in their split columns; ``split``: shape (rows, columns), the ways the work is split;
    a row is compared with the fastest row of equal ``peer_id`` and ``axis`` whose split is
    ≤ its own in every column and smaller in one; a curve's ratio is the median over its
    rows that have such a row, and a curve with none is kept."""
    lat = np.asarray(latency, float)
    n = len(lat)
    if n == 0:
        return np.zeros(0, dtype=bool)
    sp = np.asarray(split, float).reshape(n, -1)
    _, group = np.unique(np.stack([np.asarray(peer_id, float), np.asarray(axis, float)], 1),
                         axis=0, return_inverse=True)
    row_ratio = np.full(n, np.nan)
    for i in _groups(group.reshape(-1)):
        if len(i) < 2:
            continue
        s = sp[i]
        # superset[r, c]: row c's curve does a superset of row r's work
        superset = (np.all(s[None, :, :] <= s[:, None, :], axis=-1)
                    & np.any(s[None, :, :] < s[:, None, :], axis=-1))
        fastest = np.min(np.where(superset, lat[i][None, :], np.inf), axis=1)
        row_ratio[i] = np.where(np.isfinite(fastest), lat[i] / fastest, np.nan)
    cid = np.asarray(curve_id)
    has = np.flatnonzero(np.isfinite(row_ratio))
    flagged_cids = [cid[has[i[0]]] for i in _groups(cid[has])
                    if np.median(row_ratio[has[i]]) > ratio]
    return np.isin(cid, flagged_cids)


def _codes(values: np.ndarray) -> np.ndarray:
    """Dense int codes of a column (pandas' factorize where installed, else np.unique)."""
    try:
        import pandas as pd
    except ImportError:
        _, codes = np.unique(values.astype(str) if values.dtype == object else values,
                             return_inverse=True)
        return codes.astype(np.int64)
    return pd.factorize(values)[0].astype(np.int64)


def curve_ids(rows: Rows, curve: tuple[str, ...]) -> np.ndarray:
    """An int per row, equal for rows whose ``curve`` columns are all equal: the columns'
    codes combined in mixed radix (re-coded densely when the radix grows large)."""
    key = np.zeros(len(rows), dtype=np.int64)
    radix = 1
    for c in curve:
        if c not in rows.columns:
            continue
        codes = _codes(rows.columns[c])
        size = int(codes.max(initial=0)) + 1
        if radix * size > 2**40:
            key = _codes(key)
            radix = int(key.max(initial=0)) + 1
        key = key * size + codes
        radix *= size
    return key


#: What a row flagged by each rule of :func:`flag` is, by the rule's name (its record's and
#: the summary's reason).
REASONS = {
    "spike": f"latency > {DEFAULT_RATIO:g}x both neighbours on its curve",
    "siblings": f"its curve > {SIBLING_RATIO:g}x its routing siblings' at its smallest size "
                "(a fallback kernel?)",
    "split": f"its curve > {DOMINATED_RATIO:g}x the same shape's split fewer ways "
             "(a fallback kernel?)",
}


def flag(rows: Rows, curve: tuple[str, ...], axis: str, siblings: tuple[str, ...] = (),
         split: tuple[str, ...] = ()) -> np.ndarray:
    """Each row's outlier rule, a key of :data:`REASONS` ("" for a row no rule flags): "spike"
    for :func:`spikes` over a table's rows (the class's curve columns and size axis),
    "siblings" with ``siblings`` for :func:`slow_curves`, "split" with ``split`` for
    :func:`dominated_curves`; a row several rules flag is named by the first of these."""
    lat, ids, ax = (np.asarray(rows.col("latency"), float), curve_ids(rows, curve),
                    np.asarray(rows.col(axis), float))
    found = [("spike", spikes(lat, ids, ax))]
    if siblings:
        found.append(("siblings", slow_curves(lat, ids, curve_ids(rows, siblings), ax)))
    if split:
        peers = curve_ids(rows, tuple(c for c in curve if c not in split))
        ways = np.stack([np.asarray(rows.col(c), float) for c in split], axis=1)
        found.append(("split", dominated_curves(lat, ids, peers, ways, ax)))
    rule = np.full(len(lat), "", dtype=f"<U{max(map(len, REASONS))}")
    for name, flagged in reversed(found):
        rule[flagged] = name
    return rule
