"""Per-kernel-class efficiency factors: a calibrated profile carries them, predictions of
that class use them and say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from memsim.attention import efficiency_class, predict
from memsim.errors import InputError
from memsim.hardware import load_gpu, load_profile_file, profiles_dir
from memsim.problem import AttentionProblem, Mask

DATASHEET = (profiles_dir() / "h100-sxm.toml").read_text()
SOURCE = 'source = "fit to test cases"'


def _with_classes(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "h100-sxm-calibrated.toml"
    text = DATASHEET.replace('name = "h100-sxm"', 'name = "h100-sxm-calibrated"')
    text = text.replace('compute_capability = "9.0"',
                        'compute_capability = "9.0"\ncalibrated_from = "tests"')
    path.write_text(text + "\n" + body)
    return path


def test_class_factors_load_and_override_only_their_class(tmp_path: Path) -> None:
    path = _with_classes(tmp_path, f'[class_efficiency."sdpa/flash"]\n'
                                   f'tensor = {{ value = 0.5, {SOURCE} }}\n')
    gpu = load_profile_file(path)
    assert gpu.class_efficiency == {"sdpa/flash": {"tensor": 0.5}}
    assert gpu.for_class("sdpa/flash").efficiency.tensor == 0.5
    assert gpu.for_class("sdpa/math") is gpu
    assert gpu.for_class(None).efficiency.tensor == gpu.efficiency.tensor


@pytest.mark.parametrize(("line", "rule"), [
    (f"warp_magic = {{ value = 0.5, {SOURCE} }}", "not an efficiency unit"),
    (f"tensor = {{ value = 1.5, {SOURCE} }}", "must be in (0, 1]"),
    ("tensor = { value = 0.5 }", "needs a non-empty source"),
])
def test_bad_class_factors_name_the_key(tmp_path: Path, line: str, rule: str) -> None:
    path = _with_classes(tmp_path, f'[class_efficiency."sdpa/flash"]\n{line}\n')
    with pytest.raises(InputError, match="class_efficiency") as err:
        load_profile_file(path)
    assert rule in str(err.value)


def test_predictions_use_and_report_the_class(tmp_path: Path) -> None:
    path = _with_classes(tmp_path, f'[class_efficiency."sdpa/flash"]\n'
                                   f'tensor = {{ value = 0.4, {SOURCE} }}\n')
    calibrated, datasheet = load_profile_file(path), load_gpu("h100-sxm")
    p = AttentionProblem(batch=1, seq_len=16384, heads=32, head_dim=128, mask=Mask())
    fast = predict(p, datasheet, "flash2").to_dict()
    slow = predict(p, calibrated, "flash2").to_dict()
    assert (fast["efficiency_class"], fast["profile"]) == (None, "datasheet")
    assert (slow["efficiency_class"], slow["profile"]) == ("sdpa/flash", "calibrated")
    assert slow["terms_s"]["matmul"] == pytest.approx(
        fast["terms_s"]["matmul"] * datasheet.efficiency.tensor / 0.4)
    # standard attention is another class: untouched
    assert predict(p, calibrated, "standard").to_dict()["efficiency_class"] is None
    assert efficiency_class(calibrated, "flash2", "fp32") is None


def test_committed_calibration_loads_and_fits_its_flash_cases() -> None:
    """measurements/h100-sxm/h100-sxm-calibrated.toml, written by `memsim calibrate` from
    the H100 runs: PyTorch flash SDPA, N = 16384 causal, H = 32, D = 128, measured 6.54 ms
    (measurements/h100-sxm/quick-2026-11-22T20-41-48Z.jsonl); the calibrated prediction
    must land within 25 % (the datasheet one is 10 % under, analytic no-reuse count)."""
    repo = Path(__file__).resolve().parent.parent
    gpu = load_profile_file(repo / "measurements/h100-sxm/h100-sxm-calibrated.toml")
    p = AttentionProblem(batch=1, seq_len=16384, heads=32, head_dim=128, mask=Mask())
    r = predict(p, gpu, "flash2").to_dict()
    assert r["efficiency_class"] == "sdpa/flash"
    assert r["time_s"] == pytest.approx(6.54e-3, rel=0.25)
