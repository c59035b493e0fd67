"""Ceilings as validation cases: each microbenchmark of :mod:`memsim.kernels.ceilings` beside
the rate the profile says is achievable (peak × efficiency factor).

The error of a ceiling case is the error of the profile's yardstick itself: the copy
bandwidth against ``achievable_hbm_bytes_per_s``, the L2-resident read against the L2 rate,
the 8192³ matmuls against the tensor and fp32 rates, the exp kernel against the exp rate.
The FMA kernels are compared with the fp32 *peak*: they measure whether the peak is
reachable at all, while the fp32 efficiency factor comes from a real kernel (SGEMM).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memsim.hardware import GPU

# bench → (measured key, the profile's figure for it)
YARDSTICKS: dict[str, tuple[str, Callable[[GPU], float]]] = {
    "d2d_copy": ("d2d_copy_bytes_per_s", lambda g: g.achievable_hbm_bytes_per_s),
    "l2_read": ("l2_read_bytes_per_s", lambda g: g.achievable_l2_bytes_per_s),
    "fp32_fma": ("fp32_fma_flop_per_s", lambda g: g.peak_flop_per_s("fp32")),
    "fp32_fma_rolled": ("fp32_fma_flop_per_s", lambda g: g.peak_flop_per_s("fp32")),
    "exp": ("exp_per_s", lambda g: g.achievable_flop_per_s("exp")),
    "launch_overhead": ("torch_launch_overhead_s", lambda g: g.spec.kernel_launch_overhead_s),
    "matmul_bf16": ("matmul_bf16_flop_per_s", lambda g: g.achievable_flop_per_s("tensor", "bf16")),
    "matmul_fp16": ("matmul_fp16_flop_per_s", lambda g: g.achievable_flop_per_s("tensor", "fp16")),
    "matmul_tf32": ("matmul_tf32_flop_per_s", lambda g: g.achievable_flop_per_s("tensor", "tf32")),
    "matmul_fp32": ("matmul_fp32_flop_per_s", lambda g: g.achievable_flop_per_s("fp32")),
    "matmul_fp8": ("matmul_fp8_flop_per_s", lambda g: g.achievable_flop_per_s("tensor", "fp8")),
}


def prediction_for(bench: str, gpu: GPU) -> dict[str, Any]:
    """The profile's figure for ``bench`` under the bench's own key."""
    key, figure = YARDSTICKS[bench]
    return {"analytic": {key: figure(gpu)}, "trace": None,
            "trace_note": "a ceiling has no trace-driven prediction", "profile": gpu.name,
            "profile_kind": "calibrated" if gpu.calibrated_from else "datasheet"}


def run(params: dict[str, Any], gpu: GPU) -> dict[str, Any]:
    """Run one microbenchmark and set it beside the profile's figure."""
    from memsim.kernels.ceilings import BENCHES

    bench = params["bench"]
    if bench not in BENCHES or bench not in YARDSTICKS:
        from memsim.errors import InputError

        raise InputError("bench", bench, f"must be one of {', '.join(YARDSTICKS)}")
    measurement = BENCHES[bench]()
    return {"prediction": prediction_for(bench, gpu), "measurement": measurement}
