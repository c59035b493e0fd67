"""The one place where time comes from a Cost and a GPU.

Terms (seconds), each work count over the *achievable* rate of its resource (peak × the
profile's efficiency factor):

- compute: ``matmul`` (tensor cores at the dtype — fp8 matmuls such as DSA's indexer at
  the fp8 rate where the GPU has one — or fp32 CUDA cores for memsim's Numba kernels),
  ``vector`` (fp32 CUDA cores), ``exp`` (special-function unit). Inside one
  kernel these are issued by the same warps, and FlashAttention-3 §3.1 shows the exp can
  take half the matmul time at D = 128 unless explicitly overlapped, so compute time is
  their **sum**.
- memory: ``hbm`` (HBM bytes), ``l2`` (global bytes: every global access passes L2),
  ``sram`` (shared-memory bytes). The levels stream concurrently, so memory time is their
  **max**.

Like the scaling book's T_lower / T_upper: ``lower_s = max(compute, memory)`` (perfect
overlap), ``upper_s = compute + memory`` (none), so lower ≤ upper ≤ 2·lower; the launch
overhead is added to both: the kernel class's latency floor where one is given
(``floor_s``, fitted per class in :mod:`memsim.ops.classes`), else launches × the profile's
per-launch time. ``time_s`` is the lower bound. Wave quantisation: blocks run in waves of
SMs × blocks-per-SM (``waves``), but the blocks resident on one SM share its tensor cores
and shared-memory banks, and one resident block alone can use all of them (a 4-warp block
has a warp on each of the SM's four sub-partitions). So per-SM work (compute, SRAM) is
stretched by the SM-level quantisation ⌈blocks / SMs⌉ · SMs / blocks ≥ 1 — the SMs idle
while the busiest one finishes — not by the idle slots: 64 decode blocks on 132 SMs run
at 64 SMs' rate, whatever the occupancy. ``bound`` names the largest term.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from memsim.cost import Cost

Number = float | np.ndarray
TERMS = ("matmul", "vector", "exp", "hbm", "l2", "sram")


@dataclass(frozen=True)
class Timing:
    """Roofline result; every field a float or an array shaped like the Cost's fields."""

    lower_s: Number
    upper_s: Number
    compute_s: Number
    memory_s: Number
    launch_s: Number
    terms_s: dict[str, Number]
    waves: Number
    wave_efficiency: Number
    bound: object  # str, or an array of str
    arithmetic_intensity_flop_per_byte: Number

    @property
    def time_s(self) -> Number:
        return self.lower_s

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, np.ndarray):
                return v.item() if v.ndim == 0 or v.size == 1 else v.tolist()
            return v

        d = {k: plain(getattr(self, k)) for k in (
            "lower_s", "upper_s", "compute_s", "memory_s", "launch_s", "waves",
            "wave_efficiency", "bound", "arithmetic_intensity_flop_per_byte")}
        d["time_s"] = d["lower_s"]
        d["terms_s"] = {k: plain(v) for k, v in self.terms_s.items()}
        return d


@dataclass(frozen=True)
class Rates:
    """Achievable rates of a whole GPU (peak × efficiency): FLOP/s, exp/s, bytes/s.
    :meth:`share` gives one block slot's part (the trace's timing)."""

    matmul_flop_per_s: float
    fp8_matmul_flop_per_s: float
    vector_flop_per_s: float
    exp_per_s: float
    hbm_bytes_per_s: float
    l2_bytes_per_s: float
    sram_bytes_per_s: float

    def share(self, fraction: float) -> Rates:
        """Every rate times ``fraction``."""
        return Rates(*(getattr(self, f.name) * fraction for f in fields(self)))


def achievable_rates(gpu, dtype: str = "bf16", matmul_unit: str = "tensor") -> Rates:
    """The rate of each term of the module docstring. fp8 matmuls run at the fp8 tensor
    rate where the GPU has one, else upcast at the ``dtype`` rate (the fp8 fallback)."""
    matmul = gpu.achievable_flop_per_s(matmul_unit, dtype)
    fp8 = matmul
    if matmul_unit == "tensor" and gpu.spec.fp8_tensor_flop_per_s is not None:
        fp8 = gpu.achievable_flop_per_s("tensor", "fp8")
    return Rates(matmul, fp8, gpu.achievable_flop_per_s("fp32"),
                 gpu.achievable_flop_per_s("exp"), gpu.achievable_hbm_bytes_per_s,
                 gpu.achievable_l2_bytes_per_s, gpu.achievable_sram_bytes_per_s)


def compute_s(matmul_s: Number, vector_s: Number, exp_s: Number,
              exp_overlaps: bool = False) -> Number:
    """Compute time of work issued by the same warps: the **sum** of its terms (module
    docstring; FlashAttention-3 §3.1). With ``exp_overlaps``, a kernel whose two consumer
    warpgroups take turns (one's softmax exponentials on the special-function unit while
    the other's GEMMs run on the tensor cores: FlashAttention-3 §3.1 "ping-pong
    scheduling", TensorRT-LLM fmha_v2's warp-specialised ``ENABLE_MUTEX``): the larger of
    the matmuls and the exponentials, plus the vector work."""
    if exp_overlaps:
        return np.maximum(matmul_s, exp_s) + vector_s
    return matmul_s + vector_s + exp_s


def busiest_sm_blocks(blocks: Number, sm_count: float) -> np.ndarray:
    """Blocks (CTAs) on the busiest SM when ``blocks`` (array) are dealt over ``sm_count``
    SMs: ⌈blocks / SMs⌉, at least 1 (the one home of this count: the wave stretch below,
    a decode kernel's serial and stream terms in :mod:`memsim.attention`)."""
    return np.maximum(np.ceil(np.asarray(blocks, dtype=float) / sm_count), 1.0)


def roofline(cost: Cost, gpu, dtype: str = "bf16", *, matmul_unit: str = "tensor",
             blocks_per_sm: Number | None = None, kernel_class: str | None = None,
             floor_s: Number | None = None, serial_s: Number | None = None,
             pre_s: Number | None = None, serial_overlaps: bool = True,
             stream_s: Number | None = None, exp_overlaps: bool = False) -> Timing:
    """Time of ``cost`` on ``gpu`` (see module docstring). ``gpu``: memsim.hardware.GPU.

    ``matmul_unit``: "tensor" (production kernels) or "fp32" (CUDA cores, as memsim's
    Numba kernels compute). ``blocks_per_sm``: resident blocks per SM from the Tiling's
    occupancy; omitted, no wave quantisation is applied. ``kernel_class``: use the
    efficiency factors a calibrated profile fitted for that class, where it has them.
    ``floor_s``: the kernel class's latency floor, replacing launches × the profile's launch
    overhead. ``serial_s``: per-SM serial time a kernel class spends per unit of work that
    neither FLOPs nor bytes count (a decode kernel's fixed steps per query row and head),
    already divided over the SMs; it adds to compute as the term "serial" (with
    ``serial_overlaps`` False it adds to both bounds instead: steps of a kernel whose one
    resident block per SM does them before and after its own loads). ``stream_s``: the
    busiest SM's time to stream its blocks' operands at their own latency-bound pace (a
    decode kernel with fewer blocks than HBM needs): a memory term, "stream", beside HBM,
    L2 and shared memory. ``pre_s``: time
    of a separate kernel the operation runs before this one (a production prefill's KV-cache
    write, :func:`memsim.attention.prepass_bytes`): it adds to both bounds as the term "pre".
    ``exp_overlaps``: the kernel hides its exponentials under its matmuls
    (:func:`compute_s`).
    """
    gpu = gpu.for_class(kernel_class)
    r = achievable_rates(gpu, dtype, matmul_unit)
    f = lambda v: np.asarray(v, dtype=float)  # noqa: E731
    terms = {
        "matmul": f(cost.matmul_flops) / r.matmul_flop_per_s
        + f(cost.fp8_matmul_flops) / r.fp8_matmul_flop_per_s,
        "vector": f(cost.vector_flops) / r.vector_flop_per_s,
        "exp": f(cost.exp_ops) / r.exp_per_s,
        "hbm": f(cost.hbm_bytes) / r.hbm_bytes_per_s,
        "l2": f(cost.global_bytes) / r.l2_bytes_per_s,
        "sram": f(cost.sram_bytes) / r.sram_bytes_per_s,
    }
    blocks = np.asarray(cost.blocks, dtype=float)
    if blocks_per_sm is None:
        waves = np.ones_like(blocks)
        stretch = np.ones_like(blocks)
    else:
        sms = float(gpu.spec.sm_count)
        slots = sms * np.maximum(np.asarray(blocks_per_sm, dtype=float), 1.0)
        waves = np.maximum(np.ceil(blocks / slots), 1.0)
        per_sm = busiest_sm_blocks(blocks, sms)
        stretch = np.where(blocks > 0, per_sm * sms / np.maximum(blocks, 1.0), 1.0)
        stretch = np.maximum(stretch, 1.0)
        for name in ("matmul", "vector", "exp", "sram"):
            terms[name] = terms[name] * stretch
    compute = compute_s(terms["matmul"], terms["vector"], terms["exp"], exp_overlaps)
    after = 0.0
    if serial_s is not None:
        terms["serial"] = np.asarray(serial_s, dtype=float) * np.ones_like(terms["hbm"])
        if serial_overlaps:
            compute = compute + terms["serial"]
        else:
            after = terms["serial"]
    memory = np.maximum(np.maximum(terms["hbm"], terms["l2"]), terms["sram"])
    if stream_s is not None:
        terms["stream"] = np.asarray(stream_s, dtype=float) * np.ones_like(terms["hbm"])
        memory = np.maximum(memory, terms["stream"])
    if floor_s is None:
        launch = np.asarray(cost.launches, dtype=float) * gpu.spec.kernel_launch_overhead_s
    else:
        launch = np.broadcast_to(np.asarray(floor_s, dtype=float),
                                 np.shape(cost.launches)).astype(float)
    before = 0.0
    if pre_s is not None:
        terms["pre"] = before = np.asarray(pre_s, dtype=float) * np.ones_like(terms["hbm"])
    lower = np.maximum(compute, memory) + launch + before + after
    upper = compute + memory + launch + before + after
    keys = tuple(terms)
    stacked = np.stack([np.broadcast_to(terms[k], lower.shape) for k in keys])
    names = np.asarray(keys)[np.argmax(stacked, axis=0)]
    hbm = np.asarray(cost.hbm_bytes, dtype=float)
    intensity = np.where(hbm > 0, np.asarray(cost.flops, dtype=float) / np.maximum(hbm, 1),
                         np.inf)
    scalar = lower.ndim == 0
    return Timing(
        lower_s=_out(lower), upper_s=_out(upper), compute_s=_out(compute),
        memory_s=_out(memory), launch_s=_out(launch),
        terms_s={k: _out(v) for k, v in terms.items()},
        waves=_out(waves), wave_efficiency=_out(1.0 / stretch),
        bound=str(names) if scalar else names,
        arithmetic_intensity_flop_per_byte=_out(intensity),
    )


def _out(v: np.ndarray) -> Number:
    v = np.asarray(v, dtype=float)
    return float(v) if v.ndim == 0 else v


BOUND_EXPLANATIONS = {
    "matmul": "matrix multiplies: the tensor cores are the bottleneck",
    "vector": "element-wise softmax work on the CUDA cores binds",
    "exp": "exponentials on the special-function unit bind",
    "hbm": "HBM bandwidth binds: bytes, not FLOPs, set the time",
    "l2": "L2 bandwidth binds: re-reads of tiles through L2 set the time",
    "sram": "shared-memory bandwidth inside each block binds",
    "serial": "the kernel's fixed per-row steps (not FLOPs or bytes) bind",
    "pre": "the KV-cache write kernel before the attention kernel takes longest",
    "stream": "too few blocks: each streams its keys at its own latency-bound pace",
}
