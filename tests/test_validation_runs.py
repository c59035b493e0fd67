"""The run file and the run loop, on a CPU with fake handlers: each case is on disk the moment
it is measured, failures are recorded and the run goes on, --resume skips what is done."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memsim.hardware import load_gpu
from memsim.validation import records, runner
from memsim.validation.records import RunFile
from memsim.validation.runner import RunContext, SkipCaseError, StickyCudaError
from memsim.validation.suites import Case, attention, cases

GPU = load_gpu("h100-sxm")


def _case(n: int, kind: str = "sdpa") -> Case:
    return Case(kind, {"backend": "flash", **attention(seq_len=n)})


def _ok(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    n = params["seq_len"]
    return {"prediction": {"analytic": {"time_s": 1e-6 * n, "hbm_bytes": 2.0 * n}},
            "measurement": {"time_s": 1.25e-6 * n, "hbm_bytes": 2.0 * n}}


def _new_run(tmp_path: Path) -> RunFile:
    return RunFile.create(tmp_path, "h100-sxm", "quick-test", {"suite": "quick"})


def test_each_case_is_on_disk_when_the_next_one_starts(tmp_path: Path) -> None:
    run = _new_run(tmp_path)
    seen_on_disk: list[int] = []

    def handler(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        seen_on_disk.append(len(run.cases()))
        return _ok(params, ctx)

    result = runner.run_cases([_case(n) for n in (512, 1024, 2048)], RunContext(GPU), run,
                              set(), handlers={"sdpa": handler}, echo=lambda _: None)
    assert seen_on_disk == [0, 1, 2]
    assert result.counts["ok"] == 3
    assert run.path == tmp_path / "h100-sxm" / "quick-test.jsonl"
    header, *lines = run.path.read_text().splitlines()
    assert json.loads(header)["type"] == "header"
    first = json.loads(lines[0])
    assert first["status"] == "ok" and first["group"] == "sdpa/flash"
    assert first["errors"]["analytic"]["time_s"] == pytest.approx(1 / 1.25 - 1)


def test_a_failure_is_recorded_with_its_reason_and_the_run_goes_on(tmp_path: Path) -> None:
    def handler(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        if params["seq_len"] == 1024:
            raise RuntimeError("CUDA out of memory. Tried to allocate 64.00 GiB")
        if params["seq_len"] == 2048:
            raise SkipCaseError("transformers is not installed")
        return _ok(params, ctx)

    run = _new_run(tmp_path)
    result = runner.run_cases([_case(n) for n in (512, 1024, 2048, 4096)], RunContext(GPU), run,
                              set(), handlers={"sdpa": handler}, echo=lambda _: None)
    assert result.counts == {"ok": 2, "failed": 1, "skipped": 1, "already done": 0}
    by_n = {c["params"]["seq_len"]: c for c in run.cases()}
    assert by_n[1024]["status"] == "failed"
    assert by_n[1024]["reason"].startswith("out of memory: RuntimeError: CUDA out of memory")
    assert "Traceback" in by_n[1024]["traceback"]
    assert by_n[2048] | {"elapsed_s": 0} == by_n[2048] | {
        "status": "skipped", "reason": "transformers is not installed", "elapsed_s": 0}
    assert by_n[4096]["status"] == "ok"


def test_a_missing_library_skips_the_case(tmp_path: Path) -> None:
    def handler(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        import memsim_no_such_module  # noqa: F401

        return {}

    record = runner.run_case(_case(512), RunContext(GPU), {"sdpa": handler})
    assert record["status"] == "skipped"
    assert record["reason"] == "memsim_no_such_module is not installed"


def test_resume_skips_done_cases_and_retries_skipped_ones(tmp_path: Path) -> None:
    run = _new_run(tmp_path)
    calls: list[int] = []

    def first(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        if params["seq_len"] == 2048:
            raise SkipCaseError("no ncu")
        if params["seq_len"] == 4096:
            raise ValueError("wrong result")
        return _ok(params, ctx)

    planned = [_case(n) for n in (512, 1024, 2048, 4096)]
    runner.run_cases(planned[:3] + planned[3:], RunContext(GPU), run, set(),
                     handlers={"sdpa": first}, echo=lambda _: None)
    done = run.resume({"suite": "quick"})
    assert done == {planned[0].id, planned[1].id, planned[3].id}  # ok and failed count as done

    def second(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        calls.append(params["seq_len"])
        return _ok(params, ctx)

    result = runner.run_cases(planned, RunContext(GPU), run, done, handlers={"sdpa": second},
                              echo=lambda _: None)
    assert calls == [2048]
    assert result.counts["already done"] == 3
    assert [h.get("resumed", False) for h in run.headers()] == [False, True]
    assert {c["params"]["seq_len"]: c["status"] for c in run.cases()} == {
        512: "ok", 1024: "ok", 2048: "ok", 4096: "failed"}


def test_a_line_cut_off_by_a_crash_is_dropped_and_trimmed(tmp_path: Path) -> None:
    run = _new_run(tmp_path)
    runner.run_cases([_case(512)], RunContext(GPU), run, set(), handlers={"sdpa": _ok},
                     echo=lambda _: None)
    with open(run.path, "a") as fh:
        fh.write('{"type": "case", "id": "sdpa:cut')  # the process died mid-write
    assert len(run.cases()) == 1
    done = run.resume({"suite": "quick"})
    assert done == {_case(512).id}
    assert all(json.loads(line) for line in run.path.read_text().splitlines())


def test_budget_stops_between_cases(tmp_path: Path) -> None:
    def slow(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        time.sleep(0.05)
        return _ok(params, ctx)

    run = _new_run(tmp_path)
    result = runner.run_cases([_case(n) for n in (512, 1024, 2048)], RunContext(GPU), run, set(),
                              handlers={"sdpa": slow}, budget_s=0.01, echo=lambda _: None)
    assert result.counts["ok"] == 1 and result.not_run == 2
    assert "--resume" in result.stopped


def test_a_lost_cuda_context_stops_the_loop_after_recording(tmp_path: Path) -> None:
    def handler(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    run = _new_run(tmp_path)
    with pytest.raises(StickyCudaError):
        runner.run_cases([_case(512), _case(1024)], RunContext(GPU), run, set(),
                         handlers={"sdpa": handler}, echo=lambda _: None)
    (only,) = run.cases()
    assert only["status"] == "failed" and only["sticky"] is True
    assert only["reason"].startswith("launch error (CUDA context lost)")


def test_numpy_too_new_for_numba_cuda_gets_a_hint() -> None:
    reason = runner.describe_failure(AttributeError("module 'numpy' has no attribute 'row_stack'"))
    assert "numpy 2.4" in reason


def test_records_are_plain_json() -> None:
    value = {"a": np.float64(1.5), "b": np.int64(3), "c": float("nan"), "d": np.arange(2),
             "e": (1, math.inf), "f": True, "g": None}
    assert records.plain(value) == {"a": 1.5, "b": 3, "c": None, "d": [0, 1], "e": [1, None],
                                    "f": True, "g": None}


def test_an_existing_run_file_is_never_overwritten(tmp_path: Path) -> None:
    from memsim.errors import InputError

    _new_run(tmp_path)
    with pytest.raises(InputError, match="already has a file"):
        _new_run(tmp_path)


def test_latest_run_and_run_ids(tmp_path: Path) -> None:
    assert records.new_run_id("quick", 0) == "quick-1970-01-01T00-00-00Z"
    for stamp in ("quick-2026-01-01T00-00-00Z", "quick-2026-02-01T00-00-00Z",
                  "full-2026-03-01T00-00-00Z"):
        RunFile.create(tmp_path, "h100-sxm", stamp, {})
    assert records.latest_run(tmp_path, "h100-sxm", "quick").path.name == \
        "quick-2026-02-01T00-00-00Z.jsonl"
    assert records.latest_run(tmp_path, "a100-sxm4-80gb", "quick") is None


def test_suites_have_stable_unique_ids() -> None:
    for suite in ("quick", "full"):
        ids = [c.id for c in cases(suite)]
        assert len(ids) == len(set(ids))
        assert ids == [c.id for c in cases(suite)]
    quick = cases("quick")
    assert [c.kind for c in quick][0] == "ceiling" and quick[-1].kind == "ncu"
    assert {c.kind for c in quick} == {"ceiling", "sdpa", "llama", "kernel", "ncu"}
    assert _case(512).id == ("sdpa:backend=flash,batch=1,dtype=bf16,head_dim=128,heads=32,"
                             "kv_heads=32,kv_len=512,mask=causal,seq_len=512")
    assert len(cases("full")) > len(quick)


def test_validate_end_to_end_with_a_fake_device(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole run on a CPU: device matched, header written, every case recorded once."""
    from memsim.validation import device, environment, ncu
    from tests.test_validation_device import H100_SXM

    monkeypatch.setattr(device, "read_device", lambda index=0: dict(H100_SXM))
    monkeypatch.setattr(environment, "environment", lambda: {"date_utc": "2026-01-01T00:00:00Z"})
    monkeypatch.setattr(ncu, "executable", lambda: None)

    def skip(params: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        raise SkipCaseError("not in this test")

    fake = {kind: _ok if kind == "sdpa" else skip for kind in runner.HANDLERS}
    lines: list[str] = []
    result = runner.validate("quick", tmp_path, "auto", echo=lines.append, handlers=fake)
    assert result.path.parent == tmp_path / "h100-sxm"
    (header,) = RunFile(result.path).headers()
    assert header["profile_match"]["profile"] == "h100-sxm"
    assert header["profile_match"]["mismatches"] == []
    assert header["ncu"]["note"] == "ncu not found"
    recorded = RunFile(result.path).cases()
    assert len(recorded) == header["cases_planned"] == len(cases("quick"))
    assert {c["status"] for c in recorded if c["kind"] == "sdpa"} == {"ok"}
    assert result.loop.counts["ok"] == sum(c.kind == "sdpa" for c in cases("quick"))
    again = runner.validate("quick", tmp_path, "auto", resume=True, echo=lines.append,
                            handlers=fake)
    assert again.path == result.path
    assert again.loop.counts["ok"] == 0  # only the skipped cases were tried again


def test_sim_suite_is_tiny_kernel_cases_only() -> None:
    """`--suite sim`: every Numba kernel family once, at simulator sizes, nothing else."""
    sim = cases("sim")
    assert {c.kind for c in sim} == {"kernel"}
    assert {c.params["algorithm"] for c in sim} == {"flash2", "flash1", "standard_blockskip",
                                                    "dsa", "flash_decode"}
    assert all(c.params["seq_len"] * c.params["kv_len"] <= 64 * 64 for c in sim)
    assert cases("sim", ("sdpa",)) == []


def test_validate_in_the_simulator_needs_a_profile_and_records_no_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NUMBA_ENABLE_CUDASIM=1 with no device: --profile is required; each kernel case is
    launched and validated in the simulator and recorded as skipped, with no time."""
    from memsim.errors import InputError
    from memsim.validation import device, environment, ncu

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setattr(device, "read_device", lambda index=0: {"errors": {"numba": "none"}})
    monkeypatch.setattr(environment, "environment", lambda: {"date_utc": "2026-01-01T00:00:00Z"})
    monkeypatch.setattr(ncu, "executable", lambda: None)
    with pytest.raises(InputError, match="profile"):
        runner.validate("sim", tmp_path, "off", echo=lambda _: None)
    from memsim.validation import suites

    one = [c for c in cases("sim") if c.params["algorithm"] == "flash_decode"]
    monkeypatch.setattr(suites, "cases", lambda suite, kinds: one)
    result = runner.validate("sim", tmp_path, "off", profile="h100-sxm", echo=lambda _: None,
                             kinds=("kernel",))
    (header,) = RunFile(result.path).headers()
    assert header["device"]["name"].startswith("CUDA simulator")
    recorded = RunFile(result.path).cases()
    assert recorded and all(c["status"] == "skipped" for c in recorded)
    assert all("matched the float64 reference" in c["reason"] for c in recorded)
    assert all("time_s" not in (c.get("measurement") or {}) for c in recorded)


def test_run_header_records_where_memsim_and_numba_come_from() -> None:
    """The environment names the files memsim, its kernels and Numba were imported from
    (the H100 compile failure depended on which copy was imported)."""
    from memsim.validation.environment import import_paths

    paths = import_paths()
    assert paths["memsim"].endswith("__init__.py")
    assert paths["memsim.kernels"].endswith("kernels/__init__.py")
    assert set(paths) == {"memsim", "memsim.kernels", "numba", "numba.cuda", "numpy"}
