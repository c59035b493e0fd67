"""The process Nsight Compute profiles: one case's call, bracketed by cudaProfilerStart/Stop.

``python -m memsim.validation.ncu_target '{"target": "sdpa", ...}'``. It warms up outside
the bracket (module load, JIT compilation, cuBLAS handles), so ``ncu --profile-from-start
off`` sees only the kernels of one call:

- ``sdpa``: one ``scaled_dot_product_attention`` call on the pinned backend;
- ``kernel``: one ``memsim.kernels.bench.run_case`` of a Numba kernel; ncu is then told to
  profile only the first launches (as many as the algorithm launches), which are the
  kernel's own on the case's inputs.
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


def main(argv: list[str] | None = None) -> int:
    params = json.loads((argv if argv is not None else sys.argv[1:])[0])
    {"sdpa": run_sdpa, "kernel": run_kernel}[params["target"]](params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
