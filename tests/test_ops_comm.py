"""memsim.ops.comm: the libraries' algorithm switch points and the bandwidth laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.hardware import load_gpu
from memsim.ops import comm
from memsim.ops.classes import kernel_class


def _algo(nbytes, gpus, backend="trtllm", gpu="h100-sxm"):
    return str(comm.all_reduce_algorithm(nbytes, gpus, gpu=gpu, backend=backend))


def test_trtllm_switch_points() -> None:
    # TensorRT-LLM allreducePlugin.cpp selectImplementation (AUTO): ≤ 2 ranks one-shot up to the
    # 16 MB workspace; ≤ 4 ranks one-shot below 1 MB; 8 ranks one-shot below 500 kB; 8 MB
    # workspace, then NCCL.
    assert _algo(15e6, 2) == "oneshot"
    assert _algo(999_999, 4) == "oneshot" and _algo(1_000_000, 4) == "twoshot"
    assert _algo(499_999, 8) == "oneshot" and _algo(500_000, 8) == "twoshot"
    assert _algo(8e6, 8) == "twoshot" and _algo(8e6 + 1, 8) in ("ring", "nvls")
    assert _algo(17e6, 2) == "ring"  # NVLS needs more than 2 ranks


def test_vllm_switch_points() -> None:
    # vLLM custom_all_reduce.cuh: 1-stage for 2 ranks, < 512 KiB on ≤ 4, < 256 KiB on ≤ 8;
    # custom all-reduce below max_size = 8 MiB, NCCL above.
    assert _algo(4 * 2**20, 2, "vllm") == "oneshot"
    assert _algo(256 * 2**10 - 1, 8, "vllm") == "oneshot"
    assert _algo(256 * 2**10, 8, "vllm") == "twoshot"
    assert _algo(512 * 2**10, 4, "vllm") == "twoshot"
    assert _algo(8 * 2**20, 8, "vllm") in ("ring", "nvls")


def test_one_gpu_costs_nothing_and_a_group_beyond_the_domain_uses_nccl() -> None:
    assert comm.all_reduce(1e6, 1).time_s == 0.0
    assert _algo(1e3, 16) == "ring"  # 16 H100s: two HGX boards, no custom all-reduce


@given(st.floats(1e2, 1e9), st.sampled_from([2, 4, 8]), st.sampled_from(["trtllm", "vllm"]))
def test_time_at_least_floor_and_link_bytes_over_link(nbytes: float, gpus: int,
                                                      backend: str) -> None:
    p = comm.all_reduce(nbytes, gpus, gpu="h200", backend=backend)
    link = load_gpu("h200").interconnect.nvlink_bytes_per_s_per_direction
    assert p.time_s >= p.launch_s > 0
    assert p.time_s >= p.detail["link_bytes"] / link  # never faster than the wire


def test_ring_bus_bandwidth_formula() -> None:
    # nccl-tests PERFORMANCE.md: busBw = algBw · 2(n−1)/n; large messages approach the link.
    M, G = 1e9, 4
    p = comm.all_reduce(M, G, gpu="a100-sxm4-80gb")  # no NVLS on A100
    assert p.detail["algorithm"] == "ring"
    cls = kernel_class("allreduce/ring", "trtllm")
    link = 300e9 * cls.eff("link")
    assert p.terms_s["link"] == pytest.approx(2 * (G - 1) / G * M / link + 2 * (G - 1) * 0.6e-6)


def test_faster_links_are_faster() -> None:
    M = np.array([1e5, 1e7, 1e9])
    h100 = comm.all_reduce(M, 8, gpu="h100-sxm").time_s
    assert np.all(comm.all_reduce(M, 8, gpu="b200").time_s <= h100)
    assert np.all(comm.all_reduce(M, 8, gpu="h800-sxm").time_s >= h100)


def test_all_gather_all_to_all_p2p() -> None:
    assert comm.all_gather(1e8, 8).time_s < comm.all_reduce(1e8, 8, backend="vllm").time_s * 2
    assert comm.all_to_all(1e8, 16, gpu="b200").time_s > comm.all_to_all(1e8, 16,
                                                                          gpu="gb200").time_s
    assert comm.p2p(1e9).time_s == pytest.approx(
        kernel_class("nccl/ring").floor_s + 1e9 / (450e9 * kernel_class("nccl/ring").eff("link"))
        + 0.6e-6)
