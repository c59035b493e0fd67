"""Helpers of the hardening catalogue and fuzzer: run ``memsim`` in-process with captured
output and a wall-clock limit, and judge the outcome against the contract of issue 12:
exit 0 with finite, non-negative JSON numbers, or exit 2 with exactly one ``error:`` line
naming the field — never a traceback, never a hang."""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
from dataclasses import dataclass
from typing import Any

CASE_TIMEOUT_S = 60  # generous: the suite shares 2 cores; a real hang runs forever


class HangError(Exception):
    """A case ran past :data:`CASE_TIMEOUT_S`."""


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


@contextlib.contextmanager
def time_limit(seconds: int):  # type: ignore[no-untyped-def]
    """Raise :class:`HangError` in this (main) thread after ``seconds``."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise HangError(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(argv: list[str], timeout_s: int = CASE_TIMEOUT_S) -> Outcome:
    """``memsim argv`` in this process; a traceback is captured as ``exception``."""
    from memsim.cli import run

    out, err = io.StringIO(), io.StringIO()
    exception = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with time_limit(timeout_s):
                code = run(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except HangError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a traceback is the defect we look for
            exception, code = exc, -1
    return Outcome(code, out.getvalue(), err.getvalue(), exception)


def numbers(value: Any, path: str = "") -> list[tuple[str, float]]:
    """Every number in a JSON document, with its path."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [(path, value)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in numbers(v, f"{path}[{i}]")]
    return []


# Keys whose value may legitimately be negative: a validation summary's signed bias and
# correlation, and signed relative errors of its worst cases.
SIGNED_KEYS: tuple[str, ...] = (".bias", ".correlation", ".error", ".signed_error")


def json_documents(stdout: str) -> list[Any]:
    """The JSON printed: one document, or JSON Lines."""
    text = stdout.strip()
    if not text:
        return []
    if text[0] not in "[{":  # CSV (sweep --format csv): its numeric cells
        import csv

        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows, f"neither JSON nor CSV: {text[:200]!r}"
        return [[{k: _number(v) for k, v in row.items()} for row in rows]]
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _number(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def check_ok(o: Outcome) -> None:
    """Exit 0; whatever JSON was printed has only finite, non-negative numbers."""
    assert o.exception is None, f"traceback: {o.exception!r}"
    assert o.code == 0, f"exit {o.code}: {o.stderr[-500:]}"
    for doc in json_documents(o.stdout):
        for path, x in numbers(doc):
            assert math.isfinite(x), f"{path}={x} is not finite"
            assert path.endswith(SIGNED_KEYS) or x >= 0, f"{path}={x} is negative"


def check_refused(o: Outcome, field: str | None = None) -> None:
    """Exit 2 with exactly one ``error:`` line on stderr (naming ``field``), nothing on
    stdout, no traceback."""
    assert o.exception is None, f"traceback: {o.exception!r}"
    assert o.code == 2, f"exit {o.code}, stderr {o.stderr[-300:]!r}, stdout {o.stdout[:200]!r}"
    lines = [line for line in o.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, f"{len(lines)} lines: {o.stderr[-500:]!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "=" in lines[0], f"no field=value in {lines[0]!r}"
    if field is not None:
        assert field in lines[0], f"{field!r} not named in {lines[0]!r}"


def check_contract(o: Outcome) -> None:
    """Either outcome of the contract (the fuzzer's assertion)."""
    if o.code == 0:
        check_ok(o)
    else:
        check_refused(o)
