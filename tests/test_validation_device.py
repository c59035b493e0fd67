"""Profile matching from device attributes (fake attribute dicts, no GPU)."""

from __future__ import annotations

from typing import Any

import pytest

from memsim.hardware import GPU, gpu_names, load_gpu
from memsim.validation.device import bundled_profiles, compare, match_profile

BUS_BITS = 5120

# What the driver reported on the H100 of measurements/h100-sxm/ceilings-2026-11-22T19-30-35Z.json
H100_SXM = {
    "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "sm_count": 132,
    "total_memory_bytes": 85017493504, "l2_bytes": 52428800,
    "shared_memory_per_sm_bytes": 233472, "shared_memory_per_block_optin_bytes": 232448,
    "registers_per_sm": 65536, "sm_clock_max_hz": 1.98e9, "memory_clock_hz": 2.619e9,
    "memory_bus_bits": 5120, "errors": {},
}


def attributes_of(gpu: GPU, name: str | None = None) -> dict[str, Any]:
    """The attribute dict a device exactly like ``gpu``'s profile would report."""
    s = gpu.spec
    return {"name": name or gpu.display_name, "compute_capability": gpu.compute_capability,
            "sm_count": s.sm_count, "total_memory_bytes": s.hbm_bytes, "l2_bytes": s.l2_bytes,
            "shared_memory_per_sm_bytes": s.shared_memory_per_sm_bytes,
            "shared_memory_per_block_optin_bytes": s.shared_memory_per_block_max_bytes,
            "registers_per_sm": s.registers_per_sm, "sm_clock_max_hz": s.boost_clock_hz,
            "memory_clock_hz": s.hbm_bandwidth_bytes_per_s / (2 * BUS_BITS / 8),
            "memory_bus_bits": BUS_BITS}


def test_the_measured_h100_matches_h100_sxm_without_a_warning() -> None:
    match = match_profile(H100_SXM, bundled_profiles())
    assert match.gpu.name == "h100-sxm"
    assert match.mismatches == ()
    assert match.agreeing == match.compared == 9
    assert match.warnings() == []


@pytest.mark.parametrize("name", gpu_names())
def test_every_profile_is_found_from_its_own_numbers(name: str) -> None:
    gpu = load_gpu(name)
    match = match_profile(attributes_of(gpu), bundled_profiles())
    assert match.gpu.name == name
    assert match.mismatches == ()


def test_the_name_tells_apart_chips_with_the_same_numbers() -> None:
    h800 = attributes_of(load_gpu("h800-sxm"), name="NVIDIA H800")
    assert match_profile(h800, bundled_profiles()).gpu.name == "h800-sxm"
    assert match_profile({**h800, "name": "NVIDIA H100 80GB HBM3"},
                         bundled_profiles()).gpu.name == "h100-sxm"


def test_numbers_outweigh_the_name() -> None:
    """A PCIe card whose driver name omits 'PCIe' still matches by its 114 SMs."""
    pcie = attributes_of(load_gpu("h100-pcie"), name="NVIDIA H100 80GB")
    assert match_profile(pcie, bundled_profiles()).gpu.name == "h100-pcie"


def test_a_mismatch_is_named_with_both_values() -> None:
    slow_clock = {**H100_SXM, "sm_clock_max_hz": 1.755e9}
    match = match_profile(slow_clock, bundled_profiles())
    assert match.gpu.name == "h100-sxm"
    (warning,) = match.warnings()
    assert warning.startswith("device and profile h100-sxm disagree on boost_clock_hz")
    assert "1755000000.0" in warning and "1980000000.0" in warning


def test_missing_attributes_are_not_counted_against_a_profile() -> None:
    sparse = {"name": "NVIDIA H100 80GB HBM3", "sm_count": 132, "compute_capability": "9.0"}
    agreeing, compared, mismatches = compare(sparse, load_gpu("h100-sxm"))
    assert (agreeing, compared, mismatches) == (2, 2, [])


def test_an_unknown_gpu_is_flagged() -> None:
    odd = {"name": "Imaginary X9", "sm_count": 7, "compute_capability": "12.1"}
    match = match_profile(odd, bundled_profiles())
    assert any("add a profile" in w for w in match.warnings())
    assert len(match.mismatches) == 2


def test_calibrated_profiles_are_never_matched() -> None:
    sxm = load_gpu("h100-sxm")
    calibrated = sxm.model_copy(update={"name": "h100-sxm-calibrated",
                                        "calibrated_from": "measurements/h100-sxm"})
    assert match_profile(H100_SXM, [calibrated, sxm]).gpu is sxm
