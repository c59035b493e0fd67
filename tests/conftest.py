"""Test set-up: hypothesis profiles, the CUDA simulator switch, GPU skipping."""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

# The CUDA simulator runs kernels on the CPU; set before anything imports numba.cuda.
# MEMSIM_REAL_GPU=1 runs the kernel tests (and the `gpu`-marked ones) on a real GPU.
if os.environ.get("MEMSIM_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The simulator's threads switch often; a short interval halves its run time.
sys.setswitchinterval(0.001)

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
# `make test-deep`: fresh random examples every run, many of them (not for CI's time budget).
settings.register_profile(
    "deep", derandomize=False, deadline=None, max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
