"""`memsim validate --source aiconfigurator` on the committed extract: records in the GPU runs'
format, the summary by op class / backend / GPU with size buckets, and a calibration that
never fits a GPU it reports as unseen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.silicon.classes import CLASSES
from memsim.silicon.command import text, validate_source
from memsim.validation import calibrate
from memsim.validation.records import read_cases
from memsim.validation.summary import SIZE_BUCKETS, size_bucket, summarise

EXTRACT = Path(__file__).parent / "data" / "aiconfigurator" / "extract.json"
_register()


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("silicon")
    summary = validate_source(ops=None, gpus=None, backends=None, sample=200, full=False,
                              seed=0, out=out, echo=lambda _: None, extract=EXTRACT)
    return summary, out


def test_records_hold_the_database_latency_and_its_provenance(result) -> None:
    summary, out = result
    cases = read_cases(out)
    assert len(cases) == sum(n["rows"] for n in summary["rows"].values())
    doc = json.loads(EXTRACT.read_text())
    unit = {op.table: op.latency_to_s for op in CLASSES.values()}  # ms; µs for moe_a2a
    latency = {(f["file"], r): lat * unit[f["file"].split("/")[-1].removesuffix(".parquet")]
               for f in doc["files"]
               for r, lat in zip(f["rows"], f["columns"]["latency"], strict=True)}
    for c in cases:
        prov = c["measurement"]["provenance"]
        assert prov["version"] == doc["package_version"]
        assert c["measurement"]["time_s"] == pytest.approx(latency[(prov["file"],
                                                                   prov["row"])])
        assert c["id"] == f"aic:{prov['file']}#{prov['row']}"
        if c["status"] == "ok":
            pred = c["prediction"]["analytic"]["time_s"]
            assert c["errors"]["analytic"]["time_s"] == pytest.approx(
                pred / c["measurement"]["time_s"] - 1)
            assert "time_s" not in {k for k in c["measurement"] if k != "time_s"}


def test_summary_groups_by_class_backend_gpu_with_size_buckets(result) -> None:
    summary, _ = result
    groups = {s["group"] for s in summary["stats"]}
    assert "generation_attention/trtllm/h100-sxm" in groups
    assert "context_mla/vllm/h200" not in groups          # vLLM ships module-level MLA only
    for s in summary["stats"]:
        assert sum(b["n"] for b in s["by_size"]) == s["n"]
        assert [b["bucket"] for b in s["by_size"]] == [b[0] for b in SIZE_BUCKETS]
        assert 0 <= s["median_abs"] <= s["p90_abs"]
    assert summary["no_profile"].get("gb300", 0) > 0       # listed, not predicted
    assert summary["cases"]["outlier"] >= 1
    assert "by measured time" in text(summary)


def test_summary_of_the_records_agrees_with_the_run(result) -> None:
    """`memsim validate --summary DIR` on the records gives the run's own statistics."""
    summary, out = result
    again = {(s["group"], s["model"]): s for s in summarise(out)["stats"]}
    for s in summary["stats"]:
        r = again[(s["group"], s["model"])]
        assert (r["n"], r["median_abs"], r["bias"]) == pytest.approx(
            (s["n"], s["median_abs"], s["bias"]))
        assert r["by_size"] == s["by_size"]


def test_calibration_fits_h100_and_h200_only_and_reports_the_rest_as_unseen(result) -> None:
    summary, _ = result
    rows = summary["rows"]
    for key, c in summary["calibration"]["analytic"].items():
        op, backend = key.split("/")
        fitted = sum(n["scored"] for g, n in rows.items()
                     if g.startswith(f"{op}/{backend}/") and g.rsplit("/", 1)[1]
                     in ("h100-sxm", "h200"))
        assert c.get("n_fit", 0) == fitted
        assert not {"h100-sxm", "h200"} & set(c.get("unseen", {}))
        if "unseen" in c:
            for gpu, u in c["unseen"].items():
                assert u["calibrated"]["n"] == rows[f"{op}/{backend}/{gpu}"]["scored"]


def test_size_buckets_edges() -> None:
    t = np.array([10e-6, 50e-6, 100e-6, 0.5e-3, 2e-3, 7e-3])
    assert size_bucket(t).tolist() == [0, 1, 1, 2, 3, 4]


def test_fit_terms_recovers_known_factors_and_floor() -> None:
    """Rows timed by the fit's own model with e_tensor 0.6, e_hbm 0.8 and a 9 µs floor."""
    rng = np.random.default_rng(1)
    n = 400
    terms = {"matmul_s": rng.lognormal(-9, 2, n), "vector_s": np.zeros(n),
             "hbm_s": rng.lognormal(-9, 2, n), "other_memory_s": np.zeros(n)}
    truth = {"tensor": 0.6, "hbm_bandwidth": 0.8}
    measured = calibrate.retime_terms(terms, truth, 9e-6)
    factors, floor = calibrate.fit_terms(terms, measured, {"tensor": 0.9, "hbm_bandwidth": 0.9},
                                         4e-6)
    assert factors == pytest.approx(truth, rel=0.02)
    assert floor == pytest.approx(9e-6, rel=0.02)


def test_bad_ops_exit_2_with_one_line() -> None:
    r = CliRunner().invoke(app, ["validate", "--source", "aiconfigurator", "--ops", "nope"])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ops=") and "must be among" in r.stderr
    assert "Traceback" not in r.output


def test_unknown_source_exits_2() -> None:
    r = CliRunner().invoke(app, ["validate", "--source", "elsewhere"])
    assert r.exit_code == 2 and "source=" in r.stderr


def test_report_section_draws_every_group_and_keeps_unseen_gpus_apart(result, tmp_path) -> None:
    """The validation page's aiconfigurator section, from a run's summary and points."""
    import shutil

    from memsim.reports import validation

    summary, out = result
    dated = tmp_path / "aiconfigurator" / "2026-11-30"
    dated.mkdir(parents=True)
    for name in ("summary.json", "points.json"):
        shutil.copy(out / name, dated / name)
    blocks = validation.silicon_blocks(tmp_path)
    figures = [b for b in blocks if hasattr(b, "to_dict")]
    assert len(figures) == 2                       # log-log scatter, error against size
    groups = {s["group"] for s in summary["stats"]}
    names = {t.name.removesuffix(" (unseen)") for t in figures[0].data if t.name}
    assert {f"{g.split('/')[2]} {g.split('/')[1]}" for g in groups} <= names
    assert all(t.marker.symbol.endswith("-open") for t in figures[0].data
               if t.name and "(unseen)" in t.name)
    assert figures[0].layout.xaxis.type == "log" and figures[0].layout.yaxis.type == "log"
    html = " ".join(getattr(b, "markup", "") for b in blocks)
    assert "Unseen GPUs" in html and "b200" in html


def test_report_section_says_when_there_is_no_summary(tmp_path) -> None:
    from memsim.reports import validation

    blocks = validation.silicon_blocks(tmp_path)
    assert len(blocks) == 1 and "make validate-silicon" in blocks[0].markup


def test_memsim_calibrate_on_silicon_records_fits_what_the_run_fitted(result) -> None:
    """`memsim calibrate DIR` on the run's records: the same (class, backend) fits, from the
    roofline terms stored in each record's work."""
    summary, out = result
    r = CliRunner().invoke(app, ["calibrate", str(out), "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)["analytic"]
    for key, c in summary["calibration"]["analytic"].items():
        assert again[key].get("n_fit", 0) == c.get("n_fit", 0)
        if c.get("n_fit"):
            assert again[key]["floor_s"] == pytest.approx(c["floor_s"], rel=1e-6)
            assert set(again[key]["unseen"]) == set(c["unseen"])
    assert (out / "calibration.json").is_file()


def test_summary_flag_on_a_silicon_run_keeps_its_calibration(result) -> None:
    _, out = result
    r = CliRunner().invoke(app, ["validate", "--summary", str(out), "--json"])
    assert r.exit_code == 0, r.output
    kept = json.loads((out / "summary.json").read_text())
    assert "calibration" in kept and "rows" in kept and kept["stats"]
