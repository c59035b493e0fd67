"""GPU profiles: every bundled profile loads, every number has a source, derived numbers are
right, published figures match, and a broken profile fails with a message naming file and key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from memsim.errors import InputError
from memsim.hardware import GPU, gpu_names, load_gpu, load_profile_file, profiles_dir

BUNDLED = [
    "a100-sxm4-40gb", "a100-sxm4-80gb", "b200", "b300", "gb200", "h100-pcie", "h100-sxm",
    "h200", "h800-sxm", "l40s", "mi300x", "rtx-4090",
]
H100_TOML = profiles_dir() / "h100-sxm.toml"


def test_the_twelve_profiles_are_bundled() -> None:
    assert gpu_names() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_profile_loads(name: str) -> None:
    gpu = load_gpu(name)
    assert gpu.name == name  # the file stem and the name inside agree
    assert gpu.calibrated_from == ""
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", gpu.price.date), gpu.price.date
    assert gpu.price.source.strip()


@pytest.mark.parametrize("name", BUNDLED)
def test_every_number_has_a_source(name: str) -> None:
    gpu = load_gpu(name)
    for section in ("spec", "efficiency"):
        for key, value in getattr(gpu, section).model_dump().items():
            if value is not None:
                assert gpu.sources[f"{section}.{key}"].strip(), f"{name}: {section}.{key}"


@pytest.mark.parametrize("name", BUNDLED)
def test_tensor_rates_are_dense(name: str) -> None:
    """Sparse headline figures are 2x the dense ones; a sparse number slipped in breaks the ratios
    that hold on every part: FP16 = BF16, TF32 ≈ BF16 / 2, FP8 ≈ 2 x BF16 (tolerance 3 %)."""
    s = load_gpu(name).spec
    assert s.fp16_tensor_flop_per_s == s.bf16_tensor_flop_per_s
    assert s.tf32_tensor_flop_per_s == pytest.approx(s.bf16_tensor_flop_per_s / 2, rel=0.03)
    if s.fp8_tensor_flop_per_s is not None:
        assert s.fp8_tensor_flop_per_s == pytest.approx(2 * s.bf16_tensor_flop_per_s, rel=0.03)
    assert s.bf16_tensor_flop_per_s <= 2.5e15  # GB200, the fastest part here, dense


@pytest.mark.parametrize(("name", "field"), [
    ("h200", "spec.l2_bytes"),                     # no H200 device query found
    ("l40s", "spec.l2_bytes"),                     # 96 vs 48 MB, inferred from RRZE's L40
    ("b200", "spec.l2_bandwidth_bytes_per_s"),     # measured on GB200, clock unrecorded
    ("gb200", "spec.l2_bandwidth_bytes_per_s"),    # clock of the run unrecorded
    ("b300", "spec.l2_bandwidth_bytes_per_s"),     # GB200's, another die
    ("mi300x", "spec.sram_bytes_per_clock_per_sm"),
    ("mi300x", "spec.max_blocks_per_sm"),
    ("mi300x", "efficiency.l2_bandwidth"),
])
def test_unconfirmed_numbers_say_so(name: str, field: str) -> None:
    assert "UNCONFIRMED" in load_gpu(name).sources[field]


# RRZE gpu-benches gpu-l2-cache run on GB200 (fork github.com/xxrjun/gpu-benches @739d965,
# gpu-l2-cache/gb200.txt): median of the 18 data sets of 20-90 MB, and of the 34 of 200 MB-4.9 GB
GB200_L2_PLATEAU_BYTES_PER_S = 18.84e12
GB200_DRAM_PLATEAU_BYTES_PER_S = 7.768e12


def test_blackwell_l2_and_hbm_are_the_gb200_measurement() -> None:
    """GB200 achieves the measured plateaus; B200 and B300 the L2 one scaled by their boost
    clocks, on the L2 scale H200's profile defines (measured plateau / spec = H200's)."""
    gb200 = load_gpu("gb200")
    assert gb200.achievable_l2_bytes_per_s == pytest.approx(GB200_L2_PLATEAU_BYTES_PER_S, rel=2e-3)
    assert gb200.achievable_hbm_bytes_per_s == pytest.approx(GB200_DRAM_PLATEAU_BYTES_PER_S,
                                                             rel=2e-3)
    for name in ("b200", "b300"):
        gpu = load_gpu(name)
        clock = gpu.spec.boost_clock_hz / gb200.spec.boost_clock_hz
        assert gpu.achievable_l2_bytes_per_s == pytest.approx(
            GB200_L2_PLATEAU_BYTES_PER_S * clock, rel=2e-3), name
        assert gpu.efficiency.hbm_bandwidth == gb200.efficiency.hbm_bandwidth
    for name in ("gb200", "b200", "b300"):
        assert load_gpu(name).efficiency.l2_bandwidth == load_gpu("h200").efficiency.l2_bandwidth


@pytest.mark.parametrize("name", BUNDLED)
def test_every_profile_has_a_sourced_interconnect(name: str) -> None:
    gpu = load_gpu(name)
    link = gpu.interconnect
    assert link is not None
    for key in link.model_dump():
        assert gpu.sources[f"interconnect.{key}"].strip(), f"{name}: interconnect.{key}"
    # the per-direction NVLink figure is half the datasheet's both-directions figure
    if link.nvlink_bytes_per_s_per_direction > 0 and name not in ("h100-pcie", "mi300x"):
        assert 2 * link.nvlink_bytes_per_s_per_direction == gpu.spec.interconnect_bytes_per_s
    assert link.link_bytes_per_s(2) >= link.link_bytes_per_s(10_000)  # scale-out is slowest


def test_nvl72_is_one_nvlink_domain() -> None:
    gb200, b200 = load_gpu("gb200").interconnect, load_gpu("b200").interconnect
    assert gb200.scale_up_gpus == 72 and b200.scale_up_gpus == 8
    # 16 GPUs: NVLink inside an NVL72 rack, the 400 Gb/s network between HGX boards
    assert gb200.link_bytes_per_s(16) == 900e9 and b200.link_bytes_per_s(16) == 50e9


# ---- derived numbers and published figures ------------------------------------------------


def test_sram_bandwidth_is_bytes_per_clock_times_sms_times_clock() -> None:
    # FlashAttention-3 §1 derives H100's shared-memory bandwidth this way.
    assert load_gpu("h100-sxm").sram_bandwidth_bytes_per_s == pytest.approx(128 * 132 * 1.98e9)
    a100 = load_gpu("a100-sxm4-40gb").sram_bandwidth_bytes_per_s
    assert a100 == pytest.approx(128 * 108 * 1.41e9)  # 19.5 TB/s
    # FlashAttention (arXiv 2205.14135) §2.1: A100 SRAM bandwidth "estimated around 19TB/s".
    assert a100 == pytest.approx(19e12, rel=0.03)


def test_golden_peak_numbers() -> None:
    # FlashAttention-3 (arXiv 2407.08608) Table 1: H100 SXM5 989 TFLOPS BF16 dense, 3.35 TB/s HBM3.
    h100 = load_gpu("h100-sxm")
    assert h100.spec.bf16_tensor_flop_per_s == pytest.approx(989.4e12, rel=1e-3)
    assert h100.spec.hbm_bandwidth_bytes_per_s == pytest.approx(3.35e12, rel=1e-3)
    # FlashAttention (§2.1) and FlashAttention-2 (§3.1): A100 312 TFLOPS FP16/BF16 dense.
    for name in ("a100-sxm4-40gb", "a100-sxm4-80gb"):
        assert load_gpu(name).spec.bf16_tensor_flop_per_s == pytest.approx(312e12, rel=1e-3)


def test_peak_tensor_rates_derive_from_the_sm_two_ways() -> None:
    # A100 whitepaper: 1024 dense FP16 FMA/clk per SM (4 tensor cores x 256) at 1.41 GHz.
    a100 = load_gpu("a100-sxm4-80gb").spec
    assert a100.sm_count * 1024 * 2 * a100.boost_clock_hz == pytest.approx(312e12, rel=1e-3)
    # Hopper doubles that per SM; NVIDIA's tensor figures use the 1.83 GHz boost (FA3 fn. 4), not
    # the 1.98 GHz max SM clock, so the tensor clock is not the profile's boost_clock_hz.
    h100 = load_gpu("h100-sxm").spec
    assert h100.sm_count * 2048 * 2 * 1.83e9 == pytest.approx(h100.bf16_tensor_flop_per_s, rel=1e-3)


def test_h800_is_h100_sxm_with_nvlink_capped() -> None:
    h100, h800 = load_gpu("h100-sxm"), load_gpu("h800-sxm")
    a, b = h100.spec.model_dump(), h800.spec.model_dump()
    assert {k for k in a if a[k] != b[k]} == {"interconnect_bytes_per_s"}
    assert h800.spec.interconnect_bytes_per_s == 400e9 < h100.spec.interconnect_bytes_per_s
    ea, eb = h100.efficiency.model_dump(), h800.efficiency.model_dump()
    assert {k for k in ea if ea[k] != eb[k]} <= {"interconnect"}
    assert (h800.vendor, h800.architecture, h800.compute_capability) == (
        h100.vendor, h100.architecture, h100.compute_capability)
    # DeepSeek-V3 report (arXiv 2412.19437): $2 per H800 GPU-hour.
    assert h800.price.usd_per_gpu_hour == 2.00


def test_h200_is_h100_compute_with_more_memory() -> None:
    h100, h200 = load_gpu("h100-sxm").spec, load_gpu("h200").spec
    for key in ("sm_count", "bf16_tensor_flop_per_s", "fp8_tensor_flop_per_s", "fp32_flop_per_s"):
        assert getattr(h200, key) == getattr(h100, key), key
    assert h200.hbm_bandwidth_bytes_per_s == 4.8e12
    assert 140 * 2**30 < h200.hbm_bytes < 141 * 2**30  # "141 GB" HBM3e, 143771 MiB usable


# ---- bad input ----------------------------------------------------------------------------


def _drop_section(text: str, section: str) -> str:
    return re.sub(rf"^\[{section}\]\n.*?(?=^\[|\Z)", "", text, flags=re.M | re.S)


def _drop_key(text: str, key: str) -> str:
    return re.sub(rf"^{key} = .*\n", "", text, flags=re.M)


def _set_entry(key: str, entry: str) -> Callable[[str], str]:
    return lambda text: re.sub(rf"^{key} = .*$", f"{key} = {entry}", text, count=1, flags=re.M)


BROKEN: dict[str, tuple[Callable[[str], str], str]] = {
    # case: (how the h100-sxm profile is broken, the key the message must name)
    "syntax error": (_set_entry("sm_count", '{ value = 132 source = "x" }'), "sm_count"),
    "missing section": (lambda t: _drop_section(t, "efficiency"), "efficiency"),
    "missing key": (lambda t: _drop_key(t, "l2_bytes"), "spec.l2_bytes"),
    "empty source": (_set_entry("warp_size", '{ value = 32, source = " " }'), "spec.warp_size"),
    "no source": (_set_entry("warp_size", "{ value = 32 }"), "spec.warp_size"),
    "bare number": (_set_entry("warp_size", "32"), "spec.warp_size"),
    "wrong type": (_set_entry("sm_count", '{ value = "132", source = "x" }'), "spec.sm_count"),
    "float for int": (_set_entry("sm_count", '{ value = 132.5, source = "x" }'), "spec.sm_count"),
    "efficiency > 1": (_set_entry("tensor", '{ value = 1.5, source = "x" }'), "efficiency.tensor"),
    "price without date": (
        _set_entry("usd_per_gpu_hour", '{ value = 2.0, source = "x" }'), "price.date"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_profile_names_file_and_key(case: str, tmp_path: Path) -> None:
    breaks, key = BROKEN[case]
    text = H100_TOML.read_text()
    broken = breaks(text)
    assert broken != text, "the transform did not change the profile"
    path = tmp_path / "broken-gpu.toml"
    path.write_text(broken)
    with pytest.raises(InputError) as info:
        load_profile_file(path)
    assert "broken-gpu.toml" in str(info.value)
    assert key in str(info.value)
    with pytest.raises(InputError):  # a path is accepted wherever a name is
        load_gpu(str(path))


def test_the_model_itself_requires_a_source_for_every_number() -> None:
    data = load_gpu("h100-sxm").model_dump()
    del data["sources"]["spec.sm_count"]
    with pytest.raises(ValidationError, match="spec.sm_count has no source"):
        GPU(**data)


def test_unknown_gpu_suggests_the_closest_name() -> None:
    with pytest.raises(InputError, match=r"did you mean 'h100-sxm'"):
        load_gpu("h100")
    with pytest.raises(InputError, match=r"did you mean 'mi300x'"):
        load_gpu("mi300")
    assert load_gpu("H100-SXM") == load_gpu("h100-sxm")  # names are case-insensitive


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be read"):
        load_profile_file(tmp_path / "nope.toml")


# ---- CLI ----------------------------------------------------------------------------------


def test_memsim_gpus_json_lists_every_profile() -> None:
    from typer.testing import CliRunner

    from memsim.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["gpus", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == BUNDLED
    h100 = next(r for r in rows if r["name"] == "h100-sxm")
    assert h100["bf16_tensor_flop_per_s"] == pytest.approx(989.4e12)
