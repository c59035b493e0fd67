"""Error statistics and calibration on synthetic measurements whose true efficiency factors
are known: the fit must recover them, leave-one-out must expose noise, the calibrated profile
must load and say it is calibrated, and the CLI must do it all from a run file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.cost import Cost
from memsim.errors import InputError
from memsim.hardware import GPU, load_gpu, profiles_dir
from memsim.validation import calibrate, summary
from memsim.validation.predictions import attention_problem, predict_case
from memsim.validation.records import RunFile, read_cases
from memsim.validation.suites import attention

_register()
RUNNER = CliRunner()
DATASHEET = load_gpu("h100-sxm")
TRUE = {"tensor": 0.42, "exp": 0.6, "hbm_bandwidth": 0.8, "fp32": 0.5}


def _samples(true: GPU, n: int = 12, noise: float = 0.0, seed: int = 0) -> list[calibrate.Sample]:
    """Random costs spanning compute- and memory-bound cases, timed on the ``true`` GPU."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cost = Cost(matmul_flops=10 ** rng.uniform(9, 12), vector_flops=10 ** rng.uniform(8, 11),
                    exp_ops=10 ** rng.uniform(7, 10.5), global_read_bytes=10 ** rng.uniform(7, 10),
                    hbm_read_bytes=10 ** rng.uniform(7, 10.3), launches=1, blocks=1000)
        probe = calibrate.Sample(f"s{i}", "g", cost, "bf16", "tensor", 2, 1.0)
        time_s = calibrate.predicted_s([probe], true)[0] * np.exp(noise * rng.standard_normal())
        out.append(calibrate.Sample(f"s{i}", "g", cost, "bf16", "tensor", 2, float(time_s)))
    return out


def test_the_fit_recovers_known_factors() -> None:
    true = calibrate.with_factors(DATASHEET, TRUE)
    samples = _samples(true)
    factors = calibrate.fit(samples, DATASHEET, list(TRUE))
    for unit in ("tensor", "exp", "hbm_bandwidth", "fp32"):
        assert factors[unit] == pytest.approx(TRUE[unit], rel=1e-3), unit
    assert np.max(np.abs(calibrate.predicted_s(samples, calibrate.with_factors(
        DATASHEET, factors)) / [s.measured_s for s in samples] - 1)) < 1e-4


@settings(max_examples=6, deadline=None)
@given(tensor=st.floats(0.2, 0.95), hbm=st.floats(0.3, 1.0))
def test_the_fit_recovers_any_tensor_and_hbm_factor(tensor: float, hbm: float) -> None:
    true = calibrate.with_factors(DATASHEET, {"tensor": tensor, "hbm_bandwidth": hbm})
    factors = calibrate.fit(_samples(true, n=8), DATASHEET, ["tensor", "hbm_bandwidth"])
    assert factors["tensor"] == pytest.approx(tensor, rel=2e-3)
    assert factors["hbm_bandwidth"] == pytest.approx(hbm, rel=2e-3)


def test_only_binding_units_are_fitted_and_never_as_many_as_cases() -> None:
    def sample(**cost: float) -> calibrate.Sample:
        return calibrate.Sample("s", "g", Cost(**cost, launches=1, blocks=1000), "bf16",
                                "tensor", 2, 1e-3)

    memory = sample(hbm_read_bytes=1e10, matmul_flops=1e6, exp_ops=1e9)
    compute = sample(hbm_read_bytes=1e6, matmul_flops=1e12, exp_ops=1e9)
    assert calibrate.active_units([memory], DATASHEET) == ["hbm_bandwidth"]
    assert calibrate.active_units([memory, compute], DATASHEET) == ["hbm_bandwidth"]
    assert calibrate.active_units([memory, memory, compute], DATASHEET) == [
        "hbm_bandwidth", "tensor"]


def test_leave_one_out_is_no_better_than_the_fit_to_noisy_data() -> None:
    true = calibrate.with_factors(DATASHEET, TRUE)
    result = calibrate.fit_class(_samples(true, n=10, noise=0.1, seed=3), DATASHEET, DATASHEET)
    errors = result["errors"]
    assert errors["class_fit"]["median_abs"] < errors["datasheet"]["median_abs"]
    assert errors["leave_one_out"]["median_abs"] >= errors["class_fit"]["median_abs"]
    assert errors["leave_one_out"]["median_abs"] < 0.3


def _ceiling(bench: str, key: str, value: float) -> dict[str, Any]:
    return {"type": "case", "id": f"ceiling:bench={bench}", "kind": "ceiling",
            "group": f"ceiling/{bench}", "status": "ok", "params": {"bench": bench},
            "prediction": {"profile": "h100-sxm"}, "measurement": {key: value},
            "run_file": "measurements/h100-sxm/quick.jsonl"}


def test_unit_factors_are_ratios_of_measured_ceilings() -> None:
    cases = [_ceiling("d2d_copy", "d2d_copy_bytes_per_s", 2.99e12),
             _ceiling("matmul_bf16", "matmul_bf16_flop_per_s", 744.7e12),
             _ceiling("exp", "exp_per_s", 4.2e12)]   # faster than the datasheet's 3.9e12
    units = calibrate.unit_factors(cases, DATASHEET)
    assert units["hbm_bandwidth"]["value"] == pytest.approx(2.99e12 / 3.35e12)
    assert units["tensor"]["value"] == pytest.approx(744.7e12 / 989.4e12)
    assert units["exp"]["value"] == 1.0 and units["exp"]["clipped"]
    assert set(units) == {"hbm_bandwidth", "tensor", "exp"}


def _measured_case(params: dict[str, Any], true: GPU, algorithm: str) -> dict[str, Any]:
    """A record as the runner writes it, its time measured on the ``true`` GPU."""
    problem = attention_problem(params)
    prediction = predict_case(problem, DATASHEET, algorithm, with_trace=False)
    measured = predict_case(problem, true, algorithm, with_trace=False)["analytic"]["time_s"]
    work = prediction.pop("work")
    return {"type": "case", "id": f"sdpa:{sorted(params.items())}", "kind": "sdpa",
            "group": "sdpa/flash", "status": "ok", "params": params, "prediction": prediction,
            "measurement": {"time_s": measured},
            "errors": {"analytic": {"time_s": prediction["analytic"]["time_s"] / measured - 1}},
            "work": work}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    true = calibrate.with_factors(DATASHEET, {"tensor": 0.35, "hbm_bandwidth": 0.85})
    run = RunFile.create(tmp_path, "h100-sxm", "quick-2026-01-01T00-00-00Z", {"suite": "quick"})
    run.append(_ceiling("d2d_copy", "d2d_copy_bytes_per_s", 0.85 * 3.35e12))
    run.append(_ceiling("matmul_bf16", "matmul_bf16_flop_per_s", 0.75 * 989.4e12))
    for n in (512, 1024, 2048, 4096, 8192, 16384):
        for mask in ("full", "causal"):
            run.append(_measured_case(attention(seq_len=n, mask=mask), true, "flash2"))
    for kv_len in (4096, 16384, 65536):  # decoding: HBM-bound, so it pins hbm_bandwidth
        run.append(_measured_case(attention(batch=8, seq_len=1, kv_len=kv_len, kv_heads=8,
                                            mask="full"), true, "flash_decode"))
    run.append({"type": "case", "id": "sdpa:oom", "kind": "sdpa", "group": "sdpa/math",
                "status": "failed", "params": {}, "reason": "out of memory: ..."})
    return tmp_path / "h100-sxm"


def test_calibrate_recovers_the_class_factor_and_writes_a_profile(run_dir: Path) -> None:
    cal = calibrate.calibrate(read_cases(run_dir), DATASHEET, calibrated_from=str(run_dir))
    assert cal.profile.efficiency.tensor == pytest.approx(0.75)   # from the GEMM ceiling
    flash = cal.classes["sdpa/flash (analytic)"]
    assert flash["factors"]["tensor"] == pytest.approx(0.35, rel=1e-3)  # inside attention
    assert flash["errors"]["leave_one_out"]["median_abs"] < 1e-3
    path = calibrate.write_profile(cal, run_dir / "h100-sxm-calibrated.toml")
    loaded = load_gpu(str(path))
    assert loaded.calibrated_from == str(run_dir)
    assert loaded.spec == DATASHEET.spec
    assert loaded.efficiency.hbm_bandwidth == pytest.approx(0.85)
    assert loaded.efficiency.sram_bandwidth == DATASHEET.efficiency.sram_bandwidth
    assert "measured d2d_copy" in loaded.sources["efficiency.hbm_bandwidth"]
    from memsim.attention import predict

    problem = attention_problem(attention())
    assert predict(problem, loaded).to_dict()["profile"] == "calibrated"
    assert predict(problem, DATASHEET).to_dict()["profile"] == "datasheet"


def test_a_datasheet_profile_is_never_overwritten(run_dir: Path) -> None:
    cal = calibrate.calibrate(read_cases(run_dir), DATASHEET, calibrated_from=str(run_dir))
    target = profiles_dir() / "h100-sxm.toml"
    before = target.read_text()
    with pytest.raises(InputError, match="is a datasheet profile"):
        calibrate.write_profile(cal, target)
    assert target.read_text() == before


def test_cli_calibrate_and_summary(run_dir: Path) -> None:
    r = RUNNER.invoke(app, ["calibrate", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert re.search(r"sdpa/flash \(analytic\) \(n=15\):.* tensor 0\.350", r.stdout)
    assert (run_dir / "h100-sxm-calibrated.toml").exists()
    assert json.loads((run_dir / "calibration.json").read_text())["profile"] == \
        "h100-sxm-calibrated"
    r = RUNNER.invoke(app, ["validate", "--summary", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "sdpa/flash" in r.stdout and "out of memory" in r.stdout
    r = RUNNER.invoke(app, ["validate", "--summary", str(run_dir), "--json"])
    stats = json.loads(r.stdout.splitlines()[0])["stats"]
    time_stats = next(s for s in stats if s["group"] == "sdpa/flash" and s["quantity"] == "time_s")
    assert time_stats["n"] == 15 and time_stats["bias"] < 0  # datasheet factors too optimistic


@pytest.mark.parametrize(("args", "message"), [
    (["validate", "--suite", "huge"], "error: suite='huge' must be one of quick, full"),
    (["validate", "--summary", "/no/such/dir"], "error: path='/no/such/dir' is neither"),
    (["validate", "--ncu", "maybe"], "error: ncu='maybe' must be one of auto, on, off"),
    (["validate", "--only", "sdpa,gpt"], "error: kind='gpt' must be one of"),
])
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    r = RUNNER.invoke(app, args)
    assert r.exit_code == 2
    assert message in r.output


def test_calibrate_without_measurements_exits_2(tmp_path: Path) -> None:
    r = RUNNER.invoke(app, ["calibrate", str(tmp_path)])
    assert r.exit_code == 2
    assert "holds no measured cases" in r.output


def _stat_case(i: int, error: float) -> dict[str, Any]:
    measured = 1.0 + i
    return {"id": f"c{i}", "group": "sdpa/flash", "status": "ok",
            "prediction": {"analytic": {"time_s": measured * (1 + error)}},
            "measurement": {"time_s": measured}, "errors": {"analytic": {"time_s": error}}}


def test_error_statistics_by_hand() -> None:
    cases = [_stat_case(i, e) for i, e in enumerate((0.1, -0.2, 0.3, 0.05, -0.4))]
    cases.append({"id": "x", "group": "sdpa/flash", "status": "failed", "reason": "oom"})
    (s,) = summary.statistics(cases)
    assert (s.group, s.model, s.quantity, s.n) == ("sdpa/flash", "analytic", "time_s", 5)
    assert s.median_abs == pytest.approx(0.2)
    assert s.p90_abs == pytest.approx(0.36)          # between 0.3 and 0.4, linear
    assert s.bias == pytest.approx(0.05)
    assert [w.id for w in s.worst] == ["c4", "c2", "c1"]
    assert s.worst[0].predicted == pytest.approx(5 * 0.6) and s.worst[0].measured == 5
    assert s.correlation == pytest.approx(float(np.corrcoef(
        [1.1, 1.6, 3.9, 4.2, 3.0], [1, 2, 3, 4, 5])[0, 1]))
