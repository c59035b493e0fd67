"""memsim.ops.gemm: laws of the tiled GEMM model (monotone, FLOPs exact, quantisation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.errors import InputError
from memsim.ops import gemm, resolve_gpu
from memsim.ops.classes import kernel_class

dims = st.integers(1, 16384)


@given(dims, dims, dims)
def test_flops_are_2mnk_and_time_at_least_the_floor(m: int, n: int, k: int) -> None:
    p = gemm.predict(m, n, k, gpu="h100-sxm")
    assert p.flops == 2.0 * m * n * k
    assert p.time_s >= p.launch_s == kernel_class("gemm").floor_s
    assert p.hbm_bytes >= (m * k + k * n) * 2 + m * n * 2


@given(dims, dims, dims, st.sampled_from(["m", "n", "k"]))
def test_time_never_falls_as_a_dimension_grows(m: int, n: int, k: int, axis: str) -> None:
    small = dict(m=m, n=n, k=k)
    big = dict(small, **{axis: small[axis] * 2})
    assert gemm.predict(**big).time_s >= gemm.predict(**small).time_s * (1 - 1e-9)


def test_vectorised_equals_scalar() -> None:
    m = np.array([1, 17, 256, 4096, 9000])
    vec = gemm.predict(m, 4096, 8192, dtype="fp8", gpu="h200")
    for i, mi in enumerate(m):
        one = gemm.predict(int(mi), 4096, 8192, dtype="fp8", gpu="h200")
        assert vec.time_s[i] == pytest.approx(one.time_s)
        assert vec.bound[i] == one.bound


def test_decode_gemm_is_hbm_bound_and_large_square_is_matmul_bound() -> None:
    assert gemm.predict(1, 8192, 8192).bound == "hbm"
    assert gemm.predict(8192, 8192, 8192).bound == "matmul"


def test_wave_quantisation_one_more_tile_costs_a_wave() -> None:
    # 132 SMs: 132 tiles of 128 x 256 fill one wave exactly; one more row needs more tiles
    # and the best tiling of it is over 20 % slower for 0.07 % more work
    base = gemm.predict(128 * 12, 256 * 11, 8192)
    more = gemm.predict(128 * 12 + 1, 256 * 11, 8192)
    assert more.time_s > 1.2 * base.time_s


def test_fp8_and_a_faster_gpu_are_faster_when_compute_bound() -> None:
    bf16 = gemm.predict(8192, 8192, 8192, dtype="bf16").time_s
    assert gemm.predict(8192, 8192, 8192, dtype="fp8").time_s < bf16
    assert gemm.predict(8192, 8192, 8192, gpu="b200").time_s < bf16


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InputError, match="m=0"):
        gemm.predict(0, 1, 1)
    with pytest.raises(InputError, match="dtype='fp9'"):
        gemm.predict(1, 1, 1, dtype="fp9")
    with pytest.raises(InputError, match="backend='tensorrt'"):
        gemm.predict(1, 1, 1, backend="tensorrt")


def test_fp8_pays_a_quantisation_pass_over_the_activations() -> None:
    # every fp8 family reads the 16-bit activations and writes their fp8 copy first;
    # TensorRT-LLM's dynamic per-tensor scale reads them twice (abs-max, then quantise)
    m, n, k = 8192, 128, 8192
    for backend, reads in (("trtllm", 2), ("vllm", 1), ("sglang", 1)):
        p = gemm.predict(m, n, k, dtype="fp8", gpu="h100-sxm", backend=backend)
        cls = kernel_class("gemm", backend, "fp8")
        hbm_bw = 3.35e12 * cls.eff("hbm")
        assert p.terms_s["quant"] >= m * k * (2 * reads + 1) / hbm_bw * (1 - 1e-9)
        if backend != "vllm":  # vLLM's may be bound by its CTAs instead (below)
            assert p.terms_s["quant"] == pytest.approx(m * k * (2 * reads + 1) / hbm_bw)
        assert p.time_s >= p.launch_s + p.terms_s["quant"] + p.terms_s["hbm"] * (1 - 1e-9)
    assert "quant" not in gemm.predict(m, n, k, dtype="bf16").terms_s


def test_vllm_per_token_quantisation_costs_sm_time_per_row() -> None:
    """vLLM's dynamic per-token fp8 quantisation runs one CTA per row; at a short k the
    CTAs, not the bytes, set its time: row_s SM-seconds per 256 × 16-byte loop step (+1),
    spread over the SMs — so a GPU with more SMs quantises a row faster."""
    cls = kernel_class("gemm", "vllm", "fp8")
    assert cls.row_s > 0
    m, n, k = np.array([4096.0, 8192.0, 8192.0]), 128, np.array([128, 128, 4096])
    h100 = gemm.predict(m, n, k, dtype="fp8", gpu="h100-sxm", backend="vllm")
    steps = np.ceil(k * 2 / (256 * 16)) + 1
    assert h100.terms_s["quant"] == pytest.approx(cls.row_s * steps * m / 132)
    # linear in rows, stepping with the loop over k (k = 4096: 2 steps + 1, against 1 + 1)
    assert h100.terms_s["quant"][1] == pytest.approx(2 * h100.terms_s["quant"][0])
    assert h100.terms_s["quant"][2] == pytest.approx(1.5 * h100.terms_s["quant"][1])
    b200 = gemm.predict(8192, 128, 128, dtype="fp8", gpu="b200", backend="vllm")
    assert b200.terms_s["quant"] == pytest.approx(h100.terms_s["quant"][1] * 132 / 148)
    # TensorRT-LLM's per-tensor kernels stream: no per-row cost
    assert kernel_class("gemm", "trtllm", "fp8").row_s == 0


def test_split_k_launches_a_reduction_kernel() -> None:
    """cuBLAS's split-K GEMM is two kernels (the split GEMM, then splitKreduce_kernel
    summing the fp32 partials): a split costs one more launch, the class's floor over the
    kernels one call launches without it."""
    split = gemm.predict(16, 1024, 16384, gpu="h100-sxm", backend="trtllm")
    assert split.detail["split_k"] > 1
    assert split.terms_s["reduce"] == pytest.approx(kernel_class("gemm", "trtllm").floor_s)
    whole = gemm.predict(8192, 8192, 8192, gpu="h100-sxm", backend="trtllm")
    assert whole.detail["split_k"] == 1 and whole.terms_s["reduce"] == 0
    fp8 = gemm.predict(16, 1024, 16384, dtype="fp8", gpu="h100-sxm", backend="trtllm")
    if fp8.detail["split_k"] > 1:  # three kernels without the split: amax, quantise, GEMM
        assert fp8.terms_s["reduce"] == pytest.approx(
            kernel_class("gemm", "trtllm", "fp8").floor_s / 3)


def test_a_few_ctas_stream_through_their_own_sms_share_of_l2() -> None:
    """L2 → SM ingress is per SM: vLLM's 16 × 64 tiles over n = 512 (8 tiles, 16 CTAs
    in 1 × 2 clusters) pull their panels at the class's per-SM rate (``l2`` × L2 peak /
    132) each: the valid rows of A (TMA fetches no padding) and the whole B panel
    (multicast still lands all of it in every receiving SM's shared memory)."""
    m, n, k = 8, 512, 65536
    p = gemm.predict(m, n, k, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert (p.detail["tile_m"], p.detail["tile_n"], p.detail["waves"]) == (16, 64, 1)
    l2_per_sm = 12e12 * kernel_class("gemm", "vllm", "fp8").eff("l2") / 132
    assert p.terms_s["l2"] == pytest.approx((m * 1 + 64 * 1) * k / l2_per_sm)
    # 132 CTAs (one wave, no cluster above n = 1280): the same bytes on every SM, but
    # together past the L2's sustained plateau (0.82 × 12 TB/s), which then sets the term:
    # A's 8 rows once per CTA, B once
    wide = gemm.predict(8, 64 * 132, k, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert wide.detail["waves"] == 1
    reads = (8 * 132 + 64 * 132) * k
    assert wide.terms_s["l2"] == pytest.approx(reads / (0.82 * 12e12))
    assert wide.terms_s["l2"] > p.terms_s["l2"]
    # SM100's 2-SM MMA has each SM of a pair load half of B; SM89's kernel has no cluster
    assert [gemm.vllm_fp8_b_share(resolve_gpu(g)) for g in ("b200", "h100-sxm", "l40s")] == [
        2, 1, 1]


@given(dims, dims, dims, st.sampled_from(["bf16", "fp8", "fp8_block"]),
       st.sampled_from(["trtllm", "vllm", "sglang"]), st.sampled_from(["h100-sxm", "b200"]))
def test_the_l2_term_never_reads_l2_faster_than_its_sustained_plateau(
        m: int, n: int, k: int, dtype: str, backend: str, gpu: str) -> None:
    """Whatever the per-SM ingress factor, the slices' reads of the chosen tile (multicast
    counted once per cluster) take at least their bytes / the profile's L2 plateau."""
    p = gemm.predict(m, n, k, dtype=dtype, gpu=gpu, backend=backend)
    g = resolve_gpu(gpu)
    tile = (p.detail["tile_m"], p.detail["tile_n"])
    _, e_in = gemm.operand_bytes(dtype)
    sm90_vllm_fp8 = backend == "vllm" and dtype == "fp8" and g.spec.sm_count == 132
    cluster = (gemm.vllm_sm90_fp8_config(np.float64(m), np.float64(n))[1] if sm90_vllm_fp8
               else (1.0, 1.0))
    b_share = (gemm.vllm_fp8_b_share(g) if backend == "vllm" and dtype == "fp8"
               else gemm.CLUSTER)
    reads = gemm.l2_read_bytes(m, n, k, 1, tile, cluster, b_share, e_in, e_in)
    assert p.terms_s["l2"] >= reads / g.achievable_l2_bytes_per_s * (1 - 1e-9)


def test_multicast_lowers_the_slices_reads_not_an_sms_ingress() -> None:
    """A 2 × 1 cluster reads each B panel once for its two CTAs (CUTLASS ``mcast_mask_b``):
    B's reads halve; A's stay; an odd tile count rounds up to whole clusters."""
    m, n, k, e = 256.0, 1024.0, 4096.0, 1.0
    alone = gemm.l2_read_bytes(m, n, k, 1, (64.0, 128.0), (1.0, 1.0), 1.0, e, e)
    paired = gemm.l2_read_bytes(m, n, k, 1, (64.0, 128.0), (2.0, 1.0), 1.0, e, e)
    a_bytes = m * k * e * (n / 128)
    assert alone == a_bytes + n * k * e * 4 and paired == a_bytes + n * k * e * 2
    odd = gemm.l2_read_bytes(192.0, n, k, 1, (64.0, 128.0), (2.0, 1.0), 1.0, e, e)
    assert odd == 192 * k * e * (n / 128) + n * k * e * 2


def test_vllm_sm90_fp8_clusters_round_the_grid_up_to_whole_clusters() -> None:
    """scaled_mm_sm90_fp8_dispatch.cuh: every config clusters along m — 2 (m ≤ 16) and 4
    (m ≤ 64) CTAs for n ≤ 1280, 1 above, 2 for m > 64 — and CUTLASS launches whole
    clusters (tile_scheduler_params.h: problem_blocks_m = round_up(blocks, cluster_m)),
    the padding CTAs taking SM slots."""
    m = np.array([8, 8, 32, 32, 128, 4096])
    n = np.array([1024, 8192, 1024, 8192, 8192, 8192])
    (tile_m, tile_n), (along_m, along_n) = gemm.vllm_sm90_fp8_config(m, n)
    assert along_m.tolist() == [2, 1, 4, 1, 2, 2] and along_n.tolist() == [1] * 6
    assert tile_m.tolist() == [16, 16, 16, 64, 64, 128]
    assert tile_n.tolist() == [64, 64, 64, 64, 128, 128]
    p = gemm.predict(m, n, 8192, dtype="fp8", gpu="h100-sxm", backend="vllm")
    # n-tiles × m-tiles: 16 × (1 → 2); 128 × 1; 16 × (2 → 4); 128 × 1 (64 × 64 tiles);
    # 64 × 2 (64 × 128); 64 × 32 (128 × 128)
    assert p.detail["ctas"].tolist() == [32, 128, 64, 128, 128, 2048]
    # 3 m-tiles of 128 round up to 4: 4 × 44 = 176 CTAs (132 real) need 2 waves, not 1
    big = gemm.predict(384, 5632, 4096, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert (big.detail["ctas"], big.detail["waves"]) == (176, 2)


# aiconfigurator-core 0.12.0 h100_sxm/gemm/vllm/0.24.0/gemm_perf.parquet, fp8 rows:
# (n, k) → measured latency (s) at m = 16 and m = 17 (1 × 2 → 1 × 4 clusters)
H100_VLLM_FP8_M16_M17_S = {(1024, 65536): (56.51e-6, 56.30e-6),
                           (256, 65536): (55.33e-6, 52.97e-6),
                           (1024, 8192): (11.90e-6, 11.81e-6)}


@pytest.mark.parametrize("shape", list(H100_VLLM_FP8_M16_M17_S))
def test_vllm_sm90_fp8_time_is_flat_from_m16_to_m17_as_measured(shape: tuple) -> None:
    """From m = 16 to 17 vLLM's cluster grows from 1 × 2 to 1 × 4 CTAs sharing the weight
    panel; measured on H100 the time stays within 5 %. Each SM still takes the whole panel
    (multicast divides the loads a CTA issues, not the bytes it receives), so the model's
    step matches the measured one within 5 % (dividing the panel by the cluster gave a
    29 % drop)."""
    n, k = shape
    p = gemm.predict(np.array([16, 17]), n, k, dtype="fp8", gpu="h100-sxm", backend="vllm")
    at16_s, at17_s = H100_VLLM_FP8_M16_M17_S[shape]
    assert p.time_s[1] / p.time_s[0] == pytest.approx(at17_s / at16_s, rel=0.05)


def test_vllm_fp8_runs_its_fixed_sm90_tiles_without_split_k() -> None:
    m = np.array([1, 16, 17, 64, 65, 128, 129, 4096])
    p = gemm.predict(m, 4096, 4096, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert p.detail["tile_m"].tolist() == [16, 16, 64, 64, 64, 64, 128, 128]
    assert p.detail["tile_n"].tolist() == [64, 64, 64, 64, 128, 128, 128, 128]
    assert np.all(p.detail["split_k"] == 1)
    narrow = gemm.predict(32, 1024, 4096, dtype="fp8", gpu="h100-sxm", backend="vllm")
    assert (narrow.detail["tile_m"], narrow.detail["tile_n"]) == (16, 64)
    # cuBLAS (bf16) splits K when the tiles are too few to fill the SMs
    assert gemm.predict(16, 1024, 16384, gpu="h100-sxm").detail["split_k"] > 1


def test_vllm_fp8_block_is_host_bound_and_picks_its_kernel_by_shape() -> None:
    m = np.array([8, 64, 64])
    k = np.array([4096, 4096, 4000])  # 4000: not a multiple of the 128-wide scale blocks
    p = gemm.predict(m, 4096, k, dtype="fp8_block", gpu="h100-sxm", backend="vllm")
    assert p.detail["kernel_class"].tolist() == [
        "gemm/vllm/fp8_block_flashinfer", "gemm/vllm/fp8_block", "gemm/vllm/fp8_block_cutlass"]
    # eager launches: a small GEMM takes the host's time, not floor + kernel
    assert np.all(p.time_s == p.launch_s)
    big = gemm.predict(32768, 8192, 8192, dtype="fp8_block", gpu="h100-sxm", backend="vllm")
    assert big.time_s > big.launch_s and big.bound == "matmul"
    # Blackwell has no FlashInfer path: DeepGEMM for small m too
    b200 = gemm.predict(8, 4096, 4096, dtype="fp8_block", gpu="b200", backend="vllm")
    assert b200.detail["kernel_class"] == "gemm/vllm/fp8_block"


def test_hopper_block_scaled_fp8_promotes_every_k_block_on_cuda_cores() -> None:
    """SM90 block-scaled fp8 (DeepGEMM sm90_fp8_gemm_1d2d.cuh "Promote with scales") adds
    one FMA per accumulator element and 128-deep k-block at the SMs' fp32 rate to its
    matmul term; SM100's scaled MMA has no such term; other dtypes never promote."""
    assert gemm.promotes_on_cuda_cores("fp8_block", resolve_gpu("h100-sxm"))
    assert gemm.promotes_on_cuda_cores("fp8_block", resolve_gpu("l40s"))
    assert not gemm.promotes_on_cuda_cores("fp8_block", resolve_gpu("b200"))
    assert not gemm.promotes_on_cuda_cores("fp8", resolve_gpu("h100-sxm"))
    gpu = resolve_gpu("h100-sxm")
    cls = kernel_class("gemm", "trtllm", "fp8_block")
    m, n, k = (np.array([v], dtype=float) for v in (8192, 8192, 8192))
    tile = (np.array([128.0]), np.array([128.0]))
    args = (m, n, k, np.ones(1), gpu, cls, "fp8", 1.0)
    plain = gemm.tiled_terms(*args, split_k=False, tiles=tile)
    scaled = gemm.tiled_terms(*args, split_k=False, tiles=tile, promote=True)
    waves = np.ceil(64 * 64 / 132)
    fma_per_sm_per_s = gpu.peak_flop_per_s("fp32") / 2 / 132
    want = waves * 128 * 128 * (8192 / 128) / fma_per_sm_per_s
    assert scaled["matmul"] - plain["matmul"] == pytest.approx(want, rel=1e-9)
    assert scaled["l2"] == pytest.approx(plain["l2"]) and scaled["hbm"] == plain["hbm"]


@given(dims, dims, dims, st.sampled_from(["bf16", "fp8", "fp8_block"]),
       st.sampled_from(["trtllm", "vllm"]))
def test_hbm_traffic_is_at_least_the_compulsory_bytes(m: int, n: int, k: int, dtype: str,
                                                       backend: str) -> None:
    # the compulsory bytes (A, B read once, C written once) are the floor of HBM traffic
    p = gemm.predict(m, n, k, dtype=dtype, gpu="h200", backend=backend)
    assert p.hbm_bytes >= gemm.compulsory_bytes(m, n, k, 1, 2.0 if dtype == "bf16" else 1.0)


def test_time_is_the_floor_and_the_kernels_own_time() -> None:
    """Worked by hand on H200 (132 SMs, 989.4 dense bf16 TFLOP/s). TensorRT-LLM's bf16 GEMM
    is timed in a CUDA graph: floor + kernel. At m = 132·256, n = 2048, k = 8192 every
    tile fills whole waves, so the tensor term is 2mnk / (peak · eff) (1.438 ms at eff
    0.797, above L2's 1.11 ms and HBM's 0.19 ms), plus the 2.6 µs floor. vLLM's fp8_block
    GEMM is timed eagerly: the host's floor (90.6 µs) or the kernels, the larger — at
    128³ the kernels take 0.3 µs, so the time is the floor alone, not their sum."""
    h200 = resolve_gpu("h200")
    m, n, k = 132 * 256, 2048, 8192
    graph = gemm.predict(m, n, k, dtype="bf16", gpu=h200, backend="trtllm")
    cls = kernel_class("gemm", "trtllm", "bf16")
    tensor_s = 2.0 * m * n * k / (h200.peak_flop_per_s("tensor", "bf16") * cls.eff("tensor"))
    assert graph.time_s == pytest.approx(cls.floor_s + tensor_s, rel=1e-9)
    eager = gemm.predict(128, 128, 128, dtype="fp8_block", gpu=h200, backend="vllm")
    floor_s = kernel_class("gemm", "vllm", "fp8_block").floor_s
    assert float(eager.detail["kernel_s"]) < 0.01 * floor_s
    assert eager.time_s == floor_s
