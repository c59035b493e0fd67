"""Laws of memsim.ops.mla: the MLA kernels' tiles (FlashMLA decode, prefill FMHA on the
decompressed K/V), the absorbed BMMs and the whole attention module."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.inference import mla_module
from memsim.ops import mla

batches = st.integers(1, 512)
lengths = st.integers(1, 1 << 17)
heads = st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128])


@given(B=batches, S=lengths, H=st.integers(1, 64))
def test_decode_pads_heads_to_one_64_row_tile(B: int, S: int, H: int) -> None:
    """FlashMLA's head tile has 64 rows: at most 64 heads cost the MMAs and fixed steps of
    64 (TP shards with few heads per GPU pay for 64); the latent is read once either way."""
    few, full = mla.decode_work(B, S, H), mla.decode_work(B, S, 64)
    assert few.matmul_flops == full.matmul_flops
    assert few.rows == full.rows == B * 64
    latent = B * S * mla.LATENT * 2
    assert latent < few.hbm_bytes <= full.hbm_bytes


@given(B=batches, S=lengths, H=heads)
def test_decode_fp8_cache_halves_the_latent_and_adds_a_q_quantisation_pass(
        B: int, S: int, H: int) -> None:
    bf, f8 = mla.decode_work(B, S, H, "bf16"), mla.decode_work(B, S, H, "fp8")
    assert bf.hbm_bytes - f8.hbm_bytes == pytest.approx(B * (S + H) * mla.LATENT)
    assert f8.quant_bytes == B * H * mla.LATENT * 3 and bf.quant_bytes == 0
    assert (f8.rate, bf.rate) == ("fp8", "bf16")


@given(B=st.integers(1, 64), N=st.integers(1, 1 << 14), H=heads)
def test_context_grid_and_causal_tiles(B: int, N: int, H: int) -> None:
    """One CTA per (64-row query tile, head, sequence); T(T+1)/2 active causal tiles."""
    w = mla.context_work(B, N, H)
    T = -(-N // 64)
    assert w.tiles == B * H * T and w.rows == w.tiles * 64
    assert w.matmul_flops == B * H * T * (T + 1) / 2 * 64 * 64 * 2 * (192 + 128)
    assert mla.context_work(B, N + 64, H).matmul_flops > w.matmul_flops


@given(B=batches, S=lengths, H=heads)
def test_time_is_floor_plus_the_roofline_and_grows_with_the_cache(B: int, S: int, H: int
                                                                  ) -> None:
    p = mla.decode(B, S, H, gpu="h100-sxm", backend="trtllm")
    t = p.terms_s
    want = (p.launch_s + max(t["matmul"] + t["serial"] + t["tile_io"], t["hbm"])
            + t["quant"])
    assert p.time_s == pytest.approx(want, rel=1e-12)
    assert mla.decode(B, 2 * S, H, gpu="h100-sxm", backend="trtllm").time_s >= p.time_s


@given(B=batches, S=lengths, H=heads, kv=st.sampled_from(["bf16", "fp8"]))
def test_decode_q_load_and_o_store_sit_on_the_cta_critical_path(B: int, S: int, H: int,
                                                                kv: str) -> None:
    """FlashMLA's CTA loads each work item's Q rows and stores its O rows in series with
    its math: those bytes (the valid heads' only, Q at the cache's dtype, O in bf16) are
    both part of the compulsory traffic and of the compute chain; the latent stream is
    not. Prefill's FMHA overlaps them (none)."""
    e = 1 if kv == "fp8" else 2
    w = mla.decode_work(B, S, H, kv)
    assert w.tile_io_bytes == B * H * (mla.LATENT * e + mla.KV_LORA_RANK * 2)
    assert w.hbm_bytes == pytest.approx(B * S * mla.LATENT * e + w.tile_io_bytes)
    assert mla.context_work(B, S, H, kv).tile_io_bytes == 0
    p = mla.decode(B, S, H, kv_dtype=kv, gpu="h200", backend="trtllm")
    t = p.terms_s
    assert t["tile_io"] > 0
    chain = p.launch_s + t["matmul"] + t["serial"] + t["tile_io"] + t["quant"]
    assert p.time_s >= chain * (1 - 1e-12)


def test_many_heads_short_cache_is_bound_by_the_tiles_serial_io() -> None:
    """1024 sequences × 128 heads over 2 cached tokens: the 64-key block's math is small,
    and the Q/O bytes moved in series with it make the call slower than its compulsory
    traffic alone (the H200 table measures 232 µs; the roofline's max would hide them)."""
    p = mla.decode(1024, 2, 128, gpu="h200", backend="trtllm")
    t = p.terms_s
    assert t["matmul"] + t["serial"] + t["tile_io"] > t["hbm"]
    assert p.time_s > p.launch_s + t["hbm"] + t["quant"]


def test_vectorised_equals_scalar_calls() -> None:
    B, S, H = np.array([1, 8, 64]), np.array([4096, 100, 1]), np.array([128, 16, 1])
    many = mla.decode(B, S, H, kv_dtype="fp8", gpu="h200").time_s
    one = [mla.decode(int(b), int(s), int(h), kv_dtype="fp8", gpu="h200").time_s
           for b, s, h in zip(B, S, H, strict=True)]
    assert np.asarray(many) == pytest.approx(one, rel=1e-12)


@pytest.mark.parametrize("op", ["pre", "post"])
def test_bmm_is_heads_gemms_and_fp8_adds_its_quantisation(op: str) -> None:
    n, k = mla.BMM_SHAPES[op]
    p = mla.bmm(256, 16, op=op, gpu="h100-sxm", backend="trtllm")
    assert p.flops == 2.0 * 256 * 16 * n * k
    f8 = mla.bmm(256, 16, op=op, dtype="fp8", gpu="h100-sxm", backend="trtllm")
    assert f8.terms_s["quant"] > 0 and p.terms_s["quant"] == 0


@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_bmm_replayed_on_warm_l2_reads_hbm_only_past_the_l2(dtype: str) -> None:
    """A benchmark replaying one BMM (collect_mla_bmm.py) finds its operands in L2 while
    they all fit (a cyclic LRU: all hits below the capacity, all misses above); a model's
    BMM streams its layer's weights from HBM either way."""
    kw = dict(op="post", dtype=dtype, gpu="h100-sxm", backend="trtllm")
    # 128 heads: W_UV 16.8 MB; per token 128 × (512 + 128) × 2 B = 164 kB
    fits, spills = mla.bmm(128, 128, warm_l2=True, **kw), mla.bmm(512, 128, warm_l2=True, **kw)
    assert fits.terms_s["hbm"] == 0 and fits.terms_s["quant"] == 0
    assert spills.terms_s["hbm"] == mla.bmm(512, 128, **kw).terms_s["hbm"] > 0
    cold = mla.bmm(128, 128, **kw)
    assert cold.terms_s["hbm"] > 0 and cold.time_s >= fits.time_s
    # B200's 126 MiB L2 holds what H100's 50 MiB does not
    assert mla.bmm(512, 128, warm_l2=True, op="post", gpu="b200",
                   backend="trtllm").terms_s["hbm"] == 0


@pytest.mark.parametrize(("phase", "sparse"), [("context", False), ("decode", False),
                                               ("decode", True)])
def test_module_is_the_sum_of_its_kernels(phase: str, sparse: bool) -> None:
    N = 512 if phase == "context" else 1
    p = mla_module.module(phase, 4, N, 4096, 32, gpu="h200", backend="trtllm", sparse=sparse)
    parts = p.terms_s
    assert p.time_s == pytest.approx(sum(parts.values()), rel=1e-12)
    assert ("bmm_pre" in parts) == (phase == "decode" or sparse)
    assert ("kv_b_proj" in parts) == (phase == "context" and not sparse)
    assert ("indexer_wq_b" in parts) == sparse
    attn = (mla.decode(4, 4096, 32, gpu="h200", backend="trtllm") if phase == "decode"
            else mla.context(4, 512, 32, gpu="h200", backend="trtllm"))
    if not sparse:
        assert parts["attention"] == pytest.approx(attn.time_s, rel=1e-12)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: mla.decode(0, 10, 8), "batch"),
    (lambda: mla.context(1, 10, 8, kv_dtype="int4"), "kv_dtype"),
    (lambda: mla.bmm(8, 8, op="mid"), "op"),
    (lambda: mla_module.module("train", 1, 1, 1, 8), "phase"),
])
def test_bad_input_names_the_field(call, field: str) -> None:
    with pytest.raises(InputError) as e:
        call()
    assert e.value.field == field


@pytest.mark.parametrize("op", ["pre", "post"])
def test_trtllm_fp8_bmm_on_sm100_is_the_bf16_bmm(op: str) -> None:
    """TensorRT-LLM's fp8_block_scaling_bmm_out runs torch.bmm in bf16 on dequantised
    weights on the SM100 family, the block-scaled fp8 kernel after a quantise pass on SM90
    (tensorrt_llm/_torch/modules/attention.py); other backends keep their fp8 kernel."""
    from memsim.hardware import load_gpu

    kw = dict(op=op, backend="trtllm")
    for gpu in ("b200", "gb200", "b300"):
        f8, bf = (mla.bmm(4096, 128, dtype=d, gpu=gpu, **kw) for d in ("fp8", "bf16"))
        assert f8.time_s == bf.time_s and f8.terms_s["quant"] == 0
    f8, bf = (mla.bmm(4096, 128, dtype=d, gpu="h200", **kw) for d in ("fp8", "bf16"))
    assert f8.time_s != bf.time_s and f8.terms_s["quant"] > 0
    assert mla.bmm_kernel_dtype("fp8", "vllm", load_gpu("b200")) == "fp8"


def test_sm90_sparse_kernel_runs_one_cta_per_token_and_head_tile_in_waves() -> None:
    """FlashMLA's SM90 sparse kernel: ⌈tokens·⌈H/64⌉ / SMs⌉ waves of one CTA time, the
    same for 1 and 132 tokens on H200's 132 SMs, and for 1 and 64 heads (beside the
    decode indexer's top-k, which the one-token calls add: indexer_topk_s)."""
    from memsim.attention import indexer_topk_s, sparse_mla_kernel
    from memsim.hardware import load_gpu
    from memsim.ops.classes import kernel_class
    from memsim.problem import AttentionProblem, Mask

    gpu = load_gpu("h200")
    row_s = kernel_class("dsa", "trtllm", "sparse_sm90").row_s

    def t(n: int, h: int) -> float:
        p = AttentionProblem(batch=1, seq_len=n, kv_len=4096, heads=h, kv_heads=1,
                             head_dim=576, head_dim_v=512, mla=True,
                             mask=Mask(causal=True, top_k=2048))
        topk = indexer_topk_s("trtllm", 1, n, 4096, 2048, gpu)
        return float(sparse_mla_kernel(p, gpu, "trtllm", 1, n, 4096)["sparse_s"] - topk)

    assert t(1, 16) == t(132, 16) == t(1, 64) == pytest.approx(64 * row_s)
    assert t(133, 16) == t(1, 128) * 2 == pytest.approx(2 * 64 * row_s)
    assert t(132, 128) == pytest.approx(2 * 64 * row_s)


def test_dsa_sparse_kernel_waves_apply_to_hopper_only() -> None:
    """The per-row cost of "dsa/trtllm/sparse_sm90" times Hopper's DSA; Blackwell (the
    trtllm-gen sparse MLA kernels) keeps the roofline."""
    from memsim.ops.classes import kernel_class

    row_s = kernel_class("dsa", "trtllm", "sparse_sm90").row_s
    assert row_s > 0
    one = lambda gpu: float(mla_module.module(  # noqa: E731
        "decode", 1, 1, 4096, 16, sparse=True, gpu=gpu, backend="trtllm").terms_s["attention"])
    assert one("h200") >= 64 * row_s
    assert one("b200") < 64 * row_s


def test_dsa_context_module_h200_golden() -> None:
    """A held-out measurement (the sparse kernel's per-row cost is fitted on the decode
    module rows, never on context rows): aiconfigurator-core 0.12.0,
    systems/data/h200_sxm/sparse_attention/trtllm/1.3.0rc23/dsa_context_module_perf.parquet
    row 888: DeepSeek-V3.2, 16 heads, batch 16, isl 1024, bf16 GEMMs and cache, 24.01 ms.
    Before the SM90 kernel's waves memsim said 8.5 ms (−65 %)."""
    p = mla_module.module("context", 16, 1024, 1024, 16, sparse=True, gpu="h200",
                          backend="trtllm")
    assert float(p.time_s) == pytest.approx(24.01e-3, rel=0.15)


@pytest.mark.parametrize(("N", "S", "algorithm"), [(1, 4096, "flash_decode"),
                                                    (2048, 2048, "flash2")])
def test_memsim_attention_times_mla_as_the_whole_model_does(N: int, S: int,
                                                             algorithm: str) -> None:
    """``memsim attention --mla --backend`` on DeepSeek's latent geometry is memsim.ops.mla
    (what whole-model sums use), the memsim roofline without a backend."""
    from memsim.attention import predict
    from memsim.problem import AttentionProblem

    p = AttentionProblem(batch=4, seq_len=N, kv_len=S, heads=16, kv_heads=1,
                         head_dim=mla.LATENT, head_dim_v=mla.KV_LORA_RANK, mla=True)
    op = (mla.decode(4, S, 16, gpu="h200", backend="trtllm") if N == 1
          else mla.context(4, N, 16, gpu="h200", backend="trtllm"))
    got = predict(p, "h200", algorithm, backend="trtllm").to_dict()
    assert got["time_s"] == pytest.approx(op.time_s, rel=1e-12)
    assert got["bound"] in ("matmul", "serial", "hbm", "pre")
    own = predict(p, "h200", algorithm).to_dict()["time_s"]
    assert own != pytest.approx(op.time_s, rel=1e-3)


def test_decode_floor_counts_the_calls_kernels() -> None:
    """FlashMLA on Hopper launches three kernels a call (metadata, split-KV, combine),
    TensorRT-LLM's trtllm-gen MLA on the SM100 family two (FMHA, separate reduction): the
    class floor, fitted on Hopper, scales with them."""
    from memsim.ops.classes import kernel_class

    floor = kernel_class("mla/decode", "trtllm", "bf16").floor_s
    assert mla.decode(1, 128, 16, gpu="h200", backend="trtllm").launch_s == pytest.approx(floor)
    for gpu in ("b200", "b300", "gb200"):
        p = mla.decode(1, 128, 16, gpu=gpu, backend="trtllm")
        assert p.launch_s == pytest.approx(floor * 2 / 3)
