"""Speed of `memsim report`: the whole site, built from a fresh process.

``run()`` returns JSON-able dicts; the benchmark runner prints them. Target (issue 7): the
whole report in under 30 s on 2 cores. Nothing here asserts on time.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from benchmarks import _cli

TARGET_SECONDS = 30.0


def run() -> list[dict[str, Any]]:
    """Wall time of `memsim report` in a new process (imports, every page, the files), and
    of the page computations alone in this process."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        (seconds,) = _cli.wall_times_s(["report", "--out", os.path.join(tmp, "cold")], 1)
        out.append({"name": "report_build", "seconds": seconds,
                    "target_seconds": TARGET_SECONDS, "command": "memsim report --out DIR"})

        from memsim.reports.site import build_site

        t0 = time.perf_counter()
        site = build_site(os.path.join(tmp, "warm"))
        out.append({"name": "report_build_in_process", "seconds": time.perf_counter() - t0,
                    "pages": len(site.pages), "files": len(site.paths)})
    return out


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
