"""The attention algorithms and their registry.

Each module exposes ``NAME``, ``PASSES`` and ``forward(x: Arrays) -> Cost`` (and
``backward`` where it has one), vectorised over :class:`~memsim.algorithms._arrays.Arrays`.
Adding an algorithm is one module plus one line in :data:`ALGORITHMS`; the property tests
loop over the registry.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from memsim.algorithms import (
    dsa,
    flash1,
    flash2,
    flash_decode,
    standard,
    standard_blockskip,
)
from memsim.algorithms._arrays import Arrays, from_problem
from memsim.cost import Cost
from memsim.errors import InputError

ALGORITHMS: dict[str, ModuleType] = {
    "standard": standard,
    "standard_blockskip": standard_blockskip,
    "flash1": flash1,
    "flash2": flash2,
    "flash_decode": flash_decode,
    "dsa": dsa,
}


def get(name: str) -> ModuleType:
    from memsim.errors import closest

    try:
        return ALGORITHMS[name]
    except KeyError:
        raise InputError("algorithm", name, "is not known" + closest(name, ALGORITHMS)
                         + f" (known: {', '.join(ALGORITHMS)})") from None


def check_supported(name: str, problem) -> None:
    """Raise :class:`InputError` if ``name`` cannot run ``problem``'s mask or pass."""
    module = get(name)
    kind = problem.mask.kind
    if name == "dsa" and kind != "topk":
        raise InputError("top_k", problem.mask.top_k, "is required by the dsa algorithm "
                         "(--top-k k: keys chosen per query by the indexer)")
    if name != "dsa" and kind == "topk":
        raise InputError("top_k", problem.mask.top_k,
                         f"needs the dsa algorithm; {name} runs dense masks only")
    if problem.pass_ not in module.PASSES:
        raise InputError("pass", problem.pass_,
                         f"is not modelled for {name} (supported: {', '.join(module.PASSES)})")


def cost_of(name: str, x: Arrays, pass_: str = "forward") -> Cost:
    """Vectorised cost of algorithm ``name`` for the configurations in ``x``."""
    module = get(name)
    if pass_ == "forward":
        return module.forward(x)
    if pass_ == "backward":
        return module.backward(x)
    return module.forward(x) + module.backward(x)


def attention_cost(problem, gpu, algorithm: str = "flash2", tiling=None,
                   l2_estimate: bool = False) -> tuple[Cost, object]:
    """Cost of one attention call and the Tiling it used: ``(Cost, Tiling)``.

    HBM bytes assume no reuse in L2 (HBM = global), unless ``l2_estimate``: then K/V
    re-reads use the closed-form L2 estimate of :meth:`Arrays.hbm_key_loads`.
    """
    from memsim.tiling import default_tiling

    check_supported(algorithm, problem)
    if tiling is None:
        tiling = default_tiling(problem, gpu, algorithm)
    x = from_problem(problem, tiling, gpu if l2_estimate else None)
    return cost_of(algorithm, x, problem.pass_).item(0), tiling


__all__ = ["ALGORITHMS", "Arrays", "attention_cost", "check_supported", "compulsory_bytes",
           "cost_of", "get"]


def compulsory_bytes(problem) -> float:
    """Fewest HBM bytes any algorithm must move: each needed input read once, each output
    written once. Keys no query can see (outside every window or chunk) are not needed;
    for dsa the gathered latents are at least min(k, S) keys and the indexer reads its
    inputs once."""
    from memsim.algorithms.masks import geometry_of
    from memsim.geometry import key_range
    from memsim.units import DTYPE_BYTES

    p = problem
    e = DTYPE_BYTES[p.dtype]
    dv_load = 0 if p.mla else p.Dv
    o = p.S - p.N
    if p.mask.kind == "topk":
        keys = min(p.mask.top_k, p.S)
        idx = p.indexer
        ie = DTYPE_BYTES[idx.dtype] if idx else 1.0
        ih, idim = (idx.heads, idx.head_dim) if idx else (64, 128)
        from memsim.tiling import index_key_bytes

        index = p.B * (p.N * ih * (idim * ie + 4) + p.S * float(index_key_bytes(idim, ie)))
    else:
        g = geometry_of(p.mask)
        S = np.int64(p.S)
        kmin = int(key_range(np.int64(o), np.int64(o), S, g)[0])
        kmax = int(key_range(np.int64(p.S - 1), np.int64(p.S - 1), S, g)[1])
        keys = kmax - kmin + 1
        index = 0.0
    qo = p.B * p.N * p.H * (p.D + p.Dv) * e
    kv = p.B * p.K * keys * (p.D + dv_load) * e
    return float(qo + kv + index)
