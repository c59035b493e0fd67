"""Run every ``benchmarks/bench_*.py`` that defines ``run() -> list[dict]``; print one JSON
line per dict. A benchmark that fails prints ``{"name": ..., "error": ...}`` and the others
still run; the exit code is 1 if any failed.

    python -m benchmarks                 # all of them
    python -m benchmarks attention       # only modules whose name contains "attention"
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def bench_modules(filters: list[str]) -> list[str]:
    """Importable names of the benchmark modules, sorted, optionally filtered by substring."""
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [n for n in names if not filters or any(f in n for f in filters)]


def run_one(module_name: str) -> list[dict[str, Any]]:
    """The rows of one benchmark module, or one error row; never raises."""
    try:
        module = importlib.import_module(f"{__package__ or 'benchmarks'}.{module_name}")
        run = getattr(module, "run", None)
        if run is None:
            return [{"name": module_name, "error": "defines no run() -> list[dict]"}]
        rows = list(run())
        if not all(isinstance(r, dict) for r in rows):
            return [{"name": module_name, "error": "run() must return a list of dicts"}]
        return rows
    except Exception as exc:  # a broken benchmark must not stop the others
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return [{"name": module_name, "error": f"{type(exc).__name__}: {exc}",
                 "where": f"{Path(last.filename).name}:{last.lineno}"}]


def main(argv: list[str]) -> int:
    failed = False
    for module_name in bench_modules(argv):
        for row in run_one(module_name):
            failed |= "error" in row
            print(json.dumps(row, default=float), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
