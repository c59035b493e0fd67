"""Page: VRAM — stacked bars of weights, KV cache, activations, attention workspace and the
framework reserve per preset at 8K, 32K and 128K tokens on the chosen GPU, with the
capacity line and the number of GPUs (tensor-parallel degree) each needs.

Numbers come from :func:`memsim.inference.predict_arrays` at batch 1, bf16 weights and KV,
tensor parallelism 1 (so each bar is the whole model's memory); "GPUs needed" is memsim's
smallest TP degree that fits (:func:`memsim.inference.min_gpus_to_fit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memsim.inference import DEFAULT_RESERVE_FRACTION, Setup, predict_arrays
from memsim.models import load_model
from memsim.units import GB

from .page import (
    Context,
    Page,
    axis_title,
    config_note,
    fmt_tokens,
    new_figure,
    unavailable,
)

SLUG = "vram"
TITLE = "VRAM"
CONTEXTS = np.array([8192, 32768, 131072])
DEFAULT_PRESETS = (
    "meta-llama/Meta-Llama-3-8B",
    "mistralai/Mistral-7B-v0.1",
    "google/gemma-3-27b-pt",
    "meta-llama/Meta-Llama-3-70B",
)
PARTS = (  # (label, colour, key of memsim.inference.vram)
    ("weights", "#64748b", "weights_bytes"),
    ("KV cache", "#dc2626", "kv_cache_bytes"),
    ("activations", "#f59e0b", "activation_bytes"),
    ("attention workspace", "#7c3aed", "workspace_bytes"),
    ("reserve (CUDA context, fragmentation)", "#cbd5e1", "reserve_bytes"),
)


def _short(name: str) -> str:
    return name.split("/")[-1]


def build(ctx: Context) -> Page:
    gpu = ctx.gpu
    presets = ctx.models or DEFAULT_PRESETS
    rows: dict[str, dict[str, Any]] = {}
    for name in presets:
        model = load_model(name)
        rows[model.name] = predict_arrays(Setup(model, gpu), CONTEXTS, 1)["vram"]
    x = [[_short(m) for m in rows for _ in CONTEXTS],
         [fmt_tokens(int(c)) for _ in rows for c in CONTEXTS]]
    fig = new_figure(f"Memory of each preset at batch 1 on {gpu.display_name} "
                     f"({gpu.spec.hbm_bytes / GB:.0f} GB)", 600)
    for label, colour, key in PARTS:
        y = [float(v[key][i]) / GB for v in rows.values() for i in range(len(CONTEXTS))]
        config = [f"{m} at {int(c):,} tokens, batch 1, bf16 weights and KV, TP 1; "
                  f"{label} = {float(v[key][i]) / GB:.3g} GB of "
                  f"{float(v['total_bytes'][i]) / GB:.3g} GB"
                  for m, v in rows.items() for i, c in enumerate(CONTEXTS)]
        fig.add_bar(x=x, y=y, name=label, marker_color=colour, customdata=config,
                    hovertemplate="%{customdata}<extra>%{fullData.name}</extra>")
    totals = [float(v["total_bytes"][i]) / GB for v in rows.values()
              for i in range(len(CONTEXTS))]
    need = [int(v["min_gpus_to_fit"][i]) for v in rows.values() for i in range(len(CONTEXTS))]
    words = [("fits on 1 GPU" if n == 1 else f"needs {n} GPUs" if n else "needs > 64 GPUs")
             for n in need]
    fig.add_scatter(x=x, y=totals, mode="text", text=words, textposition="top center",
                    name="GPUs needed (tensor parallel)", showlegend=False,
                    customdata=[f"total {t:.3g} GB; smallest TP degree that fits: {n or '> 64'}"
                                for t, n in zip(totals, need, strict=True)],
                    hovertemplate="%{customdata}<extra></extra>")
    fig.add_hline(y=gpu.spec.hbm_bytes / GB, line={"dash": "dash", "color": "#111"},
                  annotation_text=f"capacity of one {gpu.name}",
                  annotation_position="top left")
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_xaxes(title_text=axis_title("preset and context", "model, tokens"))
    fig.update_yaxes(title_text=axis_title("memory, whole model", "GB"),
                     range=[0, max(totals) * 1.12])

    kv = {m: float(v["kv_cache_bytes"][-1]) for m, v in rows.items()}
    big, small = max(kv, key=kv.get), min(kv, key=kv.get)
    v_big = rows[big]
    ctx_max = fmt_tokens(int(CONTEXTS[-1]))
    takeaway = (
        f"At {ctx_max} tokens {_short(big)} needs {float(v_big['total_bytes'][-1]) / GB:.0f} GB "
        f"({_gpus_phrase(int(v_big['min_gpus_to_fit'][-1]), gpu.name)}), "
        f"{kv[big] / float(v_big['total_bytes'][-1]):.0%} of it KV cache, while "
        f"{_short(small)}'s KV cache is only {kv[small] / GB:.2g} GB for one sequence.")
    blocks: list[Any] = [
        fig,
        config_note(f"Batch 1, bf16 weights and KV cache, tensor parallelism 1, on the "
                    f"{gpu.name} profile; reserve = {DEFAULT_RESERVE_FRACTION:.0%} of HBM "
                    f"(vLLM's default gpu_memory_utilization {1 - DEFAULT_RESERVE_FRACTION:g}). "
                    "Labels: smallest tensor-parallel degree that fits "
                    "(memsim.inference.min_gpus_to_fit)."),
        unavailable("Measured peak memory",
                    "no whole-model memory measurements are committed for this GPU yet "
                    "(they come with `memsim validate`, issue 6)."),
    ]
    summary = {m: {"total_bytes": [float(t) for t in v["total_bytes"]],
                   "kv_cache_bytes": [float(t) for t in v["kv_cache_bytes"]],
                   "min_gpus_to_fit": [int(t) for t in v["min_gpus_to_fit"]]}
               for m, v in rows.items()}
    return Page(SLUG, TITLE, takeaway, blocks, summary)


def _gpus_phrase(n: int, gpu: str) -> str:
    if n == 0:
        return f"more than 64 × {gpu}"
    return f"{n} × {gpu}" if n > 1 else f"one {gpu}"
