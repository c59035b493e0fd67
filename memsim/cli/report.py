"""``memsim report``: the interactive HTML report (plotly), written as a small offline site.

One page per module of :mod:`memsim.reports`; plotly and the page modules are imported
inside the command, so ``memsim --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from memsim.cli import app, user_errors


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in page summaries → JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


_OUT = typer.Option(Path("report"), "--out", help="folder to write the site into")
_MODELS = typer.Option(None, "--model", help="preset for the context-scaling and VRAM pages; "
                       "repeat for several (default: each page's own selection)")
_MEASUREMENTS = typer.Option(None, "--measurements", help="measurement folder (default: the "
                             "repository's measurements/)")


@app.command("report")
@user_errors
def report(
    out: Path = _OUT,
    gpu: str = typer.Option("h100-sxm", "--gpu", help="GPU profile name (memsim gpus)"),
    model: list[str] = _MODELS,
    measurements: Path = _MEASUREMENTS,
    as_json: bool = typer.Option(False, "--json", help="print the pages as one JSON object"),
) -> None:
    """Write the HTML report: context scaling, bytes per level, roofline, a FlashAttention
    kernel animated, VRAM, cost, validation and checked claims. Works offline."""
    from memsim.errors import InputError
    from memsim.files import check_writable

    if measurements is not None and not measurements.is_dir():
        raise InputError("measurements", str(measurements), "is not a folder")
    check_writable(out, "out", folder=True)
    from memsim.reports.site import build_site

    site = build_site(out, gpu=gpu, models=tuple(model or ()), measurements_dir=measurements)
    pages = [{"slug": p.slug, "title": p.title, "takeaway": p.takeaway,
              "path": str(site.out_dir / f"{p.slug}.html"), "summary": p.summary}
             for p in site.pages]
    if as_json:
        typer.echo(json.dumps({"out": str(site.out_dir), "gpu": gpu, "pages": pages},
                              default=_plain))
        return
    for p in pages:
        typer.echo(f"{p['title']}: {p['takeaway']}")
    typer.echo(f"wrote {len(site.paths)} files to {site.out_dir}/ "
               f"(open {site.out_dir / 'index.html'})")
