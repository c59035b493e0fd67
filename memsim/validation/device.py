"""Which GPU is this? Read the device's attributes and pick the matching profile.

:func:`read_device` (from :mod:`memsim.kernels.device`) asks the driver (through PyTorch,
and Numba's device attributes where Numba works) for the name, SMs, L2, shared memory,
registers, clocks and memory bus, as a plain dict (units in the keys).
:func:`match_profile` is pure: it scores every profile against such a dict — numbers
first, the name as a tie-breaker (an H800 and an H100 SXM are the same silicon) — and
lists every number on which the chosen profile disagrees with the device, so a wrong
profile never passes silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from memsim.hardware import GPU
from memsim.kernels.device import read_device

__all__ = ["read_device", "match_profile", "compare", "bundled_profiles"]


# ---- matching -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One number on which the device and the profile disagree beyond the tolerance."""

    field: str
    device_value: float | str
    profile_value: float | str
    tolerance: float

    def describe(self) -> str:
        return (f"{self.field}: device {self.device_value!r}, profile {self.profile_value!r}"
                + (f" (tolerance {self.tolerance:.0%})" if self.tolerance else ""))


@dataclass(frozen=True)
class ProfileMatch:
    """The chosen profile, how many numbers agree, and where it disagrees."""

    gpu: GPU
    agreeing: int
    compared: int
    name_score: float
    mismatches: tuple[Mismatch, ...]

    def warnings(self) -> list[str]:
        out = [f"device and profile {self.gpu.name} disagree on {m.describe()}"
               for m in self.mismatches]
        if self.name_score == 0:
            out.append(f"the device's name shares nothing with {self.gpu.display_name!r}; "
                       "add a profile for this GPU (hardware_profiles/)")
        return out


def _memory_bandwidth(attrs: dict[str, Any]) -> float | None:
    """Peak DRAM bandwidth from the memory clock and bus: 2 transfers per clock (DDR)."""
    clock, bits = attrs.get("memory_clock_hz"), attrs.get("memory_bus_bits")
    if not clock or not bits:
        return None
    return 2 * clock * bits / 8


# (field, value on the device, value in the profile, relative tolerance)
_CHECKS: tuple[tuple[str, Callable[[dict], Any], Callable[[GPU], Any], float], ...] = (
    ("compute_capability", lambda a: a.get("compute_capability"),
     lambda g: g.compute_capability, 0.0),
    ("sm_count", lambda a: a.get("sm_count"), lambda g: g.spec.sm_count, 0.0),
    ("l2_bytes", lambda a: a.get("l2_bytes"), lambda g: g.spec.l2_bytes, 0.01),
    # total memory as the driver reports it is a little under the marketing size
    ("hbm_bytes", lambda a: a.get("total_memory_bytes"), lambda g: g.spec.hbm_bytes, 0.05),
    ("shared_memory_per_sm_bytes", lambda a: a.get("shared_memory_per_sm_bytes"),
     lambda g: g.spec.shared_memory_per_sm_bytes, 0.0),
    ("shared_memory_per_block_max_bytes", lambda a: a.get("shared_memory_per_block_optin_bytes"),
     lambda g: g.spec.shared_memory_per_block_max_bytes, 0.0),
    ("registers_per_sm", lambda a: a.get("registers_per_sm"),
     lambda g: g.spec.registers_per_sm, 0.0),
    ("boost_clock_hz", lambda a: a.get("sm_clock_max_hz"), lambda g: g.spec.boost_clock_hz, 0.02),
    ("hbm_bandwidth_bytes_per_s", _memory_bandwidth,
     lambda g: g.spec.hbm_bandwidth_bytes_per_s, 0.05),
)


def _agrees(device_value: Any, profile_value: Any, tolerance: float) -> bool:
    if isinstance(device_value, str) or isinstance(profile_value, str):
        return str(device_value) == str(profile_value)
    return abs(device_value - profile_value) <= tolerance * abs(profile_value)


def _tokens(name: str) -> set[str]:
    """Lower-case alphanumeric words of a GPU name, without the vendor."""
    return set(re.findall(r"[a-z0-9]+", name.lower())) - {"nvidia", "amd", "geforce"}


def name_score(device_name: str, gpu: GPU) -> float:
    """Share of the device name's words found in the profile's name or display name."""
    words = _tokens(device_name)
    if not words:
        return 0.0
    return len(words & (_tokens(gpu.display_name) | _tokens(gpu.name))) / len(words)


def compare(attrs: dict[str, Any], gpu: GPU) -> tuple[int, int, list[Mismatch]]:
    """(agreeing numbers, numbers compared, mismatches) of a device against one profile."""
    agreeing, compared, mismatches = 0, 0, []
    for field, device_of, profile_of, tolerance in _CHECKS:
        device_value, profile_value = device_of(attrs), profile_of(gpu)
        if device_value is None or profile_value is None:
            continue
        compared += 1
        if _agrees(device_value, profile_value, tolerance):
            agreeing += 1
        else:
            mismatches.append(Mismatch(field, device_value, profile_value, tolerance))
    return agreeing, compared, mismatches


def match_profile(attrs: dict[str, Any], profiles: Iterable[GPU]) -> ProfileMatch:
    """The profile that agrees with the device on the most numbers (name breaks ties).

    ``attrs`` is a dict as :func:`read_device` returns; ``profiles`` the candidates
    (datasheet profiles; calibrated ones are chosen explicitly, never matched).
    """
    best: ProfileMatch | None = None
    best_key: tuple[float, float] | None = None
    for gpu in profiles:
        if gpu.calibrated_from:
            continue
        agreeing, compared, mismatches = compare(attrs, gpu)
        words = name_score(str(attrs.get("name", "")), gpu)
        key = (agreeing - len(mismatches), words)
        if best_key is None or key > best_key:
            best_key = key
            best = ProfileMatch(gpu, agreeing, compared, words, tuple(mismatches))
    if best is None:
        from memsim.errors import InputError

        raise InputError("profiles", "[]", "must hold at least one datasheet profile")
    return best


def bundled_profiles() -> list[GPU]:
    """Every bundled datasheet profile."""
    from memsim.hardware import gpu_names, load_gpu

    return [load_gpu(name) for name in gpu_names()]
