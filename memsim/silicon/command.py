"""The whole ``memsim validate --source aiconfigurator`` run, and its text report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memsim.silicon import run as silicon
from memsim.silicon.classes import MODELS


def calibration_text(cal: dict[str, Any]) -> str:
    """The calibration section: the kernel classes refitted on this run's H100 + H200 rows
    (:func:`memsim.silicon.fit.fit_run`, the fit ``--fit-classes`` writes with)."""
    from memsim.silicon.fit import NO_SCIPY, report_text

    return report_text(list(cal.values())) if cal else f"kernel classes {NO_SCIPY}"


def text(summary: dict[str, Any]) -> str:
    """The summary as text: the GPU runs' table, then row counts and the calibration."""
    from memsim.validation.summary import format_text

    shown = {**summary, "not_measured": summary["not_measured"][:20]}
    lines = [format_text(shown)]
    fitted = ", ".join(summary.get("fitted_gpus", []))
    if fitted:
        lines.append(f"(groups on {fitted}: rows of the GPUs the kernel classes were fitted on, "
                     "in-sample; every other GPU is unseen, never fitted)")
    if len(summary["not_measured"]) > 20:
        lines.append(f"  ... and {len(summary['not_measured']) - 20} more outliers")
    lines += ["", f"{'rows by group':48} {'chosen':>8} {'scored':>8} {'outlier':>8} "
                  f"{'unmapped':>8}"]
    for g, n in summary["rows"].items():
        lines.append(f"{g:48} {n['rows']:>8} {n['scored']:>8} {n['outliers']:>8} "
                     f"{n['not_mapped']:>8}" + (f"  ({n['reasons'][0]})" if n["reasons"] else ""))
    if summary["no_profile"]:
        lines.append("not predicted (memsim has no profile for the system): " + ", ".join(
            f"{s} {n} rows" for s, n in sorted(summary["no_profile"].items())))
    for model, cal in summary["calibration"].items():
        lines += ["", f"[{model}]", calibration_text(cal)]
    return "\n".join(lines)


def validate_source(*, ops: str | None, gpus: str | None, backends: str | None,
                    sample: int, full: bool, seed: int, out: Path | None,
                    echo: Callable[[str], None] = print, extract: Path | None = None
                    ) -> dict[str, Any]:
    """Collect, record, score and calibrate; write ``OUT/summary.json|txt``; return it."""
    from memsim.errors import InputError
    from memsim.silicon import source, tables
    from memsim.validation.records import new_run_id, utc_now

    if sample <= 0:
        raise InputError("sample", sample, "must be a positive number of rows per file")
    backend_set = None
    if backends:
        backend_set = {b.strip() for b in backends.split(",") if b.strip()}
        bad = backend_set - set(source.BACKENDS) - {"nccl"}
        if bad:
            raise InputError("backend", ",".join(sorted(bad)),
                             f"must be among {', '.join(source.BACKENDS)}")
    names, systems = silicon.resolve_ops(ops), silicon.resolve_gpus(gpus)
    rows = tables.read_extract(extract) if extract else None
    version = rows[0].package_version if rows else source.package_version()
    stamp = new_run_id("x").removeprefix("x-")
    out = out or Path("measurements") / "aiconfigurator" / "runs" / stamp
    header = {"suite": "aiconfigurator", "started_utc": utc_now(), "source": {
        "package": source.PACKAGE, "version": version,
        "data": str(extract) if extract else str(source.data_root()),
        "mode": "full" if full else "sample", "sample_per_file": sample, "seed": seed,
        "ops": names, "gpus": sorted(systems) if systems else "all",
        "backends": sorted(backend_set) if backend_set else "all"}}
    result = silicon.collect(names, systems, backend_set, sample, full, seed, echo, rows)
    if not result.chunks:
        raise InputError("selection", f"ops={ops} gpu={gpus} backend={backends}",
                         "matches no measured table with a memsim profile")
    paths = silicon.write(result, out, header, stamp)
    # the headline model's classes refitted on the run's rows (at most `sample` per GPU)
    cal = {MODELS[0]: silicon.calibration(result, sample, seed, echo)}
    summary = silicon.summary(result, out, header, paths, cal)
    summary["elapsed_s"] = result.elapsed_s
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.txt").write_text(text(summary) + "\n")
    (out / "points.json").write_text(json.dumps(silicon.points(result, cal)) + "\n")
    return summary
