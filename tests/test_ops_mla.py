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
    want = p.launch_s + max(t["matmul"] + t["serial"], t["hbm"]) + t["quant"]
    assert p.time_s == pytest.approx(want, rel=1e-12)
    assert mla.decode(B, 2 * S, H, gpu="h100-sxm", backend="trtllm").time_s >= p.time_s


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
