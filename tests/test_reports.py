"""The report site: every page is written, works offline, opens with one takeaway sentence,
names every axis's unit and shows its configuration on hover; claims' verdicts are computed;
the kernel animation's schedule adds up to memsim's analytic count; `memsim report` handles
bad input with exit code 2. The browser check is tests/test_reports_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from memsim.reports import bytes_by_level, claims, data, flash_kernel, roofline, validation
from memsim.reports.page import Context, Html
from memsim.reports.site import PAGE_MODULES, PLOTLY_JS, build_pages, build_site
from typer.testing import CliRunner

import memsim.cli.report  # noqa: F401  (registers `memsim report` on the app)
from memsim.algorithms import compulsory_bytes
from memsim.attention import predict
from memsim.cli import app
from memsim.geometry import MaskGeometry, visible_pairs
from memsim.hardware import gpu_names, load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling

UNIT = re.compile(r"\(.+\)$")
SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def h100():
    return load_gpu("h100-sxm")


def test_every_page_is_written_once_with_plotly_beside_it(site):
    names = sorted(p.name for p in site.out_dir.iterdir())
    assert names == sorted([f"{p.slug}.html" for p in site.pages] + [PLOTLY_JS])
    assert len(site.pages) == len(PAGE_MODULES) + 1  # and the index
    assert (site.out_dir / PLOTLY_JS).stat().st_size > 1_000_000
    index = (site.out_dir / "index.html").read_text()
    for page in site.pages:
        text = (site.out_dir / f"{page.slug}.html").read_text()
        assert f'href="{page.slug}.html"' in index
        # offline: the one script source is the local plotly.min.js, nothing from a network
        assert re.findall(r'<script src="([^"]+)"', text) in ([PLOTLY_JS], [])
        assert "cdn.plot.ly" not in text and "https://cdn" not in text
        assert bool(page.figures()) == (f'<script src="{PLOTLY_JS}"' in text)


def test_every_page_opens_with_one_takeaway_sentence(site):
    for page in site.pages:
        t = page.takeaway
        assert t[0].isupper() and t.endswith("."), (page.slug, t)
        assert len(SENTENCE_END.findall(t)) == 1, (page.slug, t)
        text = (site.out_dir / f"{page.slug}.html").read_text()
        # the takeaway is the first thing under the title
        assert re.search(r"</h1><p class=\"takeaway\">", text), page.slug


def test_every_axis_names_its_unit(site):
    for page in site.pages:
        for fig in page.figures():
            layout = fig.layout.to_plotly_json()
            axes = [k for k in layout if re.fullmatch(r"[xy]axis\d*", k)]
            assert axes, page.slug
            for key in axes:
                axis = layout[key]
                if axis.get("visible") is False:
                    continue
                title = (axis.get("title") or {}).get("text", "")
                assert UNIT.search(title), f"{page.slug} {key}: {title!r} names no unit"


def test_every_trace_shows_its_configuration_on_hover(site):
    for page in site.pages:
        for fig in page.figures():
            for trace in fig.data:
                x = trace.x if trace.type != "heatmap" else trace.z
                if x is None or all(v is None for v in x):  # legend-only entries
                    continue
                assert "%{customdata}" in (trace.hovertemplate or ""), (page.slug, trace.name)
                assert trace.customdata is not None and len(trace.customdata), page.slug


def test_pages_without_their_data_say_not_available(tmp_path, h100, monkeypatch):
    ctx = Context(h100, (), tmp_path)  # an empty measurements folder
    v = validation.build(ctx)
    assert "no measurements" in v.takeaway and not v.figures()
    assert any("not available yet" in b.markup for b in v.blocks if isinstance(b, Html))
    r = roofline.build(ctx)
    assert any("Measured points" in b.markup for b in r.blocks if isinstance(b, Html))
    monkeypatch.setattr(data, "trace_simulate", lambda: None)
    b = bytes_by_level.build(ctx)
    assert any("Trace-driven HBM bytes" in blk.markup for blk in b.blocks
               if isinstance(blk, Html))


@pytest.mark.parametrize("gpu", gpu_names())
def test_every_page_builds_for_every_gpu_profile(gpu, monkeypatch):
    """No page may fail on a GPU: what memsim cannot compute there is shown as such."""
    monkeypatch.setattr(data, "trace_simulate", lambda: None)  # speed; traced elsewhere
    pages = build_pages(Context(load_gpu(gpu)))
    assert len(pages) == len(PAGE_MODULES) and all(p.takeaway.endswith(".") for p in pages)
    assert all(p.figures() or p.slug == validation.SLUG for p in pages)


def test_validation_reads_the_committed_h100_measurements(h100):
    ctx = Context(h100)
    page = validation.build(ctx)
    assert page.figures() and page.summary["errors"]
    # the ceilings run: PyTorch's peak extra memory is the output plus the fp32 logsumexp,
    # FA-2's workspace, to the byte but for the allocator's rounding
    extra = [c for c in validation.sdpa_comparisons(ctx) if c.quantity == "peak_extra_bytes"]
    assert len(extra) >= 8 and max(abs(c.error) for c in extra) < 0.01


def test_validation_reads_memsim_validate_jsonl(tmp_path, h100):
    folder = tmp_path / "h100-sxm"
    folder.mkdir()
    lines = [
        {"type": "header", "run_id": "quick-x", "profile": "h100-sxm"},
        {"type": "case", "id": "ncu:flash,N=4096", "group": "ncu/sdpa-flash", "status": "ok",
         "prediction": {"analytic": {"time_s": 2.0e-3, "hbm_bytes": 1.0e9},
                        "trace": {"time_s": 1.5e-3, "hbm_bytes": 2.0e8}},
         "measurement": {"time_s": 1.6e-3, "hbm_bytes": 2.5e8}},
        {"type": "case", "id": "kernel:oom", "status": "failed", "reason": "out of memory"},
    ]
    (folder / "quick-x.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    found, unread = validation.jsonl_comparisons(folder)
    assert unread == 0
    by = {(c.quantity, c.model): c for c in found}
    assert set(by) == {("time_s", "analytic"), ("time_s", "trace"), ("hbm_bytes", "analytic"),
                       ("hbm_bytes", "trace")}
    assert by[("hbm_bytes", "trace")].error == pytest.approx(-0.2)
    page = validation.build(Context(h100, (), tmp_path))
    assert page.figures()
    assert page.summary["errors"]["ncu/sdpa-flash/hbm_bytes/analytic"]["bias"] == 3.0
    assert "within 20%" in page.takeaway and "4.0×" in page.takeaway


# ---- claims: verdicts come from numbers ------------------------------------------------


def _part(low: float, high: float, values: list[float]) -> claims.Part:
    return claims.Part("x", 1.0, low, high,
                       tuple(claims.Scenario(f"case {v}", v) for v in values), str)


def test_verdict_rules():
    assert claims.verdict((_part(1, 2, [1.5, 1.0]),)).kind == claims.HOLDS
    only = claims.verdict((_part(1, 2, [1.5, 3.0]),))
    assert only.kind == claims.ONLY_IF and "case 1.5" in only.text and "case 3.0" not in only.text
    fails = claims.verdict((_part(1, 2, [1.5]), _part(10, 20, [3.0])))
    assert fails.kind == claims.FAILS and "3.0" in fails.text


def test_claims_cover_the_issue_and_have_computed_verdicts(site):
    page = next(p for p in site.pages if p.slug == claims.SLUG)
    checked = page.summary["claims"]
    assert len(checked) >= 10
    for phrase in ("16 billion", "100+ GB", "8 KV heads", "4 GB to 64 GB", "petabytes",
                   "2–3× speed", "sliding window", "top-k", "$0.65", "every third layer"):
        assert any(phrase.lower() in c["claim"].lower() for c in checked), phrase
    assert sum(page.summary["verdict_counts"].values()) == len(checked)
    assert {c["verdict"] for c in checked} <= {claims.HOLDS, claims.ONLY_IF, claims.FAILS}


def test_claim_values_agree_with_independent_derivations(h100):
    # 128K² query-key pairs under a full mask, per head: N·S counted directly
    c1 = claims.comparisons_128k()
    assert c1.parts[0].scenarios[0].value == 131072**2
    assert visible_pairs(131072, 131072, MaskGeometry("causal")) == 131072 * 131073 / 2
    # GQA with 64 query and 8 K/V heads: exactly 8× less cache on one GPU, 4× at TP 16
    ratios = [s.value for s in claims.gqa_8x(h100).parts[0].scenarios]
    assert ratios[0] == pytest.approx(8.0) and ratios[-1] == pytest.approx(4.0)
    # Llama-3-70B at 2^20 tokens: 2 (K, V) · 80 layers · 8 heads · 128 · 2 bytes per token
    kv = claims.kv_cache_1m(h100).parts[0].scenarios[0].value
    assert kv == 2 * 80 * 8 * 128 * 2 * 2**20


# ---- the kernel animation ----------------------------------------------------------------


@pytest.mark.parametrize("problem,block_q,block_kv,heads_per_block", [
    (flash_kernel.SHAPE, 128, 128, 1),
    (AttentionProblem(batch=2, seq_len=1000, heads=4, kv_heads=2, head_dim=40,
                      mask=Mask(causal=True, window=300)), 64, 48, 2),
    (AttentionProblem(batch=1, seq_len=97, kv_len=200, heads=2, head_dim=64,
                      mask=Mask(causal=False)), 32, 64, 1),
])
def test_animation_schedule_adds_up_to_the_analytic_count(h100, problem, block_q, block_kv,
                                                          heads_per_block):
    tiling = default_tiling(problem, h100, "flash2", block_q=block_q, block_kv=block_kv,
                            heads_per_block=heads_per_block)
    s = flash_kernel.schedule(problem, tiling, h100)
    analytic = predict(problem, h100, "flash2", tiling).cost
    last = s.steps[-1]
    assert last.global_read_bytes == pytest.approx(analytic.global_read_bytes, rel=1e-12)
    assert last.global_write_bytes == pytest.approx(analytic.global_write_bytes, rel=1e-12)
    # every needed tile read from HBM exactly once: the compulsory traffic less O's write
    output = problem.B * problem.N * problem.H * problem.Dv * 2
    assert last.hbm_read_bytes == pytest.approx(compulsory_bytes(problem) - output)
    assert all(a.hbm_read_bytes <= b.hbm_read_bytes for a, b in zip(s.steps[:-1], s.steps[1:],
                                                                   strict=True))


def test_animation_has_one_frame_per_step(site):
    page = next(p for p in site.pages if p.slug == flash_kernel.SLUG)
    fig = page.figures()[0]
    steps = page.summary["steps"]
    assert len(fig.frames) == steps == len(fig.layout.sliders[0].steps)
    assert all(len(f.data) == len(f.traces) for f in fig.frames)


# ---- the command ---------------------------------------------------------------------


def test_cli_report_json(tmp_path):
    out = tmp_path / "site"
    r = CliRunner().invoke(app, ["report", "--out", str(out), "--gpu", "h100-sxm",
                                 "--model", "mistral-7b", "--model", "llama-3-8b", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert [p["slug"] for p in result["pages"]][-1] == "index"
    assert all(Path(p["path"]).is_file() and p["takeaway"] for p in result["pages"])
    vram = next(p for p in result["pages"] if p["slug"] == "vram")
    assert set(vram["summary"]) == {"mistralai/Mistral-7B-v0.1", "meta-llama/Meta-Llama-3-8B"}


@pytest.mark.parametrize("args,field", [
    (["--gpu", "h100-sxn"], "gpu='h100-sxn'"),
    (["--model", "llama-99"], "model='llama-99'"),
])
def test_cli_report_bad_input_exits_2(tmp_path, args, field):
    r = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "x"), *args])
    assert r.exit_code == 2
    assert f"error: {field}" in r.output
    assert not (tmp_path / "x").exists()  # nothing written


def test_cli_report_out_must_be_a_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    r = CliRunner().invoke(app, ["report", "--out", str(target)])
    assert r.exit_code == 2 and "must be a directory" in r.output


def test_cli_start_up_does_not_import_plotly():
    code = ("import sys, memsim.cli, memsim.cli.report, memsim.reports.site; "
            "print('plotly' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
