"""The site writer: every page module's :class:`Page` → one HTML file, plus an index.

The site works offline: ``plotly.min.js`` is written once beside the pages and every page
loads it with a relative ``<script src>``; nothing is fetched from the network.

    >>> from memsim.reports.site import build_site
    >>> site = build_site("report")            # doctest: +SKIP
    >>> [p.name for p in site.paths]           # doctest: +SKIP
    ['context-scaling.html', ..., 'index.html', 'plotly.min.js']
"""

from __future__ import annotations

import html
import importlib
from dataclasses import dataclass
from pathlib import Path

from memsim.errors import InputError
from memsim.hardware import load_gpu

from .page import DEFAULT_GPU, Context, Html, Page, default_measurements_dir

# Page modules of memsim.reports, in the order of the site's navigation.
PAGE_MODULES = ("context_scaling", "bytes_by_level", "roofline", "flash_kernel", "vram",
                "cost", "serving", "validation", "claims")
PLOTLY_JS = "plotly.min.js"
INDEX = "index.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
nav { background: #1f2937; padding: 0.6em 1em; }
nav a { color: #e5e7eb; margin-right: 1.1em; text-decoration: none; font-size: 0.95em; }
nav a.here { color: #fff; font-weight: 600; border-bottom: 2px solid #60a5fa; }
main { max-width: 1200px; margin: 0 auto; padding: 1em 1.5em 3em; background: #fff; }
p.takeaway { font-size: 1.2em; border-left: 4px solid #2563eb; padding: 0.4em 0.8em;
             background: #eff6ff; }
p.config { color: #555; font-size: 0.9em; margin-top: 0; }
div.unavailable { border: 1px dashed #999; background: #f5f5f5; padding: 1em; margin: 1em 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.6em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
details { margin: 1em 0; }
summary { cursor: pointer; color: #1d4ed8; }
th { background: #f3f4f6; }
.holds { color: #166534; font-weight: 600; }
.only-if { color: #92400e; font-weight: 600; }
.does-not-hold { color: #991b1b; font-weight: 600; }
div.claim { border-top: 1px solid #e5e7eb; margin-top: 1.5em; }
div.claim h3 { margin-bottom: 0.3em; }
footer { color: #777; font-size: 0.85em; margin-top: 2em; }
"""


@dataclass(frozen=True)
class Site:
    """What :func:`build_site` wrote: the pages (index last) and every file's path."""

    out_dir: Path
    pages: list[Page]
    paths: list[Path]


def build_pages(ctx: Context) -> list[Page]:
    """Every page of the report, computed (no files written)."""
    pages = []
    for name in PAGE_MODULES:
        module = importlib.import_module(f"memsim.reports.{name}")
        pages.append(module.build(ctx))
    return pages


def index_page(pages: list[Page], ctx: Context) -> Page:
    """The index: one row per page with its takeaway, and the claims' tally as takeaway."""
    tally = next((p.summary["verdict_counts"] for p in pages
                  if "verdict_counts" in p.summary), None)
    if tally:
        takeaway = (f"Of {sum(tally.values())} common statements about long-context attention "
                    f"that memsim checked on its own numbers, {tally.get('holds', 0)} hold, "
                    f"{tally.get('holds only if', 0)} hold only under a stated condition and "
                    f"{tally.get('does not hold', 0)} do not.")
    else:
        takeaway = f"memsim's report on {ctx.gpu.display_name}: {len(pages)} pages."
    rows = "".join(
        f'<tr><td><a href="{p.slug}.html">{html.escape(p.title)}</a></td>'
        f"<td>{html.escape(p.takeaway)}</td></tr>" for p in pages)
    listing = Html(f"<table><thead><tr><th>page</th><th>takeaway</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    intro = Html(
        "<p>Where the FLOPs, bytes, seconds and dollars of LLM attention go, from memsim's "
        "analytic model, its roofline and the measurement files committed under "
        f"<code>measurements/</code>. GPU profile: <code>{html.escape(ctx.gpu.name)}</code> "
        f"({html.escape(ctx.gpu.display_name)}). Every plot shows its exact configuration "
        "on hover.</p>")
    return Page("index", "memsim report", takeaway, [intro, listing])


def render(page: Page, nav: list[Page], ctx: Context) -> str:
    """One page as a complete HTML document that loads plotly.min.js from its folder."""
    parts = []
    for i, block in enumerate(page.blocks):
        if isinstance(block, Html):
            parts.append(block.markup)
        else:
            parts.append(block.to_html(
                full_html=False, include_plotlyjs=False, auto_play=False,
                div_id=f"{page.slug}-figure-{i}",
                config={"displaylogo": False, "responsive": True}))
    links = "".join(
        f'<a href="{p.slug}.html"{" class=here" if p.slug == page.slug else ""}>'
        f"{html.escape(p.title)}</a>" for p in nav)
    version = _memsim_version()
    script = f'<script src="{PLOTLY_JS}"></script>' if page.figures() else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(page.title)} — memsim</title><style>{_CSS}</style>"
        f"{script}</head>\n<body><nav>{links}</nav><main>"
        f"<h1>{html.escape(page.title)}</h1>"
        f"<p class=\"takeaway\">{html.escape(page.takeaway)}</p>\n"
        + "\n".join(parts)
        + f"<footer>memsim {html.escape(version)} · GPU profile "
        f"{html.escape(ctx.gpu.name)} · built offline from memsim's models and "
        "the committed measurement files</footer></main></body></html>\n")


def _memsim_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memsim")
    except PackageNotFoundError:
        return "(source)"


def write_site(pages: list[Page], out_dir: Path, ctx: Context) -> list[Path]:
    """Write every page, the index and plotly.min.js (once) into ``out_dir``."""
    from plotly.offline import get_plotlyjs

    from memsim.files import write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    index = index_page(pages, ctx)
    nav = [index, *pages]
    paths = []
    for page in [*pages, index]:
        path = out_dir / f"{page.slug}.html"
        write_text(path, render(page, nav, ctx), "out")
        paths.append(path)
    js = out_dir / PLOTLY_JS
    write_text(js, get_plotlyjs(), "out")
    paths.append(js)
    pages.append(index)
    return paths


def build_site(out_dir: Path | str, gpu: str = DEFAULT_GPU, models: tuple[str, ...] = (),
               measurements_dir: Path | str | None = None) -> Site:
    """Build every page for ``gpu`` (and the presets ``models``) and write the site.

    Unknown GPU or model names raise :class:`memsim.errors.InputError` before anything is
    written; so does an ``out_dir`` that exists and is not a directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("out", str(out), "must be a directory (it exists as a file)")
    from memsim.models import load_model

    ids = tuple(load_model(m).name for m in models)  # validates names, resolves aliases
    ctx = Context(load_gpu(gpu), ids, Path(measurements_dir) if measurements_dir
                  else default_measurements_dir())
    pages = build_pages(ctx)
    paths = write_site(pages, out, ctx)
    return Site(out, pages, paths)
