"""The Nsight Compute CSV parser on hand-made samples of both page layouts, and the ncu
command line (clock control off, nothing else touched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memsim.errors import InputError
from memsim.validation import ncu

DATA = Path(__file__).parent / "data" / "ncu"


def test_raw_page_with_program_output_units_row_and_separators() -> None:
    kernels = ncu.parse_csv((DATA / "sdpa_flash_raw.csv").read_text())
    assert [k.id for k in kernels] == [0, 1]
    flash, fill = kernels
    assert flash.name.startswith("void pytorch_flash::flash_fwd_kernel<")
    assert "cutlass::bfloat16_t" in flash.name  # commas inside the quoted name survive
    m = flash.metrics
    assert m["dram__bytes_read.sum"] == pytest.approx(100.73e6)        # Mbyte
    assert m["gpu__time_duration.sum"] == pytest.approx(412.35e-6)     # usecond
    assert m["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"] == 37_748_736  # "37,748,736"
    assert m["lts__t_bytes.sum"] == pytest.approx(1.24e9)              # Gbyte
    assert m["sm__sass_thread_inst_executed_op_fadd_pred_on.sum"] is None  # n/a
    assert fill.metrics["lts__t_bytes.sum"] == pytest.approx(4.19e6)


def test_details_page_one_row_per_metric() -> None:
    kernels = ncu.parse_csv((DATA / "sdpa_math_details.csv").read_text())
    assert [k.id for k in kernels] == [0, 1]
    gemm, softmax = kernels
    assert "sgemm" in gemm.name and "SoftMaxForward" in softmax.name
    assert len(gemm.metrics) == len(ncu.METRICS)
    assert gemm.metrics["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"] == pytest.approx(12.58e6)
    ffma = gemm.metrics["sm__sass_thread_inst_executed_op_ffma_pred_on.sum"]
    assert ffma == pytest.approx(4.29e9)                                # Ginst
    assert softmax.metrics["dram__bytes_write.sum"] == 134_217_728     # byte, separators
    assert softmax.metrics["sm__sass_thread_inst_executed_op_ffma_pred_on.sum"] is None
    assert gemm.units["dram__bytes_read.sum"] == "Mbyte"


def test_quantities_sum_over_kernels_in_memsim_units() -> None:
    q = ncu.quantities(ncu.parse_csv((DATA / "sdpa_math_details.csv").read_text()))
    assert q["kernels"] == 2
    assert q["hbm_read_bytes"] == pytest.approx(33.82e6 + 134.25e6)
    assert q["hbm_write_bytes"] == pytest.approx(134.22e6 + 134_217_728)
    assert q["hbm_bytes"] == pytest.approx(q["hbm_read_bytes"] + q["hbm_write_bytes"])
    assert q["l2_bytes"] == pytest.approx(604.11e6 + 268.44e6)
    assert q["global_read_bytes"] == pytest.approx((12.58e6 + 4_194_304) * ncu.SECTOR_BYTES)
    assert q["global_write_bytes"] == pytest.approx(2 * 4_194_304 * ncu.SECTOR_BYTES)
    assert q["sram_bytes"] == pytest.approx((201_326_592 + 1_146_880) * ncu.WAVEFRONT_BYTES)
    assert q["kernel_time_s"] == pytest.approx(221.44e-6 + 95.07e-6)
    assert q["fp32_flops"] is None  # one kernel's FFMA count is n/a: no partial sum


def test_fp32_flops_count_an_fma_as_two() -> None:
    q = ncu.quantities(ncu.parse_csv((DATA / "sdpa_math_details.csv").read_text())[:1])
    assert q["fp32_flops"] == pytest.approx(2 * 4.29e9 + 0 + 33_554_432)


@pytest.mark.parametrize(("unit", "scale"), [
    ("byte", 1), ("Kbyte", 1e3), ("Mbyte", 1e6), ("Gbyte", 1e9), ("MB", 1e6), ("MiB", 2**20),
    ("nsecond", 1e-9), ("usecond", 1e-6), ("msecond", 1e-3), ("Ksector", 1e3),
    ("Minst", 1e6), ("Gbyte/second", 1e9), ("%", 1), ("", 1),
])
def test_unit_scales(unit: str, scale: float) -> None:
    assert ncu.unit_scale(unit) == pytest.approx(scale)


@pytest.mark.parametrize(("text", "value"), [
    ("1,073,741,824", 1073741824.0), ("0.5", 0.5), ("n/a", None), ("", None), ("N/A", None),
])
def test_parse_value(text: str, value: float | None) -> None:
    assert ncu.parse_value(text) == value


def test_output_without_a_header_names_what_it_saw() -> None:
    with pytest.raises(InputError, match="ERR_NVGPUCTRPERM.*has no CSV header"):
        ncu.parse_csv("==PROF== Connected\n==ERROR== ERR_NVGPUCTRPERM - no permission\n")


def test_command_leaves_the_clocks_alone(tmp_path: Path) -> None:
    cmd = ncu.command("/usr/bin/ncu", {"target": "sdpa"}, tmp_path / "log.csv", launch_count=3)
    assert cmd[cmd.index("--clock-control") + 1] == "none"
    assert cmd[cmd.index("--profile-from-start") + 1] == "off"
    assert cmd[cmd.index("--launch-count") + 1] == "3"
    assert cmd[cmd.index("--metrics") + 1].split(",") == list(ncu.METRICS)
    for forbidden in ("--lock-clocks", "--set-clocks", "-lgc", "--cache-control"):
        assert forbidden not in cmd


def test_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ncu.resolve("off") == (None, "--ncu off")
    monkeypatch.setattr(ncu, "executable", lambda: None)
    assert ncu.resolve("auto") == (None, "ncu not found")
    with pytest.raises(InputError, match="ncu='on' needs Nsight Compute"):
        ncu.resolve("on")
    with pytest.raises(InputError, match="ncu='sometimes' must be one of auto, on, off"):
        ncu.resolve("sometimes")
    monkeypatch.setattr(ncu, "executable", lambda: "/opt/ncu")
    assert ncu.resolve("on") == ("/opt/ncu", None)


def test_ncu_compare_keeps_the_newest_ok_record_of_each_case(tmp_path: Path) -> None:
    """ncu_compare re-predicts each ncu case once: the newest ok record of its id."""
    import json

    from memsim.validation import ncu_compare

    def case(run: str, status: str, value: float) -> str:
        return json.dumps({"type": "case", "id": "ncu:x", "kind": "ncu", "status": status,
                           "params": {}, "measurement": {"hbm_read_bytes": value}}) + "\n"

    header = json.dumps({"type": "header", "record_version": 1}) + "\n"
    (tmp_path / "quick-a.jsonl").write_text(header + case("a", "ok", 1.0))
    (tmp_path / "quick-b.jsonl").write_text(header + case("b", "ok", 2.0))
    (tmp_path / "quick-c.jsonl").write_text(header + case("c", "skipped", 3.0))
    cases = ncu_compare.ncu_cases(tmp_path)
    assert [c["measurement"]["hbm_read_bytes"] for c in cases] == [2.0]


def test_ncu_compare_bad_path_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    from memsim.validation import ncu_compare

    assert ncu_compare.main(["/nonexistent/records"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: path=/nonexistent/records ") and err.count("\n") == 1
