"""The ncu ``store`` target end to end without a GPU: its cases in the suites, the ncu
command line with and without ``--cache-control``, memsim's prediction (the trace's own L2
rule on a store stream, hand-computed goldens), the parse of a store kernel's CSV, the
runner's ``_ncu`` path through a fake ``ncu`` executable, and ncu_compare's table."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.hardware import GPU, load_gpu
from memsim.validation import kernels, ncu, ncu_compare, runner, suites, summary
from memsim.validation.predictions import ncu_prediction
from memsim.validation.runner import RunContext
from memsim.validation.suites import Case

DATA = Path(__file__).parent / "data" / "ncu"
H100 = load_gpu("h100-sxm")          # l2_bytes = 52,428,800 B = 50 MiB, 128 B lines
MIB = 2**20


def _store(size_mib: int, cache_control: str = "all") -> dict:
    return {"target": "store", "size_mib": size_mib, "cache_control": cache_control,
            "dtype": "fp32"}


def _small_l2(l2_mib: int) -> GPU:
    """The H100 profile with an L2 of ``l2_mib`` MiB (keeps the property tests fast)."""
    return H100.model_copy(update={"spec": H100.spec.model_copy(
        update={"l2_bytes": l2_mib * MIB})})


# ---- suites -----------------------------------------------------------------------------


def _stores(suite: str) -> list[Case]:
    return [c for c in suites.cases(suite, ("ncu",)) if c.params["target"] == "store"]


def test_quick_suite_has_at_most_six_store_cases_below_and_above_the_l2() -> None:
    quick = _stores("quick")
    assert 0 < len(quick) <= 6
    sizes = {c.params["size_mib"] for c in quick}
    assert min(sizes) * MIB < H100.spec.l2_bytes < max(sizes) * MIB
    assert {c.params["cache_control"] for c in quick} == {"all", "none"}
    assert {c.group for c in quick} == {"ncu/store-all", "ncu/store-none"}


def test_store_cases_come_first_among_the_ncu_cases() -> None:
    """A time budget cuts a suite's last cases; the attention ncu cases have records."""
    ncu_cases = suites.cases("quick", ("ncu",))
    targets = [c.params["target"] for c in ncu_cases]
    assert targets[:len(_stores("quick"))] == ["store"] * len(_stores("quick"))
    assert suites.cases("quick")[-len(ncu_cases):] == ncu_cases


def test_ncu_target_dispatches_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from memsim.validation import ncu_target

    seen: list[dict] = []
    monkeypatch.setattr(ncu_target, "run_store", seen.append)
    assert ncu_target.main([json.dumps(_store(4, "none"))]) == 0
    assert seen == [_store(4, "none")]


def test_full_suite_has_every_size_under_both_cache_controls() -> None:
    full = _stores("full")
    assert sorted({c.params["size_mib"] for c in full}) == [1, 4, 16, 24, 32, 40, 48, 64, 96]
    assert len(full) == len({c.id for c in full}) == 18


def test_the_attention_ncu_cases_keep_their_ids() -> None:
    """Adding the store target must not rename the committed records' cases."""
    ids = [c.id for c in suites.cases("quick", ("ncu",)) if c.params["target"] != "store"]
    assert ids[0] == ("ncu:backend=flash,batch=1,dtype=bf16,head_dim=128,heads=32,"
                      "kv_heads=32,kv_len=4096,mask=causal,seq_len=4096,target=sdpa")
    assert [suites.Case("ncu", c.params).group for c in suites.cases("quick", ("ncu",))
            if c.params["target"] != "store"] == ["ncu/sdpa-flash", "ncu/sdpa-math",
                                                   "ncu/kernel-flash2"]


# ---- the command line -------------------------------------------------------------------


def test_default_cache_control_leaves_the_command_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    plain = ncu.command("/usr/bin/ncu", {"target": "sdpa"}, log)
    assert "--cache-control" not in plain
    store_all = ncu.command("/usr/bin/ncu", _store(4, "all"), log)
    assert store_all[:-1] == plain[:-1]        # only the target's JSON differs


def test_cache_control_none_is_passed_to_ncu_before_the_program(tmp_path: Path) -> None:
    cmd = ncu.command("/usr/bin/ncu", _store(4, "none"), tmp_path / "log.csv", launch_count=1)
    i = cmd.index("--cache-control")
    assert cmd[i + 1] == "none"
    assert i < cmd.index(sys.executable)
    assert cmd[cmd.index("--launch-count") + 1] == "1"


def test_cache_control_none_replays_the_application_not_the_kernel(tmp_path: Path) -> None:
    """Kernel replay saves and restores the kernel's memory between passes, which an
    unflushed L2 would see: ``none`` runs each pass as a fresh process (ncu.py docstring)."""
    log = tmp_path / "log.csv"
    warm = ncu.command("/usr/bin/ncu", _store(4, "none"), log)
    i = warm.index("--replay-mode")
    assert warm[i + 1] == "application"
    assert i < warm.index(sys.executable)
    assert "--replay-mode" not in ncu.command("/usr/bin/ncu", _store(4, "all"), log)


def test_unknown_cache_control_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cache_control='some' must be one of all, none"):
        ncu.command("/usr/bin/ncu", _store(4, "some"), tmp_path / "log.csv")


# ---- the prediction ---------------------------------------------------------------------
# The rule (memsim.trace.l2): byte-capacity LRU, write-back, write-allocate; a store of a
# line not resident makes it resident and dirty without a read; a dirty line evicted is one
# DRAM write. The fill stores X bytes of whole 128 B lines in address order into a C-byte
# L2 (H100: C = 50 MiB).
# - all (cold L2): nothing is evicted while X ≤ C; above, the first X − C bytes are.
#   Inside the kernel: max(0, X − C); dirty at the end: min(X, C).
# - none (the warm-up's identical sweep left its last min(X, C) bytes resident and dirty):
#   X ≤ C: every store hits, 0 inside. X > C: the sweep starts at the lines the warm-up
#   evicted, so every store misses and evicts one dirty line: X inside; min(X, C) after.
# - analytic: every stored byte is a DRAM write, X.


@pytest.mark.parametrize(("size_mib", "cache_control", "inside_mib", "after_mib"), [
    (4, "all", 0, 4), (4, "none", 0, 4), (96, "all", 46, 50), (96, "none", 96, 50)])
def test_store_prediction_on_h100_hand_computed(size_mib: int, cache_control: str,
                                                inside_mib: int, after_mib: int) -> None:
    pred = ncu_prediction(_store(size_mib, cache_control), H100)
    trace, analytic = pred["trace"], pred["analytic"]
    assert trace["hbm_write_bytes"] == inside_mib * MIB
    assert trace["hbm_write_after_bytes"] == after_mib * MIB
    assert trace["hbm_read_bytes"] == 0
    assert analytic["hbm_write_bytes"] == analytic["global_write_bytes"] == size_mib * MIB
    assert trace["global_write_bytes"] == size_mib * MIB
    assert analytic["launches"] == 1
    assert pred["profile"] == "h100-sxm"


def test_store_prediction_with_the_line_l2_below_capacity() -> None:
    """The line model (16 ways, hashed sets) keeps 4 MiB of a 50 MiB L2: no set overflows."""
    pred = ncu_prediction(_store(4, "all"), H100, "lines")["trace"]
    assert pred["hbm_write_bytes"] == 0
    assert pred["hbm_write_after_bytes"] == 4 * MIB


@pytest.mark.parametrize("l2_model", ["tiles", "lines"])
def test_store_prediction_refuses_a_profile_without_an_l2_line(l2_model: str) -> None:
    """One rule for both L2 models: no line size, no stream (no second default)."""
    lineless = H100.model_copy(update={"spec": H100.spec.model_copy(
        update={"l2_line_bytes": None})})
    with pytest.raises(InputError, match="needs l2_line_bytes"):
        ncu_prediction(_store(4, "all"), lineless, l2_model)


def test_store_time_is_the_roofline_of_each_models_own_bytes() -> None:
    """96 MiB cold on H100: the closed form writes 96 MiB to DRAM, the trace 46 MiB, both
    move 96 MiB through L2; 4 MiB cold: the trace writes nothing, its time is L2's."""
    hbm, l2 = H100.achievable_hbm_bytes_per_s, H100.achievable_l2_bytes_per_s
    big = ncu_prediction(_store(96, "all"), H100)
    assert big["analytic"]["time_s"] == pytest.approx(max(96 * MIB / hbm, 96 * MIB / l2))
    assert big["trace"]["time_s"] == pytest.approx(max(46 * MIB / hbm, 96 * MIB / l2))
    small = ncu_prediction(_store(4, "all"), H100)["trace"]
    assert small["time_s"] == pytest.approx(4 * MIB / l2)


@given(size_mib=st.integers(1, 6), l2_mib=st.integers(1, 4))
def test_store_prediction_laws(size_mib: int, l2_mib: int) -> None:
    """Every stored byte is written back once, in the kernel or after it (cold L2); a
    warm, dirty L2 never writes less inside the kernel than a cold one."""
    gpu = _small_l2(l2_mib)
    cold = ncu_prediction(_store(size_mib, "all"), gpu)["trace"]
    warm = ncu_prediction(_store(size_mib, "none"), gpu)["trace"]
    assert cold["hbm_write_bytes"] + cold["hbm_write_after_bytes"] == size_mib * MIB
    assert warm["hbm_write_bytes"] >= cold["hbm_write_bytes"]
    assert warm["hbm_write_after_bytes"] == cold["hbm_write_after_bytes"]
    assert (cold["hbm_write_bytes"] == 0) == (size_mib <= l2_mib)


def _sweeps_line_by_line(size_mib: int, cache_control: str, gpu: GPU,
                         l2_model: str) -> tuple[float, float]:
    """The reference for predictions._store_sweeps: the trace's two caches fed the store
    stream one whole line at a time (stats reset before the profiled sweep)."""
    import numpy as np

    from memsim.trace import l2, l2_lines

    line_bytes = int(gpu.spec.l2_line_bytes)
    n_lines = size_mib * MIB // line_bytes
    capacity = gpu.l2_dram_capacity_bytes
    stats = np.zeros((1, 4))
    if l2_model == "lines":
        cache = l2_lines.state_for_gpu(gpu, capacity)
        every = (1 << (line_bytes // int(gpu.spec.l2_sector_bytes))) - 1
        def store(line: int) -> None:
            l2_lines.line_access(cache, line, every, True, 0, stats)
        flush = l2_lines.flush
    else:
        cache = l2.new_state(capacity, int(capacity // line_bytes) + 1, key_limit=n_lines)
        def store(line: int) -> None:
            l2.access(cache, line, float(line_bytes), 0, True, stats)
        flush = l2.flush
    for _ in range(2 if cache_control == "none" else 1):
        stats[:] = 0.0
        for line in range(n_lines):
            store(line)
    return float(stats[0, l2.HBM_WRITE]), float(flush(cache, stats))


@pytest.mark.parametrize("l2_model", ["tiles", "lines"])
@pytest.mark.parametrize("cache_control", ["all", "none"])
@pytest.mark.parametrize(("size_mib", "l2_mib", "ways"), [
    (1, 2, 16), (2, 2, 16), (3, 2, 16), (5, 2, 4), (2, 1, 1), (6, 4, 16)])
def test_store_sweeps_equal_the_caches_fed_line_by_line(
        size_mib: int, l2_mib: int, ways: int, cache_control: str, l2_model: str) -> None:
    """The closed form (per LRU group) against both caches run on the stream itself, below,
    at and above the capacity, from 1 way (direct-mapped) to 16, hashed and modulo sets."""
    from memsim.validation.predictions import _store_sweeps

    for set_hash in ("hashed", "modulo"):
        gpu = H100.model_copy(update={"spec": H100.spec.model_copy(update={
            "l2_bytes": l2_mib * MIB, "l2_ways": ways, "l2_set_hash": set_hash})})
        params = _store(size_mib, cache_control)
        assert _store_sweeps(params, gpu, l2_model) == _sweeps_line_by_line(
            size_mib, cache_control, gpu, l2_model)


def test_lru_sweeps_refuses_a_sweep_count_its_rule_does_not_cover() -> None:
    """The closed form states the first and the second sweep only."""
    import numpy as np

    from memsim.validation.predictions import _lru_sweeps

    assert _lru_sweeps(np.array([3, 1]), 2, 2) == (3, 3)
    with pytest.raises(ValueError, match="sweeps"):
        _lru_sweeps(np.array([3]), 2, 3)


def test_set_index_is_the_line_caches_own() -> None:
    """l2_lines.set_index over an array gives the set the hot loop's line_access fills:
    a direct-mapped cache (one way) fed each line once holds it in that set's slot."""
    import numpy as np

    from memsim.trace import l2_lines

    for hashed in (True, False):
        cache = l2_lines.new_state(64 * 128, 128, 32, 1, hashed)
        sets = int(cache[1][l2_lines.M_SETS])
        lines = np.arange(0, 40 * sets, 7, dtype=np.int64)
        index = l2_lines.set_index(lines, cache[1])
        assert index.min() >= 0 and index.max() < sets
        for line, s in zip(lines, index, strict=True):
            l2_lines.line_access(cache, int(line), 0xF, False, 0, np.zeros((1, 4)))
            assert cache[0][s] & ((1 << l2_lines.VALID_SHIFT) - 1) == line


# ---- the CSV and the runner -------------------------------------------------------------


def test_store_kernel_csv_through_quantities() -> None:
    q = ncu.quantities(ncu.parse_csv((DATA / "store_fill_raw.csv").read_text()))
    assert q["kernels"] == 1
    assert "FillFunctor<float>" in q["kernel_names"][0]
    assert q["hbm_write_bytes"] == pytest.approx(61.87e6)          # Mbyte
    assert q["hbm_read_bytes"] == pytest.approx(12.29e3)           # Kbyte
    assert q["global_write_bytes"] == 96 * MIB                     # 3,145,728 sectors × 32 B
    assert q["global_read_bytes"] == 0
    assert q["l2_bytes"] == pytest.approx(100.66e6)


def _fake_ncu(tmp_path: Path) -> Path:
    """An ``ncu`` that records its arguments and writes the store sample as its log."""
    script = tmp_path / "ncu"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, shutil, sys\n"
        "args = sys.argv[1:]\n"
        f"json.dump(args, open({str(tmp_path / 'argv.json')!r}, 'w'))\n"
        f"shutil.copy({str(DATA / 'store_fill_raw.csv')!r}, "
        "args[args.index('--log-file') + 1])\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.mark.skipif(os.name != "posix", reason="the fake ncu is a script with a shebang")
def test_runner_ncu_store_case_through_a_fake_ncu(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_bench() -> None:
        raise kernels.BenchUnavailableError("no numba bench here")

    monkeypatch.setattr(kernels, "_bench", no_bench)   # the store target does not need it
    case = Case("ncu", _store(4, "none"))     # the sample's counters are 96 MiB's
    ctx = RunContext(H100, ncu_path=str(_fake_ncu(tmp_path)))
    record = runner.run_case(case, ctx)
    assert record["status"] == "ok", record.get("reason")
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[argv.index("--cache-control") + 1] == "none"
    assert argv[argv.index("--launch-count") + 1] == "1"
    assert json.loads(argv[-1]) == {**case.params, "profile": "h100-sxm"}
    assert record["measurement"]["hbm_write_bytes"] == pytest.approx(61.87e6)
    assert record["prediction"]["trace"]["hbm_write_bytes"] == 0     # 4 MiB stay in L2
    assert record["errors"]["analytic"]["hbm_write_bytes"] == pytest.approx(
        4 * MIB / 61.87e6 - 1)
    assert record["group"] == "ncu/store-none"
    stats = {(q.model, q.quantity) for q in summary.statistics([record])}
    assert {("analytic", "hbm_write_bytes"), ("trace", "global_write_bytes")} <= stats


def test_ncu_compare_labels_store_rows_with_their_size(tmp_path: Path) -> None:
    q = ncu.quantities(ncu.parse_csv((DATA / "store_fill_raw.csv").read_text()))
    case = Case("ncu", _store(4, "all"))
    record = {"type": "case", "id": case.id, "kind": "ncu", "group": case.group,
              "status": "ok", "params": case.params, "measurement": q,
              "prediction": {"profile": "h100-sxm"}}
    (tmp_path / "run.jsonl").write_text(json.dumps({"type": "header", "suite": "quick"})
                                        + "\n" + json.dumps(record) + "\n")
    rows = ncu_compare.compare(tmp_path)
    assert {r["quantity"] for r in rows} == {"dram read", "dram write", "global write"}
    trace = [r for r in rows if r["model"] == "trace" and r["quantity"] == "dram write"]
    assert trace[0]["now"] == 0 and trace[0]["now_error"] == -1.0
    assert "ncu/store-all 4M" in ncu_compare.format_text(rows)


def test_run_store_fills_once_inside_the_profiled_range(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """run_store on a stand-in torch that logs calls: the warm-up fill outside the
    cudaProfilerStart/Stop bracket, exactly one fill of size_mib MiB inside it."""
    import types

    from memsim.validation import ncu_target

    log: list[str] = []

    class Buffer:
        def __init__(self, numel: int) -> None:
            log.append(f"empty {numel}")
            self.value = 0.0

        def fill_(self, value: float) -> None:
            log.append("fill")
            self.value = value

        def __getitem__(self, index: int) -> float:
            return self.value

    fake = types.SimpleNamespace(
        float32="fp32", bfloat16="bf16",
        finfo=lambda dtype: types.SimpleNamespace(bits={"fp32": 32, "bf16": 16}[dtype]),
        empty=lambda numel, dtype, device: Buffer(numel),
        cuda=types.SimpleNamespace(
            synchronize=lambda: log.append("sync"),
            profiler=types.SimpleNamespace(start=lambda: log.append("start"),
                                           stop=lambda: log.append("stop"))))
    monkeypatch.setitem(sys.modules, "torch", fake)
    ncu_target.run_store(_store(4, "none"))
    assert log == [f"empty {4 * MIB // 4}", "fill", "sync", "start", "fill", "sync", "stop"]
    log.clear()
    ncu_target.run_store({**_store(4), "dtype": "bf16"})
    assert log[0] == f"empty {4 * MIB // 2}"
