"""Serving deployments: parallelism, the batch that fits, fp8 cache, MTP — the laws of
issue 14 as properties, cost-curve and predict held together, and the bad-input rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.inference import Setup, cost_curve, decode_phase, kv_cache_bytes, predict
from memsim.inference.capacity import fits, max_batch, total_bytes
from memsim.inference.deployment import tokens_per_step
from memsim.inference.memory import kv_bytes_per_token, routed_expert_bytes, weights_bytes
from memsim.models import load_model

H100, H800 = load_gpu("h100-sxm"), load_gpu("h800-sxm")
V32 = "deepseek-ai/DeepSeek-V3.2-Exp"
_register()
RUNNER = CliRunner()


def s(name: str = "llama-3-8b", gpu=H100, **kw) -> Setup:
    return Setup(load_model(name), gpu, **kw)


# ---- laws -------------------------------------------------------------------------------


@settings(max_examples=25)
@given(name=st.sampled_from(["llama-3-8b", "qwen2.5-7b", "gemma-3-27b", "mixtral-8x7b"]),
       tp=st.sampled_from([1, 2, 4]), dp=st.sampled_from([1, 2, 4]),
       ctx=st.integers(1, 200_000), extra_ctx=st.integers(0, 50_000),
       batch=st.integers(1, 512), extra_batch=st.integers(0, 512))
def test_fits_is_monotone_in_batch_and_context(name, tp, dp, ctx, extra_ctx, batch,
                                               extra_batch) -> None:
    """Memory never shrinks as the batch or the context grows, so fits never returns."""
    setup = s(name, tp=tp, gpus=tp * dp, dp_attention=dp > 1)
    base = total_bytes(setup, ctx, batch)
    assert total_bytes(setup, ctx + extra_ctx, batch) >= base
    assert total_bytes(setup, ctx, batch + extra_batch) >= base
    if not fits(setup, ctx, batch):
        assert not fits(setup, ctx + extra_ctx, batch + extra_batch)


@pytest.mark.parametrize("name", ["mixtral-8x7b", V32, "llama-4-scout"])
@pytest.mark.parametrize(("gpus", "tp"), [(2, 1), (4, 2), (8, 1), (8, 8), (16, 4)])
def test_ep_never_increases_per_gpu_expert_bytes(name, gpus, tp) -> None:
    experts = max(g.mlp.experts for g in load_model(name).groups)
    if gpus > experts:
        pytest.skip("EP wider than the experts is refused (test_bad_deployments_exit_2...)")
    dp = gpus // tp
    plain = s(name, tp=tp, gpus=gpus, dp_attention=dp > 1)
    ep = replace(plain, ep=gpus)
    tp_only = s(name, tp=tp)  # the attention group alone, no DP, no EP
    assert routed_expert_bytes(ep) <= routed_expert_bytes(plain) + 1e-6
    assert routed_expert_bytes(ep) <= routed_expert_bytes(tp_only) + 1e-6
    assert routed_expert_bytes(ep) > 0


@pytest.mark.parametrize(("name", "tp"), [("llama-3-70b", 1), ("llama-3-70b", 4),
                                          (V32, 1), (V32, 8), ("gemma-3-27b", 2)])
@pytest.mark.parametrize("dp", [2, 4, 8])
def test_dp_attention_divides_cache_per_gpu_by_the_dp_degree(name, tp, dp) -> None:
    ctx, batch = np.array([4096, 65_536]), 8 * dp
    alone = s(name, tp=tp)
    spread = replace(alone, gpus=tp * dp, dp_attention=True)
    a = sum(kv_cache_bytes(alone, ctx, batch).values())
    b = sum(kv_cache_bytes(spread, ctx, batch).values())
    np.testing.assert_allclose(b, a / dp)


@pytest.mark.parametrize(("name", "kw", "batch"), [
    ("llama-3-8b", {}, 4), ("llama-3-70b", {"tp": 4}, 16), ("qwen2.5-7b", {"mtp": 2}, 8),
    (V32, {"gpus": 8, "dp_attention": True, "ep": 8, "weight_dtype": "fp8"}, 64),
    ("llama-3-70b", {"tp": 2, "pp": 2}, 8),
])
def test_cost_curve_and_predict_agree(name, kw, batch) -> None:
    """Average prefill at p = predict's prefill of a p-token prompt (same chunks); marginal
    decode at p = predict's decode at context p − 1; fits the same."""
    gpu = H800 if name == V32 else H100
    setup, chunk = s(name, gpu, **kw), 2048
    curve = cost_curve(setup, 16_384, points=4, batch=batch, chunk=chunk)
    for row in curve:
        p = row["position"]
        pre = predict(replace(setup, prefill_chunk=chunk), p, batch)["prefill"]
        dec = predict(setup, p - 1, batch)["decode"]
        assert row["prefill_average_usd_per_million_tokens"] == pytest.approx(
            pre["usd_per_million_tokens"], rel=1e-9)
        assert row["decode_usd_per_million_tokens"] == pytest.approx(
            dec["usd_per_million_tokens"], rel=1e-9)
        assert row["fits"] == predict(replace(setup, prefill_chunk=chunk), p, batch)["vram"]["fits"]


def test_decode_average_is_the_mean_of_the_marginal_curve() -> None:
    """Dense decode is nearly affine in the position, so the trapezoid mean is close to the
    exact mean: TensorRT-LLM's XQA decode splits the keys in steps of 128 past tokens
    (memsim.attention.xqa_multi_block) and pays a fixed time per CTA, so the time steps
    a little between the curve's points (0.27 % at 8K on Llama-3-8B, batch 4)."""
    setup = s("llama-3-8b")
    row = cost_curve(setup, 8192, points=8, batch=4)[-1]
    positions = np.arange(1, 8193)
    step = decode_phase(setup, positions - 1, 4).time_s
    exact = float(np.mean(step)) * setup.price / 3600 / 4 * 1e6
    assert row["decode_average_usd_per_million_tokens"] == pytest.approx(exact, rel=5e-3)


# ---- the batch that fits ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "gpu", "kw"), [
    ("llama-3-8b", H100, {}), ("llama-3-70b", H100, {"tp": 4}),
    (V32, H800, {"gpus": 16, "dp_attention": True, "ep": 16, "weight_dtype": "fp8"}),
    ("mistral-7b", load_gpu("l40s"), {}),
])
def test_max_batch_is_the_largest_that_fits(name, gpu, kw) -> None:
    setup = s(name, gpu, **kw)
    ctx = np.array([2048, 32_768, 131_072])
    best = max_batch(setup, ctx)
    D = setup.attention_dp
    for c, b in zip(ctx, best, strict=True):
        if b:
            assert fits(setup, c, b)
        assert not fits(setup, c, b + D)


def test_batch_max_where_nothing_fits_is_refused() -> None:
    with pytest.raises(InputError, match="nothing fits"):
        predict(s("llama-3-70b"), 8192, "max")  # 140 GB of bf16 weights on one 80 GB GPU


def test_cost_curve_marks_what_does_not_fit() -> None:
    """V3.2 at batch 256 on one H800 at 128K: the issue's impossible point is flagged."""
    setup = s(V32, H800, weight_dtype="fp8")
    curve = cost_curve(setup, 131_072, points=2, batch=256)
    assert not any(r["fits"] for r in curve)
    assert all(r["batch"] == 0 and r["prefill_usd_per_million_tokens"] is None
               for r in cost_curve(setup, 131_072, points=2, batch="max"))


# ---- cache dtype, MTP, pipeline --------------------------------------------------------


def test_fp8_latent_cache_is_flashmla_656_bytes_plus_indexer() -> None:
    a = load_model(V32).groups[0].attention
    assert kv_bytes_per_token(s(V32, H800, kv_dtype="fp8"), a) == 656 + 132
    assert kv_bytes_per_token(s(V32, H800), a) == 576 * 2 + 132


def test_fp8_gqa_cache_adds_one_scale_per_block() -> None:
    a = load_model("llama-3-8b").groups[0].attention
    per_token = a.kv_heads * (a.head_dim + a.head_dim_v)
    assert kv_bytes_per_token(s(kv_dtype="fp8"), a) == per_token + per_token / 128 * 4


@given(k=st.integers(0, 6), a=st.floats(0.0, 1.0))
def test_tokens_per_step_bounds(k, a) -> None:
    t = float(tokens_per_step(k, a))
    assert 1.0 - 1e-12 <= t <= k + 1 + 1e-12
    assert float(tokens_per_step(k + 1, a)) >= t - 1e-12


def test_mtp_at_zero_acceptance_only_costs() -> None:
    base = predict(s(), 4096, 8)["decode"]
    drafted = predict(s(mtp=2, acceptance=0.0), 4096, 8)["decode"]
    assert drafted["tokens_per_step"] == 1.0
    assert drafted["usd_per_million_tokens"] > base["usd_per_million_tokens"]
    assert "mtp_draft" in drafted["operators_s"]


def test_mtp_helps_a_memory_bound_decode() -> None:
    base = predict(s(), 4096, 1)["decode"]
    mtp = predict(s(mtp=1, acceptance=0.85), 4096, 1)["decode"]
    assert mtp["time_per_token_s"] < base["time_per_token_s"]


def test_pipeline_halves_weights_and_cache_per_gpu() -> None:
    one, two = s("llama-3-70b", tp=2), s("llama-3-70b", tp=2, pp=2)
    assert weights_bytes(two) == pytest.approx(weights_bytes(one) / 2)
    assert sum(kv_cache_bytes(two, 8192, 4).values()) == pytest.approx(
        sum(kv_cache_bytes(one, 8192, 4).values()) / 2)


def test_pipeline_prefill_without_chunks_has_no_speed_up() -> None:
    """One micro-batch through P stages: the stages run one after the other (bubble)."""
    one, four = s("llama-3-70b", tp=2), s("llama-3-70b", tp=2, pp=4)
    t1 = predict(one, 8192)["prefill"]["time_s"]
    t4 = predict(four, 8192)["prefill"]
    assert t4["time_s"] >= t1
    assert t4["operators_s"]["p2p"] > 0


def test_expert_parallel_moves_tokens_by_all_to_all() -> None:
    ep = predict(s(V32, H800, gpus=8, dp_attention=True, ep=8, weight_dtype="fp8"), 4096, 64)
    assert ep["decode"]["operators_s"]["all_to_all"] > 0
    assert ep["gpus"] == 8 and ep["attention_replicas"] == 8


def test_expert_parallel_dispatch_is_deepeps() -> None:
    """Decode: DeepEP's low-latency kernels on the rank's tokens (fp8 dispatch, bf16
    combine); prefill: the normal kernels (TensorRT-LLM sends fp8 models' tokens in bf16)."""
    from memsim.inference.comm import moe_a2a_s

    setup = s(V32, H800, gpus=8, dp_attention=True, ep=8, weight_dtype="fp8")
    moe = setup.model.groups[-1]
    kw = {"hidden": setup.model.hidden_size, "top_k": moe.mlp.experts_per_token,
          "experts": moe.mlp.experts, "ep": 8, "gpu": setup.gpu, "backend": None,
          "groups": moe.mlp.expert_groups, "topk_groups": moe.mlp.expert_groups_per_token}
    pred = predict(setup, 4096, 64)
    rank = 64 / 8   # tokens of one attention replica (one decode step)
    ll = (moe_a2a_s(rank, phase="dispatch", mode="low_latency", dtype="fp8", **kw)
          + moe_a2a_s(rank, phase="combine", mode="low_latency", dtype="bf16", **kw))
    assert pred["decode"]["operators_s"]["all_to_all"] == pytest.approx(moe.count * ll)
    rank = 64 / 8 * 4096
    normal = (moe_a2a_s(rank, phase="dispatch", mode="normal", dtype="bf16", **kw)
              + moe_a2a_s(rank, phase="combine", mode="normal", dtype="bf16", **kw))
    assert pred["prefill"]["operators_s"]["all_to_all"] == pytest.approx(moe.count * normal)


# ---- bad input: one line, exit 2 --------------------------------------------------------


@pytest.mark.parametrize(("args", "field"), [
    (["--model", "llama-3-70b", "--batch", "max"], "batch"),
    (["--model", "mixtral-8x7b", "--gpus", "16", "--tp", "1", "--dp-attention", "--ep", "16"],
     "ep"),
    (["--model", "llama-3-8b", "--ep", "2", "--gpus", "2", "--dp-attention"], "ep"),
    (["--model", "modernbert-large", "--gpus", "2", "--dp-attention"], "dp_attention"),
    (["--model", "llama-3-8b", "--dp-attention"], "dp_attention"),
    (["--model", "llama-3-8b", "--gpus", "4", "--tp", "2"], "gpus"),
    (["--model", "llama-3-8b", "--pp", "64"], "pp"),
    (["--model", "llama-3-8b", "--gpus", "6", "--tp", "4"], "gpus"),
    (["--model", "llama-3-8b", "--mtp", "1", "--acceptance", "1.5"], "acceptance"),
    (["--model", "llama-3-8b", "--batch", "lots"], "batch"),
])
def test_bad_deployments_exit_2_with_the_rule(args, field) -> None:
    r = RUNNER.invoke(app, ["predict", "--gpu", "h100-sxm", "--context", "8192", *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}="), r.stderr


def test_plan_bad_input_exits_2() -> None:
    for args in (["--tpot-ms", "0"], ["--isl", "9000"], ["--max-mtp", "-1"]):
        r = RUNNER.invoke(app, ["plan", "--model", "qwen2.5-7b", "--gpu", "h100-sxm",
                                "--context", "8192", *args])
        assert r.exit_code == 2, r.output
        assert r.stderr.startswith("error: ")


def test_context_parallel_splits_a_prompts_attention_over_the_replicas() -> None:
    """V3.2-Exp at 128K on 8 H800s: the replicated indexer keeps TP 8 slow; splitting the
    prompt over 8 DP-attention replicas divides its attention by 8."""
    base = s(V32, H800, weight_dtype="fp8")
    tp8 = predict(replace(base, tp=8), 131_072)["prefill"]["operators_s"]["attention"]
    one = predict(base, 131_072)["prefill"]["operators_s"]["attention"]
    cp = predict(replace(base, gpus=8, dp_attention=True, context_parallel=True),
                 131_072)["prefill"]["operators_s"]
    assert cp["attention"] == pytest.approx(one / 8)
    assert tp8 > 0.5 * one          # the indexer does not shrink with TP
    assert cp["all_gather"] > 0     # each replica gathers the others' keys
    with pytest.raises(InputError, match="dp-attention"):
        replace(base, context_parallel=True)


@pytest.mark.parametrize(("name", "gpu", "kw"), [
    ("llama-3-70b", H100, {"tp": 2, "pp": 2}),
    ("llama-3-70b", H100, {"tp": 2, "gpus": 4, "dp_attention": True}),
    (V32, H800, {"gpus": 16, "dp_attention": True, "ep": 16, "weight_dtype": "fp8"}),
    (V32, H800, {"gpus": 16, "dp_attention": True, "ep": 16, "context_parallel": True,
                 "weight_dtype": "fp8", "kv_dtype": "fp8", "mtp": 1}),
])
def test_chunked_prefill_composes_with_every_parallelism(name, gpu, kw) -> None:
    """Chunks change where prefill's work happens, not how much: time within a factor of
    the unchunked prefill (weights re-read per chunk, pipeline slots), activations lower."""
    whole = predict(s(name, gpu, **kw), 32_768, 4)
    chunked = predict(s(name, gpu, prefill_chunk=4096, **kw), 32_768, 4)
    ratio = chunked["prefill"]["time_s"] / whole["prefill"]["time_s"]
    assert 0.5 < ratio < 1.5
    assert chunked["vram"]["activation_bytes"] < whole["vram"]["activation_bytes"]
    assert chunked["decode"]["time_per_token_s"] == whole["decode"]["time_per_token_s"]
