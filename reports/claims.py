"""Page: claims, checked — common statements about long-context attention, each evaluated
by memsim under a stated configuration, with the computed value beside the claim and a
verdict that is computed, never typed.

A claim has one or more quantitative *parts* ("memory grows 16×", "decode costs about
$0.8"); each part has the range the statement asserts and a few *scenarios* — the stated
configuration and the variations that decide it (mask, batch, tensor parallelism, which
memory). The verdict follows from which scenarios land inside the range:

- **holds**: every part holds in every scenario;
- **holds only if …**: every part holds in at least one scenario; the condition names the
  scenarios where the parts that do not always hold do;
- **does not hold**: some part holds in no scenario.

"About x" means within a factor of 1.25 of x; "O(f)" is an upper bound (grows no faster
than f, checked by growing its arguments).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memsim.algorithms import dsa as dsa_module
from memsim.geometry import MaskGeometry, visible_pairs
from memsim.hardware import GPU, load_gpu
from memsim.inference import (
    Setup,
    cost_curve,
    kv_cache_bytes,
    predict_arrays,
    prefill_phase,
)
from memsim.models import ModelConfig, load_model
from memsim.problem import AttentionProblem, Mask
from memsim.units import DTYPE_BYTES

from . import data
from .page import (
    Context,
    Html,
    Page,
    axis_title,
    config_note,
    fmt_bytes,
    fmt_count,
    new_figure,
)

SLUG = "claims"
TITLE = "Claims, checked"
ABOUT = 1.25  # "about x": within a factor of 1.25
HOLDS, ONLY_IF, FAILS = "holds", "holds only if", "does not hold"
VERDICT_CLASS = {HOLDS: "holds", ONLY_IF: "only-if", FAILS: "does-not-hold"}
VERDICT_COLOR = {True: "#16a34a", False: "#dc2626"}

K128, M1 = 2**17, 2**20
LLAMA2_7B_LAYER = AttentionProblem(batch=1, seq_len=2048, heads=32, head_dim=128,
                                   dtype="bf16", mask=Mask(causal=True))


# ---- the verdict machinery ------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One configuration a part is evaluated in, and memsim's value there."""

    condition: str
    value: float


@dataclass(frozen=True)
class Part:
    """A quantitative statement: ``low ≤ value ≤ high``; ``nominal`` is the claimed value
    the figure divides by; ``fmt`` writes values in the part's unit."""

    statement: str
    nominal: float
    low: float
    high: float
    scenarios: tuple[Scenario, ...]
    fmt: Callable[[float], str]

    def holds(self, s: Scenario) -> bool:
        return self.low <= s.value <= self.high

    @property
    def holding(self) -> list[Scenario]:
        return [s for s in self.scenarios if self.holds(s)]


def about(x: float) -> tuple[float, float, float]:
    """(nominal, low, high) of 'about x'."""
    return x, x / ABOUT, x * ABOUT


def at_least(x: float) -> tuple[float, float, float]:
    return x, x, math.inf


def at_most(x: float) -> tuple[float, float, float]:
    return x, 0.0, x


@dataclass(frozen=True)
class Verdict:
    kind: str     # HOLDS, ONLY_IF or FAILS
    text: str     # the verdict as a sentence fragment, conditions and values included


@dataclass(frozen=True)
class Claim:
    text: str
    configuration: str
    parts: tuple[Part, ...]
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        return verdict(self.parts)


def verdict(parts: tuple[Part, ...]) -> Verdict:
    """The verdict of a claim from its parts (module docstring)."""
    never = [p for p in parts if not p.holding]
    partial = [p for p in parts if p.holding and len(p.holding) < len(p.scenarios)]
    if never:
        why = "; ".join(f"{p.statement}: memsim gives " + ", ".join(
            f"{p.fmt(s.value)} ({s.condition})" for s in p.scenarios) for p in never)
        rest = [f"{p.statement} holds" + ("" if p not in partial else " only if "
                                          + " or ".join(s.condition for s in p.holding))
                for p in parts if p.holding]
        return Verdict(FAILS, f"{FAILS}: {why}" + (f" (while {'; '.join(rest)})" if rest
                                                    else ""))
    if not partial:
        return Verdict(HOLDS, HOLDS)
    conditions = "; and ".join(
        (f"{p.statement}: " if len(parts) > 1 else "")
        + " or ".join(s.condition for s in p.holding) for p in partial)
    return Verdict(ONLY_IF, f"{ONLY_IF} {conditions}")


def _part(statement: str, claimed: tuple[float, float, float], fmt: Callable[[float], str],
          scenarios: list[tuple[str, float]]) -> Part:
    nominal, low, high = claimed
    return Part(statement, nominal, low, high,
                tuple(Scenario(c, float(v)) for c, v in scenarios), fmt)


def _ratio(x: float) -> str:
    return f"{x:.3g}×"


def _usd(x: float) -> str:
    return f"${x:.2f}"


# ---- the claims -----------------------------------------------------------------------


def comparisons_128k() -> Claim:
    pairs = {kind: float(visible_pairs(K128, K128, MaskGeometry(kind))) for kind in
             ("full", "causal")}
    heads = LLAMA2_7B_LAYER.H
    return Claim(
        "A 128K context means 16 billion query-key comparisons per layer.",
        f"N = S = {K128:,} tokens; comparisons = query-key pairs the mask lets through "
        "(memsim.geometry.visible_pairs), per head unless stated.",
        (_part("16 billion comparisons", about(16e9), fmt_count, [
            ("counted once per query-key pair (one head) with a full, bidirectional mask",
             pairs["full"]),
            ("one head, causal mask", pairs["causal"]),
            (f"all {heads} heads of a Llama-2-7B layer, causal", heads * pairs["causal"]),
        ]),))


def kv_cache_1m(gpu: GPU) -> Claim:
    model = load_model("meta-llama/Meta-Llama-3-70B")
    mha = data.with_kv_heads(model, model.groups[0].attention.heads)
    g = model.groups[0].attention
    kv = {
        f"{model.name.split('/')[1]} (GQA, {g.kv_heads} K/V heads), bf16":
            _kv(model, gpu, M1, "bf16"),
        "same, fp8 KV cache": _kv(model, gpu, M1, "fp8"),
        f"MHA ({g.heads} K/V heads), bf16": _kv(mha, gpu, M1, "bf16"),
    }
    return Claim(
        "With hidden size 8192 and 80 layers the KV cache for 1M tokens is 100+ GB.",
        f"{model.name}: hidden size {model.hidden_size}, {model.num_layers} layers, "
        f"D = {g.head_dim}; one sequence of {M1:,} tokens.",
        (_part("100+ GB", at_least(100e9), fmt_bytes, list(kv.items())),))


def _kv(model: ModelConfig, gpu: GPU, context: int, kv_dtype: str, tp: int = 1) -> float:
    setup = Setup(model, gpu, tp=tp, kv_dtype=kv_dtype)
    return float(sum(kv_cache_bytes(setup, np.asarray(context), 1).values()))


def gqa_8x(gpu: GPU) -> Claim:
    model = load_model("meta-llama/Meta-Llama-3-70B")
    g = model.groups[0].attention
    mha = data.with_kv_heads(model, g.heads)
    ratios = []
    for tp in (1, 8, 16):
        per_gpu = "" if tp == 1 else ", per GPU"
        why = (f": {g.kv_heads} K/V heads cannot be split {tp} ways, each GPU keeps one"
               if tp > g.kv_heads else "")
        ratios.append((f"tensor parallelism {tp}{per_gpu}{why}",
                       _kv(mha, gpu, 8192, "bf16", tp) / _kv(model, gpu, 8192, "bf16", tp)))
    return Claim(
        "64 query heads sharing 8 KV heads make the KV cache 8× smaller.",
        f"{model.name} ({g.heads} query heads, {g.kv_heads} K/V heads) against the same model "
        f"with {g.heads} K/V heads; KV cache per GPU at 8K tokens (memsim.inference).",
        (_part("8× smaller", about(8.0), _ratio, ratios),))


def quadratic_2k_8k(gpu: GPU) -> Claim:
    batch = 8
    layer_b8 = LLAMA2_7B_LAYER.model_copy(update={"batch": batch})

    def workspace(layer: AttentionProblem, algorithm: str, n: int) -> float:
        return float(data.attention_curve(layer, gpu, algorithm, n)[0].workspace_bytes)

    std = {n: workspace(LLAMA2_7B_LAYER, "standard", n) for n in (2048, 8192)}
    std_b8 = {n: workspace(layer_b8, "standard", n) for n in (2048, 8192)}
    fa2 = {n: float(data.extra_bytes(LLAMA2_7B_LAYER, workspace(LLAMA2_7B_LAYER, "flash2", n),
                                     seq_len=n)) for n in (2048, 8192)}
    model = load_model("meta-llama/Llama-2-7b-hf")
    total = predict_arrays(Setup(model, gpu), np.array([2048, 8192]), 1, with_min_gpus=False)
    vram = [float(t) for t in total["vram"]["total_bytes"]]
    return Claim(
        "Going from 2K to 8K tokens takes memory from about 4 GB to 64 GB.",
        "One Llama-2-7B attention layer (H = 32, D = 128, bf16, causal); standard attention "
        "allocates the scores S and P densely (B·H·N·S each).",
        (
            _part("16× the memory", about(16.0), _ratio, [
                ("standard attention's S and P", std[8192] / std[2048]),
                ("FlashAttention-2 (output and logsumexp)", fa2[8192] / fa2[2048]),
                ("whole Llama-2-7B in VRAM (FlashAttention-2, batch 1)", vram[1] / vram[0]),
            ]),
            _part("about 4 GB at 2K", about(4e9), fmt_bytes, [
                ("standard attention, batch 1", std[2048]),
                (f"standard attention, batch {batch}", std_b8[2048]),
            ]),
            _part("about 64 GB at 8K", about(64e9), fmt_bytes, [
                ("standard attention, batch 1", std[8192]),
                (f"standard attention, batch {batch}", std_b8[8192]),
            ]),
        ))


def petabytes_1m(gpu: GPU) -> Claim:
    model = load_model("meta-llama/Meta-Llama-3-70B")
    g = model.groups[0].attention
    layer = AttentionProblem(batch=1, seq_len=M1, heads=g.heads, kv_heads=g.kv_heads,
                             head_dim=g.head_dim, dtype="bf16", mask=Mask(causal=True))
    std = float(data.attention_curve(layer, gpu, "standard", M1)[0].workspace_bytes)
    fa2 = float(data.extra_bytes(layer, data.attention_curve(layer, gpu, "flash2", M1)[0]
                                 .workspace_bytes))
    return Claim(
        "1M tokens with quadratic attention would need petabytes.",
        f"N = S = {M1:,} tokens, batch 1, bf16, {model.name} layers ({g.heads} heads, "
        f"{model.num_layers} layers); memory = what attention allocates beyond Q, K, V.",
        (_part("petabytes (≥ 1 PB)", at_least(1e15), fmt_bytes, [
            ("standard attention, one layer at a time (inference)", std),
            (f"standard attention, the scores of all {model.num_layers} layers held at once "
             "(training without recomputation)", model.num_layers * std),
            ("FlashAttention-2, one layer", fa2),
        ]),))


def flash_speed_memory(gpu: GPU) -> Claim:
    speed, memory = [], []
    for n in (1024, 4096, 16384):
        p = LLAMA2_7B_LAYER.model_copy(update={"seq_len": n})
        inputs = p.B * n * (p.H * p.D + 2 * p.K * p.D) * DTYPE_BYTES[p.dtype]
        (c_std, t_std, _), (c_fa, t_fa, _) = (data.attention_curve(p, gpu, a, n)
                                              for a in ("standard", "flash2"))
        label = f"N = {n:,}"
        speed.append((label, float(t_std.time_s / t_fa.time_s)))
        memory.append((label, float((inputs + data.extra_bytes(p, c_std.workspace_bytes))
                                    / (inputs + data.extra_bytes(p, c_fa.workspace_bytes)))))
    return Claim(
        "FlashAttention is not faster, only more memory-efficient: 2–3× speed, up to 10× "
        "memory.",
        f"One Llama-2-7B layer (H = 32, D = 128, bf16, causal forward) on {gpu.name}: "
        "FlashAttention-2 against standard attention, memsim's roofline time; memory = Q, K, "
        "V, O and the workspace. 'Not faster' is read as the 2–3× the claim quantifies.",
        (_part("2–3× faster", (2.5, 2.0, 3.0), _ratio, speed),
         _part("up to 10× less memory", at_most(10.0), _ratio, memory)))


def sliding_window(gpu: GPU) -> Claim:
    """O(N·W) as an upper bound: grow N 4× and W 2× and compare with 8×."""
    n0, w0 = 32768, 4096
    base = LLAMA2_7B_LAYER.model_copy(update={"mask": Mask(causal=True, window=w0)})
    grown = base.model_copy(update={"mask": Mask(causal=True, window=2 * w0)})

    def growth(f: Callable[[AttentionProblem, int], float]) -> float:
        return f(grown, 4 * n0) / f(base, n0) / 8.0

    def flops(alg: str) -> Callable[[AttentionProblem, int], float]:
        return lambda p, n: float(data.attention_curve(p, gpu, alg, n)[0].flops)

    def extra(alg: str) -> Callable[[AttentionProblem, int], float]:
        return lambda p, n: float(data.extra_bytes(p, data.attention_curve(p, gpu, alg, n)[0]
                                                   .workspace_bytes, seq_len=n))

    mistral = load_model("mistralai/Mistral-7B-v0.1")

    def kv(p: AttentionProblem, n: int) -> float:
        window = p.mask.window
        model = replace(mistral, groups=tuple(replace(g, attention=replace(
            g.attention, mask=Mask(causal=True, window=window))) for g in mistral.groups))
        return _kv(model, gpu, n, "bf16")

    bound = (1.0, 0.0, ABOUT)  # grows no faster than N·W
    return Claim(
        "A sliding window of 4K makes compute and memory O(N·W).",
        f"Causal sliding window, one Llama-2-7B layer (H = 32, D = 128, bf16); growth from "
        f"(N, W) = ({n0:,}, {w0:,}) to ({4 * n0:,}, {2 * w0:,}) divided by the 8× growth of "
        "N·W (≤ 1.25 means O(N·W)).",
        (_part("compute O(N·W)", bound, _ratio, [
            ("FlashAttention-2 FLOPs (masked tiles skipped)", growth(flops("flash2"))),
            ("standard attention FLOPs (masked tiles skipped)", growth(flops("standard"))),
        ]),
         _part("memory O(N·W)", bound, _ratio, [
             ("FlashAttention-2: output and logsumexp, O(N)", growth(extra("flash2"))),
             ("KV cache, a rolling buffer of W (Mistral-7B), O(W)", growth(kv)),
             ("standard attention: S and P allocated densely, O(N²)",
              growth(extra("standard"))),
         ])))


def top_k() -> Claim:
    k = data.TOP_K
    lengths = (1024, 32768, K128, M1)
    keys = [(f"N = {n:,}", float(dsa_module.selected_keys(n, n, k)) / n) for n in lengths]
    v32 = load_model("deepseek-ai/DeepSeek-V3.2-Exp")
    a = v32.groups[-1].attention
    layer = AttentionProblem(batch=1, seq_len=K128, heads=a.heads, kv_heads=1,
                             head_dim=a.mla.kv_lora_rank + a.mla.qk_rope_head_dim,
                             head_dim_v=a.mla.kv_lora_rank, mla=True, dtype="bf16",
                             mask=Mask(top_k=k), indexer=a.indexer)
    h800 = load_gpu("h800-sxm")  # DeepSeek's own GPU, whatever the report's GPU
    cost = data.attention_curve(layer, h800, "dsa", K128)[0]
    main = float(dsa_module.selected_keys(K128, K128, k)) * layer.H * 2 * (layer.D + layer.Dv)
    share = 1.0 - main / float(cost.flops)
    return Claim(
        f"Top-k sparse attention with k = {k} makes the main attention O(N·k) regardless of "
        "context.",
        f"DeepSeek Sparse Attention (MQA mode of MLA, {layer.H} heads, latent {layer.D}, "
        "h800-sxm tiles); "
        "keys each query attends to in the main (sparse) attention, averaged over the "
        f"sequence, must stay ≤ k = {k}.",
        (_part(f"≤ k = {k} keys per query", at_most(float(k)), lambda x: f"{x:,.0f} keys",
               keys),),
        note=f"The lightning indexer that picks the k keys still scores every earlier key: "
             f"at {K128:,} tokens it is {share:.0%} of the layer's matmul FLOPs, so the layer "
             "as a whole stays O(N²).")


def deepseek_costs() -> Claim:
    """The seed's cost claim under DeepSeek's own service, stated in full (reports.cost)."""
    from .cost import (
        DEEPSEEK_PREFILL_BATCH,
        DENSE,
        SPARSE,
        deepseek_deployment_text,
        deepseek_setup,
    )

    def at_128k(name: str, phase: str, kv: str, **kw: Any) -> dict[str, Any]:
        return cost_curve(deepseek_setup(name, phase, kv), K128, points=1, **kw)[-1]

    def prefill(name: str) -> list[tuple[str, float]]:
        return [(f"prefill, chunks of {c:,} tokens, {kv} latent cache",
                 at_128k(name, "prefill", kv, batch=DEEPSEEK_PREFILL_BATCH, chunk=c)[
                     "prefill_usd_per_million_tokens"])
                for c, kv in ((2048, "fp8"), (16384, "fp8"), (2048, "bf16"))]

    def decode(name: str) -> list[tuple[str, float]]:
        rows = []
        for kv in ("fp8", "bf16"):
            r = at_128k(name, "decode", kv, batch="max")
            rows.append((f"decode, {kv} latent cache, batch {r['batch']:,} (the most that "
                         "fits at 128K)", r["decode_usd_per_million_tokens"]))
        return rows

    return Claim(
        "At 128K, sparse attention brings prefill from about $0.65 to $0.35 and decode from "
        "about $2.4 to $0.8 per million tokens.",
        f"DeepSeek-V3.1-Terminus (dense MLA) against V3.2-Exp (DSA), the token at position "
        f"{K128:,} (memsim.inference.cost_curve, marginal cost), under "
        f"{deepseek_deployment_text()}.",
        (_part("dense prefill about $0.65", about(0.65), _usd, prefill(DENSE)),
         _part("sparse prefill about $0.35", about(0.35), _usd, prefill(SPARSE)),
         _part("dense decode about $2.4", about(2.4), _usd, decode(DENSE)),
         _part("sparse decode about $0.8", about(0.8), _usd, decode(SPARSE))),
        note=_indexer_under_tp_note(DENSE, SPARSE))


def _indexer_under_tp_note(dense: str, sparse: str) -> str:
    """Why V3.2-Exp's prefill attention barely speeds up with TP 8, computed."""
    h800 = load_gpu("h800-sxm")

    def attention_s(name: str, **parallel: Any) -> float:
        setup = Setup(load_model(name), h800, weight_dtype="fp8", **parallel)
        return float(prefill_phase(setup, K128, 1).operators_s["attention"])

    s1, s8, d1, d8 = (attention_s(n, tp=tp) for n in (sparse, dense) for tp in (1, 8))
    cp8 = attention_s(sparse, gpus=8, dp_attention=True, context_parallel=True)
    return (f"Under tensor parallelism V3.2-Exp's lightning indexer is replicated on every "
            "GPU (vLLM and SGLang build it from ReplicatedLinear layers: splitting its heads "
            "would need an all-reduce of the N×S index scores before the top-k), so its "
            f"O(N²) scoring does not shrink with TP: one {K128:,}-token prompt's prefill "
            f"attention takes {s1:.1f} s at TP 1 and {s8:.1f} s at TP 8 on H800 "
            f"({8 * s8 / s1:.1f}× the GPU-seconds), while V3.1's dense MLA goes {d1:.1f} → "
            f"{d8:.1f} s. Real services run attention data-parallel (each GPU its own "
            "prompts, TP 1, as the deployment above), and split one long prompt over the "
            "replicas for its time to first token (SGLang's context-parallel prefill for "
            f"V3.2): {cp8:.1f} s over 8 replicas.")


def local_global(gpu: GPU) -> Claim:
    model = load_model("answerdotai/ModernBERT-large")
    n0 = model.max_position_embeddings
    grid = np.unique(np.geomspace(n0, 64 * n0, 400).astype(np.int64))

    def attention_flops(m: ModelConfig, n: np.ndarray, all_global: bool) -> np.ndarray:
        total = np.zeros(np.shape(n))
        for g in m.groups:
            a = g.attention
            mask = Mask(causal=a.mask.causal) if all_global else a.mask
            p = AttentionProblem(batch=1, seq_len=n0, heads=a.heads, kv_heads=a.kv_heads,
                                 head_dim=a.head_dim, head_dim_v=a.head_dim_v, mask=mask)
            total = total + g.count * data.attention_curve(p, gpu, "flash2", n)[0].flops
        return total

    def longer(pattern: np.ndarray, budget: float) -> float:
        return float(np.interp(budget, pattern, grid)) / n0

    budget = float(attention_flops(model, np.asarray(n0), all_global=True))
    by_flops = longer(attention_flops(model, grid, all_global=False), budget)
    decoder = replace(model, decoder=True)
    kv_pattern = sum(kv_cache_bytes(Setup(decoder, gpu), grid, 1).values())
    kv_budget = float(sum(kv_cache_bytes(Setup(decoder, gpu, all_global=True), n0, 1)
                          .values()))
    by_kv = longer(kv_pattern, kv_budget)
    kinds = ", ".join(f"{g.count} × {g.kind}" for g in model.groups)
    return Claim(
        "Global attention every third layer and 128-token local attention elsewhere allows "
        "16× longer sequences.",
        f"{model.name} ({kinds}): the longest sequence whose attention cost equals that of "
        f"the same model with every layer global at {n0:,} tokens.",
        (_part("16× longer", about(16.0), _ratio, [
            ("equal attention FLOPs (FlashAttention-2)", by_flops),
            ("equal KV cache (the same layer pattern in a decoder)", by_kv),
        ]),))


def claims(ctx: Context) -> list[Claim]:
    gpu = ctx.gpu
    return [comparisons_128k(), kv_cache_1m(gpu), gqa_8x(gpu), quadratic_2k_8k(gpu),
            petabytes_1m(gpu), flash_speed_memory(gpu), sliding_window(gpu), top_k(),
            deepseek_costs(), local_global(gpu)]


# ---- the page -------------------------------------------------------------------------


def _figure(checked: list[Claim]):
    fig = new_figure("Each claim's computed value ÷ the claimed value (band: what the claim "
                     "allows)", 140 + 34 * sum(len(c.parts) for c in checked))
    parts = [(f"{i}. {p.statement}", p, c) for i, c in enumerate(checked, start=1)
             for p in c.parts]
    labels = [label for label, _p, _c in parts]
    xs = [s.value / p.nominal for _label, p, _c in parts for s in p.scenarios]
    x_min, x_max = min(min(xs), 0.5) / 2, max(max(xs), 2.0) * 2
    for label, p, _c in parts:  # bands first, so the markers draw over them
        lo, hi = p.low / p.nominal, p.high / p.nominal
        fig.add_scatter(x=[max(lo, x_min), min(hi, x_max)], y=[label, label], mode="lines",
                        line={"color": "rgba(22,163,74,0.25)", "width": 14}, showlegend=False,
                        customdata=[f"the claim allows {p.fmt(p.low)} to {p.fmt(p.high)}"] * 2,
                        hovertemplate="%{customdata}<extra></extra>")
    for label, p, c in parts:
        ok = [p.holds(s) for s in p.scenarios]
        fig.add_scatter(
            x=[s.value / p.nominal for s in p.scenarios], y=[label] * len(p.scenarios),
            mode="markers", showlegend=False, name=label,
            marker={"size": 11, "color": [VERDICT_COLOR[o] for o in ok],
                    "symbol": ["circle" if o else "x" for o in ok]},
            customdata=[f"{s.condition}: {p.fmt(s.value)} "
                        f"({'within' if o else 'outside'} the claim)<br>{c.configuration}"
                        for s, o in zip(p.scenarios, ok, strict=True)],
            hovertemplate="%{customdata}<extra></extra>")
    fig.update_xaxes(type="log", range=[math.log10(x_min), math.log10(x_max)],
                     title_text=axis_title("memsim's value ÷ claimed value", "ratio"))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=labels,
                     title_text=axis_title("claim, part", "numbered as in the table"))
    fig.update_layout(margin={"l": 260})
    return fig


def _summary_table(checked: list[Claim]) -> Html:
    rows = "".join(
        f'<tr><td>{i}</td><td><a href="#claim-{i}">{html.escape(c.text)}</a></td>'
        f'<td class="{VERDICT_CLASS[c.verdict.kind]}">{html.escape(c.verdict.kind)}</td></tr>'
        for i, c in enumerate(checked, start=1))
    return Html("<table><thead><tr><th>#</th><th>claim</th><th>verdict</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")


def _card(i: int, c: Claim) -> Html:
    """One claim: the statement, the verdict, the configuration and every scenario."""
    v = c.verdict
    rows = "".join(
        f"<tr><td>{html.escape(p.statement)}</td><td>{html.escape(s.condition)}</td>"
        f"<td><b>{html.escape(p.fmt(s.value))}</b></td>"
        f"<td>{html.escape(_allowed(p))}</td>"
        f'<td class="{"holds" if p.holds(s) else "does-not-hold"}">'
        f'{"✓ within" if p.holds(s) else "✗ outside"}</td></tr>'
        for p in c.parts for s in p.scenarios)
    note = f'<p class="config">{html.escape(c.note)}</p>' if c.note else ""
    return Html(
        f'<div class="claim" id="claim-{i}"><h3>{i}. “{html.escape(c.text)}”</h3>'
        f'<p class="verdict {VERDICT_CLASS[v.kind]}">Verdict: {html.escape(v.text)}.</p>'
        f'<p class="config">Configuration: {html.escape(c.configuration)}</p>'
        "<table><thead><tr><th>part of the claim</th><th>scenario</th><th>memsim</th>"
        f"<th>the claim allows</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        f"{note}</div>")


def _allowed(p: Part) -> str:
    if math.isinf(p.high):
        return f"≥ {p.fmt(p.low)}"
    if p.low == 0:
        return f"≤ {p.fmt(p.high)}"
    return f"{p.fmt(p.low)} to {p.fmt(p.high)}"


def build(ctx: Context) -> Page:
    checked = claims(ctx)
    kinds = [c.verdict.kind for c in checked]
    counts = {k: kinds.count(k) for k in (HOLDS, ONLY_IF, FAILS)}
    takeaway = (f"Of {len(checked)} common claims about long-context attention, memsim finds "
                f"{counts[HOLDS]} hold as stated, {counts[ONLY_IF]} hold only under a "
                f"condition the claim leaves out, and {counts[FAILS]} do not hold.")
    blocks: list[Any] = [
        _summary_table(checked),
        _figure(checked),
        config_note(f"Computed on the {ctx.gpu.name} profile unless a claim names another; "
                    f"'about x' allows a factor of {ABOUT:g}, and O(·) is read as an upper "
                    "bound. Green circles lie inside what the claim allows, red crosses "
                    "outside."),
        *(_card(i, c) for i, c in enumerate(checked, start=1)),
    ]
    summary = {"verdict_counts": counts,
               "claims": [{"claim": c.text, "verdict": c.verdict.kind,
                           "verdict_text": c.verdict.text, "note": c.note,
                           "values": {p.statement: {s.condition: s.value for s in p.scenarios}
                                      for p in c.parts}} for c in checked]}
    return Page(SLUG, TITLE, takeaway, blocks, summary)
