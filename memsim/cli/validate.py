"""``memsim validate`` (measure on this machine's GPU, or ``--summary DIR``) and
``memsim calibrate DIR``.

Nothing GPU-related is imported at start-up: the commands import
:mod:`memsim.validation.runner` (which imports torch and numba.cuda only inside the cases)
when they run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from memsim import limits
from memsim.cli import app, user_errors
from memsim.limits import CountParser, float_option, size_option

MAX_RESTARTS = 3
_OUT = typer.Option(None, "--out",
                    help="measurement root: results go to OUT/<profile>/<run-id>.jsonl "
                         "(default: measurements; with --source aiconfigurator, "
                         "measurements/aiconfigurator/runs/<stamp>)")
_SUMMARY = typer.Option(None, "--summary", help="only summarise the runs in this folder or file")
_DIRECTORY = typer.Argument(..., help="measurement folder (or one .jsonl run file)")
_CALIBRATED_OUT = typer.Option(None, "--out", help="calibrated profile path "
                               "(default: DIR/<profile>-calibrated.toml)")
_RESTART_ENV = "MEMSIM_VALIDATE_RESTARTS"


def _print_summary(path: Path, as_json: bool) -> None:
    import json

    from memsim.validation import summary

    result = summary.summarise(path)
    for bad in result.get("bad_lines", []):
        typer.echo(f"warning: {bad['file']}:{bad['line']}: {bad['reason']} (line skipped)",
                   err=True)
    # A folder's summary is written beside its runs, keeping what a --source run added to
    # it (calibration, row counts); one run file (a subset) is only printed, never written
    # over the folder's summary.
    written = None
    if path.is_dir():
        previous = path / "summary.json"
        if previous.is_file():
            try:
                extra = json.loads(previous.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                extra = {}
            if isinstance(extra, dict):
                result.update({k: v for k, v in extra.items() if k not in result})
        written = summary.write(result, path)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(summary.format_text(result))
        if written:
            typer.echo(f"\nwritten: {written[0]}, {written[1]}")


def _restart_resuming() -> None:
    """Start a fresh process that resumes this run (the CUDA context here is lost)."""
    restarts = int(os.environ.get(_RESTART_ENV, "0"))
    if restarts >= MAX_RESTARTS:
        typer.echo(f"error: the CUDA context was lost {restarts + 1} times; stopping. "
                   "Run again with --resume to continue.", err=True)
        raise typer.Exit(1)
    os.environ[_RESTART_ENV] = str(restarts + 1)
    args = [a for a in sys.argv[1:] if a != "--resume"] + ["--resume"]
    typer.echo("the CUDA context was lost; continuing in a fresh process (--resume)", err=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, sys.argv[0], *args])


@app.command("validate")
@user_errors
def validate_cmd(
    suite: str = typer.Option("quick", "--suite", help="quick (< 8 min on one H100) | full | "
                              "sim (tiny kernel cases for the CUDA simulator)"),
    out: Path = _OUT,
    ncu: str = typer.Option("auto", "--ncu", help="Nsight Compute counters: auto | on | off"),
    resume: bool = typer.Option(False, "--resume",
                                help="continue the newest run of this suite, skipping done cases"),
    profile: str = typer.Option(None, "--profile", help="GPU profile to compare with "
                                "(default: the one matching the device)"),
    only: str = typer.Option(None, "--only",
                             help="comma-separated kinds: ceiling,sdpa,llama,kernel,ncu"),
    budget_s: float = float_option(None, "--budget-s",
                                   help="stop starting cases after this many seconds "
                                        "(default: 420 for quick, none for full)"),
    summary_dir: Path = _SUMMARY,
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    source: str = typer.Option(None, "--source", help="aiconfigurator: compare with the "
                               "kernel timings published in aiconfigurator-core (no GPU)"),
    gpu: str = typer.Option(None, "--gpu", help="--source: GPUs (profiles or systems), "
                            "comma-separated (default: all)"),
    backend: str = typer.Option(None, "--backend", help="--source: trtllm,vllm,sglang"),
    ops: str = typer.Option(None, "--ops", help="--source: op classes, comma-separated "
                            "(attention, mla, encoder, or class names; default: all)"),
    sample: int = size_option(200, "--sample", ceiling=limits.MAX_SWEEP_VALUES,
                              help="--source: rows per table file (a fixed, seeded sample)"),
    full: bool = typer.Option(False, "--full", help="--source: score every row"),
    seed: int = typer.Option(0, "--seed", parser=CountParser(2**32 - 1),
                             help="--source: the sample's seed"),
    fit_classes: bool = typer.Option(False, "--fit-classes", help="--source: fit the kernel "
                                     "classes (memsim/ops/kernel_classes.toml) on H100 + "
                                     "H200 rows, --sample rows per GPU and class"),
    classes: str = typer.Option(None, "--classes", help="--fit-classes: class names or "
                                "shell patterns, comma-separated (default: every class "
                                "with its own numbers)"),
    write: bool = typer.Option(False, "--write", help="--fit-classes: write the fitted "
                               "entries into the class file"),
) -> None:
    """Measure ceilings, memsim's kernels, PyTorch SDPA and a small Llama against predictions
    (or, with --source aiconfigurator, compare with published kernel timings)."""
    if summary_dir is not None:
        _print_summary(summary_dir, as_json)
        return
    if fit_classes or classes or write:
        _fit_classes(source, classes, gpu, sample, seed, write, out, as_json)
        return
    if source is not None:
        _validate_source(source, ops, gpu, backend, sample, full, seed, out, as_json)
        return
    out = out if out is not None else Path("measurements")
    from memsim.validation.runner import StickyCudaError, validate

    kinds = tuple(k.strip() for k in only.split(",") if k.strip()) if only else None
    if budget_s is None and suite == "quick":
        budget_s = 420.0
    try:
        result = validate(suite=suite, out=out, ncu_mode=ncu, resume=resume, profile=profile,
                          kinds=kinds, budget_s=budget_s, echo=typer.echo)
    except StickyCudaError:
        _restart_resuming()
        return
    loop = result.loop
    typer.echo("done: " + ", ".join(f"{k} {v}" for k, v in loop.counts.items())
               + (f"; {loop.not_run} not run — {loop.stopped}" if loop.stopped else ""))
    typer.echo("")
    _print_summary(result.path, as_json)


def _validate_source(source: str, ops: str | None, gpu: str | None, backend: str | None,
                     sample: int, full: bool, seed: int, out: Path | None,
                     as_json: bool) -> None:
    import json

    from memsim.errors import InputError

    if source != "aiconfigurator":
        raise InputError("source", source, "must be 'aiconfigurator'")
    from memsim.silicon.command import text, validate_source

    result = validate_source(ops=ops, gpus=gpu, backends=backend, sample=sample, full=full,
                             seed=seed, out=out, echo=lambda m: typer.echo(m, err=as_json))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo("")
        typer.echo(text(result))
        typer.echo(f"\nwritten: {result['path']}/summary.json, summary.txt and "
                   f"{len(result['runs'])} run files")


def _fit_classes(source: str | None, classes: str | None, gpu: str | None, sample: int,
                 seed: int, write: bool, out: Path | None, as_json: bool) -> None:
    import json

    from memsim.errors import InputError

    if source != "aiconfigurator":
        raise InputError("source", source, "must be 'aiconfigurator' with --fit-classes, "
                         "--classes or --write")
    from memsim.silicon import fit
    from memsim.silicon.run import resolve_gpus

    results, written = fit.fit_classes(classes, resolve_gpus(gpu), sample, seed, write,
                                       echo=lambda m: typer.echo(m, err=True))
    doc = {"results": [r.to_dict() for r in results],
           "written": sorted(written) if write else []}
    text = fit.report_text(doc["results"])
    if out is not None:
        from memsim.files import write_text

        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "fit.json", json.dumps(doc, indent=1) + "\n", "out")
        write_text(out / "fit.txt", text + "\n", "out")
    typer.echo(json.dumps(doc) if as_json else text)
    if write:
        typer.echo(f"written: {len(written)} classes into memsim/ops/kernel_classes.toml",
                   err=as_json)


def _calibrate_silicon(cases: list, directory: Path, as_json: bool) -> None:
    """Records of `memsim validate --source aiconfigurator`: the kernel classes refitted on
    their H100/H200 rows (the fit `--fit-classes` writes with), leave-one-GPU-out and
    unseen-GPU errors → calibration.json (the class file is not touched)."""
    import json

    from memsim.files import write_text
    from memsim.silicon.command import calibration_text
    from memsim.silicon.fit import fit_run
    from memsim.silicon.run import chunks_from_records

    chunks = chunks_from_records(cases)
    result = {"analytic": fit_run(chunks, max(len(c.rows) for c in chunks))}
    folder = directory if directory.is_dir() else directory.parent
    write_text(folder / "calibration.json", json.dumps(result, indent=1) + "\n", "directory")
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"[analytic]\n{calibration_text(result['analytic'])}\n")
    typer.echo(f"written: {folder / 'calibration.json'}")


@app.command("calibrate")
@user_errors
def calibrate_cmd(
    directory: Path = _DIRECTORY,
    profile: str = typer.Option(None, "--profile",
                                help="datasheet profile (default: the one the runs used)"),
    out: Path = _CALIBRATED_OUT,
    as_json: bool = typer.Option(False, "--json", help="print the calibration as JSON"),
) -> None:
    """Fit efficiency factors per unit and per kernel class; write a calibrated profile."""
    import json

    from memsim.errors import InputError
    from memsim.files import check_writable, write_text
    from memsim.hardware import load_gpu
    from memsim.validation import calibrate
    from memsim.validation.records import read_cases

    if not directory.exists():
        raise InputError("directory", str(directory), "does not exist")
    folder = directory if directory.is_dir() else directory.parent
    if out is not None:
        check_writable(out, "out")
    check_writable(folder / "calibration.json", "directory")
    bad_lines: list = []
    cases = read_cases(directory, bad_lines)
    for file, line, reason in bad_lines:
        typer.echo(f"warning: {file}:{line}: {reason} (line skipped)", err=True)
    if not cases:
        raise InputError("directory", str(directory), "holds no measured cases (*.jsonl)")
    if any(c.get("kind") == "silicon" for c in cases):
        _calibrate_silicon(cases, directory, as_json)
        return
    names = {c.get("prediction", {}).get("profile") for c in cases if c.get("status") == "ok"}
    names.discard(None)
    if profile is None:
        if len(names) != 1:
            raise InputError("profile", None, f"must be given: the runs used {sorted(names)}")
        profile = names.pop()
    datasheet = load_gpu(profile)
    result = calibrate.calibrate(cases, datasheet, calibrated_from=str(folder))
    path = calibrate.write_profile(result, out or folder / f"{datasheet.name}-calibrated.toml")
    write_text(folder / "calibration.json", json.dumps(result.to_dict(), indent=1) + "\n",
               "directory")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        typer.echo(calibrate.format_text(result))
        typer.echo(f"\nwritten: {path}, {folder / 'calibration.json'}")
