"""The process Nsight Compute profiles: one case's call, bracketed by cudaProfilerStart/Stop.

``python -m memsim.validation.ncu_target '{"target": "sdpa", ...}'``. It warms up outside
the bracket (module load, JIT compilation, cuBLAS handles), so ``ncu --profile-from-start
off`` sees only the kernels of one call:

- ``sdpa``: one ``scaled_dot_product_attention`` call on the pinned backend;
- ``kernel``: one ``memsim.kernels.bench.run_case`` of a Numba kernel; ncu is then told to
  profile only the first launches (as many as the algorithm launches), which are the
  kernel's own on the case's inputs;
- ``store``: one ``fill_`` of a buffer of ``size_mib`` MiB (``dtype`` fp32 or bf16): a
  store-only kernel, warmed up on the same buffer (ncu's ``--cache-control``, from the
  case's ``cache_control``, decides whether the warm-up's dirty lines are still in the L2
  when the profiled fill starts: ``all`` flushes and invalidates them, ``none`` keeps
  them).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def run_sdpa(params: dict[str, Any]) -> None:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from memsim.validation.sdpa import _TORCH_BACKEND, _call, _inputs, check_params

    check_params(params)
    generator = torch.Generator(device="cuda")
    generator.seed()
    q, k, v = _inputs(params, generator)
    with sdpa_kernel(getattr(SDPBackend, _TORCH_BACKEND[params["backend"]])):
        _call(params, q, k, v)  # warm-up, outside the profiled range
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        out = _call(params, q, k, v)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError("non-finite output")


def run_kernel(params: dict[str, Any]) -> None:
    from numba import cuda

    from memsim.hardware import load_gpu
    from memsim.kernels import bench
    from memsim.validation.kernels import tiling_for
    from memsim.validation.predictions import attention_problem

    gpu = load_gpu(params["profile"])
    problem = attention_problem(params)
    cuda.profile_start()
    bench.run_case(params["algorithm"], problem, tiling_for(params, gpu))
    cuda.synchronize()
    cuda.profile_stop()


def run_store(params: dict[str, Any]) -> None:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[params.get("dtype", "fp32")]
    nbytes = int(params["size_mib"]) * 2**20
    buf = torch.empty(nbytes // (torch.finfo(dtype).bits // 8), dtype=dtype, device="cuda")
    buf.fill_(1.0)  # warm-up, outside the profiled range (its lines stay dirty in L2)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    buf.fill_(2.0)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    if float(buf[-1]) != 2.0:
        raise RuntimeError("the profiled fill did not store")


def main(argv: list[str] | None = None) -> int:
    params = json.loads((argv if argv is not None else sys.argv[1:])[0])
    {"sdpa": run_sdpa, "kernel": run_kernel, "store": run_store}[params["target"]](params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
