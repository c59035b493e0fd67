"""The measurement file: one validation run is one JSON Lines file.

Layout: ``<root>/<profile>/<run-id>.jsonl`` (one folder per GPU profile, one small file per
run). The first line is a header, every later line one case::

    {"type": "header", "run_id": ..., "suite": ..., "profile": ..., "environment": {...}}
    {"type": "case", "id": "sdpa:backend=flash,...", "kind": "sdpa", "group": "sdpa/flash",
     "status": "ok" | "failed" | "skipped", "reason": ..., "params": {...},
     "prediction": {"analytic": {...}, "trace": {...}}, "measurement": {...},
     "errors": {"analytic": {"time_s": -0.12, ...}, ...}, "work": {...}, ...}

Each line is written, flushed and fsync'ed the moment its case is measured, so an
interrupted run loses nothing already measured. A resumed run appends a new header with
``"resumed": true`` and skips every case already recorded as ``ok`` or ``failed``
(``skipped`` cases, e.g. for a missing library, are tried again). A line cut off by a
crash is dropped when the file is read and trimmed before a resumed run appends.

Numbers are plain JSON: numpy scalars become floats, and NaN or infinity become ``null``
(a JSON file never holds NaN).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from memsim.errors import InputError

RECORD_VERSION = 1
SUFFIX = ".jsonl"
DONE_STATUSES = ("ok", "failed")


def new_run_id(suite: str, now_s: float | None = None) -> str:
    """``<suite>-YYYY-MM-DDTHH-MM-SSZ`` (UTC; no colons, so it is a portable file name)."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime(now_s))
    return f"{suite}-{stamp}"


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays unpacked, NaN/inf → None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy scalar or array
    if tolist is not None:
        return plain(tolist())
    return str(value)


class RunFile:
    """One run's JSON Lines file: a header, then one line per case."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.bad_lines: list[tuple[str, int, str]] = []  # (file, line number, reason)

    # ---- writing -------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path | str, profile: str, run_id: str,
               header: dict[str, Any]) -> RunFile:
        """Start ``<root>/<profile>/<run_id>.jsonl`` with its header line."""
        folder = Path(root) / profile
        folder.mkdir(parents=True, exist_ok=True)
        run = cls(folder / f"{run_id}{SUFFIX}")
        if run.path.exists():
            raise InputError("run_id", run_id, f"already has a file: {run.path}")
        run.append({"type": "header", "record_version": RECORD_VERSION, "run_id": run_id,
                    "profile": profile, **header})
        return run

    def resume(self, header: dict[str, Any]) -> set[str]:
        """Trim a cut-off last line, append a resumed header; return the ids already done."""
        self._trim_partial_line()
        done = self.done_ids()
        self.append({"type": "header", "record_version": RECORD_VERSION, "resumed": True,
                     **header})
        return done

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line and force it to disk."""
        line = json.dumps(plain(record), allow_nan=False, separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def extend(self, records: Iterable[dict[str, Any]], already_plain: bool = False) -> None:
        """Write many records, one line each, and force them to disk once (bulk runs that
        compute rather than measure, e.g. ``memsim validate --source aiconfigurator``).
        ``already_plain``: the records hold only JSON types and finite floats (skips
        :func:`plain`; a NaN still raises)."""
        text = "".join(json.dumps(r if already_plain else plain(r), allow_nan=False,
                                  separators=(",", ":")) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def _trim_partial_line(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    # ---- reading -------------------------------------------------------------------

    def lines(self) -> Iterator[dict[str, Any]]:
        """Every complete, well-formed record in file order. A line that is not one (binary,
        not JSON, not an object, a case without a string ``id``/``status``, a non-numeric
        ``time_s``) is skipped and listed in :attr:`bad_lines` with its number and reason;
        a cut-off last line (an interrupted run) too."""
        self.bad_lines = []
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError("run_file", str(self.path),
                             f"cannot be read: {exc.strerror}") from None
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    self.bad_lines.append((str(self.path), number, "cut off (no newline)"))
                    return
                reason, record = _parse_line(raw)
                if reason:
                    self.bad_lines.append((str(self.path), number, reason))
                else:
                    yield record

    def headers(self) -> list[dict[str, Any]]:
        return [r for r in self.lines() if r.get("type") == "header"]

    def cases(self) -> list[dict[str, Any]]:
        """Case records; a case recorded twice (a retried ``skipped``) keeps its last line."""
        by_id: dict[str, dict[str, Any]] = {}
        for r in self.lines():
            if r.get("type") == "case":
                by_id[r["id"]] = r
        return list(by_id.values())

    def done_ids(self) -> set[str]:
        return {c["id"] for c in self.cases() if c.get("status") in DONE_STATUSES}


def _parse_line(raw: bytes) -> tuple[str, Any]:
    """(reason, None) for a bad line, ('', record) for a good one."""
    if not raw.strip():
        return "empty line", None
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text", None
    except (json.JSONDecodeError, RecursionError):
        return "not valid JSON", None
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object", None
    if record.get("type") == "case":
        for key in ("id", "status"):
            if not isinstance(record.get(key), str):
                return f"case without a string {key!r}", None
        t = record.get("time_s")
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)
                              or not math.isfinite(t) or t < 0):
            return f"time_s={t!r} is not a finite non-negative number", None
    return "", record


def run_files(path: Path | str) -> list[RunFile]:
    """The run files at ``path``: one ``.jsonl`` file, or every one below a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [RunFile(path)]
    if not path.is_dir():
        raise InputError("path", str(path), "is neither a .jsonl run file nor a folder")
    return [RunFile(p) for p in sorted(path.rglob(f"*{SUFFIX}"))]


def read_cases(path: Path | str, bad_lines: list | None = None) -> list[dict[str, Any]]:
    """All case records of every run file at ``path``, each tagged with its ``run_file``.

    Bad lines (see :meth:`RunFile.lines`) are appended to ``bad_lines`` when given.
    """
    out = []
    for run in run_files(path):
        for case in run.cases():
            out.append({**case, "run_file": str(run.path)})
        if bad_lines is not None:
            bad_lines.extend(run.bad_lines)
    return out


def latest_run(root: Path | str, profile: str, suite: str) -> RunFile | None:
    """The newest run file of ``suite`` for ``profile`` under ``root``, or None."""
    folder = Path(root) / profile
    candidates = sorted(folder.glob(f"{suite}-*{SUFFIX}")) if folder.is_dir() else []
    return RunFile(candidates[-1]) if candidates else None


def ok_cases(cases: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases that were measured (status ``ok``)."""
    return [c for c in cases if c.get("status") == "ok"]
