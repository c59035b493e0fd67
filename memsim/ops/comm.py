"""Collectives between GPUs: latency + bytes over the link, with the algorithm switch the
libraries make.

Bytes each GPU moves over its link (per direction) for a message of M bytes on G GPUs:

- ring all-reduce (NCCL): 2(G−1)/G · M — the bus-bandwidth factor of nccl-tests
  (doc/PERFORMANCE.md: busBw = algBw · 2(n−1)/n); reduce-scatter then all-gather, one
  latency per step: 2(G−1) hops;
- NVLS all-reduce (NCCL ≥ 2.17 on NVSwitch with NVLink SHARP): the switch adds. Each GPU
  sends its whole buffer into the switch's multimem reduction and then its reduced 1/G slice
  for the switch to multicast, and receives the same: (G+1)/G · M each way (memsim's count
  of the multimem.ld_reduce / multimem.st pair);
- one-shot custom all-reduce (TensorRT-LLM, vLLM ``cross_device_reduce_1stage``): each GPU
  reads every peer's whole buffer and reduces locally: (G−1) · M in, one barrier;
- two-shot (``cross_device_reduce_2stage``): reduce-scatter + all-gather through peer
  memory: 2(G−1)/G · M, two barriers.

Which algorithm runs is the library's rule, not memsim's choice:

- TensorRT-LLM ``AllreducePlugin::selectImplementation`` (cpp/tensorrt_llm/plugins/
  ncclPlugin/allreducePlugin.cpp, AUTO strategy): if the message fits the workspace
  (``customAllReduceUtils::getMaxRequiredWorkspaceSize``: 16 MB for ≤ 2 ranks, else 8 MB):
  one-shot for ≤ 2 ranks; ≤ 4 ranks one-shot below 1 MB, else two-shot; more ranks
  one-shot below 500 kB, else two-shot; otherwise NCCL.
- vLLM (and SGLang's copy of it) ``csrc/custom_all_reduce.cuh``: one-stage if
  world_size == 2, or ≤ 4 ranks and < 512 KiB, or ≤ 8 ranks and < 256 KiB, else
  two-stage; ``CustomAllreduce.should_custom_ar`` uses it below ``max_size`` = 8 MiB,
  otherwise NCCL.
- NCCL picks the algorithm its cost model predicts fastest (src/graph/tuning.cc); memsim
  does the same between ring and NVLS (where the profile's switch has NVLink SHARP).

Custom all-reduce needs peer access inside one scale-up domain; beyond it everything is
NCCL over the network. Link bandwidth per direction and the domain size come from the
profile's ``[interconnect]``; the floor and link efficiency of each algorithm are fitted
(:mod:`memsim.ops.classes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, check_backend, out, positive, resolve_gpu
from memsim.ops.classes import kernel_class

MB = 1e6
MiB = 2**20
KiB = 2**10


def _link(gpu: Any, gpus: int) -> tuple[float, float]:
    """(bytes/s per direction, hop latency s) for a group of ``gpus``."""
    from memsim.errors import InputError

    link = gpu.interconnect
    if link is None:
        raise InputError("gpu", gpu.name, "has no [interconnect] section in its profile")
    return link.link_bytes_per_s(gpus), link.link_latency_s(gpus)


def _check_gpus(gpus: Any) -> int:
    from memsim.errors import InputError

    if not isinstance(gpus, int | np.integer) or gpus < 1:
        raise InputError("gpus", gpus, "must be a positive integer")
    return int(gpus)


def _algorithm_s(name: str, M: np.ndarray, G: int, gpu: Any, backend: str | None
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(time without floor, link bytes per GPU per direction, floor) of one algorithm."""
    bw, hop = _link(gpu, G)
    cls = kernel_class(f"allreduce/{name}", backend)
    traffic = {"oneshot": (G - 1) * M, "nvls": (G + 1) / G * M}.get(name, 2.0 * (G - 1) / G * M)
    hops = 2 * (G - 1) if name == "ring" else 0  # ring: one step per neighbour exchange
    return traffic / (bw * cls.eff("link")) + hops * hop, traffic, cls.floor_s


def _nccl_choice(M: np.ndarray, G: int, gpu: Any, backend: str | None) -> np.ndarray:
    """NCCL's own pick: the algorithm with the smaller modelled time (tuning.cc)."""
    link = gpu.interconnect
    if not (link is not None and link.nvls and G <= link.scale_up_gpus and G > 2):
        return np.full(M.shape, "ring", dtype=object)
    ring, _, f_ring = _algorithm_s("ring", M, G, gpu, backend)
    nvls, _, f_nvls = _algorithm_s("nvls", M, G, gpu, backend)
    return np.where(nvls + f_nvls < ring + f_ring, "nvls", "ring").astype(object)


def all_reduce_algorithm(message_bytes: Any, gpus: int, *, gpu: Any,
                         backend: str | None = None) -> np.ndarray:
    """The algorithm the backend's rule picks per message size (array of str):
    "oneshot", "twoshot", "ring" or "nvls" (module docstring for the sources)."""
    gpu = resolve_gpu(gpu)
    backend = check_backend(backend)
    (M,) = as_float(message_bytes)
    G = _check_gpus(gpus)
    nccl = _nccl_choice(M, G, gpu, backend)
    link = gpu.interconnect
    if link is None or G > link.scale_up_gpus or G == 1:
        return nccl
    if backend == "trtllm":
        workspace = 16 * MB if G <= 2 else 8 * MB
        one_below = np.inf if G <= 2 else (1 * MB if G <= 4 else 500e3)
        custom = np.where(M < one_below, "oneshot", "twoshot").astype(object)
        return np.where(M <= workspace, custom, nccl)
    one = (G == 2) | ((G <= 4) & (M < 512 * KiB)) | ((G <= 8) & (M < 256 * KiB))
    custom = np.where(one, "oneshot", "twoshot").astype(object)
    return np.where(M < 8 * MiB, custom, nccl)


def _collective_args(message_bytes: Any, gpus: int, gpu: Any) -> tuple[Any, int, np.ndarray]:
    """(GPU, G, M as float array) of a collective's arguments, checked."""
    positive("message_bytes", message_bytes)
    gpu = resolve_gpu(gpu)
    G = _check_gpus(gpus)
    (M,) = as_float(message_bytes)
    return gpu, G, M


def _no_link(M: np.ndarray) -> OpPrediction:
    """A collective over one GPU: nothing crosses a link, nothing is timed."""
    zero = np.zeros_like(M)
    return OpPrediction(out(zero), "none", out(zero), out(zero), out(zero),
                        {"link": out(zero)}, {"algorithm": "none"})


def all_reduce(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """All-reduce of ``message_bytes`` (each GPU's buffer, bytes; arrays broadcast) over
    ``gpus`` GPUs with the algorithm ``backend``'s rule picks (module docstring)."""
    gpu, G, M = _collective_args(message_bytes, gpus, gpu)
    if G == 1:
        return _no_link(M)
    algo = all_reduce_algorithm(M, G, gpu=gpu, backend=backend)
    time = np.zeros_like(M)
    link_s = np.zeros_like(M)
    floor = np.zeros_like(M)
    traffic = np.zeros_like(M)
    for name in ("oneshot", "twoshot", "ring", "nvls"):
        pick = algo == name
        if not np.any(pick):
            continue
        t, tr, f = _algorithm_s(name, M, G, gpu, backend)
        link_s = np.where(pick, t, link_s)
        floor = np.where(pick, f, floor)
        traffic = np.where(pick, tr, traffic)
    time = floor + link_s
    bound = np.where(floor > link_s, "latency", "link")
    # HBM: read the local buffer and the reduced peers' data, write the result
    hbm = 2.0 * M + traffic
    return OpPrediction(
        time_s=out(time), bound=str(bound) if bound.ndim == 0 else bound,
        flops=out(np.zeros_like(M)), hbm_bytes=out(hbm), launch_s=out(floor),
        terms_s={"link": out(link_s)},
        detail={"algorithm": str(algo) if algo.ndim == 0 else algo.astype(str),
                "link_bytes": out(traffic)})


def _simple(op: str, message_bytes: Any, gpus: int, gpu: Any, factor, hops=None) -> OpPrediction:
    """A ring collective whose per-GPU traffic is ``factor(G) · M``: NCCL ring class."""
    gpu, G, M = _collective_args(message_bytes, gpus, gpu)
    if G == 1:
        return _no_link(M)
    bw, hop = _link(gpu, G)
    cls = kernel_class("nccl/ring")
    traffic = factor(G) * M
    link_s = traffic / (bw * cls.eff("link")) + (G - 1 if hops is None else hops) * hop
    floor = np.full_like(M, cls.floor_s)
    bound = np.where(floor > link_s, "latency", "link")
    return OpPrediction(
        time_s=out(floor + link_s), bound=str(bound) if bound.ndim == 0 else bound,
        flops=out(np.zeros_like(M)), hbm_bytes=out(M + traffic), launch_s=out(floor),
        terms_s={"link": out(link_s)}, detail={"algorithm": f"{op}/ring",
                                               "link_bytes": out(traffic)})


def all_gather(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """All-gather whose gathered output is ``message_bytes`` per GPU: each GPU receives the
    (G−1)/G of it it lacks (nccl-tests busBw factor (n−1)/n), NCCL ring."""
    check_backend(backend)
    return _simple("all_gather", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


def reduce_scatter(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
                   backend: str | None = None) -> OpPrediction:
    """Reduce-scatter of a ``message_bytes`` input per GPU: (G−1)/G of it crosses the link."""
    check_backend(backend)
    return _simple("reduce_scatter", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


def all_to_all(message_bytes: Any, gpus: int, *, gpu: Any = "h100-sxm",
               backend: str | None = None) -> OpPrediction:
    """All-to-all of ``message_bytes`` per GPU (MoE dispatch/combine): each GPU keeps 1/G and
    sends (G−1)/G of its buffer, and receives as much."""
    check_backend(backend)
    return _simple("all_to_all", message_bytes, gpus, gpu, lambda G: (G - 1) / G)


def p2p(message_bytes: Any, *, gpu: Any = "h100-sxm", gpus: int = 2,
        backend: str | None = None) -> OpPrediction:
    """Send ``message_bytes`` from one GPU to another (pipeline stages); ``gpus`` = 2 is a
    pair in one scale-up domain, more than the domain crosses the network."""
    check_backend(backend)
    return _simple("p2p", message_bytes, max(gpus, 2), gpu, lambda G: 1.0, hops=1)


def collective_s(kind: str, message_bytes: Any, gpus: int, *, gpu: Any,
                 backend: str | None = None) -> Any:
    """Seconds of collective ``kind`` ("all_reduce", "all_gather", "reduce_scatter",
    "all_to_all", "p2p") for whole-model sums: empty messages and one GPU cost nothing."""
    M = np.asarray(message_bytes, dtype=float)
    if gpus <= 1 and kind != "p2p":
        return np.zeros_like(M)
    fn = {"all_reduce": all_reduce, "all_gather": all_gather, "reduce_scatter": reduce_scatter,
          "all_to_all": all_to_all}.get(kind)
    safe = np.maximum(M, 1.0)
    if fn is None:
        t = p2p(safe, gpu=gpu, gpus=max(int(gpus), 2), backend=backend).time_s
    else:
        t = fn(safe, int(gpus), gpu=gpu, backend=backend).time_s
    return np.where(M > 0, t, 0.0)
