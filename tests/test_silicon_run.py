"""`memsim validate --source aiconfigurator` on the committed extract: records in the GPU runs'
format, the summary by op class / backend / GPU with size buckets, and a calibration (the
kernel-class fit, memsim.silicon.fit) that never fits a GPU it reports as unseen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.silicon import fit
from memsim.silicon.classes import CLASSES
from memsim.silicon.command import text, validate_source
from memsim.validation.records import read_cases
from memsim.validation.summary import SIZE_BUCKETS, size_bucket, summarise

EXTRACT = Path(__file__).parent / "data" / "aiconfigurator" / "extract.json"
_register()


FIT_GPUS = {"h100-sxm", "h200"}
needs_scipy = pytest.mark.skipif(not fit.have_scipy(), reason="the class fit needs scipy "
                                 "(the silicon extra)")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, list]:
    """The run, and the GPU profiles of the rows each least-squares fit saw."""
    out = tmp_path_factory.mktemp("silicon")
    seen: list[tuple[str, set[str]]] = []
    real = fit.fit_spec_numbers

    def spy(spec, base, data, max_nfev=fit.MAX_NFEV):
        seen.append((spec.name, {d.profile for d in data}))
        return real(spec, base, data, max_nfev)

    mp = pytest.MonkeyPatch()
    mp.setattr(fit, "fit_spec_numbers", spy)
    try:
        summary = validate_source(ops=None, gpus=None, backends=None, sample=200, full=False,
                                  seed=0, out=out, echo=lambda _: None, extract=EXTRACT)
    finally:
        mp.undo()
    return summary, out, seen


def test_records_hold_the_database_latency_and_its_provenance(result) -> None:
    summary, out, _ = result
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
    summary, _, _ = result
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
    summary, out, _ = result
    again = {(s["group"], s["model"]): s for s in summarise(out)["stats"]}
    for s in summary["stats"]:
        r = again[(s["group"], s["model"])]
        assert (r["n"], r["median_abs"], r["bias"]) == pytest.approx(
            (s["n"], s["median_abs"], s["bias"]))
        assert r["by_size"] == s["by_size"]


@needs_scipy
def test_calibration_fits_h100_and_h200_only_and_reports_the_rest_as_unseen(result) -> None:
    """No fit ever sees an unseen GPU's row; each spec's fitted rows are its rows of H100
    and H200; every other GPU is reported apart, as unseen; the summary says which groups
    are in-sample."""
    summary, _, seen = result
    cal = summary["calibration"]["analytic"]
    assert cal and seen
    for name, profiles in seen:
        assert profiles and profiles <= FIT_GPUS, (name, profiles)
    for spec in fit.specs():
        c = cal.get(spec.name)
        if c is None:
            continue
        assert set(c["fitted"]) <= FIT_GPUS and set(c["leave_one_gpu_out"]) <= FIT_GPUS
        assert not FIT_GPUS & set(c["unseen"])
        assert set(c["fitted"]) if not c["note"] else not c["fitted"]
    gpus_of = {s["group"].rsplit("/", 1)[1] for s in summary["stats"]}
    assert gpus_of - FIT_GPUS and gpus_of & FIT_GPUS
    assert summary["fitted_gpus"] == ["h100-sxm", "h200"]
    assert "rows of the GPUs the kernel classes were fitted on, in-sample" in text(summary)


def test_without_scipy_the_summary_says_it_did_not_fit(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fit, "have_scipy", lambda: False)
    summary = validate_source(ops="gemm", gpus="h100-sxm,b200", backends=None, sample=20,
                              full=False, seed=0, out=tmp_path, echo=lambda _: None,
                              extract=EXTRACT)
    assert summary["calibration"] == {"analytic": {}}
    assert "needs scipy" in text(summary)


def test_size_buckets_edges() -> None:
    t = np.array([10e-6, 50e-6, 100e-6, 0.5e-3, 2e-3, 7e-3])
    assert size_bucket(t).tolist() == [0, 1, 1, 2, 3, 4]


def _synthetic_gemm_rows(system: str) -> fit.Rows:
    """GEMM rows spanning the floor, the memory-bound and the compute-bound regimes."""
    m, n, k = (a.ravel() for a in np.meshgrid([1, 16, 256, 2048, 8192], [1024, 8192],
                                              [1024, 8192]))
    cols = {"m": m, "n": n, "k": k, "gemm_dtype": np.full(len(m), "bfloat16", dtype=object),
            "kernel_source": np.full(len(m), "torch_flow", dtype=object)}
    return fit.Rows(system, "gemm", "trtllm", "test", "gemm_perf", "synthetic", "test",
                    np.arange(len(m)), cols)


def test_classes_fitted_together_count_only_those_some_row_is_timed_with() -> None:
    """vLLM's block-scaled fp8 GEMM is three kernel classes fitted together; a class no
    row of the data is timed with is reported unused (its numbers are kept)."""
    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name.startswith("gemm/vllm/fp8_block+")]
    base = {k: kernel_classes()[k] for k in spec.keys}

    def rows(m: int, n: int, k: int) -> fit.GpuRows:
        cols = {"m": np.array([m]), "n": np.array([n]), "k": np.array([k]),
                "gemm_dtype": np.array(["fp8_block"], dtype=object),
                "kernel_source": np.array(["x"], dtype=object)}
        r = fit.Rows("h100_sxm", "gemm", "vllm", "t", "gemm_perf", "synthetic", "t",
                     np.arange(1), cols)
        return fit.GpuRows("h100-sxm", r, np.ones(1))

    assert fit._used_keys(spec, base, [rows(4096, 4096, 4096)]) == ["gemm/vllm/fp8_block"]
    assert fit._used_keys(spec, base, [rows(4096, 4096, 4096), rows(8, 4096, 4096)]) == [
        "gemm/vllm/fp8_block", "gemm/vllm/fp8_block_flashinfer"]


def test_classes_read_only_through_per_row_times_count_as_used() -> None:
    """TensorRT-LLM's DSA decode kernels are fitted together and neither reads its floor:
    the SM90 sparse kernel is timed by its per-row cost, the top-k by its per-row and
    per-logit times. A Hopper decode row past k keys uses both, one within k the sparse
    kernel only (the top-k takes its shortcut)."""
    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name.startswith("dsa/trtllm/sparse_sm90+")]
    assert spec.keys == ("dsa/trtllm/sparse_sm90", "dsa/trtllm/indexer_topk")
    base = {k: kernel_classes()[k] for k in spec.keys}

    def rows(step: int) -> fit.GpuRows:
        cols = {"batch_size": np.array([4]), "isl": np.array([1]), "num_heads": np.array([16]),
                "step": np.array([step]),
                **{c: np.array([v], dtype=object) for c, v in (
                    ("kv_cache_dtype", "bfloat16"), ("gemm_type", "bfloat16"),
                    ("mla_dtype", "bfloat16"), ("model", "deepseek-ai/DeepSeek-V3.2"),
                    ("kernel_source", "default"))}}
        r = fit.Rows("h200_sxm", "sparse_attention", "trtllm", "t",
                     "dsa_generation_module_perf", "synthetic", "t", np.arange(1), cols)
        return fit.GpuRows("h200", r, np.ones(1))

    assert fit._used_keys(spec, base, [rows(8192)]) == list(spec.keys)
    assert fit._used_keys(spec, base, [rows(1024)]) == ["dsa/trtllm/sparse_sm90"]


def _dsa_decode_rows(system: str, profile: str, shapes: list[tuple[int, int, int]]
                     ) -> fit.GpuRows:
    """Synthetic bf16-cache dsa_generation_module/trtllm rows (batch, heads, step) of
    DeepSeek-V3.2 on ``system``, measured 1 s until :func:`fit.predict` times them."""
    batch, heads, step = (np.array(v) for v in zip(*shapes, strict=True))
    n = len(batch)
    cols = {"batch_size": batch, "isl": np.ones(n, dtype=int), "num_heads": heads,
            "step": step,
            **{c: np.array([v] * n, dtype=object) for c, v in (
                ("kv_cache_dtype", "bfloat16"), ("gemm_type", "bfloat16"),
                ("mla_dtype", "bfloat16"), ("model", "deepseek-ai/DeepSeek-V3.2"),
                ("kernel_source", "default"))}}
    r = fit.Rows(system, "sparse_attention", "trtllm", "t", "dsa_generation_module_perf",
                 "synthetic", "t", np.arange(n), cols)
    return fit.GpuRows(profile, r, np.ones(n))


@needs_scipy
def test_dsa_decode_fit_is_its_own_fixed_point() -> None:
    """The joint DSA decode spec, refitted from the numbers it wrote, writes them again
    (at the old TOL the last digit of key_s flipped between reruns). Rows timed by memsim
    with the file's classes, scaled by a fixed ±15 % pattern so the fit must move."""
    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name.startswith("dsa/trtllm/sparse_sm90+")]
    base = {k: kernel_classes()[k] for k in spec.keys}
    shapes = [(b, h, s) for b in (1, 16, 256, 1024) for h in (16, 128)
              for s in (1024, 4096, 32768, 131072)]
    data = []
    for system, profile in (("h100_sxm", "h100-sxm"), ("h200_sxm", "h200")):
        probe = _dsa_decode_rows(system, profile, shapes)
        wobble = 1.0 + 0.15 * np.sin(np.arange(len(shapes)) * 1.7)
        data.append(fit.GpuRows(profile, probe.rows,
                                fit.predict(spec, base, probe) * wobble))
    first, _ = fit.fit_spec_numbers(spec, base, data)
    again, _ = fit.fit_spec_numbers(spec, first, data)
    params = fit._params(spec)
    assert [fit._get(again[k], p) for k, p in params] == \
        [fit._get(first[k], p) for k, p in params]
    assert [fit._get(first[k], p) for k, p in params] != \
        [fit._get(base[k], p) for k, p in params]


def test_unseen_errors_count_only_the_rows_the_fitted_classes_time() -> None:
    """A row of the op class that another kernel class times (vLLM's fp8_block GEMM at 8
    tokens runs FlashInfer's kernel, at 4096 DeepGEMM's) says nothing about the fitted
    class: :func:`fit.timed_rows` keeps the other, and the unseen-GPU errors count it alone."""
    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name.startswith("gemm/vllm/fp8_block+")]
    base = {k: kernel_classes()[k] for k in spec.keys}
    cols = {"m": np.array([4096, 8]), "n": np.array([4096, 4096]),
            "k": np.array([4096, 4096]),
            "gemm_dtype": np.array(["fp8_block"] * 2, dtype=object),
            "kernel_source": np.array(["x"] * 2, dtype=object)}
    r = fit.Rows("h100_sxm", "gemm", "vllm", "t", "gemm_perf", "synthetic", "t", np.arange(2),
                 cols)
    rows = fit.GpuRows("h100-sxm", r, np.ones(2))
    assert fit.timed_rows(spec, base, rows, ["gemm/vllm/fp8_block"]).tolist() == [True, False]
    assert fit.timed_rows(spec, base, rows, ["gemm/vllm/fp8_block_flashinfer"]).tolist() == [
        False, True]
    assert fit._unseen_stats(spec, base, rows, ["gemm/vllm/fp8_block"])["n"] == 1
    assert fit._unseen_stats(spec, base, rows, list(spec.keys))["n"] == 2


def _one_gemm_row(backend: str, dtype: str, m: int, n: int, k: int) -> fit.GpuRows:
    cols = {"m": np.array([m]), "n": np.array([n]), "k": np.array([k]),
            "gemm_dtype": np.array([dtype], dtype=object),
            "kernel_source": np.array(["x"], dtype=object)}
    r = fit.Rows("h100_sxm", "gemm", backend, "t", "gemm_perf", "synthetic", "t",
                 np.arange(1), cols)
    return fit.GpuRows("h100-sxm", r, np.ones(1))


def _gemm_chunk(file: str, shapes: list[tuple[int, int, int]], dtype: str = "bfloat16"):
    """A stand-in for a :class:`memsim.silicon.run.Chunk` of trtllm GEMM rows on H100
    (what :func:`fit.rows_for` reads of one), every row mapped and scored."""
    from types import SimpleNamespace

    m, n, k = (np.array(v) for v in zip(*shapes, strict=True))
    cols = {"m": m, "n": n, "k": k, "gemm_dtype": np.array([dtype] * len(m), dtype=object),
            "kernel_source": np.array(["x"] * len(m), dtype=object)}
    rows = fit.Rows("h100_sxm", "gemm", "trtllm", file, "gemm_perf", file, "t",
                    np.arange(len(m)), cols)
    ones = np.ones(len(m), dtype=bool)
    return SimpleNamespace(op_class="gemm", profile="h100-sxm", rows=rows, mapped=ones,
                           outlier=~ones, measured_s=np.full(len(m), 1e-5))


def test_rows_for_pools_every_table_file_of_a_gpu() -> None:
    """Two table files (versions) of one GPU: the fit's rows are drawn from both, not only
    the last file's; one file's rows are those of that file alone (the sample unchanged)."""
    (spec,) = [s for s in fit.specs() if s.name == "gemm/trtllm/bf16"]
    a = _gemm_chunk("v1", [(64, 4096, 4096), (128, 4096, 4096), (64, 8192, 1024)])
    b = _gemm_chunk("v2", [(256, 2048, 2048), (512, 2048, 2048)])
    pooled = fit.rows_for(spec, [a, b], max_rows=100)["h100-sxm"]
    assert len(pooled.rows) == 5 and len(pooled.measured_s) == 5
    assert sorted(pooled.rows.col("m").tolist()) == [64, 64, 128, 256, 512]
    assert pooled.rows.file == "v1+v2"
    alone = fit.rows_for(spec, [a], max_rows=2)["h100-sxm"]
    assert alone.rows.file == "v1" and len(alone.rows) == 2
    # a sample smaller than the pool draws from it (whole shapes), not from one file
    assert len(fit.rows_for(spec, [a, b], max_rows=4)["h100-sxm"].rows) == 4


def test_pooled_files_must_share_their_columns() -> None:
    from memsim.silicon.tables import concat

    a = _gemm_chunk("v1", [(64, 4096, 4096)]).rows
    b = _gemm_chunk("v2", [(64, 4096, 4096)]).rows
    del b.columns["kernel_source"]
    with pytest.raises(ValueError, match="kernel_source"):
        concat([a, b])
    assert concat([a]) is a


def test_collect_draws_a_fits_sample_among_its_own_rows() -> None:
    """``where`` (a spec's rows): the sample of each file is drawn among those rows alone,
    so a small sample cannot miss the spec's rows (H200's seed-0 moe/trtllm sample held no
    bf16 row); without it, the sample is drawn over the whole file as before."""
    from memsim.silicon.run import collect
    from memsim.silicon.tables import read_extract

    (spec,) = [s for s in fit.specs() if s.name == "gemm/sglang/bf16"]
    rows = read_extract(EXTRACT)
    run = collect(["gemm"], {"h100_sxm"}, {"sglang"}, sample=2, seed=0, echo=lambda _: None,
                  extract=rows, where=spec.select)
    (chunk,) = run.chunks
    assert len(chunk.rows) == 2 and set(chunk.rows.col("gemm_dtype")) == {"bfloat16"}
    everything = collect(["gemm"], {"h100_sxm"}, {"sglang"}, full=True, echo=lambda _: None,
                         extract=rows, where=spec.select)
    assert len(everything.chunks[0].rows) == 3   # every bf16 row of the file
    # the outlier flags are the whole file's, whatever rows are chosen
    whole = collect(["gemm"], {"h100_sxm"}, {"sglang"}, full=True, echo=lambda _: None,
                    extract=rows)
    at = {int(r): bool(o) for r, o in zip(whole.chunks[0].rows.row, whole.chunks[0].outlier,
                                          strict=True)}
    assert [at[int(r)] for r in everything.chunks[0].rows.row] == \
        everything.chunks[0].outlier.tolist()


def test_a_spec_that_needs_more_rows_raises_a_smaller_sample_and_says_so() -> None:
    """XQA QGMMA + qkv_pre need 3000 rows per GPU (fewer leave qkv_pre unidentified):
    ``--sample 2000`` (make fit-classes) is raised to it, a larger one kept; other specs
    take the sample asked for. Its source text names the unused parameters once and the
    rows it was fitted on."""
    (gmma,) = [s for s in fit.specs() if s.name.startswith("attention/decode/trtllm/xqa_gmma")]
    (bf16,) = [s for s in fit.specs() if s.name == "gemm/trtllm/bf16"]
    assert gmma.rows_per_gpu(2000) == 3000 and gmma.rows_per_gpu(5000) == 5000
    assert bf16.rows_per_gpu(2000) == 2000
    stats = {"n": 1, "median_abs": 0.1, "p90_abs": 0.2, "bias": 0.0}
    r = fit.FitResult(gmma, {}, {}, {"h100-sxm": stats}, {}, {}, {}, {},
                      used=list(gmma.keys))
    text = fit.source_text(r, "pkg", 2000, 0)
    assert text.count("unused") == 1
    assert "(unused: attention/decode/trtllm/qkv_pre's hbm, row_s, cta_s, key_s)" in text
    assert "at most 3000 rows per GPU" in text


def test_bound_share_counts_the_rows_whose_time_an_efficiency_sets() -> None:
    """A large square GEMM is tensor-bound, a one-token GEMM streams its weights
    (hbm-bound): each unit binds on the row it sets and on no other; under vLLM's eager
    fp8_block launch a small GEMM sits under the host floor, so no unit binds on it."""
    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name == "gemm/trtllm/bf16"]
    base = {spec.name: kernel_classes()[spec.name]}
    big, tiny = (_one_gemm_row("trtllm", "bfloat16", m, 8192, 8192) for m in (8192, 1))
    share = lambda unit, rows: fit.bound_share(spec, base, rows, spec.name, unit)  # noqa: E731
    assert share("tensor", [big]) == 1.0 and share("hbm", [big]) == 0.0
    assert share("hbm", [tiny]) == 1.0 and share("tensor", [tiny]) == 0.0
    assert share("tensor", [big, tiny]) == 0.5
    (eager,) = [s for s in fit.specs() if s.name.startswith("gemm/vllm/fp8_block+")]
    classes = {k: kernel_classes()[k] for k in eager.keys}
    small = _one_gemm_row("vllm", "fp8_block", 64, 1024, 1024)
    assert all(fit.bound_share(eager, classes, [small], "gemm/vllm/fp8_block", u) == 0.0
               for u in ("tensor", "hbm", "l2"))


@needs_scipy
def test_fit_recovers_known_class_numbers_from_memsims_own_times() -> None:
    """Rows timed by memsim with a known class (floor 9 µs, tensor 0.6, hbm 0.7): the fit,
    started from the file's numbers, finds them again (to the 4 digits it writes)."""
    from dataclasses import replace

    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name == "gemm/trtllm/bf16"]
    spec = replace(spec, free=("floor_s", "tensor", "hbm"))
    base = {spec.name: kernel_classes()[spec.name]}
    truth = fit.with_params(base, [(spec.name, p) for p in spec.free],
                            np.array([9e-6, 0.6, 0.7]))
    data = []
    for system, profile in (("h100_sxm", "h100-sxm"), ("h200_sxm", "h200")):
        rows = _synthetic_gemm_rows(system)
        probe = fit.GpuRows(profile, rows, np.ones(len(rows)))
        data.append(fit.GpuRows(profile, rows, fit.predict(spec, truth, probe)))
    got, _ = fit.fit_spec_numbers(spec, base, data)
    cls = got[spec.name]
    assert cls.floor_s == pytest.approx(9e-6, rel=0.01)
    assert cls.efficiency["tensor"] == pytest.approx(0.6, rel=0.01)
    assert cls.efficiency["hbm"] == pytest.approx(0.7, rel=0.01)
    assert cls.efficiency["l2"] == base[spec.name].efficiency["l2"]   # not free: kept
    assert all(float(f"{v:.4g}") == v for v in (cls.floor_s, *cls.efficiency.values()))


@needs_scipy
def test_fit_classes_writes_only_the_chosen_entries_with_their_errors(tmp_path) -> None:
    """The fit command on the extract: the chosen classes' entries are rewritten (numbers
    and a source naming the rows, the fitted GPUs' and the unseen GPUs' errors), every
    other table stays as it was, and the file reads back."""
    from memsim.ops.classes import DATA_FILE, load_classes, read_tables
    from memsim.silicon.tables import read_extract

    path = tmp_path / "kernel_classes.toml"
    path.write_text(DATA_FILE.read_text())
    before = read_tables(path)
    results, written = fit.fit_classes("gemm/trtllm/*", max_rows=200, write=True,
                                       extract=read_extract(EXTRACT), echo=lambda _: None,
                                       path=path)
    assert {r.spec.name for r in results} == {"gemm/trtllm/bf16", "gemm/trtllm/fp8",
                                              "gemm/trtllm/fp8_block"}
    after = read_tables(path)
    assert set(written) and set(written) <= {r.spec.name for r in results}
    assert {k: v for k, v in after.items() if k not in written} == {
        k: v for k, v in before.items() if k not in written}
    for name in written:
        src = after[name]["source"]
        assert src.startswith("fitted by `memsim validate --source aiconfigurator "
                              "--fit-classes`")
        assert "H100" in src and "H200" in src and "leave-one-GPU-out" in src
        assert src.endswith("unseen none")   # the extract has no trtllm GEMM of another GPU
    assert load_classes(path)["gemm/trtllm"].source == before["gemm/trtllm"]["source"]


def test_fit_classes_bad_input_exits_2_with_one_line() -> None:
    for args in (["--fit-classes", "--classes", "nope/*"], ["--write"]):
        r = CliRunner().invoke(app, ["validate", "--source", "aiconfigurator", *args]
                               if args[0] != "--write" else ["validate", *args])
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error: ") and "Traceback" not in r.output


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

    summary, out, _ = result
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


@needs_scipy
def test_memsim_calibrate_on_silicon_records_fits_what_the_run_fitted(tmp_path) -> None:
    """`memsim calibrate DIR` refits from a run's records (each keeps its row's columns)
    with the same fitter: the same classes, rows and numbers as the run's summary."""
    summary = validate_source(ops="gemm,allreduce", gpus=None, backends="trtllm,vllm",
                              sample=200, full=False, seed=0, out=tmp_path,
                              echo=lambda _: None, extract=EXTRACT)
    r = CliRunner().invoke(app, ["calibrate", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)["analytic"]
    assert set(again) == set(summary["calibration"]["analytic"])
    for key, c in summary["calibration"]["analytic"].items():
        assert {g: s["n"] for g, s in again[key]["fitted"].items()} == {
            g: s["n"] for g, s in c["fitted"].items()}
        assert again[key]["after"] == c["after"]
        assert set(again[key]["unseen"]) == set(c["unseen"])
    assert (tmp_path / "calibration.json").is_file()


def test_summary_flag_on_a_silicon_run_keeps_its_calibration(result) -> None:
    _, out, _ = result
    r = CliRunner().invoke(app, ["validate", "--summary", str(out), "--json"])
    assert r.exit_code == 0, r.output
    kept = json.loads((out / "summary.json").read_text())
    assert "calibration" in kept and "rows" in kept and kept["stats"]


@given(st.floats(1e-7, 1e-2), st.floats(1e-3, 1.0), st.floats(1e-3, 1.0))
def test_host_s_is_fitted_as_a_share_of_the_floor_and_always_loads(
        floor_s: float, share: float, other_share: float) -> None:
    """host_s is fitted as host_share × floor_s, the floor set first whatever the order of
    the parameters: every trial and every written class keeps host_s ≤ floor_s, which
    memsim.ops.classes requires to load the table."""
    import tomllib

    from memsim.ops.classes import KernelClass, _build, class_table, render_tables

    (spec,) = [s for s in fit.specs() if s.name.startswith("a2a/normal/dispatch/vllm")]
    assert "host_share" in spec.free and "host_s" not in spec.free
    key = spec.keys[0]
    base = {key: KernelClass(key, 1e-4, {"l2": 0.2}, "", 1e-8, host_s=other_share * 1e-4)}
    for params in ([(key, "host_share"), (key, "floor_s")],
                   [(key, "floor_s"), (key, "host_share")]):
        values = np.array([share, floor_s] if params[0][1] == "host_share"
                          else [floor_s, share])
        cls = fit.with_params(base, params, values)[key]
        assert cls.floor_s == floor_s
        assert cls.host_s == pytest.approx(share * floor_s) and cls.host_s <= cls.floor_s
        assert fit._get(cls, "host_share") == pytest.approx(share)
        table = class_table(cls)
        read = tomllib.loads(render_tables({key: table}))[key]
        assert _build(key, read).host_s == cls.host_s   # the written table loads


def test_only_source_chosen_classes_fit_host_work() -> None:
    """host_s is freed where the framework's source does host work after the last launch
    (vLLM's normal-mode prepare), nowhere else: not the low-latency combine, not SGLang;
    the collector's rank skew only where the kernel waits for every rank's messages."""
    host = {s.keys[0] for s in fit.specs() if "host_share" in s.free}
    assert host == {"a2a/normal/dispatch/vllm"}
    skew = {s.keys[0] for s in fit.specs() if "skew_s" in s.free}
    assert skew == {"a2a/low_latency/combine/vllm"}
    # the host work before the launch, where the collector's own clone runs under it
    prelaunch = {s.keys[0] for s in fit.specs() if "prelaunch_share" in s.free}
    assert prelaunch == {"a2a/low_latency/combine/vllm"}


def test_a_tied_parameter_is_copied_from_its_class_and_named_in_the_source() -> None:
    """moe/vllm/fp8's hbm is tied to moe/trtllm/fp8's (FitSpec.tied): the file holds them
    equal; :func:`fit.tied_base` copies the tied class's current value (here a moved one)
    and leaves every other number; the source text says it was held, not fitted; a
    parameter both free and tied is refused."""
    from dataclasses import replace

    from memsim.ops.classes import kernel_classes

    (spec,) = [s for s in fit.specs() if s.name == "moe/vllm/fp8"]
    assert spec.tied == {"hbm": "moe/trtllm/fp8"} and "hbm" not in spec.free
    file = kernel_classes()
    assert file["moe/vllm/fp8"].efficiency["hbm"] == file["moe/trtllm/fp8"].efficiency["hbm"]
    assert "held: hbm = moe/trtllm/fp8's" in file["moe/vllm/fp8"].source
    moved = replace(file["moe/trtllm/fp8"],
                    efficiency={**file["moe/trtllm/fp8"].efficiency, "hbm": 0.5})
    base = fit.tied_base(spec, {**file, "moe/trtllm/fp8": moved})
    assert list(base) == ["moe/vllm/fp8"]
    assert base["moe/vllm/fp8"].efficiency["hbm"] == 0.5
    assert replace(base["moe/vllm/fp8"], efficiency={}) == \
        replace(file["moe/vllm/fp8"], efficiency={})
    assert {u: v for u, v in base["moe/vllm/fp8"].efficiency.items() if u != "hbm"} == \
        {u: v for u, v in file["moe/vllm/fp8"].efficiency.items() if u != "hbm"}
    stats = {"n": 1, "median_abs": 0.1, "p90_abs": 0.2, "bias": 0.0}
    r = fit.FitResult(spec, {}, {}, {"h100-sxm": stats}, {}, {}, {}, {}, used=list(spec.keys))
    assert "; held: hbm = moe/trtllm/fp8's)" in fit.source_text(r, "pkg", 2000, 0)
    untied = [s for s in fit.specs() if s.name == "moe/trtllm/fp8"][0]
    assert "held" not in fit.source_text(replace(r, spec=untied), "pkg", 2000, 0)
    with pytest.raises(ValueError, match="both free and tied"):
        fit.tied_base(replace(spec, free=(*spec.free, "hbm")), file)
