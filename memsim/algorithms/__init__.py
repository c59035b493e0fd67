"""The attention algorithms and their registry (docs/DESIGN.md §"The algorithm registry").

Each module exposes ``NAME``, ``PASSES`` and ``forward(x: Arrays) -> Cost`` (and
``backward`` where it has one), vectorised over :class:`~memsim.algorithms._arrays.Arrays`,
and declares everything the rest of memsim asks of it (:data:`DECLARATIONS`): the masks it
runs, whether it is a decode kernel, its trace schedule builder, its kernel family, and its
tile rules (SRAM footprint, default query tile, split-KV count). No module outside this
package branches on an algorithm's name. Adding an algorithm is one module plus one line
in :data:`ALGORITHMS`; the property and registry tests loop over the registry.
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

#: What every algorithm module declares (tests/test_registry.py checks each one):
#: constants ``NAME``, ``LABEL`` (in tables and reports), ``PASSES``, ``MASKS`` (mask
#: kinds), ``DECODES`` (one query tile holds all N queries), ``SCHEDULE`` (memsim.trace
#: builder), ``KERNEL_FAMILY`` (kernels/<family>.py), ``UPCASTS_16BIT`` (16-bit inputs
#: computed in fp32, :func:`compute_types`); cost functions ``forward``
#: (``backward`` if "backward" in PASSES); tile rules ``sram_bytes(t)``,
#: ``default_block_q(heads_per_block, N)``, ``extra_fields(problem, index_block_q=None)``,
#: ``shrink_first(t, limit_bytes)``, ``splits_keys(t, N)``,
#: ``kv_splits(gpu, B, N, S, H, t, geometry)``, ``backward_tiling(t, limit_bytes)`` (a Tiling
#: update with the backward kernels' own tiles). Optional: ``REGISTERS_PER_THREAD``, the
#: register count its kernel compiles to, where a ptxas or ncu record gives it (without
#: one the Tiling keeps :data:`memsim.tiling.UNSOURCED_REGISTERS_PER_THREAD`).
DECLARATIONS = ("NAME", "LABEL", "PASSES", "MASKS", "DECODES", "SCHEDULE", "KERNEL_FAMILY",
                "UPCASTS_16BIT", "forward", "sram_bytes", "default_block_q", "extra_fields",
                "shrink_first", "splits_keys", "kv_splits", "backward_tiling")

#: What a prefill (and training) layer runs unless told otherwise: FlashAttention-2, the
#: kernel PyTorch SDPA's flash backend and vLLM/TensorRT-LLM prefill descend from.
DEFAULT = "flash2"


def get(name: str) -> ModuleType:
    from memsim.errors import closest

    try:
        return ALGORITHMS[name]
    except KeyError:
        raise InputError("algorithm", name, "is not known" + closest(name, ALGORITHMS)
                         + f" (known: {', '.join(ALGORITHMS)})") from None


#: ``torch.backends.cuda.matmul.allow_tf32`` as memsim models PyTorch: its default, False
#: (since PyTorch 1.12; ``torch.set_float32_matmul_precision("high")`` sets it): cuBLAS
#: multiplies fp32 matrices in full fp32, with FFMA on the CUDA cores — the
#: ``sm80_xmma_gemm_f32f32_f32f32_f32_*_ffma`` kernels Nsight Compute lists for a bf16
#: math-backend call (measurements/h100-sxm, ncu/sdpa-math). With True, the same fp32
#: matmuls run on the tensor cores at the profile's TF32 rate.
TORCH_ALLOW_TF32 = False


def compute_types(name: str, dtype: str, matmul_unit: str) -> tuple[str, str]:
    """(dtype, matmul unit) algorithm ``name`` computes in for inputs of ``dtype``. One that
    upcasts 16-bit inputs (eager standard: PyTorch's math backend copies Q, K, V to fp32)
    computes fp16, bf16 and fp32 inputs in fp32, its matmuls where cuBLAS runs them:
    on the tensor cores at TF32 only where PyTorch allows TF32 (:data:`TORCH_ALLOW_TF32`)
    and ``matmul_unit`` is "tensor", else on the CUDA cores. Every other algorithm computes
    in its inputs' dtype on ``matmul_unit``."""
    if get(name).UPCASTS_16BIT and dtype in ("bf16", "fp16", "fp32"):
        tf32 = TORCH_ALLOW_TF32 and matmul_unit == "tensor"
        return "fp32", "tensor" if tf32 else "fp32"
    return dtype, matmul_unit


def runs_mask(name: str, kind: str) -> bool:
    """Whether algorithm ``name`` runs masks of ``kind`` (full, causal, window, chunk, topk)."""
    return kind in get(name).MASKS


def tiles_queries(name: str) -> bool:
    """Whether the query tile size is free (Br rows per block) rather than fixed by the
    algorithm (a decode kernel's N queries, a dsa sparse block's one token)."""
    module = get(name)
    return not module.DECODES and module.default_block_q(1, 2) > 1


def _running(kind: str) -> list[str]:
    return [n for n, m in ALGORITHMS.items() if kind in m.MASKS]


def check_supported(name: str, problem) -> None:
    """Raise :class:`InputError` if ``name`` cannot run ``problem``'s mask or pass."""
    module = get(name)
    kind = problem.mask.kind
    if kind not in module.MASKS:
        if kind == "topk":
            raise InputError("top_k", problem.mask.top_k,
                             f"needs the {' or '.join(_running('topk'))} algorithm; {name} "
                             "runs dense masks only")
        raise InputError("top_k", problem.mask.top_k, f"is required by the {name} algorithm "
                         "(--top-k k: keys chosen per query by the indexer)")
    if problem.pass_ not in module.PASSES:
        raise InputError("pass", problem.pass_,
                         f"is not modelled for {name} (supported: {', '.join(module.PASSES)})")


def for_layer(choice: str, phase: str, sparse: bool) -> str:
    """The algorithm a model layer runs in ``phase`` ('prefill' | 'decode') when the user
    chose ``choice`` ('auto' or a name); ``sparse``: the layer has a top-k mask.

    'auto' runs a sparse layer with the top-k algorithm, a dense prefill with
    :data:`DEFAULT` and a dense decode with the decode kernel. A top-k algorithm chosen for
    a dense layer counts as 'auto'; a dense algorithm chosen for a sparse layer runs it
    densely (the caller drops the top-k). A decode kernel at prefill runs :data:`DEFAULT`.
    """
    topk = _running("topk")
    if choice != "auto":
        get(choice)
    if sparse and choice in ("auto", *topk):
        return topk[0] if choice == "auto" else choice
    if choice == "auto" or choice in topk:
        decoders = [n for n, m in ALGORITHMS.items() if m.DECODES]
        choice = DEFAULT if phase == "prefill" else decoders[0]
    if phase == "prefill" and get(choice).DECODES:
        return DEFAULT
    return choice


def cost_of(name: str, x: Arrays, pass_: str = "forward") -> Cost:
    """Vectorised cost of algorithm ``name`` for the configurations in ``x``."""
    module = get(name)
    if pass_ == "forward":
        return module.forward(x)
    if pass_ == "backward":
        return module.backward(x)
    return module.forward(x) + module.backward(x)


__all__ = ["ALGORITHMS", "DECLARATIONS", "DEFAULT", "Arrays", "check_supported",
           "compulsory_bytes", "cost_of", "for_layer", "from_problem", "get", "runs_mask",
           "tiles_queries"]


def compulsory_bytes(problem) -> float:
    """Fewest HBM bytes any algorithm must move: each needed input read once, each output
    written once. Keys no query can see (outside every window or chunk) are not needed;
    for dsa the gathered latents are at least min(k, S) keys and the indexer reads its
    inputs once."""
    from memsim.geometry import geometry_of, key_range
    from memsim.problem import Indexer
    from memsim.units import ACCUM_BYTES, DTYPE_BYTES, scaled_row_bytes

    p = problem
    e = DTYPE_BYTES[p.dtype]
    dv_load = 0 if p.mla else p.Dv
    o = p.S - p.N
    if p.mask.kind == "topk":
        keys = min(p.mask.top_k, p.S)
        idx = p.indexer or Indexer()
        ie = DTYPE_BYTES[idx.dtype]
        key = float(scaled_row_bytes(idx.head_dim, ie, idx.scale_block))
        # queries and their fp32 weights, each key once
        index = p.B * (p.N * idx.heads * (idx.head_dim * ie + ACCUM_BYTES) + p.S * key)
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
