"""What each kind of case predicts (on a CPU), and the GPU measurements themselves (marked
``gpu``; they skip without an NVIDIA GPU and PyTorch)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.units import dtype_bytes
from memsim.validation import kernels, llama, microbench, sdpa
from memsim.validation.predictions import attention_problem, parse_mask, relative_errors
from memsim.validation.suites import attention

GPU = load_gpu("h100-sxm")


def _cuda_with_torch() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(not _cuda_with_torch() or os.environ.get("MEMSIM_REAL_GPU") != "1",
                               reason="needs an NVIDIA GPU, PyTorch and MEMSIM_REAL_GPU=1")


@pytest.mark.parametrize(("text", "kind"), [("full", "full"), ("causal", "causal"),
                                            ("window:512", "window"), ("topk:64", "topk")])
def test_masks(text: str, kind: str) -> None:
    assert parse_mask(text).kind == kind


@pytest.mark.parametrize("text", ["window", "window:x", "sliding:4", "topk:"])
def test_bad_masks(text: str) -> None:
    with pytest.raises(InputError, match=f"mask='{text}' must be"):
        parse_mask(text)


def test_relative_errors_are_signed_and_skip_what_is_missing() -> None:
    errors = relative_errors({"time_s": 1.5, "hbm_bytes": 10.0, "bound": "hbm"},
                             {"time_s": 2.0, "hbm_bytes": 0.0, "l2_bytes": 5.0})
    assert errors == {"time_s": -0.25}


def test_sdpa_flash_is_flash2_on_tensor_cores_and_decoding_is_split_kv() -> None:
    prefill = sdpa.predict_sdpa({"backend": "flash", **attention(seq_len=4096)}, GPU)
    assert prefill["tiling"]["algorithm"] == "flash2"
    assert prefill["work"]["analytic"]["matmul_unit"] == "tensor"
    problem = attention_problem(attention(seq_len=4096))
    out = problem.B * problem.N * problem.H * problem.Dv * dtype_bytes("bf16")
    lse = problem.B * problem.H * problem.N * dtype_bytes("fp32")  # FA-2 keeps L for backward
    assert prefill["analytic"]["peak_extra_bytes"] == out + lse
    decode = sdpa.predict_sdpa({"backend": "flash", **attention(
        batch=8, seq_len=1, kv_len=8192, kv_heads=8, mask="full")}, GPU)
    assert decode["tiling"]["algorithm"] == "flash_decode" and decode["tiling"]["kv_splits"] > 1


def test_sdpa_math_backend_is_standard_attention_upcast_to_fp32() -> None:
    params = {"backend": "math", **attention(seq_len=1024)}
    upcast = sdpa.predict_sdpa(params, GPU)
    assert upcast["compute_dtype"] == "fp32" and upcast["work"]["analytic"]["matmul_unit"] == "fp32"
    assert upcast["tiling"]["algorithm"] == "standard"
    # every score is computed and masked afterwards: the dense 4·N²·D·H FLOPs of QKᵀ and PV
    assert upcast["analytic"]["matmul_flops"] == 4 * 1024**2 * 128 * 32
    # S and P at 4 bytes (memsim's standard upcasts bf16 itself), plus fp32 copies of q, k, v
    assert upcast["analytic"]["workspace_bytes"] == 2 * 32 * 1024**2 * dtype_bytes("fp32")
    out = 1024 * 32 * 128 * dtype_bytes("bf16")
    qkv_fp32 = 3 * 1024 * 32 * 128 * dtype_bytes("fp32")
    assert (upcast["analytic"]["peak_extra_bytes"] - upcast["analytic"]["workspace_bytes"]
            == out + qkv_fp32)
    with pytest.raises(InputError, match="^math_reduced_precision="):
        sdpa.predict_sdpa(params, GPU, math_upcast=False)


@pytest.mark.parametrize(("change", "field"), [
    ({"mask": "window:512"}, "mask"), ({"seq_len": 1, "kv_len": 4096}, "seq_len"),
    ({"backend": "xformers"}, "backend")])
def test_sdpa_cases_it_cannot_express(change: dict, field: str) -> None:
    with pytest.raises(InputError, match=f"^{field}="):
        sdpa.check_params({"backend": "flash", **attention(seq_len=4096), **change})


def test_llama_is_llama3_8b_cut_to_its_layers() -> None:
    cfg = llama.config(2)
    assert cfg["num_hidden_layers"] == 2 and cfg["hidden_size"] == 4096
    assert cfg["num_key_value_heads"] == 8 and cfg["vocab_size"] == 128256
    assert not any(k.startswith("_memsim") for k in cfg)
    with pytest.raises(InputError, match="layers=0 must be"):
        llama.config(0)


def test_llama_predictions() -> None:
    pre = {n: llama.predict_llama({"layers": 2, "phase": "prefill", "tokens": n, "batch": 1},
                                  GPU)["analytic"] for n in (512, 8192)}
    # embeddings and LM head 2 × 128256 × 4096, two layers of 218 M parameters, bf16
    params = 2 * 128256 * 4096 + 2 * (4096 * (4096 + 2 * 1024 + 4096) + 3 * 4096 * 14336
                                      + 2 * 4096) + 4096
    assert pre[512]["weights_bytes"] == params * dtype_bytes("bf16")
    assert pre[8192]["time_s"] > pre[512]["time_s"]
    assert pre[8192]["peak_memory_bytes"] > pre[512]["peak_memory_bytes"] > params * 2
    dec = [llama.predict_llama({"layers": 2, "phase": "decode", "position": p, "batch": 1},
                               GPU)["analytic"]["time_s"] for p in (512, 8192)]
    assert 0 < dec[0] <= dec[1]


def test_kernel_tiles_fit_static_shared_memory_without_one_row_blocks() -> None:
    for head_dim, tile in ((64, (64, 64)), (128, (32, 32))):
        t = kernels.tiling_for({"algorithm": "flash2", **attention(
            seq_len=2048, heads=8, head_dim=head_dim, dtype="fp32")}, GPU)
        assert (t.block_q, t.block_kv) == tile
        assert t.sram_bytes <= kernels.STATIC_SHARED_LIMIT_BYTES


def test_kernel_cases_skip_until_the_bench_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import memsim.kernels

    monkeypatch.setitem(sys.modules, "memsim.kernels.bench", None)  # import fails
    monkeypatch.delattr(memsim.kernels, "bench", raising=False)   # even once imported
    with pytest.raises(kernels.BenchUnavailableError, match="not installed"):
        kernels.run({"algorithm": "flash2", **attention(dtype="fp32")}, GPU)


def test_registers_reported_by_the_bench_feed_the_occupancy() -> None:
    assert kernels.registers_of({"registers_per_thread": 96}) == 96
    assert kernels.registers_of({"time_s": 1.0}) is None


def test_every_ceiling_has_a_yardstick_in_the_profile() -> None:
    from memsim.kernels.ceilings import BENCHES

    from memsim.validation.suites import FULL_CEILINGS

    for bench in FULL_CEILINGS:
        assert bench in BENCHES
        (value,) = microbench.prediction_for(bench, GPU)["analytic"].values()
        assert value > 0
    assert microbench.prediction_for("d2d_copy", GPU)["analytic"]["d2d_copy_bytes_per_s"] == \
        pytest.approx(3.35e12 * GPU.efficiency.hbm_bandwidth)


SASS = """
        /*0070*/                   MOV R0, RZ ;
        /*0080*/                   FFMA R3, R2, c[0x0][0x168], R3 ;
        /*0090*/                   FFMA R5, R4, c[0x0][0x168], R5 ;
        /*00a0*/                   IADD3 R0, R0, 0x1, RZ ;
        /*00b0*/                   ISETP.GE.AND P0, PT, R0, c[0x0][0x170], PT ;
        /*00c0*/               @!P0 BRA 0x80 ;
        /*00d0*/                   STG.E [R6.64], R3 ;
        /*00e0*/                   EXIT ;
"""


def test_sass_opcode_counts_and_the_hot_loop() -> None:
    from memsim.kernels.ceilings import sass_hot_loop_counts, sass_opcode_counts

    assert sass_opcode_counts(SASS) == {"MOV": 1, "FFMA": 2, "IADD3": 1, "ISETP": 1, "BRA": 1,
                                        "STG": 1, "EXIT": 1}
    # the loop runs from the branch target 0x80 to the backward branch at 0xc0
    assert sass_hot_loop_counts(SASS) == {"FFMA": 2, "IADD3": 1, "ISETP": 1, "BRA": 1}
    assert sass_hot_loop_counts(SASS.replace("BRA 0x80", "BRA 0xd0")) == {}
    labelled = SASS.replace("        /*0080*/", ".L_x_0:\n        /*0080*/").replace(
        "BRA 0x80", "BRA `(.L_x_0)")
    assert sass_hot_loop_counts(labelled) == sass_hot_loop_counts(SASS)


# ---- on a real GPU ------------------------------------------------------------------------


@pytest.mark.gpu
@needs_gpu
def test_sdpa_measurement_on_the_gpu() -> None:
    from memsim.validation.timing import L2Flusher

    params = {"backend": "flash", **attention(seq_len=1024, heads=8)}
    m = sdpa.measure_sdpa(params, L2Flusher(GPU.spec.l2_bytes))
    assert m["relative_error"] < sdpa.BF16_TOLERANCE
    assert m["time_s"] > 0 and m["p10_s"] <= m["time_s"] <= m["p90_s"]
    assert m["peak_extra_bytes"] >= 1024 * 8 * 128 * 2  # at least the output


@pytest.mark.gpu
@needs_gpu
def test_device_is_read_and_matched_on_the_gpu() -> None:
    from memsim.validation.device import bundled_profiles, match_profile, read_device

    attrs = read_device()
    assert attrs["sm_count"] > 0 and attrs["l2_bytes"] > 0
    assert match_profile(attrs, bundled_profiles()).compared >= 4
