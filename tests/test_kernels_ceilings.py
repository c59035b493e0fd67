"""kernels/ceilings.py without a GPU: its exit status says whether anything was measured."""

from __future__ import annotations

from memsim.kernels.ceilings import BENCHES, exit_code


def test_a_run_where_every_ceiling_failed_exits_non_zero() -> None:
    failed = {name: {"error": "RuntimeError('no GPU')"} for name in BENCHES}
    assert exit_code({"device": {"error": "no GPU"}, **failed}) == 1
    assert exit_code({"device": {}}) == 1                       # nothing ran


def test_one_measured_ceiling_is_a_successful_run() -> None:
    name, *rest = BENCHES
    result = {name: {"time_s": 1e-3}, **{n: {"error": "x"} for n in rest}}
    assert exit_code(result) == 0
