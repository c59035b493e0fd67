"""The cases of a validation run: the quick suite (under 8 minutes on one H100) and the full one.

A :class:`Case` is a kind and a flat dict of parameters; its ``id`` is built from both, so
the same case has the same id in every run (that is what ``--resume`` skips on).

Kinds (each has its handler in :mod:`memsim.validation.runner`):

- ``ceiling``: one microbenchmark of :mod:`memsim.kernels.ceilings` (``bench=...``);
- ``kernel``: memsim's Numba kernel ``algorithm`` on one attention shape (fp32, CUDA cores);
- ``sdpa``: PyTorch ``scaled_dot_product_attention`` with one ``backend`` (bf16);
- ``llama``: a small Llama-3-8B-wide model, ``phase`` prefill of ``tokens`` or decode at
  ``position``;
- ``ncu``: Nsight Compute counters of one ``kernel`` or ``sdpa`` case (``target=...``), or
  of one store-only kernel (``target=store``: a ``fill_`` of ``size_mib`` MiB under ncu's
  ``cache_control`` ``all`` or ``none``; what ``dram__bytes_write`` counts, docs/DESIGN.md).

Attention parameters: ``batch``, ``seq_len`` (N), ``kv_len`` (S), ``heads`` (H),
``kv_heads`` (K), ``head_dim`` (D), ``mask`` ("full", "causal", "window:W" or "topk:k")
and ``dtype``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from memsim.errors import InputError, closest

SUITES = ("quick", "full", "sim")
KINDS = ("ceiling", "kernel", "sdpa", "llama", "ncu")


@dataclass(frozen=True)
class Case:
    """One measurement to make: ``kind`` and its flat parameters (str, int, float, bool)."""

    kind: str
    params: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        """``kind:key=value,...`` with the keys sorted: stable across runs."""
        return f"{self.kind}:" + ",".join(f"{k}={self.params[k]}" for k in sorted(self.params))

    @property
    def group(self) -> str:
        """What the summary groups by: ``sdpa/flash``, ``kernel/flash2``, ``llama/decode``..."""
        p = self.params
        sub = {"ceiling": p.get("bench"), "kernel": p.get("algorithm"),
               "sdpa": p.get("backend"), "llama": p.get("phase"),
               "ncu": f"{p.get('target')}-"
                      f"{p.get('algorithm') or p.get('backend') or p.get('cache_control')}",
               }[self.kind]
        return f"{self.kind}/{sub}"


def attention(batch: int = 1, seq_len: int = 4096, kv_len: int | None = None, heads: int = 32,
              kv_heads: int | None = None, head_dim: int = 128, mask: str = "causal",
              dtype: str = "bf16") -> dict[str, Any]:
    """Attention parameters with the defaults filled in (kv_len = N, kv_heads = H)."""
    return {"batch": batch, "seq_len": seq_len, "kv_len": kv_len or seq_len, "heads": heads,
            "kv_heads": kv_heads or heads, "head_dim": head_dim, "mask": mask, "dtype": dtype}


# ---- the grids ------------------------------------------------------------------------

QUICK_CEILINGS = ("d2d_copy", "l2_read", "fp32_fma", "fp32_fma_rolled", "exp",
                  "launch_overhead", "matmul_bf16", "matmul_fp32")
FULL_CEILINGS = QUICK_CEILINGS + ("matmul_fp16", "matmul_tf32", "matmul_fp8")


def _sdpa_cases(full: bool) -> Iterator[Case]:
    lengths = (512, 1024, 2048, 4096, 8192, 16384, 32768) if full else (1024, 4096, 16384)
    for n, head_dim, mask in product(lengths, (64, 128), ("full", "causal")):
        if not full and head_dim == 64 and n != 4096:
            continue
        yield Case("sdpa", {"backend": "flash", **attention(seq_len=n, head_dim=head_dim,
                                                              mask=mask)})
    for kv_heads in (8, 1):  # GQA (Llama-3) and MQA
        yield Case("sdpa", {"backend": "flash", **attention(seq_len=4096, kv_heads=kv_heads)})
    # decoding: one query token per sequence against a long KV cache
    for kv_len in ((4096, 32768) if full else (8192,)):
        yield Case("sdpa", {"backend": "flash", **attention(
            batch=8, seq_len=1, kv_len=kv_len, kv_heads=8, mask="full")})
    # the math backend materialises S and P: the standard algorithm
    for n in ((1024, 2048, 4096, 8192, 16384) if full else (1024, 4096)):
        yield Case("sdpa", {"backend": "math", **attention(seq_len=n, mask="causal")})


def _kernel_cases(full: bool) -> Iterator[Case]:
    lengths = (512, 1024, 2048, 4096, 8192, 16384, 32768) if full else (512, 2048)
    fp32 = {"dtype": "fp32"}
    for n, head_dim in product(lengths, (64, 128)):
        mask_set = ("full", "causal") if full else ("causal",)
        for mask in mask_set:
            yield Case("kernel", {"algorithm": "flash2", **attention(
                seq_len=n, heads=8, head_dim=head_dim, mask=mask, **fp32)})
    yield Case("kernel", {"algorithm": "flash2", **attention(
        seq_len=2048, heads=8, head_dim=64, mask="window:512", **fp32)})
    yield Case("kernel", {"algorithm": "flash2", **attention(
        seq_len=2048, heads=8, kv_heads=2, head_dim=64, **fp32)})
    yield Case("kernel", {"algorithm": "flash1", **attention(
        seq_len=1024, heads=8, head_dim=64, **fp32)})
    yield Case("kernel", {"algorithm": "standard_blockskip", **attention(
        seq_len=1024, heads=8, head_dim=64, **fp32)})
    yield Case("kernel", {"algorithm": "flash_decode", **attention(
        batch=4, seq_len=1, kv_len=8192, heads=8, kv_heads=2, head_dim=128, mask="full",
        **fp32)})
    yield Case("kernel", {"algorithm": "dsa", **attention(
        seq_len=2048, heads=8, kv_heads=1, head_dim=64, mask="topk:256", **fp32)})
    if full:
        for n in (4096, 16384):
            yield Case("kernel", {"algorithm": "flash2", **attention(
                seq_len=n, heads=8, head_dim=128, mask="window:1024", **fp32)})


def _sim_cases() -> Iterator[Case]:
    """Tiny kernel cases for the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): every Numba
    kernel family once, at sizes the simulator runs in seconds; a rehearsal of
    ``make validate-gpu`` on a machine without a GPU (its times measure nothing)."""
    fp32 = {"dtype": "fp32"}
    for algorithm, mask, kv_heads in (("flash2", "causal", 2), ("flash1", "causal", 2),
                                      ("standard_blockskip", "causal", 2),
                                      ("dsa", "topk:16", 1)):
        yield Case("kernel", {"algorithm": algorithm, **attention(
            seq_len=32, heads=2, kv_heads=kv_heads, head_dim=16, mask=mask, **fp32)})
    yield Case("kernel", {"algorithm": "flash_decode", **attention(
        batch=1, seq_len=1, kv_len=64, heads=2, kv_heads=1, head_dim=16, mask="full", **fp32)})


def _llama_cases(full: bool) -> Iterator[Case]:
    layer_counts = (2, 4) if full else (2,)
    tokens = (512, 2048, 8192) if not full else (512, 1024, 2048, 4096, 8192)
    for layers in layer_counts:
        for n in tokens:
            yield Case("llama", {"layers": layers, "phase": "prefill", "tokens": n, "batch": 1})
        for position in tokens:
            yield Case("llama", {"layers": layers, "phase": "decode", "position": position,
                                 "batch": 1})


#: Buffer sizes (MiB) of the ncu ``store`` cases: below, around and above the 50 MiB L2 of
#: H100/H200 (25 MiB: one of its two partitions); 96 MiB is still below B200's 126 MiB.
FULL_STORE_MIB = (1, 4, 16, 24, 32, 40, 48, 64, 96)
QUICK_STORE_MIB = (4, 24, 96)


def _store_cases(full: bool) -> Iterator[Case]:
    for size_mib, cache_control in product(FULL_STORE_MIB if full else QUICK_STORE_MIB,
                                           ("all", "none")):
        yield Case("ncu", {"target": "store", "size_mib": size_mib,
                           "cache_control": cache_control, "dtype": "fp32"})


def _ncu_cases(full: bool) -> Iterator[Case]:
    """The store cases first: the last cases of a suite are the ones a time budget cuts,
    and the attention cases already have committed records (measurements/h100-sxm)."""
    yield from _store_cases(full)
    yield Case("ncu", {"target": "sdpa", "backend": "flash", **attention(seq_len=4096)})
    yield Case("ncu", {"target": "sdpa", "backend": "math", **attention(seq_len=1024)})
    yield Case("ncu", {"target": "kernel", "algorithm": "flash2", **attention(
        seq_len=1024, heads=8, head_dim=64, dtype="fp32")})
    if full:
        for n in (1024, 16384):
            yield Case("ncu", {"target": "sdpa", "backend": "flash", **attention(seq_len=n)})
        yield Case("ncu", {"target": "kernel", "algorithm": "standard_blockskip", **attention(
            seq_len=1024, heads=8, head_dim=64, dtype="fp32")})


def cases(suite: str, kinds: tuple[str, ...] = KINDS) -> list[Case]:
    """The cases of ``suite`` in run order: ceilings first (they set the yardsticks), ncu last."""
    if suite not in SUITES:
        raise InputError("suite", suite, f"must be one of {', '.join(SUITES)}"
                         + closest(suite, SUITES))
    for kind in kinds:
        if kind not in KINDS:
            raise InputError("kind", kind, f"must be one of {', '.join(KINDS)}"
                             + closest(kind, KINDS))
    full = suite == "full"
    if suite == "sim":
        return list(_sim_cases()) if "kernel" in kinds else []
    grid = {
        "ceiling": [Case("ceiling", {"bench": b})
                    for b in (FULL_CEILINGS if full else QUICK_CEILINGS)],
        "sdpa": list(_sdpa_cases(full)),
        "llama": list(_llama_cases(full)),
        "kernel": list(_kernel_cases(full)),
        "ncu": list(_ncu_cases(full)),
    }
    return [c for kind in ("ceiling", "sdpa", "llama", "kernel", "ncu") if kind in kinds
            for c in grid[kind]]
