"""The whole ``memsim validate --source aiconfigurator`` run, and its text report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memsim.silicon import run as silicon
from memsim.silicon.classes import MODELS


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def calibration_text(cal: dict[str, Any]) -> str:
    """Per (class, backend): factors, floor, fitted, held-out and unseen-GPU errors."""
    lines = ["calibration per (op class, backend), fitted on H100 + H200 rows only",
             "('memsim now': memsim's own prediction, before this fit: the datasheet profile "
             "with the kernel classes of memsim.ops.classes)",
             "(|error| median / p90; leave-one-bucket-out holds out one bucket of measured "
             "time, leave-cases-out one fifth of the model shapes; unseen GPUs are never "
             "fitted):"]
    for key, c in cal.items():
        if not c.get("n_fit"):
            lines.append(f"  {key}: {c.get('note', 'nothing fitted')}")
            continue
        fmt = lambda s: f"{_pct(s['median_abs'])} / {_pct(s['p90_abs'])}"  # noqa: E731
        factors = ", ".join(f"{u} {v:.3f}" for u, v in c["factors"].items()) or "none"
        lines.append(f"  {key} (n={c['n_fit']}): {factors}, floor {c['floor_s'] * 1e6:.1f} µs")
        cases = c.get("leave_cases_out")
        lines.append(f"    memsim now {fmt(c['fitted_datasheet'])}   fitted {fmt(c['fitted'])}"
                     f"   leave-one-bucket-out {fmt(c['leave_one_bucket_out'])}"
                     + (f"   leave-cases-out {fmt(cases)}" if cases else ""))
        for gpu, u in c["unseen"].items():
            lines.append(f"    unseen {gpu:14} calibrated {fmt(u['calibrated'])} "
                         f"(bias {_pct(u['calibrated']['bias'])})   memsim now "
                         f"{fmt(u['datasheet'])}  n={u['calibrated']['n']}")
    return "\n".join(lines)


def text(summary: dict[str, Any]) -> str:
    """The summary as text: the GPU runs' table, then row counts and the calibration."""
    from memsim.validation.summary import format_text

    shown = {**summary, "not_measured": summary["not_measured"][:20]}
    lines = [format_text(shown)]
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
    # the sample fits the headline model; --full fits both
    cal = {m: silicon.calibration(result, m) for m in (MODELS if full else MODELS[:1])}
    summary = silicon.summary(result, out, header, paths, cal)
    summary["elapsed_s"] = result.elapsed_s
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.txt").write_text(text(summary) + "\n")
    (out / "points.json").write_text(json.dumps(silicon.points(result, cal)) + "\n")
    return summary
