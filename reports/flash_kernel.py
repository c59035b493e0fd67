"""Page: inside a FlashAttention kernel — an animation (plotly frames) of a small
FlashAttention-2 forward pass: the grid of thread blocks on SMs, the Q, K and V tiles each
block holds in SRAM at each step, and the bytes crossing HBM → L2 → SRAM.

The schedule (FA-2 Algorithm 1, one block per (batch, head group, query tile), launch order
query tile fastest as in FA-2's grid) is generated here from memsim's :class:`Tiling` and
the exact tile ranges of :mod:`memsim.geometry`. Assumptions, stated once:

- blocks run in lockstep waves: at step t every resident block does its t-th operation
  (t = 0 load Q; t = 1…n load K/V tile, compute S = QKᵀ, P, O += PV; t = n + 1 write O, L);
  a wave starts when the previous one has finished;
- L2 holds every tile of this small problem (checked against the profile's L2 size): the
  first request of a tile in launch order misses and reads HBM, every later one hits;
- writes (O and the logsumexp L) reach HBM once.

Summed over the schedule, the bytes blocks ask of L2 equal memsim's analytic FA-2 global
bytes exactly (the tests hold it to that); the HBM reads are the compulsory traffic.
Where ``memsim.trace`` exists, its HBM bytes for the same problem are shown beside these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from memsim.attention import predict
from memsim.errors import InputError
from memsim.geometry import geometry_of, tile_terms
from memsim.hardware import GPU
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import Tiling, default_tiling
from memsim.units import ACCUM_BYTES as FP32_BYTES
from memsim.units import DTYPE_BYTES

from . import data
from .page import (
    Context,
    Page,
    axis_title,
    config_note,
    fmt_bytes,
    paragraph,
    style,
    unavailable,
)

SLUG = "flash-kernel"
TITLE = "Inside a FlashAttention kernel"
# Two query heads sharing one K/V head (MQA), 1K causal tokens: 16 blocks, 8 K/V tiles each.
SHAPE = AttentionProblem(batch=1, seq_len=1024, heads=2, kv_heads=1, head_dim=64,
                         dtype="bf16", mask=Mask(causal=True))
BLOCK_Q = BLOCK_KV = 128
# Tile states in the score-matrix panels.
MASKED, PENDING, DONE, NOW = 0, 1, 2, 3
STATE_NAMES = {MASKED: "masked: skipped", PENDING: "not yet computed", DONE: "computed",
               NOW: "in SRAM now"}
STATE_COLORS = ((MASKED, "#f3f4f6"), (PENDING, "#dbeafe"), (DONE, "#1d4ed8"),
                (NOW, "#f97316"))
SLOT_NAMES = ("Q tile", "K tile", "V tile", "O out")


@dataclass(frozen=True)
class Block:
    """One thread block: launch index, SM, wave, head group, batch, query tile and its
    K/V tiles ``first_tile``…``last_tile`` (inclusive)."""

    index: int
    sm: int
    wave: int
    batch: int
    group: int
    q_tile: int
    rows: int
    first_tile: int
    last_tile: int

    @property
    def n_tiles(self) -> int:
        return self.last_tile - self.first_tile + 1


@dataclass(frozen=True)
class Step:
    """What happens at one global step: each active block's operation and the cumulative
    bytes so far."""

    t: int
    ops: dict[int, tuple[str, int]]  # block index → ("Q" | "KV" | "O", tile index)
    hbm_read_bytes: float
    global_read_bytes: float
    global_write_bytes: float
    l2_hits: int
    l2_requests: int


@dataclass(frozen=True)
class Schedule:
    problem: AttentionProblem
    tiling: Tiling
    blocks: list[Block]
    steps: list[Step]
    q_tiles: int
    kv_tiles: int
    start: dict[int, int]  # block index → the step of its first operation


def schedule(problem: AttentionProblem, tiling: Tiling, gpu: GPU) -> Schedule:
    """The FA-2 forward schedule of ``problem`` under ``tiling`` on ``gpu`` (module doc)."""
    p, e = problem, DTYPE_BYTES[problem.dtype]
    hpb, br, bc = tiling.heads_per_block, tiling.block_q, tiling.block_kv
    groups = p.H // hpb
    q_tiles, kv_tiles = -(-p.N // br), -(-p.S // bc)
    a = np.arange(q_tiles, dtype=np.int64)
    lo = p.S - p.N + a * br
    rows = np.minimum(br, p.N - a * br)
    first, last, _n, _keys = tile_terms(lo, lo + rows - 1, np.int64(p.S), np.int64(bc),
                                        geometry_of(p.mask))
    slots = gpu.spec.sm_count * max(tiling.blocks_per_sm(gpu), 1)
    blocks = []
    for i, (b, g, q) in enumerate((b, g, q) for b in range(p.B) for g in range(groups)
                                  for q in range(q_tiles)):
        blocks.append(Block(i, (i % slots) % gpu.spec.sm_count, i // slots, b, g, q,
                            int(rows[q]), int(first[q]), int(last[q])))
    footprint = p.B * (p.N * p.H * (p.D + p.Dv) * e + p.S * p.K * (p.D + p.Dv) * e)
    if footprint > gpu.spec.l2_bytes:
        raise InputError("problem", data.describe_problem(p), f"is too large for the "
                         f"animation: {footprint:.0f} B exceed the {gpu.spec.l2_bytes} B L2")
    # Each wave starts when the previous one has finished (lockstep, see module doc).
    start, t0 = {}, 0
    for w in range(blocks[-1].wave + 1):
        members = [blk for blk in blocks if blk.wave == w]
        for blk in members:
            start[blk.index] = t0
        t0 += max(blk.n_tiles for blk in members) + 2
    seen: set[tuple[str, int, int, int]] = set()
    hbm = glob_r = glob_w = 0.0
    hits = requests = 0
    steps = []
    for t in range(t0):
        ops: dict[int, tuple[str, int]] = {}
        for blk in blocks:
            k = t - start[blk.index]
            kv_head = blk.group * hpb * p.K // p.H
            if k == 0:
                ops[blk.index] = ("Q", blk.q_tile)
                nbytes = blk.rows * hpb * p.D * e
                key = ("Q", blk.batch, blk.group, blk.q_tile)
            elif 1 <= k <= blk.n_tiles:
                j = blk.first_tile + k - 1
                ops[blk.index] = ("KV", j)
                keys = min(bc, p.S - j * bc)
                nbytes = keys * (p.D + (0 if p.mla else p.Dv)) * e
                key = ("KV", blk.batch, kv_head, j)
            elif k == blk.n_tiles + 1:
                ops[blk.index] = ("O", blk.q_tile)
                glob_w += blk.rows * hpb * (p.Dv * e + FP32_BYTES)
                continue
            else:
                continue
            requests += 1
            glob_r += nbytes
            if key in seen:
                hits += 1
            else:
                seen.add(key)
                hbm += nbytes
        steps.append(Step(t, ops, hbm, glob_r, glob_w, hits, requests))
    return Schedule(problem, tiling, blocks, steps, q_tiles, kv_tiles, start)


def _tile_states(s: Schedule, t: int) -> np.ndarray:
    """(heads, q tiles, kv tiles) states at step t: masked, pending, done or in SRAM now."""
    p, hpb = s.problem, s.tiling.heads_per_block
    state = np.full((p.B * p.H, s.q_tiles, s.kv_tiles), MASKED)
    for blk in s.blocks:
        heads = [blk.batch * p.H + blk.group * hpb + i for i in range(hpb)]
        for j in range(blk.first_tile, blk.last_tile + 1):
            state[heads, blk.q_tile, j] = PENDING
    for step in s.steps[: t + 1]:
        for idx, (kind, j) in step.ops.items():
            if kind != "KV":
                continue
            blk = s.blocks[idx]
            heads = [blk.batch * p.H + blk.group * hpb + i for i in range(hpb)]
            state[heads, blk.q_tile, j] = NOW if step.t == t else DONE
    return state


def _sm_panel(s: Schedule, t: int) -> dict[str, Any]:
    """Marker x, y, colour, text and hover of the SM panel at step t."""
    hpb = s.tiling.heads_per_block
    ops = s.steps[t].ops
    holding: dict[int, dict[str, int]] = {}
    for step in s.steps[: t + 1]:  # what each block holds now: Q from t=0, the latest K/V
        for idx, (kind, j) in step.ops.items():
            if kind == "O":
                holding.pop(idx, None)
            else:
                holding.setdefault(idx, {})[kind] = j
    wave = max(blk.wave for blk in s.blocks if s.start[blk.index] <= t)
    x, y, colour, text, hover_text = [], [], [], [], []
    for blk in s.blocks:
        if blk.wave != wave:
            continue
        heads = f"h{blk.group * hpb}" + (f"–{blk.group * hpb + hpb - 1}" if hpb > 1 else "")
        held = holding.get(blk.index, {})
        op = ops.get(blk.index)
        cells = {
            "Q tile": f"Q{held['Q']}" if "Q" in held else "",
            "K tile": f"K{held['KV']}" if "KV" in held else "",
            "V tile": f"V{held['KV']}" if "KV" in held else "",
            "O out": f"O{blk.q_tile}" if op and op[0] == "O" else "",
        }
        for slot in SLOT_NAMES:
            fresh = op is not None and ((slot == "Q tile" and op[0] == "Q")
                                        or (slot in ("K tile", "V tile") and op[0] == "KV")
                                        or (slot == "O out" and op[0] == "O"))
            x.append(slot)
            y.append(f"SM {blk.sm}")
            text.append(cells[slot])
            colour.append("#f97316" if fresh and cells[slot] else
                          "#93c5fd" if cells[slot] else "#f3f4f6")
            hover_text.append(f"block {blk.index} (batch {blk.batch}, {heads}, query tile "
                              f"{blk.q_tile}) on SM {blk.sm}, wave {blk.wave}; {slot}: "
                              f"{cells[slot] or 'empty'}<br>{_config(s)}")
    return {"x": x, "y": y, "text": text, "marker": {"color": colour, "symbol": "square",
                                                       "size": 26, "line": {"width": 1,
                                                                            "color": "#999"}},
            "customdata": hover_text}


def _config(s: Schedule) -> str:
    return f"{data.describe_problem(s.problem)}; {s.tiling.describe()}"


def _bytes_bars(s: Schedule, t: int) -> dict[str, Any]:
    step = s.steps[t]
    y = [step.hbm_read_bytes, step.global_read_bytes, step.global_write_bytes]
    hits = f"L2 hits {step.l2_hits} of {step.l2_requests} tile requests so far"
    return {"y": y, "customdata": [f"{hits}<br>{_config(s)}"] * 3}


BAR_NAMES = ("HBM → L2<br>(misses)", "L2 → SRAM<br>(requests)", "SRAM → HBM<br>(O, L)")


def _figure(s: Schedule, gpu: GPU):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    heads = s.problem.B * s.problem.H
    specs = [[{}] * heads + [{"rowspan": 2}], [{"colspan": heads}] + [None] * heads]
    fig = make_subplots(rows=2, cols=heads + 1, specs=specs, row_heights=[0.45, 0.55],
                        column_widths=[0.62 / heads] * heads + [0.38],
                        subplot_titles=[f"scores of head {h}" for h in range(heads)]
                        + ["bytes moved so far", "thread blocks on SMs: tiles in SRAM"],
                        horizontal_spacing=0.06, vertical_spacing=0.16)
    # Discrete colours for the states 0…3 (bands centred on each integer).
    edges = (0.0, 1 / 6, 1 / 2, 5 / 6, 1.0)
    colorscale = [[edge, colour] for (_state, colour), lo, hi in zip(
        STATE_COLORS, edges[:-1], edges[1:], strict=True) for edge in (lo, hi)]

    def heat_traces(t: int) -> list[Any]:
        st = _tile_states(s, t)
        out = []
        for h in range(heads):
            names = np.vectorize(STATE_NAMES.get)(st[h])
            out.append(go.Heatmap(z=st[h], zmin=0, zmax=3, colorscale=colorscale,
                                  showscale=False, xgap=2, ygap=2, customdata=names,
                                  hovertemplate=f"head {h}, query tile %{{y}}, key tile "
                                                f"%{{x}}: %{{customdata}}<br>{_config(s)}"
                                                "<extra></extra>"))
        return out

    def sm_trace(t: int) -> Any:
        return go.Scatter(mode="markers+text", textfont={"size": 10}, showlegend=False,
                          hovertemplate="%{customdata}<extra></extra>", **_sm_panel(s, t))

    def bar_trace(t: int) -> Any:
        return go.Bar(x=list(BAR_NAMES), marker_color=["#1d4ed8", "#f59e0b", "#10b981"],
                      showlegend=False,
                      hovertemplate="%{x}: %{y:.4s} bytes<br>%{customdata}<extra></extra>",
                      **_bytes_bars(s, t))

    for h, trace in enumerate(heat_traces(0)):
        fig.add_trace(trace, row=1, col=h + 1)
        fig.update_xaxes(title_text=axis_title("key tile", f"{s.tiling.block_kv} tokens"),
                         dtick=1, row=1, col=h + 1)
        fig.update_yaxes(title_text=axis_title("query tile", f"{s.tiling.block_q} tokens"),
                         dtick=1, autorange="reversed", row=1, col=h + 1)
    fig.add_trace(bar_trace(0), row=1, col=heads + 1)
    fig.add_trace(sm_trace(0), row=2, col=1)
    top = max(s.steps[-1].global_read_bytes, 1.0)
    fig.update_yaxes(title_text=axis_title("cumulative traffic", "bytes"), range=[0, top * 1.1],
                     exponentformat="SI", row=1, col=heads + 1)
    fig.update_xaxes(title_text=axis_title("path", "memory level → level"), row=1,
                     col=heads + 1)
    sms = sorted({blk.sm for blk in s.blocks})
    fig.update_yaxes(title_text=axis_title("streaming multiprocessor", "SM index"),
                     categoryorder="array", categoryarray=[f"SM {i}" for i in sms][::-1],
                     row=2, col=1)
    fig.update_xaxes(title_text=axis_title("what the block holds", "SRAM slot"),
                     categoryorder="array", categoryarray=list(SLOT_NAMES), row=2, col=1)
    for state, colour in STATE_COLORS:  # legend entries for the tile states
        fig.add_scatter(x=[None], y=[None], mode="markers", name=STATE_NAMES[state],
                        marker={"symbol": "square", "size": 12, "color": colour,
                                "line": {"width": 1, "color": "#999"}}, row=2, col=1)
    trace_ids = list(range(heads + 2))
    labels = [_step_label(s, t) for t in range(len(s.steps))]
    fig.frames = [go.Frame(name=str(t), traces=trace_ids,
                           layout={"title": {"text": labels[t], "x": 0.01}},
                           data=[*heat_traces(t), bar_trace(t), sm_trace(t)])
                  for t in range(len(s.steps))]
    fig.update_layout(**_animation_controls(len(s.steps)))
    style(fig, labels[0], height_px=900)
    fig.update_layout(margin={"b": 110, "t": 110},
                      legend={"orientation": "h", "x": 0.35, "y": 1.04, "yanchor": "bottom"})
    return fig


def _animation_controls(steps: int) -> dict:
    """Play/pause buttons and a step slider over ``steps`` animation frames (plotly layout)."""
    animate = {"frame": {"duration": 900, "redraw": True}, "mode": "immediate",
               "transition": {"duration": 0}, "fromcurrent": True}
    return dict(
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.06,
                      "xanchor": "left", "yanchor": "top", "showactive": False,
                      "buttons": [{"label": "▶ play", "method": "animate",
                                   "args": [None, animate]},
                                  {"label": "❚❚ pause", "method": "animate",
                                   "args": [[None], {"frame": {"duration": 0, "redraw": False},
                                                     "mode": "immediate"}]}]}],
        sliders=[{"active": 0, "x": 0.15, "y": -0.04, "len": 0.85,
                  "currentvalue": {"prefix": "step "},
                  "steps": [{"label": str(t), "method": "animate",
                             "args": [[str(t)], {"frame": {"duration": 0, "redraw": True},
                                                 "mode": "immediate"}]}
                            for t in range(steps)]}])


def _step_label(s: Schedule, t: int) -> str:
    kinds = sorted({k for k, _ in s.steps[t].ops.values()})
    words = {"Q": "load Q tiles", "KV": "load K/V tiles, S = QKᵀ, O += PV",
             "O": "write O and L"}
    active = len(s.steps[t].ops)
    return (f"Step {t}: {', '.join(words[k] for k in kinds)} "
            f"({active} of {len(s.blocks)} blocks busy)")


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    tiling = default_tiling(SHAPE, gpu, "flash2", block_q=BLOCK_Q, block_kv=BLOCK_KV,
                            heads_per_block=1)
    s = schedule(SHAPE, tiling, gpu)
    fig = _figure(s, gpu)
    analytic = predict(SHAPE, gpu, "flash2", tiling).cost
    last = s.steps[-1]
    requested = last.global_read_bytes
    blocks: list[Any] = [
        fig,
        config_note(f"{data.describe_problem(SHAPE)}; {tiling.describe()}; {len(s.blocks)} "
                    f"blocks on {gpu.display_name} ({gpu.spec.sm_count} SMs, "
                    f"{tiling.blocks_per_sm(gpu)} resident per SM: {s.blocks[-1].wave + 1} "
                    "wave(s)). Press play or drag the slider; orange marks what moves at this "
                    "step."),
        paragraph(f"Totals: blocks ask L2 for {fmt_bytes(requested)} (memsim's analytic FA-2 "
                  f"global reads: {fmt_bytes(float(analytic.global_read_bytes))}); HBM serves "
                  f"{fmt_bytes(last.hbm_read_bytes)} of it, so "
                  f"{1 - last.hbm_read_bytes / requested:.1%} of the requested bytes "
                  f"({last.l2_hits} of {last.l2_requests} tile requests) hit in L2; "
                  f"{fmt_bytes(last.global_write_bytes)} of O and L are written."),
    ]
    simulate = data.trace_simulate()
    traced = None
    if simulate is not None:
        try:
            traced = simulate(SHAPE, gpu, "flash2", tiling, l2=True)
        except (NotImplementedError, InputError):
            traced = None
    if traced is None:
        blocks.append(unavailable(
            "Trace-driven schedule", "memsim.trace has not landed in this checkout; the "
            "schedule above is generated from memsim.tiling and memsim.geometry by this page "
            "under the lockstep assumptions of its docstring."))
    else:
        blocks.append(paragraph(
            "memsim.trace (trace-driven, LRU L2) on the same problem: HBM reads "
            f"{fmt_bytes(float(traced.cost.hbm_read_bytes))}, writes "
            f"{fmt_bytes(float(traced.cost.hbm_write_bytes))}, L2 hit rate "
            f"{traced.l2_hit_rate:.1%} of the requested bytes."))
    takeaway = (
        f"In a FlashAttention-2 forward pass of {SHAPE.N:,} causal tokens the {len(s.blocks)} "
        f"thread blocks ask L2 for {requested / last.hbm_read_bytes:.1f}× the bytes that HBM "
        f"has to supply, because blocks working on the same K/V head stream the same tiles "
        f"at the same step and all but the first request hit in L2.")
    summary = {"blocks": len(s.blocks), "steps": len(s.steps),
               "global_read_bytes": requested, "hbm_read_bytes": last.hbm_read_bytes,
               "analytic_global_read_bytes": float(analytic.global_read_bytes)}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
