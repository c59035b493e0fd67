"""The DeepSeek MLA / DSA attention module (memsim.inference.mla_module) as the frameworks
run it, and DSA's sparse kernel timed alike by `memsim attention`, whole-model sums and the
module check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.hardware import load_gpu
from memsim.inference import mla_module
from memsim.ops.classes import kernel_class
from memsim.problem import AttentionProblem, Mask


def _dsa_problem(batch: int, seq_len: int, kv_len: int, heads: int) -> AttentionProblem:
    return AttentionProblem(batch=batch, seq_len=seq_len, kv_len=kv_len, heads=heads,
                            kv_heads=1, head_dim=576, head_dim_v=512, mla=True,
                            mask=Mask(causal=True, top_k=2048))


@pytest.mark.parametrize(("gpu", "sm90"), [("h200", True), ("b200", False)])
@pytest.mark.parametrize(("B", "N", "S"), [(1, 1, 4096), (2, 1024, 1024)])
def test_dsa_attention_cli_whole_model_and_module_agree(gpu: str, sm90: bool, B: int,
                                                        N: int, S: int) -> None:
    """`memsim attention --algorithm dsa --backend trtllm` (predict), the whole-model sums
    (backend_time_s with the call's S, memsim.inference.phases) and the module check
    (mla_module.dsa_s) time DSA's sparse kernel alike: on Hopper FlashMLA's SM90 kernel by
    its waves of CTAs (the "pre" term), elsewhere its MMAs in the roofline."""
    from memsim.attention import backend_time_s, costs_for, predict

    g = load_gpu(gpu)
    p = _dsa_problem(B, N, S, 16)
    cli = predict(p, gpu, "dsa", backend="trtllm").headline
    cost, tiling = costs_for(p, g, "dsa", l2_estimate=True)
    whole = backend_time_s(cost, g, p, "dsa", "trtllm", B, N,
                           blocks_per_sm=tiling.blocks_per_sm(g), S=S)
    module = mla_module.dsa_s(np.array([B]), np.array([N]), np.array([S]), 16,
                              kv_dtype="bf16", gpu=g, backend="trtllm")
    assert cli.lower_s == pytest.approx(float(whole), rel=1e-9)
    assert cli.lower_s == pytest.approx(float(module[0]), rel=1e-9)
    row_s = kernel_class("dsa", "trtllm", "sparse_sm90").row_s
    waves = np.ceil(B * N / g.spec.sm_count)
    if sm90:
        assert cli.terms_s["pre"] >= waves * 64 * row_s
    else:
        assert "pre" not in cli.terms_s or cli.terms_s["pre"] < 64 * row_s


def test_vllm_short_prefills_run_the_decode_kernel() -> None:
    """vLLM's MLA backends take query lengths up to their reorder_batch_threshold as
    decodes (aiconfigurator's prefill-module rows: FLASH_ATTN_MLA to 512 tokens with a bf16
    cache, FLASHMLA to 128 with fp8 on H100/H200; FLASHINFER_MLA at 1 token on B200):
    then the absorbed BMMs run and kv_b_proj does not."""
    h200, b200 = load_gpu("h200"), load_gpu("b200")
    N = np.array([1.0, 128.0, 129.0, 512.0, 513.0])
    assert mla_module.mqa_rows("context", False, N, "bf16", h200, "vllm").tolist() == [
        True, True, True, True, False]
    assert mla_module.mqa_rows("context", False, N, "fp8", h200, "vllm").tolist() == [
        True, True, False, False, False]
    assert mla_module.mqa_rows("context", False, N, "bf16", b200, "vllm").tolist() == [
        True, False, False, False, False]
    assert not mla_module.mqa_rows("context", False, N, "bf16", h200, "trtllm").any()
    assert mla_module.mqa_rows("context", True, N, "bf16", h200, "trtllm").all()
    parts = mla_module.module_parts("context", 1, np.array([64, 4096]), np.array([64, 4096]),
                                    128, gpu="h200", backend="vllm")
    assert parts["kv_b_proj"][0] == 0 < parts["kv_b_proj"][1]
    assert parts["bmm_pre"][0] > 0 == parts["bmm_pre"][1]


def test_vllm_module_kernels_around_the_attention() -> None:
    """vLLM launches the norms, RoPE, cache write and copies as kernels of their own (the
    "aux" part, one graph launch each); its absorbed BMMs are bf16 whatever the linears'
    quantisation; TensorRT-LLM's attention op fuses RoPE and the cache write, so its aux
    part (its latent norms: mla_module.trtllm_aux_s) is a fraction of vLLM's."""
    names = mla_module.aux_kernels
    assert len(names(True, False, "bf16")) == 5
    assert len(names(True, False, "fp8")) == 6
    assert len(names(False, False, "bf16")) == 7
    assert len(names(True, True, "bf16")) == 5 + 6     # the indexer's five, the query cat
    assert len(names(True, True, "fp8")) == 5 + 6      # no concat-quantise with DSA
    vllm = mla_module.module_parts("decode", 8, 1, 4096, 64, gemm_dtype="fp8_block",
                                   gpu="h100-sxm", backend="vllm")
    trt = mla_module.module_parts("decode", 8, 1, 4096, 64, gemm_dtype="fp8_block",
                                  gpu="h100-sxm", backend="trtllm")
    launch = kernel_class("gemm", "vllm", "bf16").floor_s
    assert float(vllm["aux"]) > 5 * launch > 0 < float(trt["aux"]) < float(vllm["aux"]) / 3
    from memsim.ops.mla import bmm

    bf16 = float(bmm(8, 64, op="pre", dtype="bf16", gpu="h100-sxm", backend="vllm").time_s)
    assert float(vllm["bmm_pre"]) == pytest.approx(bf16)


def test_vllm_fp8_block_linear_inside_the_graph_drops_the_host_floor() -> None:
    """vLLM's fp8_block GEMM class was fitted on rows timed eagerly (its floor is the
    host's launch time); inside the module's CUDA graph a linear costs its two kernels'
    time and launches, well under that floor at decode sizes."""
    from memsim.ops.gemm import predict

    eager = predict(8, 2112, 7168, dtype="fp8_block", gpu="h100-sxm", backend="vllm")
    parts = mla_module.module_parts("decode", 8, 1, 4096, 64, gemm_dtype="fp8_block",
                                    gpu="h100-sxm", backend="vllm")
    assert float(parts["fused_a"]) < float(eager.launch_s)


@pytest.mark.parametrize(("phase", "gpu", "batch", "tokens", "kv", "heads", "measured_ms"), [
    # held out (the vLLM MLA decode classes are fitted on the generation-module rows only):
    # aiconfigurator-core 0.12.0 systems/data/h200_sxm/mla/vllm/0.24.0/
    # mla_context_module_perf.parquet row 2 (DeepSeek-V3, 128 heads, batch 1, isl 64, bf16
    # GEMMs and cache, FLASH_ATTN_MLA: the decode kernel): 0.2015 ms
    ("context", "h200", 1, 64, 64, 128, 0.2015),
    # unseen GPU: .../b200_sxm/mla/vllm/0.24.0/mla_generation_module_perf.parquet row 0
    # (128 heads, batch 1, step 2, bf16, FLASHINFER_MLA): 0.0952 ms
    ("decode", "b200", 1, 1, 3, 128, 0.0952),
])
def test_vllm_mla_module_golden(phase: str, gpu: str, batch: int, tokens: int, kv: int,
                                heads: int, measured_ms: float) -> None:
    """Before this model memsim said 0.375 ms (+86 %) and 0.466 ms (+390 %) for these rows
    (the GEMM collector's eager host floor inside a CUDA graph, fp8 BMMs, no aux kernels,
    the prefill on the MHA path)."""
    # B200's vLLM MLA module tables were collected with aiconfigurator#1423's fused ops
    # (their collection_meta.yaml: norm_dispatch vllm_c_eager_surrogate); the others with
    # the native chains
    ops = mla_module.eager_ops_of("vllm_c_eager_surrogate" if gpu == "b200" else "")
    p = mla_module.module(phase, batch, tokens, kv, heads, gpu=gpu, backend="vllm",
                          eager_ops=ops)
    assert float(p.time_s) == pytest.approx(measured_ms * 1e-3, rel=0.15)


def test_vllm_prefill_runs_at_its_query_dtype_whatever_the_cache() -> None:
    """vLLM's MHA prefill decompresses K/V in the model dtype and runs FlashAttention at
    the prefill's query dtype (bf16 unless fp8 prefill is on, SM100 with an fp8 cache
    only); TensorRT-LLM runs its fp8 context FMHA with an fp8 cache."""
    assert mla_module.prefill_kv_dtype("fp8", "bf16", "vllm") == "bf16"
    assert mla_module.prefill_kv_dtype("fp8", "fp8", "vllm") == "fp8"
    assert mla_module.prefill_kv_dtype("fp8", "bf16", "trtllm") == "fp8"
    assert mla_module.prefill_kv_dtype("bf16", "bf16", "trtllm") == "bf16"

    def attention(backend: str, kv: str, query: str = "bf16") -> float:
        parts = mla_module.module_parts("context", 2, 4096, 4096, 128, kv_dtype=kv,
                                        gpu="h200", backend=backend, mla_dtype=query)
        return float(parts["attention"])

    assert attention("vllm", "fp8") == attention("vllm", "bf16")
    assert attention("vllm", "fp8", "fp8") != attention("vllm", "fp8")
    assert attention("trtllm", "fp8") != attention("trtllm", "bf16")


def test_vllm_native_norm_and_rope_chains_cost_their_launches_and_bytes() -> None:
    """Outside a serving worker vLLM's RMSNorm and RoPE fall back to their native chains
    (8 kernels and 36 bytes a value per norm; 16 kernels and 1280 bytes per rotated vector
    plus per-token gathers and the copy back); tables collected with aiconfigurator#1423's
    fused ops (B200's vLLM MLA modules) pay one launch per norm and one in-place RoPE
    kernel. The difference is exactly those launches and bytes, for any token count."""
    from memsim.ops.classes import kernel_class as kc

    gpu = load_gpu("h200")
    cls = kc("module/vllm/graph")
    H = 16
    T = np.array([1.0, 1024.0, 32768.0])
    native = mla_module.aux_s(T, H, False, False, "bf16", gpu, cls, "native")
    fused = mla_module.aux_s(T, H, False, False, "bf16", gpu, cls, "fused")
    width = sum(mla_module.RMS_NORMS.values())
    bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    rope_native = (H + 1) * 1280.0 + (128 + 2 * 96) * 2.0 + H * 2 * 64 * 2.0
    rope_fused = 2 * 2.0 * (H + 1) * 64
    expected = ((2 * (8 - 1) + (16 - 1)) * cls.floor_s
                + T * (width * (36.0 - 4.0) + rope_native - rope_fused) / bw)
    assert native - fused == pytest.approx(expected, rel=1e-9)
    assert mla_module.eager_ops_of("vllm_c_eager_surrogate") == "fused"
    assert mla_module.eager_ops_of("native") == "native"


def test_dsa_indexer_rotates_one_key_through_the_same_rope_chain() -> None:
    """DSA's indexer calls the module's rotary_emb on a dummy query and its key (two
    vectors a token): the DSA module's element-wise kernels exceed the MLA's by exactly
    that RoPE call, the indexer's four single kernels and FlashMLASparseImpl's query cat
    (2 × bf16 × 16 heads × 576 per token), in either eager-ops mode."""
    from memsim.ops.classes import kernel_class as kc

    gpu = load_gpu("h100-sxm")
    cls = kc("module/vllm/graph")
    T = np.array([1.0, 4096.0])
    bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    indexer_bytes = sum(mla_module.AUX_KERNELS[n][2](16.0, 2.0) for n in
                        ("indexer_k_norm", "indexer_q_rope_quant", "indexer_k_concat",
                         "indexer_k_cache", "q_cat"))
    assert mla_module.AUX_KERNELS["q_cat"][2](16.0, 2.0) == 2 * 2.0 * 16 * 576
    for ops, (launches, rope_bytes) in (("native", (15, 2 * 1280.0 + 320 * 2.0)),
                                        ("fused", (1, 2 * 2 * 2.0 * 64))):
        assert mla_module.rope_kernels(ops, 2.0) == (launches, rope_bytes)
        mla = mla_module.aux_s(T, 16, True, False, "bf16", gpu, cls, ops)
        dsa = mla_module.aux_s(T, 16, True, True, "bf16", gpu, cls, ops)
        expected = (launches + 5) * cls.floor_s + T * (rope_bytes + indexer_bytes) / bw
        assert dsa - mla == pytest.approx(expected, rel=1e-9)


def test_vllm_pads_v_except_fa3_on_hopper() -> None:
    """FA3 on SM90 takes V's own head size; elsewhere vLLM pads V to K's (one more copy
    on the prefill path)."""
    assert not mla_module.pads_v(load_gpu("h200"))
    assert mla_module.pads_v(load_gpu("b200"))
    assert "v_pad" in mla_module.aux_kernels(False, False, "bf16", True)
    assert "v_pad" not in mla_module.aux_kernels(False, False, "bf16", False)


def test_table_meta_reads_the_norm_dispatch(tmp_path) -> None:
    """A table's collection_meta.yaml entry reaches its rows as a column."""
    pytest.importorskip("yaml")   # comes with the silicon extra (aiconfigurator-core)
    from memsim.silicon.source import TableFile
    from memsim.silicon.tables import table_meta

    d = tmp_path / "b200_sxm" / "mla" / "vllm" / "0.24.0"
    d.mkdir(parents=True)
    (d / "collection_meta.yaml").write_text(
        "tables:\n  mla_context_module_perf:\n    norm_dispatch: vllm_c_eager_surrogate\n")
    f = TableFile("b200_sxm", "mla", "vllm", "0.24.0", "mla_context_module_perf",
                  d / "mla_context_module_perf.parquet")
    assert table_meta(f) == {"norm_dispatch": "vllm_c_eager_surrogate"}
    g = TableFile("b200_sxm", "mla", "vllm", "0.24.0", "other_perf", d / "other.parquet")
    assert table_meta(g) == {}


def _host(T: np.ndarray, launch_s: float, kv: str = "bf16", gemm: str = "bf16",
          heads: int = 16, gpu: str = "h200") -> np.ndarray:
    g, mqa = load_gpu(gpu), np.ones(T.shape, dtype=bool)
    linears = mla_module.linear_predictions(T, float(heads), mqa, True, gemm, g, "vllm")
    return mla_module.eager_host_s(T, heads, mqa, sparse=True, kv_dtype=kv, linears=linears,
                                   gpu=g, eager_ops="native", launch_s=launch_s)


def test_eager_dsa_prefill_host_time_is_its_launches_and_eager_linears() -> None:
    """The host's time of an eager DSA prefill call is one fitted cost per kernel launch
    (linear in it, nothing else with bf16 linears); an fp8 cache adds its four prefill
    launches and nothing else (FlashMLASparseImpl takes a bf16 query: no concat-quantise,
    its one torch.cat is the aux kernel q_cat with any cache); fp8_block linears cost the
    host floors their own eagerly timed GEMM class measured (the same W8A8BlockFp8LinearOp
    call)."""
    from memsim.ops.gemm import predict

    T = np.array([16.0, 1024.0, 65536.0])
    launches = _host(T, 1.0)
    assert np.all(_host(T, 0.0) == 0.0)
    assert np.all(launches > 60)
    assert _host(T, 2e-5) == pytest.approx(2e-5 * launches, rel=1e-12)
    assert _host(T, 1.0, kv="fp8") - launches == pytest.approx(
        mla_module.DSA_PREFILL_FP8_LAUNCHES)
    for kv in ("bf16", "fp8"):
        assert "q_concat_quant" not in mla_module.aux_kernels(True, True, kv)
        assert "q_cat" in mla_module.aux_kernels(True, True, kv)
    assert "q_concat_quant" in mla_module.aux_kernels(True, False, "fp8")
    assert "q_cat" not in mla_module.aux_kernels(True, False, "fp8")
    floors = sum(np.asarray(predict(T, n, k, dtype="fp8_block", gpu="h200",
                                    backend="vllm").launch_s, dtype=float)
                 for k, n in mla_module.linear_shapes(16.0, True).values())
    assert _host(T, 0.0, gemm="fp8_block") == pytest.approx(floors, rel=1e-12)
    # FlashMLA's sparse prefill pads heads to 128 on the SM100 family (cc 10.x, B300's 10.3
    # too: vLLM's is_device_capability_family(100)), 64 elsewhere
    assert mla_module.dsa_prefill_launches(64, "bf16", load_gpu("h200")) == 6
    assert mla_module.dsa_prefill_launches(64, "bf16", load_gpu("b200")) == 7
    assert mla_module.dsa_prefill_launches(64, "bf16", load_gpu("b300")) == 7
    assert mla_module.sparse_head_padding(load_gpu("l40s")) == 64
    assert mla_module.dsa_prefill_launches(16, "fp8", load_gpu("h200")) == 11


@settings(max_examples=8, deadline=None)
@given(batch=st.integers(1, 64), tokens=st.integers(1, 8192))
def test_eager_module_takes_the_slower_of_host_and_kernels(batch: int, tokens: int) -> None:
    """An eager call's host runs ahead of the GPU through CUDA's launch queue, so the
    module takes max(host, kernels), never their sum; a CUDA-graph replay (every other
    vLLM module) has no host term."""
    p = mla_module.module("context", batch, tokens, tokens, 16, sparse=True, gpu="h200",
                          backend="vllm")
    kernels = sum(float(v) for v in p.terms_s.values())
    host = float(p.detail["host_s"])
    assert host > 0
    assert float(p.time_s) == pytest.approx(max(kernels, host), rel=1e-12)
    assert (p.bound == "host") == (host > kernels)
    d = mla_module.module("decode", batch, 1, tokens, 16, sparse=True, gpu="h200",
                          backend="vllm")
    assert float(d.detail["host_s"]) == 0.0


@pytest.mark.parametrize(("gpu", "heads", "gemm", "measured_ms"), [
    # aiconfigurator-core 0.12.0 systems/data/<gpu>/sparse_attention/vllm/0.24.0/
    # dsa_context_module_perf.parquet, DeepSeek-V3.2, batch 1, isl 16, step 0, bf16
    # cache: h200_sxm rows 729 (bf16 GEMMs) and 4438 (fp8_block); unseen b200_sxm row
    # 484 (32 heads, bf16 GEMMs, FLASHMLA_SPARSE)
    ("h200", 16, "bf16", 1.2337),
    ("h200", 16, "fp8_block", 1.4532),
    ("b200", 32, "bf16", 1.1377),
])
def test_eager_dsa_prefill_host_golden(gpu: str, heads: int, gemm: str,
                                       measured_ms: float) -> None:
    """Host-bound rows (16 tokens): the launches × the fitted per-launch cost, plus the
    fp8_block GEMM class's host floors — their +219 µs over the bf16 row on H200 is not
    fitted on these module rows. Before (one fitted floor for every call): 1.284 ms for
    all three (+4 %, −12 %, +13 %); now 1.254, 1.445, 1.254 ms (+1.6 %, −0.6 %, +10.2 %)."""
    p = mla_module.module("context", 1, 16, 16, heads, gemm_dtype=gemm, sparse=True,
                          gpu=gpu, backend="vllm")
    assert p.bound == "host"
    assert float(p.time_s) == pytest.approx(measured_ms * 1e-3, rel=0.12)


def test_trtllm_module_kernels_by_path() -> None:
    """TensorRT-LLM's MLA module (tensorrt_llm/_torch/modules/attention.py): the two latent
    RMSNorms on every path; K's assembly (``k_nope`` copied into a fresh K) on the MHA
    prefill only; the latent concat only with DSA (MLA runs it beside ``q_b_proj``)."""
    names = mla_module.trtllm_aux_kernels
    assert names(False, False) == ["a_layernorms", "k_nope_copy"]
    assert names(True, False) == ["a_layernorms"]
    assert names(True, True) == ["a_layernorms", "latent_concat"]
    cls = kernel_class("module/trtllm/graph")
    h100 = load_gpu("h100-sxm")
    T = np.array([1.0, 4096.0])
    decode = mla_module.trtllm_aux_s(T, 128, np.array([True, True]), False, h100)
    mha = mla_module.trtllm_aux_s(T, 128, np.array([False, False]), False, h100)
    # one launch of the norm pair (two streams) vs two launches with K's copy
    assert decode[0] == pytest.approx(cls.floor_s, rel=0.01)
    assert mha[0] == pytest.approx(2 * cls.floor_s, rel=0.05)
    bw = h100.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    assert mha[1] - decode[1] == pytest.approx(
        cls.floor_s + 4096 * 2 * 2 * 128 * 128 / bw, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 1 << 17), heads=st.sampled_from([1, 2, 8, 32, 128]),
       mqa=st.booleans(), sparse=st.booleans())
def test_trtllm_aux_grows_with_tokens_and_heads_and_shrinks_with_bandwidth(
        T: int, heads: int, mqa: bool, sparse: bool) -> None:
    """The element-wise kernels stream bytes: more tokens or heads never take less time,
    a GPU with more HBM bandwidth (H200 over H100, same SMs) never more."""
    h100, h200 = load_gpu("h100-sxm"), load_gpu("h200")
    f = lambda t, h, g: float(mla_module.trtllm_aux_s(  # noqa: E731
        np.array([float(t)]), h, np.array([mqa]), sparse, g)[0])
    assert f(T, heads, h100) <= f(T + 1024, heads, h100)
    assert f(T, heads, h100) <= f(T, heads * 2, h100)
    assert f(T, heads, h200) <= f(T, heads, h100)


@pytest.mark.parametrize(("gpu", "row", "batch", "tokens", "measured_ms"), [
    # fitted GPUs (module/trtllm/graph is fitted on these tables' rows): aiconfigurator-
    # core 0.12.0 systems/data/h100_sxm/mla/trtllm/1.3.0rc20/mla_context_module_perf.parquet
    # row 1828 (DeepSeek-V3, 1 head, batch 1, isl 16384, step 0, bf16 GEMMs, fp8 cache):
    # 1.1322 ms; .../h200_sxm/... row 1840 (1 head, batch 2, isl 8192, same dtypes):
    # 0.9848 ms
    ("h100-sxm", 1828, 1, 16384, 1.1322),
    ("h200", 1840, 2, 8192, 0.9848),
])
def test_trtllm_mla_context_module_golden(gpu: str, row: int, batch: int, tokens: int,
                                          measured_ms: float) -> None:
    """Without TensorRT-LLM's element-wise kernels memsim said 0.957 ms (-15.5 %) and
    0.856 ms (-13.1 %) for these rows (few heads: the latent norms are a tenth of the
    module); with them -2.7 % and -2.7 %."""
    del row
    p = mla_module.module("context", batch, tokens, tokens, 1, kv_dtype="fp8", gpu=gpu,
                          backend="trtllm")
    assert float(p.time_s) == pytest.approx(measured_ms * 1e-3, rel=0.08)


def test_trtllm_indexer_topk_runs_past_k_logits() -> None:
    """TensorRT-LLM's top-k (indexerTopK.cu ``invokeIndexerTopKDecode`` and
    ``invokeIndexerTopKPrefill``): a row of at most k logits takes the shortcut (0 s); past
    k, one 512-thread CTA per row, four resident per SM (2048 threads per SM; 24 KiB of
    shared memory each), a wave of rows over them at a time, each its fixed steps plus a
    time per logit of the rows' mean; a prefill's row at position p holds p + 1 logits,
    so a prefill of at most k keys costs nothing; other backends are not timed here."""
    from memsim.attention import indexer_topk_ctas_per_sm, indexer_topk_s
    from memsim.ops.classes import clock_ratio

    cls = kernel_class("dsa", "trtllm", "indexer_topk")
    assert cls.name == "dsa/trtllm/indexer_topk" and cls.cta_s > 0 and cls.key_s > 0
    for gpu in ("h200", "b200"):
        g = load_gpu(gpu)
        assert indexer_topk_ctas_per_sm(g, 2048) == 4
        f = lambda B, N, S, b="trtllm", g=g: float(indexer_topk_s(  # noqa: E731
            b, np.array([B]), np.array([N]), np.array([S]), 2048, g)[0])
        row_s = lambda logits, g=g: (cls.cta_s + cls.key_s * logits) * clock_ratio(g)  # noqa: E731
        assert f(4, 1, 2048) == 0.0 < f(4, 1, 2049)
        assert f(4, 1, 4096) == pytest.approx(row_s(4096), rel=1e-9)
        assert f(64, 2048, 2048) == 0.0 == f(4, 1, 8192, "sglang")
        # two rows of 8191 and 8192 logits: one wave at their mean
        assert f(4, 2, 8192) == pytest.approx(row_s(8191.5), rel=1e-9)
        # 2048 rows past k (positions 2048..4095, 2049..4096 logits) in ⌈2048 / 4·SMs⌉ waves
        slots = 4 * g.spec.sm_count
        assert f(1, 4096, 4096) == pytest.approx(np.ceil(2048 / slots) * row_s(3072.5),
                                                 rel=1e-9)
        assert f(slots, 1, 8192) == f(1, 1, 8192) < f(slots + 1, 1, 8192) == 2 * f(1, 1, 8192)


def test_sm100_sparse_mla_computes_the_selected_keys_of_its_heads() -> None:
    """TensorRT-LLM's SM100 sparse MLA (trtllm-gen, fmhaKernels.cuh
    ``selectMlaGenerationKernel``: 16-row Q tiles below 128 heads, two 64-row CTAs at 128)
    leaves the MMAs in the roofline as the dsa Cost counts them, the keys each token
    selected at its own heads (no head padding, no all-k slots); only the top-k before it
    is timed apart."""
    from memsim.attention import sparse_mla_kernel

    g = load_gpu("b200")

    def fields(n: int, h: int) -> dict:
        return sparse_mla_kernel(_dsa_problem(2, n, n, h), g, "trtllm", np.array([2.0]),
                                 np.array([float(n)]), np.array([float(n)]))

    assert set(fields(64, 16)) == {"sparse_s"} == set(fields(8192, 128))
    assert float(fields(64, 16)["sparse_s"][0]) == 0.0   # 64 keys: the top-k's shortcut
    assert float(fields(8192, 128)["sparse_s"][0]) > 0   # the prefill top-k


@settings(max_examples=40, deadline=None)
@given(S=st.integers(2049, 1 << 17), dS=st.integers(1, 1 << 16), B=st.integers(1, 1024))
def test_trtllm_indexer_topk_grows_with_keys(S: int, dS: int, B: int) -> None:
    """More logits per row never take less time."""
    from memsim.attention import indexer_topk_s

    g = load_gpu("b200")
    f = lambda s: float(indexer_topk_s(  # noqa: E731
        "trtllm", np.array([B]), np.array([1]), np.array([s]), 2048, g)[0])
    assert f(S) < f(S + dS)


def test_dsa_cost_cache_does_not_hold_the_kernel_class() -> None:
    """``_dsa_costs`` memoises the cost and tiling only: a trial class (as the fitter sets
    it) changes ``dsa_s`` at once, and the cached answer equals an uncached one."""
    from dataclasses import replace

    from memsim.ops.classes import trial_classes

    def prefill_s() -> np.ndarray:
        return mla_module.dsa_s(np.array([1.0]), np.array([4096.0]), np.array([4096.0]), 64,
                                kv_dtype="bf16", gpu=load_gpu("h200"), backend="vllm")

    cls = kernel_class("dsa/vllm/sparse_prefill")
    base = prefill_s()
    with trial_classes({"dsa/vllm/sparse_prefill": replace(cls, floor_s=3 * cls.floor_s)}):
        cached = prefill_s()
        mla_module._dsa_costs.cache_clear()
        fresh = prefill_s()
    assert not np.allclose(cached, base)
    assert np.array_equal(cached, fresh)
    assert mla_module._dsa_costs.cache_info().maxsize == 4096
