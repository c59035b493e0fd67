"""Rows of aiconfigurator-core's measured tables → memsim predictions, on the committed extract
(tests/data/aiconfigurator/extract.json: package version, file and row of every row), so these
run without the package installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memsim.attention import predict
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.silicon import classes, tables
from memsim.silicon.classes import CLASSES

EXTRACT = Path(__file__).parent / "data" / "aiconfigurator" / "extract.json"
ROWS = tables.read_extract(EXTRACT)
PROFILED = {"h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200"}


def _files(op: str) -> list[tables.Rows]:
    return [r for r in ROWS if r.table == CLASSES[op].table and r.system in PROFILED]


def test_extract_has_provenance_and_covers_every_class_gpu_and_backend() -> None:
    assert ROWS[0].package_version
    assert 300 <= sum(len(r) for r in ROWS) <= 1000
    for op in CLASSES:
        assert _files(op), op
    assert {r.backend for r in ROWS} >= {"trtllm", "vllm", "sglang"}
    assert {r.system for r in ROWS} >= {"h100_sxm", "h200_sxm", "b200_sxm"}
    for r in ROWS:
        assert len(set(r.row.tolist())) == len(r)   # distinct parquet rows
        assert np.all(np.asarray(r.col("latency"), float) > 0)


# dtypes memsim.ops does not model (quantised weights, nvfp4): skipped with the reason
UNMODELLED = {"int4_wo", "int8_wo", "nvfp4", "sq", "w4a8_mxfp4_mxfp8", "w4afp8"}
# module tables: the models whose attention layer memsim builds ("-": tables without a model)
MODELLED_MODELS = {"-", *classes.MODULE_MODELS}


@pytest.mark.parametrize("op", list(CLASSES))
def test_every_extract_row_maps_to_a_finite_positive_time(op: str) -> None:
    for rows in _files(op):
        if CLASSES[op].select is not None:
            rows = rows.take(CLASSES[op].select(rows))
        keep = [str(d) not in UNMODELLED and str(e) not in UNMODELLED
                and str(g) not in UNMODELLED and str(m) in MODELLED_MODELS
                for d, e, g, m in zip(rows.col("gemm_dtype", "-"), rows.col("moe_dtype", "-"),
                                      rows.col("gemm_type", "-"), rows.col("model", "-"),
                                      strict=True)]
        rows = rows.take(np.array(keep, dtype=bool))
        if len(rows) == 0:
            continue
        m = CLASSES[op].mapper(rows, load_gpu(PROFILED[rows.system]))
        for model in classes.MODELS:
            t = m.time_s[model]
            assert np.all(np.isfinite(t) & (t > 0)), (rows.file, m.reasons)
        assert all(v >= 0 for terms in m.terms.values() for v in terms["hbm_s"])


def _one(op: str, system: str) -> tuple[tables.Rows, classes.Mapped, int]:
    rows = next(r for r in _files(op) if r.system == system)
    m = CLASSES[op].mapper(rows, load_gpu(PROFILED[system]))
    return rows, m, int(np.argmax(np.asarray(rows.col("latency"), float)))


def test_generation_key_length_is_isl_plus_step() -> None:
    rows, m, i = _one("generation_attention", "h100_sxm")
    assert m.params[i]["seq_len"] == 1
    assert m.params[i]["kv_len"] == rows.col("isl")[i] + rows.col("step")[i]


# (MLA rows are timed by memsim.ops.mla, the MLA kernels' own model: tested below)
ATTENTION_OPS = ["context_attention", "generation_attention", "encoder_attention"]


@pytest.mark.parametrize("op", ATTENTION_OPS)
def test_vectorised_rows_equal_memsim_attention_predict_row_by_row(op: str) -> None:
    """Every extract row of the attention family scores exactly what `memsim attention
    --backend B` prints for that problem: the headline (L2-aware) time and bound, the
    no-reuse time (one code path, memsim.attention.predict_arrays, for both)."""
    checked = 0
    for rows in _files(op):
        if op == "generation_attention" and rows.backend == "trtllm":
            # one class per decode kernel: the rows of one (the start is one class's)
            rows = rows.take(classes.trtllm_decode_kernel(rows) == "xqa_hmma")
        m = CLASSES[op].mapper(rows, load_gpu(PROFILED[rows.system]))
        for i, p in enumerate(m.params):
            problem = AttentionProblem(
                batch=p["batch"], seq_len=p["seq_len"], kv_len=p["kv_len"], heads=p["heads"],
                kv_heads=p["kv_heads"], head_dim=p["head_dim"], head_dim_v=p["head_dim_v"],
                dtype=p["dtype"], mla=p["mla"], mask=_mask(p["mask"]))
            pred = predict(problem, PROFILED[rows.system], p["algorithm"],
                           backend=rows.backend)
            assert m.time_s["analytic"][i] == pytest.approx(pred.headline.time_s, rel=1e-12)
            assert m.time_s["no_reuse"][i] == pytest.approx(pred.timing.time_s, rel=1e-12)
            assert m.bound[i] == pred.headline.bound
            checked += 1
    assert checked >= 30


def _mask(described: str) -> Mask:
    """The Mask of a description ('causal', 'full' or 'causal window 128')."""
    words = described.split()
    window = int(words[words.index("window") + 1]) if "window" in words else None
    return Mask(causal=words[0] != "full" and words[0] != "bidirectional", window=window)


def test_mla_rows_use_heads_per_gpu_and_the_mla_kernels_own_model() -> None:
    """MLA rows are timed by memsim.ops.mla (prefill FMHA on the decompressed K/V, FlashMLA
    decode on the latent) with the row's heads per GPU and key length isl + step."""
    from memsim.ops import mla

    for op, phase in (("generation_mla", "decode"), ("context_mla", "context")):
        rows, m, i = _one(op, "h100_sxm")
        p = m.params[i]
        assert p["heads"] == rows.col("num_heads")[i]   # already divided by tp_size
        isl, step = rows.col("isl")[i], rows.col("step")[i]
        assert p["kv_len"] == isl + step
        fn = mla.decode if phase == "decode" else mla.context
        size = p["kv_len"] if phase == "decode" else p["seq_len"]
        want = fn(p["batch"], size, p["heads"], kv_dtype=p["kv_dtype"], gpu="h100-sxm",
                  backend=rows.backend)
        assert m.time_s["analytic"][i] == pytest.approx(want.time_s, rel=1e-12)
        assert p["kernel_class"].startswith(f"mla/{phase}/")


def test_dtype_names_map_to_memsim() -> None:
    got = classes.dtype_of(np.array(["bfloat16", "fp8", "fp8_block", "half"], dtype=object))
    assert got.tolist() == ["bf16", "fp8", "fp8", "fp16"]



@pytest.mark.parametrize("op", ["context_attention", "generation_attention", "generation_mla",
                                "gemm"])
def test_calibration_terms_reproduce_memsims_time_at_the_class_factors(op: str) -> None:
    """Re-timed at the factors they were computed with (and the class's floor), a row's
    roofline terms give memsim's own time: the fit starts where memsim is. (Not MoE: its
    time is a sum of two grouped GEMMs' maxima plus activation passes, which one max of
    summed terms only approximates; see memsim/silicon/op_rows.py.)"""
    from memsim.validation.calibrate import retime_terms

    for rows in _files(op):
        if op == "generation_attention" and rows.backend == "trtllm":
            # one class per decode kernel: the rows of one (the start is one class's)
            rows = rows.take(classes.trtllm_decode_kernel(rows) == "xqa_hmma")
        m = CLASSES[op].mapper(rows, load_gpu(PROFILED[rows.system]))
        ok = np.isfinite(m.time_s["analytic"])
        if op == "gemm":   # one class per dtype: rows of the start's (bf16) class
            ok &= np.asarray([str(d) == "bfloat16" for d in rows.col("gemm_dtype")])
        if op == "generation_mla":   # likewise; fp8 adds its quantisation pass after the max
            ok &= np.asarray([str(d) == "bfloat16" for d in rows.col("kv_cache_dtype")])
        if op == "context_attention" or (op == "generation_attention"
                                         and rows.backend == "vllm"):
            # vLLM: one class per KV-cache dtype (FA3's e4m3 prefill and decode)
            ok &= np.asarray([str(d) == "bfloat16" for d in rows.col("kv_cache_dtype")])
        terms = {k: v[ok] for k, v in m.terms["analytic"].items()}
        again = retime_terms(terms, m.start, terms["launch_s"])
        assert again == pytest.approx(m.time_s["analytic"][ok], rel=1e-9)


def test_trtllm_prefill_with_fp8_kv_cache_computes_in_fp8() -> None:
    """TensorRT-LLM with an fp8 KV cache runs its fp8 context FMHA (the paged-context path
    casts Q to the cache's dtype), whatever attn_dtype says; so does vLLM (its collector
    hands FA3 an fp8 query with an fp8 cache); SGLang's rows keep attn_dtype."""
    recast = 0
    for rows in _files("context_attention"):
        m = CLASSES["context_attention"].mapper(rows, load_gpu(PROFILED[rows.system]))
        kv = classes.dtype_of(rows.col("kv_cache_dtype"))
        attn = classes.dtype_of(rows.col("attn_dtype"))
        got = np.array([p["dtype"] for p in m.params], dtype=object)
        fp8 = (kv == "fp8") & (rows.backend in ("trtllm", "vllm"))
        assert got.tolist() == np.where(fp8, "fp8", attn).tolist()
        recast += int(np.sum(fp8 & (attn != "fp8")))
    assert recast > 0


def test_moe_experts_of_a_relu2_model_are_not_gated(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A model config with a relu2 MoE names its non-gated shapes (with its latent width where
    it has one); a SwiGLU model's do not. A vLLM row of such a shape (whose kernel_source has
    no "nongated" mark) is timed with one up matrix: less time than the gated row."""
    import json

    from memsim.silicon import source

    (tmp_path / "nano_config.json").write_text(json.dumps({
        "hidden_size": 2688, "moe_intermediate_size": 1856, "n_routed_experts": 128,
        "num_experts_per_tok": 6, "mlp_hidden_act": "relu2"}))
    (tmp_path / "ultra_config.json").write_text(json.dumps({
        "hidden_size": 8192, "moe_latent_size": 2048, "moe_intermediate_size": 5120,
        "n_routed_experts": 512, "num_experts_per_tok": 22, "mlp_hidden_act": "relu2"}))
    (tmp_path / "v3_config.json").write_text(json.dumps({
        "hidden_size": 7168, "moe_intermediate_size": 2048, "n_routed_experts": 256,
        "num_experts_per_tok": 8, "hidden_act": "silu"}))
    assert source.non_gated_moe_shapes(tmp_path) == {
        (2688, 1856, 128, 6), (8192, 5120, 512, 22), (2048, 5120, 512, 22)}

    cols = {"num_tokens": np.array([64, 64]), "hidden_size": np.array([2688, 2688]),
            "inter_size": np.array([1856, 1856]), "topk": np.array([6, 6]),
            "num_experts": np.array([128, 128]), "moe_tp_size": np.array([1, 1]),
            "moe_ep_size": np.array([1, 1]), "moe_dtype": np.array(["bfloat16"] * 2, dtype=object),
            "distribution": np.array(["balanced"] * 2, dtype=object),
            "kernel_source": np.array(["vllm_unquantizedfusedmoe_triton_tritonexperts"] * 2,
                                      dtype=object),
            "latency": np.array([0.62, 0.62])}
    rows = tables.Rows("h200_sxm", "moe", "vllm", "0.24.0", "moe_perf", "f", "0",
                       np.arange(2), cols)
    gpu = load_gpu("h200")
    monkeypatch.setattr(source, "non_gated_moe_shapes", lambda: frozenset())
    gated = CLASSES["moe"].mapper(rows, gpu)
    monkeypatch.setattr(source, "non_gated_moe_shapes",
                        lambda: frozenset({(2688, 1856, 128, 6)}))
    plain = CLASSES["moe"].mapper(rows, gpu)
    assert gated.params[0]["gated"] and not plain.params[0]["gated"]
    assert plain.time_s["analytic"][0] < gated.time_s["analytic"][0]


def test_b200_vllm_mla_module_rows_carry_their_fused_op_collection() -> None:
    """B200's vLLM MLA module tables were re-collected with aiconfigurator#1423's fused ops
    (collection_meta.yaml ``norm_dispatch: vllm_c_eager_surrogate``): the extract carries
    the flag and the mapper times those rows with the fused norms and RoPE, i.e. faster
    than the same rows timed as the native chains."""
    import dataclasses

    for op in ("mla_context_module", "mla_generation_module"):
        rows, m, _ = _one(op, "b200_sxm")
        assert set(rows.col("norm_dispatch").tolist()) == {"vllm_c_eager_surrogate"}
        unflagged = dataclasses.replace(rows, columns={k: v for k, v in rows.columns.items()
                                                       if k != "norm_dispatch"})
        native = CLASSES[op].mapper(unflagged, load_gpu("b200")).time_s["analytic"]
        fused = m.time_s["analytic"]
        ok = np.isfinite(fused)
        assert ok.any()
        assert np.all(fused[ok] < native[ok])
    # the H200 vLLM tables (no flag) are read as the native chains
    h200, _, _ = _one("mla_generation_module", "h200_sxm")
    assert "norm_dispatch" not in h200.columns


def _moe_rows(gpu: str, dtypes: list[str], eps: list[int], sources: list[str]) -> tables.Rows:
    """vLLM MoE rows of DeepSeek-V3's shape (7168/2048, 256 experts top-8, TP1), 64 tokens."""
    n = len(dtypes)
    cols = {"num_tokens": np.full(n, 64), "hidden_size": np.full(n, 7168),
            "inter_size": np.full(n, 2048), "topk": np.full(n, 8),
            "num_experts": np.full(n, 256), "moe_tp_size": np.ones(n, dtype=int),
            "moe_ep_size": np.array(eps), "moe_dtype": np.array(dtypes, dtype=object),
            "distribution": np.array(["balanced"] * n, dtype=object),
            "kernel_source": np.array(sources, dtype=object), "latency": np.full(n, 0.5)}
    return tables.Rows(gpu, "moe", "vllm", "0.24.0", "moe_perf", "f", "0", np.arange(n), cols)


def test_moe_mapper_times_each_row_with_the_class_predict_chose() -> None:
    """vLLM fp8_block on H200 is Triton without EP and FlashInfer's CUTLASS with it
    (memsim.ops.moe.class_variant): the mapper names each row's class as predict reports
    it and scales the row's matmul term by that class's tensor efficiency."""
    from memsim.ops import moe
    from memsim.ops.classes import kernel_class

    rows = _moe_rows("h200_sxm", ["fp8_block"] * 2, [1, 8],
                     ["vllm_fp8moe_triton_tritonexperts",
                      "vllm_fp8moe_flashinfer_cutlass_flashinferexperts"])
    gpu = load_gpu("h200")
    m = CLASSES["moe"].mapper(rows, gpu)
    names = [p["kernel_class"] for p in m.params]
    assert names == ["moe/vllm/fp8_block", "moe/vllm/fp8_block_flashinfer"]
    assert kernel_class(names[0]).eff("tensor") != kernel_class(names[1]).eff("tensor")
    for i, ep in enumerate((1, 8)):
        pred = moe.predict(64, 7168, 2048, 256, 8, ep=ep, dtype="fp8_block", gpu=gpu,
                           backend="vllm", distribution="strided")
        matmul = float(pred.terms_s["matmul"]) * kernel_class(names[i]).eff("tensor")
        assert m.terms["analytic"]["matmul_s"][i] == pytest.approx(matmul, rel=1e-12)


def test_vllm_marlin_and_oai_triton_moe_rows_are_listed_unmodelled() -> None:
    """vLLM's Marlin and OAI-Triton MoE kernels have no class: their rows are not scored
    (a reason each), while a Triton fused_moe row of the same table is."""
    rows = _moe_rows("h200_sxm", ["int4_wo", "w4a16_mxfp4", "bfloat16"], [1, 1, 1],
                     ["vllm_compressedtensorswna16marlinmoe_marlin_marlinexperts",
                      "vllm_gptossmxfp4moe_triton_oaitritonmxfp4expertsmonolithic",
                      "vllm_unquantizedfusedmoe_triton_tritonexperts"])
    m = CLASSES["moe"].mapper(rows, load_gpu("h200"))
    assert set(m.reasons) == {0, 1}
    assert all("no kernel class" in r for r in m.reasons.values())
    assert np.isnan(m.time_s["analytic"][:2]).all() and m.time_s["analytic"][2] > 0
