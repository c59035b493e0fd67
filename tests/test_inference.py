"""Whole-model inference: VRAM, time, TP, $ per million tokens — invariants and goldens."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.inference import (
    Setup,
    all_reduce_time_s,
    cost_curve,
    decode_phase,
    predict,
    predict_arrays,
    prefill_phase,
    sweep,
    touched_experts,
    usd_per_million_tokens,
    vram,
)
from memsim.models import load_model

GPU = load_gpu("h100-sxm")
PARTS = ("weights_bytes", "kv_cache_bytes", "activation_bytes", "workspace_bytes",
         "reserve_bytes")
DENSE_MODELS = ("llama-3-8b", "mistral-7b", "gemma-2-9b", "qwen2.5-7b", "gpt2-medium")
GLOBAL_MODELS = ("llama-3-8b", "qwen2.5-7b", "gpt2-medium", "llama-2-7b")


def setup(name: str = "llama-3-8b", **kw) -> Setup:
    return Setup(load_model(name), GPU, **kw)


def _vram(s: Setup, ctx, batch=1):
    return vram(s, ctx, batch, prefill_phase(s, ctx, batch).workspace_bytes)


# ---- the $ algebra ----------------------------------------------------------------------


def test_usd_algebra_golden() -> None:
    """1 s on 1 GPU at $3600/h is $1; spread over 10⁶ tokens that is $1 per M tokens."""
    assert usd_per_million_tokens(1.0, 1e6, 1, 3600.0) == pytest.approx(1.0)
    assert usd_per_million_tokens(2.0, 1e6, 4, 3600.0) == pytest.approx(8.0)


@given(price=st.floats(0.01, 100), k=st.floats(0.1, 10), ctx=st.integers(1, 65_536))
def test_cost_linear_in_price(price: float, k: float, ctx: int) -> None:
    a = predict_arrays(setup(usd_per_gpu_hour=price), ctx, 1, with_min_gpus=False)
    b = predict_arrays(setup(usd_per_gpu_hour=price * k), ctx, 1, with_min_gpus=False)
    for phase in ("prefill", "decode"):
        assert b[phase]["usd_per_million_tokens"] == pytest.approx(
            k * a[phase]["usd_per_million_tokens"], rel=1e-9)


# ---- VRAM -------------------------------------------------------------------------------


@given(name=st.sampled_from(DENSE_MODELS + ("deepseek-v3.2", "llama-4-scout")),
       ctx=st.integers(1, 200_000), batch=st.integers(1, 64),
       tp=st.sampled_from([1, 2, 4, 8]), chunk=st.sampled_from([None, 512, 4096]))
def test_vram_total_is_sum_of_parts(name, ctx, batch, tp, chunk) -> None:
    m = load_model(name)
    if any(g.attention.heads % tp for g in m.groups):
        tp = 1
    v = _vram(Setup(m, GPU, tp=tp, prefill_chunk=chunk), ctx, batch)
    assert v["total_bytes"] == pytest.approx(sum(v[p] for p in PARTS), rel=1e-12)
    assert all(np.all(v[p] >= 0) for p in PARTS)
    assert bool(v["fits"]) == bool(v["total_bytes"] <= v["capacity_bytes"])
    assert v["shortfall_bytes"] == pytest.approx(max(0.0, v["total_bytes"] - v["capacity_bytes"]))


@given(a=st.integers(1, 100_000), b=st.integers(1, 100_000), batch=st.integers(1, 16))
def test_kv_linear_in_context_for_global_layers(a: int, b: int, batch: int) -> None:
    s = setup("llama-3-70b", tp=2)
    kv = lambda L: float(_vram(s, L, batch)["kv_cache_bytes"])  # noqa: E731
    assert kv(a + b) == pytest.approx(kv(a) + kv(b), rel=1e-12)


@given(extra=st.integers(0, 500_000))
def test_kv_flat_past_the_window(extra: int) -> None:
    """Mistral 7B v0.1: rolling buffer of W = 4096 (arXiv 2310.06825 §2)."""
    s = setup("mistral-7b")
    kv = lambda L: float(_vram(s, L)["kv_cache_bytes"])  # noqa: E731
    assert kv(4096 + extra) == kv(4096)


@given(extra=st.integers(0, 500_000))
def test_gemma3_local_layers_capped_global_layers_grow(extra: int) -> None:
    s = setup("gemma-3-27b")
    L = 1024 + extra
    kinds = _vram(s, L)["kv_cache_by_layer_kind"]
    local = kinds["causal window 1024"]
    assert float(local) == 52 * 1024 * 16 * 128 * 2 * 2   # 52 local layers, capped at W
    assert float(kinds["global"]) == 10 * L * 16 * 128 * 2 * 2


@given(tp=st.sampled_from([1, 2, 4, 8]), ctx=st.integers(1, 100_000))
def test_each_gpu_holds_its_share(tp: int, ctx: int) -> None:
    """Llama-3-70B has 8 KV heads: weights and KV split exactly G ways for G ≤ 8."""
    one = _vram(setup("llama-3-70b"), ctx)
    many = _vram(setup("llama-3-70b", tp=tp), ctx)
    assert many["weights_bytes"] * tp == pytest.approx(one["weights_bytes"])
    assert many["kv_cache_bytes"] * tp == pytest.approx(one["kv_cache_bytes"])


def test_mla_latent_replicated_under_tp() -> None:
    one = _vram(setup("deepseek-v3"), 4096)
    eight = _vram(setup("deepseek-v3", tp=8), 4096)
    assert float(eight["kv_cache_bytes"]) == float(one["kv_cache_bytes"]) == 61 * 1152 * 4096


def test_llama3_70b_128k_golden_kv() -> None:
    """320 KiB per token (docs/reference/inputs.md §C) × 131,072 tokens = 40 GiB, 20 GiB per
    GPU at TP 2."""
    v = predict(setup("llama-3-70b", tp=2), 131_072)["vram"]
    assert v["kv_cache_bytes"] == 327_680 * 131_072 / 2
    assert not v["fits"] and v["min_gpus_to_fit"] == 4


def test_gemma3_27b_window_cuts_kv_sixfold() -> None:
    """Gemma 3's 5:1 local/global with W = 1024: ~10 GiB at 128K instead of ~62 GiB."""
    with_window = predict(setup("gemma-3-27b"), 131_072)["vram"]["kv_cache_bytes"]
    all_global = predict(setup("gemma-3-27b", all_global=True), 131_072)["vram"]
    assert with_window / 2**30 == pytest.approx(10.4, abs=0.1)
    assert all_global["kv_cache_bytes"] / 2**30 == pytest.approx(62.0, abs=0.1)


def test_min_gpus_to_fit_really_fits() -> None:
    s = setup("llama-3-70b")
    r = predict(s, 131_072)
    need = r["vram"]["min_gpus_to_fit"]
    assert predict(setup("llama-3-70b", tp=need), 131_072)["vram"]["fits"]
    assert not predict(setup("llama-3-70b", tp=need // 2), 131_072)["vram"]["fits"]


def test_standard_attention_workspace_quadratic() -> None:
    """Materialised S of standard attention: 8× the tokens needs 64× the workspace."""
    s = setup("llama-3-8b", attention="standard")
    w = lambda L: float(prefill_phase(s, L, 1).workspace_bytes)  # noqa: E731
    assert w(8 * 4096) == pytest.approx(64 * w(4096), rel=1e-6)


def test_chunked_prefill_lowers_activations() -> None:
    full = predict(setup("llama-3-8b"), 65_536)["vram"]["activation_bytes"]
    chunked = predict(setup("llama-3-8b", prefill_chunk=4096), 65_536)["vram"]
    assert chunked["activation_bytes"] < full / 8


# ---- time -------------------------------------------------------------------------------


@given(name=st.sampled_from(GLOBAL_MODELS), a=st.integers(1, 60_000), b=st.integers(0, 60_000),
       batch=st.integers(1, 32), attention=st.sampled_from(["flash2", "standard"]))
def test_decode_cost_per_token_non_decreasing_in_position(name, a, b, batch, attention) -> None:
    """Dense (all-global) attention with a fixed schedule. Left out: split-KV decoding, whose
    split count follows the number of key tiles (one more tile can buy parallelism), and
    sliding windows, whose W keys straddle one tile more or less as the window slides."""
    s = setup(name, attention=attention)
    t = lambda L: float(decode_phase(s, L, batch).time_s)  # noqa: E731
    assert t(a + b) >= t(a) * (1 - 1e-12)


def test_vectorised_equals_scalar() -> None:
    s = setup("gemma-2-9b", tp=2)
    L = np.array([17, 1000, 5000, 40_000])
    B = np.array([1, 3, 8, 2])
    r = predict_arrays(s, L, B)
    for i in range(len(L)):
        one = predict(s, int(L[i]), int(B[i]))
        assert one["prefill"]["time_s"] == pytest.approx(float(r["prefill"]["time_s"][i]))
        assert one["decode"]["time_per_token_s"] == pytest.approx(
            float(r["decode"]["time_per_token_s"][i]))
        assert one["vram"]["total_bytes"] == pytest.approx(float(r["vram"]["total_bytes"][i]))


def test_tp_adds_all_reduce_and_cuts_weight_time() -> None:
    one = predict(setup("llama-3-70b"), 4096, 8)
    four = predict(setup("llama-3-70b", tp=4), 4096, 8)
    assert "all_reduce" not in one["decode"]["operators_s"]
    assert four["decode"]["operators_s"]["all_reduce"] > 0
    assert four["decode"]["time_per_token_s"] < one["decode"]["time_per_token_s"]


def test_all_reduce_ring_formula() -> None:
    """Ring all-reduce moves 2(G−1)/G of the message per GPU (nccl-tests busBw)."""
    assert float(all_reduce_time_s(1e6, 1, GPU)) == 0.0
    bw = GPU.achievable_interconnect_bytes_per_s / 2
    lat = GPU.spec.kernel_launch_overhead_s
    assert float(all_reduce_time_s(1e9, 4, GPU)) == pytest.approx(1.5 * 1e9 / bw + 6 * lat)


def test_touched_experts_limits() -> None:
    assert touched_experts(256, 8, 1) == pytest.approx(8)
    assert touched_experts(256, 8, 100_000) == pytest.approx(256)


def test_moe_decode_reads_more_experts_with_batch() -> None:
    s = setup("mixtral-8x7b", tp=2)
    one = decode_phase(s, 1024, 1).operators_s["mlp"]
    many = decode_phase(s, 1024, 64).operators_s["mlp"]
    assert float(many) > float(one)


def test_encoder_has_no_decode() -> None:
    r = predict(setup("modernbert-base"), 8192)
    assert r["decode"]["time_per_token_s"] is None
    assert r["vram"]["kv_cache_bytes"] == 0
    assert r["prefill"]["time_s"] > 0


def test_dsa_model_runs_dsa_by_default_and_dense_when_asked() -> None:
    sparse = predict(setup("deepseek-v3.2", tp=8, weight_dtype="fp8"), 65_536)
    dense = predict(setup("deepseek-v3.2", tp=8, weight_dtype="fp8", attention="flash2"), 65_536)
    assert sparse["prefill"]["time_s"] > 0 and dense["prefill"]["time_s"] > 0
    assert sparse["prefill"]["operators_s"]["attention"] != dense["prefill"]["operators_s"][
        "attention"]


# ---- JSON contract ----------------------------------------------------------------------


def test_predict_json_contract() -> None:
    r = predict(setup("llama-3-8b"), 8192, 4)
    for key in ("weights_bytes", "kv_cache_bytes", "activation_bytes", "workspace_bytes",
                "total_bytes", "capacity_bytes", "fits", "min_gpus_to_fit"):
        assert key in r["vram"]
    for key in ("time_s", "tokens_per_s", "usd_per_million_tokens"):
        assert key in r["prefill"]
    for key in ("time_per_token_s", "tokens_per_s", "usd_per_million_tokens"):
        assert key in r["decode"]
    assert r["prefill"]["tokens_per_s"] == pytest.approx(8192 * 4 / r["prefill"]["time_s"])
    assert r["decode"]["tokens_per_s"] == pytest.approx(4 / r["decode"]["time_per_token_s"])


def test_cost_curve_contract_and_shape() -> None:
    curve = cost_curve(setup("llama-3-8b"), 65_536, points=8, batch=2)
    assert len(curve) == 8
    assert curve[-1]["position"] == 65_536
    for row in curve:
        assert set(row) == {"position", "batch", "fits", "prefill_usd_per_million_tokens",
                            "prefill_average_usd_per_million_tokens",
                            "decode_usd_per_million_tokens",
                            "decode_average_usd_per_million_tokens"}
        assert row["fits"] is True
    dec = [r["decode_usd_per_million_tokens"] for r in curve]
    assert dec == sorted(dec)


# ---- sweeps -----------------------------------------------------------------------------


def test_sweep_with_an_executor_matches_serial() -> None:
    args = (["llama-3-8b", "mistral-7b"], ["h100-sxm"], [1024, 8192], [1, 4], ["auto", "flash2"])
    serial = sorted(sweep(*args), key=lambda r: tuple(str(v) for v in r.values()))
    with ThreadPoolExecutor(2) as ex:
        parallel = sorted(sweep(*args, executor=ex),
                          key=lambda r: tuple(str(v) for v in r.values()))
    assert len(serial) == 2 * 2 * 2 * 2 == len(parallel)
    assert serial == parallel


# ---- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "field"), [
    ({"tp": 3}, "tp"), ({"tp": 0}, "tp"), ({"attention": "flash3"}, "attention"),
    ({"usd_per_gpu_hour": 0.0}, "price"), ({"kv_dtype": "int4"}, "kv_dtype"),
    ({"weight_dtype": "fp9"}, "weight_dtype"), ({"prefill_chunk": -5}, "prefill_chunk"),
])
def test_bad_setup(kw, field) -> None:
    with pytest.raises(InputError) as err:
        setup("llama-3-8b", **kw)
    assert err.value.field == field


@pytest.mark.parametrize(("ctx", "batch", "field"), [(0, 1, "context"), (-4, 1, "context"),
                                                     (10, 0, "batch")])
def test_bad_sizes(ctx, batch, field) -> None:
    with pytest.raises(InputError) as err:
        predict(setup(), ctx, batch)
    assert err.value.field == field


def test_context_beyond_trained_length_warns() -> None:
    r = predict(setup("llama-3-8b"), 16_384)
    assert r["warnings"] and "8192" in r["warnings"][0]
    assert predict(setup("llama-3-8b"), 8192)["warnings"] == []
