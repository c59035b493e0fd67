"""Encoder attention as the production kernels run it (memsim.ops.encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.attention import predict
from memsim.hardware import load_gpu
from memsim.ops import encoder
from memsim.ops.classes import kernel_class, with_class
from memsim.problem import AttentionProblem, Mask


def test_each_kernel_pads_the_head_size_to_what_its_mmas_take() -> None:
    """FA3 runs its instantiated sizes (72, 80 → 96), FA2 multiples of 32, Triton the next
    power of two, fmha_v2 / trtllm-gen / FA4 the MMA's K step of 16 (72 → 80)."""
    assert [encoder.mma_head_dim("fa3", d) for d in (64, 72, 80, 100)] == [64, 96, 96, 128]
    assert [encoder.mma_head_dim("fa2", d) for d in (64, 72, 80)] == [64, 96, 96]
    assert [encoder.mma_head_dim("triton", d) for d in (64, 72, 80)] == [64, 128, 128]
    for name in ("fmha_v2_sm90", "trtllm_gen", "fa4"):
        assert [encoder.mma_head_dim(name, d) for d in (64, 72, 80)] == [64, 80, 80]


def test_each_framework_runs_its_own_kernel_on_each_gpu() -> None:
    want = {("trtllm", "h100-sxm"): "fmha_v2_sm90", ("trtllm", "b200"): "trtllm_gen",
            ("trtllm", "l40s"): "fmha_v2", ("vllm", "h200"): "fa3", ("vllm", "b200"): "fa4",
            ("vllm", "l40s"): "fa2", ("sglang", "h100-sxm"): "fa3",
            ("sglang", "gb200"): "fa4", ("sglang", "b300"): "triton",
            ("sglang", "l40s"): "triton"}
    for (framework, gpu), name in want.items():
        assert encoder.kernel(framework, load_gpu(gpu), 64, 1024).name == name
    # TensorRT-LLM 1.3.0rc20 on SM100 (fmhaDispatcher `headSize != 72`): D = 72 to
    # fmha_v2's mma.sync build (its SM8x tiles, no overlap), D = 80 to trtllm-gen (its
    # padded kernel), other non-powers of two find no trtllm-gen kernel and run unfused
    b200 = load_gpu("b200")
    assert [encoder.kernel("trtllm", b200, d, 1024).name for d in (64, 72, 80, 96, 128)] == [
        "trtllm_gen", "fmha_v2", "trtllm_gen", "unfused", "trtllm_gen"]
    k72, sm89 = (encoder.kernel("trtllm", load_gpu(g), 72, 1024) for g in ("b200", "l40s"))
    assert (k72.block_m.tolist(), k72.block_n.tolist(), k72.overlap, k72.tile_cost) == (
        sm89.block_m.tolist(), sm89.block_n.tolist(), False, True)


def test_the_unfused_path_moves_every_score_through_hbm() -> None:
    """cuBLAS writes S in fp32, the softmax reads it and writes P in bf16, the second GEMM
    reads P: 12 bytes per score, beside Q, K, V, O and the transposes' passes."""
    gpu = load_gpu("b200")
    k = encoder.kernel("trtllm", gpu, 96, 4096)
    assert k.name == "unfused"
    w = encoder.work(2, 4096, 16, 96, k, gpu.spec.sm_count)
    tokens = 2 * 4096 * 16 * 96 * 2
    assert w.hbm_bytes == pytest.approx(12 * 2 * 16 * 4096 ** 2 + 4 * tokens)
    assert w.pre_bytes == pytest.approx(10 * tokens)
    assert w.pairs == 0 and w.rows == 0


def test_fa3_tiles_follow_tile_size_fwd_sm90() -> None:
    """hdim 64: one MMA warpgroup (64 × 192) while seqlen_q ≤ 64, else 192 × 192; hdim 96
    (D = 72, 80): 192 × 144 at every length; the others per tile_size.h."""
    gpu = load_gpu("h100-sxm")
    k = encoder.kernel("vllm", gpu, 64, np.array([64, 65]))
    assert k.block_m.tolist() == [64, 192] and k.block_n.tolist() == [192, 192]
    k = encoder.kernel("vllm", gpu, 80, np.array([16, 4096]))
    assert k.block_m.tolist() == [192, 192] and k.block_n.tolist() == [144, 144]
    k = encoder.kernel("vllm", gpu, 128, np.array([64, 65]))
    assert k.block_m.tolist() == [64, 128] and k.block_n.tolist() == [176, 160]


def test_the_busiest_sm_runs_whole_m_blocks() -> None:
    """SMs + 1 m-blocks put two on one SM: twice the tile pairs of SMs m-blocks."""
    gpu = load_gpu("h100-sxm")
    sms = gpu.spec.sm_count
    k = encoder.kernel("trtllm", gpu, 64, 64)
    one = encoder.work(1, 64, sms, 64, k, sms)
    two = encoder.work(1, 64, sms + 1, 64, k, sms)
    assert one.pairs == 1 and two.pairs == 2
    assert two.scores == 2 * 64 * 256 and two.matmul_flops == two.scores * 4 * 64
    assert one.hbm_bytes == 4 * 64 * sms * 64 * 2


def test_warp_specialised_kernels_overlap_the_softmax_with_the_mmas() -> None:
    """FA3 (ping-pong warpgroups): compute = max(MMA, exp + vector) + fixed; FA2 (the same
    warps issue both): their sum."""
    for framework, gpu_name, combine in (("vllm", "h100-sxm", np.maximum),
                                         ("vllm", "l40s", np.add)):
        gpu = load_gpu(gpu_name)
        p = encoder.predict(4, 4096, 16, 64, gpu=gpu, backend=framework)
        t = p.terms_s
        want = combine(t["matmul"], t["exp"] + t["vector"]) + t["serial"]
        assert p.detail["compute_s"] == pytest.approx(want)
        assert p.time_s == pytest.approx(p.launch_s + max(want, t["hbm"]) + t["pre"])


def test_tensorrt_llm_preprocesses_the_packed_qkv_before_its_fmha() -> None:
    """invokeQKVPreprocessing reads Q, K, V and writes Q, K back: 5·B·N·H·D bf16 bytes at
    the HBM rate, before the FMHA; FlashAttention's varlen call has no such pass."""
    gpu = load_gpu("h100-sxm")
    rate = with_class(gpu, kernel_class("attention/encoder", "trtllm")
                      ).achievable_hbm_bytes_per_s
    p = encoder.predict(2, 1024, 16, 80, gpu=gpu, backend="trtllm")
    assert p.terms_s["pre"] == pytest.approx(5 * 2 * 1024 * 16 * 80 * 2 / rate)
    assert encoder.predict(2, 1024, 16, 80, gpu=gpu, backend="vllm").terms_s["pre"] == 0


@given(st.sampled_from(["trtllm", "vllm", "sglang"]), st.sampled_from([64, 72, 80, 128]),
       st.integers(1, 8192), st.integers(1, 64), st.sampled_from(["h100-sxm", "b200", "l40s"]))
def test_encoder_time_never_falls_with_more_tokens_or_sequences(framework, D, N, B, gpu):
    t = encoder.predict(B, N, 16, D, gpu=gpu, backend=framework).time_s
    assert encoder.predict(B, N + 1, 16, D, gpu=gpu, backend=framework).time_s >= t
    assert encoder.predict(B + 1, N, 16, D, gpu=gpu, backend=framework).time_s >= t


def test_memsim_attention_times_a_bidirectional_mha_call_with_the_encoder_kernels() -> None:
    """`memsim attention --bidirectional --backend B` on an MHA problem is the encoder
    model (what the encoder rows are scored with); GQA keeps the prefill path."""
    p = AttentionProblem(batch=2, seq_len=1024, heads=16, head_dim=72, mask=Mask(causal=False))
    for backend in ("trtllm", "vllm"):
        got = predict(p, "h200", "flash2", backend=backend)
        want = encoder.predict(2, 1024, 16, 72, gpu="h200", backend=backend)
        assert got.headline.time_s == pytest.approx(want.time_s, rel=1e-12)
        assert got.kernel_class == f"attention/encoder/{backend}"
    gqa = p.model_copy(update={"kv_heads": 4})
    assert predict(gqa, "h200", "flash2", backend="vllm").kernel_class.startswith(
        "attention/context/")
    # an explicitly chosen other algorithm keeps its own cost; no backend, memsim's roofline
    assert predict(p, "h200", "standard", backend="vllm").kernel_class.startswith(
        "attention/context/")
    assert predict(p, "h200", "flash2").kernel_class is None


def test_one_rule_says_when_the_encoder_kernels_time_a_call() -> None:
    """encoder.applies: a backend, FlashAttention-2 (memsim's default prefill), forward, a
    full mask, MHA with D = Dv, bf16, N = S; each condition broken alone turns it off."""
    p = AttentionProblem(batch=2, seq_len=512, heads=16, head_dim=64, mask=Mask(causal=False))
    assert encoder.applies(p, "flash2", "trtllm")
    broken = [(p, "flash2", None), (p, "standard", "trtllm"), (p, "flash_decode", "trtllm"),
              (p.model_copy(update={"mask": Mask(causal=True)}), "flash2", "trtllm"),
              (p.model_copy(update={"mask": Mask(causal=False, window=64)}), "flash2",
               "trtllm"),
              (p.model_copy(update={"kv_heads": 4}), "flash2", "trtllm"),
              (p.model_copy(update={"dtype": "fp8"}), "flash2", "trtllm"),
              (p.model_copy(update={"pass_": "backward"}), "flash2", "trtllm")]
    for problem, algorithm, backend in broken:
        assert not encoder.applies(problem, algorithm, backend)
    assert encoder.applies(p, "flash2", "vllm", np.array([8, 9]), np.array([8, 9]))
    assert not encoder.applies(p, "flash2", "vllm", np.array([8, 9]), np.array([8, 16]))


def test_whole_model_sums_time_full_mask_mha_prefill_with_the_encoder_kernels() -> None:
    """memsim predict's per-layer attention (encoder_kernel_s) is the encoder model for a
    bidirectional MHA prefill, split over tensor parallelism; causal, windowed, GQA layers
    and decode steps keep the other paths (None)."""
    from types import SimpleNamespace

    from memsim.inference.attention_call import encoder_kernel_s

    setup = SimpleNamespace(tp=2, kv_dtype="fp8", act_dtype="bf16", attention="auto",
                            gpu=load_gpu("h100-sxm"), backend="vllm")
    attn = SimpleNamespace(mla=None, indexer=None, mask=Mask(causal=False), heads=16,
                           kv_heads=16, head_dim=64, head_dim_v=64)
    got = encoder_kernel_s(setup, attn, "prefill", 4, 512, 512)
    assert got == pytest.approx(encoder.predict(4, 512, 8, 64, gpu="h100-sxm",
                                                backend="vllm").time_s)
    for change, phase in (({"mask": Mask(causal=True)}, "prefill"),
                          ({"mask": Mask(causal=False, window=128)}, "prefill"),
                          ({"kv_heads": 4}, "prefill"), ({}, "decode")):
        other = SimpleNamespace(**{**vars(attn), **change})
        assert encoder_kernel_s(setup, other, phase, 4, 512, 512) is None
    # the rule is encoder.applies on the call: an explicit --attention standard keeps
    # memsim's algorithm, the dtype is the activations' (not the cache's), and no backend
    # is the whole-model default (TensorRT-LLM)
    for change in ({"attention": "standard"}, {"act_dtype": "fp8"}):
        assert encoder_kernel_s(SimpleNamespace(**{**vars(setup), **change}), attn,
                                "prefill", 4, 512, 512) is None
    default = SimpleNamespace(**{**vars(setup), "backend": None})
    assert encoder_kernel_s(default, attn, "prefill", 4, 512, 512) == pytest.approx(
        encoder.predict(4, 512, 8, 64, gpu="h100-sxm", backend="trtllm").time_s)
