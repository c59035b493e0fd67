"""What every report page is made of, and the helpers the page modules share.

A page module exposes ``build(ctx: Context) -> Page``. A :class:`Page` is a title, a
one-sentence takeaway computed from the page's own numbers, and a list of blocks: plotly
figures and small pieces of HTML (paragraphs, tables, "not available yet" notes).
:mod:`memsim.reports.site` turns pages into files; nothing here writes to disk.

Conventions the tests hold every page to: each visible axis title names its unit in
parentheses (``"context length N (tokens)"``), and each trace shows the exact
configuration it was computed for on hover.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsim.algorithms import ALGORITHMS
from memsim.hardware import GPU
from memsim.units import format_bytes, format_seconds

if TYPE_CHECKING:
    import plotly.graph_objects as go

DEFAULT_GPU = "h100-sxm"
TEMPLATE = "plotly_white"
FIGURE_HEIGHT_PX = 520

# One colour and one label per algorithm, the same on every page: the label is the
# algorithm's own (its LABEL), the colours go round this palette in registry order.
PALETTE = ("#d62728", "#ff7f0e", "#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#8c564b")
ALGORITHM_LABELS = {name: module.LABEL for name, module in ALGORITHMS.items()}
ALGORITHM_COLORS = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ALGORITHMS)}
MEASURED_COLOR = "#111111"
# What binds, in words (memsim.roofline's term names).
BOUND_NAMES = {
    "matmul": "tensor-core throughput",
    "vector": "CUDA-core softmax work",
    "exp": "exponentials",
    "hbm": "HBM bandwidth",
    "l2": "L2 bandwidth",
    "sram": "shared-memory bandwidth",
}


@dataclass(frozen=True)
class Context:
    """What a report is built for: one GPU profile, the presets to show, the measurements.

    ``models`` are Hugging Face ids of presets (or config.json paths); empty means each
    page's own default selection.
    """

    gpu: GPU
    models: tuple[str, ...] = ()
    measurements_dir: Path = field(default_factory=lambda: default_measurements_dir())


@dataclass(frozen=True)
class Html:
    """A trusted HTML fragment, produced only by the helpers below (which escape text)."""

    markup: str


Block = Any  # go.Figure | Html (plotly is imported lazily)


@dataclass
class Page:
    """One report page: ``slug`` names the file (``<slug>.html``); ``summary`` holds the
    page's headline numbers as plain JSON-able values (``memsim report --json``)."""

    slug: str
    title: str
    takeaway: str
    blocks: list[Block]
    summary: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> list[go.Figure]:
        return [b for b in self.blocks if not isinstance(b, Html)]


def default_measurements_dir() -> Path:
    """The repository's ``measurements/`` folder in a source or editable checkout, else the
    copy installed with the wheel (``memsim.measurements``)."""
    import memsim

    package = Path(memsim.__file__).resolve().parent
    checkout = package.parent / "measurements"
    return checkout if checkout.is_dir() else package / "measurements"


def display_path(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it (pages show no home
    directories), else as given."""
    root = default_measurements_dir().parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


# ---- HTML fragments ------------------------------------------------------------------


def paragraph(text: str) -> Html:
    return Html(f"<p>{html.escape(text)}</p>")


def config_note(text: str) -> Html:
    """The exact configuration a figure was computed for, under the figure."""
    return Html(f'<p class="config">Configuration: {html.escape(text)}</p>')


def unavailable(what: str, why: str) -> Html:
    """A clear 'not available yet' box in place of a figure whose data does not exist."""
    return Html(f'<div class="unavailable"><strong>{html.escape(what)}: not available yet.'
                f"</strong> {html.escape(why)}</div>")


def table(header: Sequence[str], rows: Iterable[Sequence[object]],
          css_class: str = "") -> Html:
    """An HTML table; cells are escaped text."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    return Html(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def details(summary: str, inner: Html) -> Html:
    """A collapsed section (``<details>``) holding ``inner``; ``summary`` is its label."""
    return Html(f"<details><summary>{html.escape(summary)}</summary>{inner.markup}</details>")


# ---- figures -------------------------------------------------------------------------


def axis_title(quantity: str, unit: str) -> str:
    """``"context length N (tokens)"``: every axis names its unit."""
    return f"{quantity} ({unit})"


def new_figure(title: str, height_px: int = FIGURE_HEIGHT_PX) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    style(fig, title, height_px)
    return fig


def style(fig: go.Figure, title: str, height_px: int = FIGURE_HEIGHT_PX) -> go.Figure:
    """The common look: white template, title, legend below the plot."""
    fig.update_layout(template=TEMPLATE, title={"text": title, "x": 0.01},
                      height=height_px, margin={"l": 70, "r": 30, "t": 70, "b": 60},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15,
                              "xanchor": "left", "x": 0.0},
                      hoverlabel={"align": "left"})
    return fig


def hover(x_name: str, y_name: str, x_format: str = ",", y_format: str = ".4s") -> str:
    """A hover template showing x, y and the configuration carried in ``customdata``."""
    return (f"{x_name} = %{{x:{x_format}}}<br>{y_name} = %{{y:{y_format}}}"
            "<br>%{customdata}<extra>%{fullData.name}</extra>")


# ---- numbers as text -----------------------------------------------------------------


#: The one byte and time formatters (memsim.units), under the names the pages use.
fmt_bytes = format_bytes
fmt_seconds = format_seconds


def fmt_count(n: float) -> str:
    for unit, scale in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:,.0f}"


def fmt_tokens(n: int) -> str:
    """131072 → '128K', 1048576 → '1M' (binary K as in model cards)."""
    if n >= 2**20 and n % 2**20 == 0:
        return f"{n // 2**20}M"
    if n >= 2**10 and n % 2**10 == 0:
        return f"{n // 2**10}K"
    return f"{n:,}"
