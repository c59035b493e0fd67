"""Attention with a backend's fitted kernel class: the structural fixes of issue 10."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.attention import predict
from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.ops.classes import kernel_class
from memsim.problem import AttentionProblem, Mask


def _decode(S: int) -> AttentionProblem:
    # Llama-3-8B attention: 32 query heads, 8 KV heads, D = 128, one new token
    return AttentionProblem(batch=1, seq_len=1, kv_len=S, heads=32, kv_heads=8, head_dim=128,
                            mask=Mask())


@pytest.mark.parametrize("backend", ["trtllm", "vllm"])
def test_long_decode_is_hbm_bound_and_h200_beats_h100(backend) -> None:
    """Production decode kernels stay HBM-bound: at 128K the H200's 4.8 TB/s beats the
    H100's 3.35 TB/s (memsim used to name shared memory the bound and give both one time)."""
    h100 = predict(_decode(131072), "h100-sxm", "flash_decode", backend=backend)
    h200 = predict(_decode(131072), "h200", "flash_decode", backend=backend)
    assert h100.to_dict()["bound"] == h200.to_dict()["bound"] == "hbm"
    assert h200.to_dict()["time_s"] < 0.8 * h100.to_dict()["time_s"]


def test_memsims_own_decode_kernel_no_longer_ties_h100_and_h200() -> None:
    """Without a backend (memsim's kernel: every warp reads the staged tile) the SM-level
    wave stretch still lets the H200's bandwidth show at 128K."""
    h100 = predict(_decode(131072), "h100-sxm", "flash_decode").to_dict()["time_s"]
    h200 = predict(_decode(131072), "h200", "flash_decode").to_dict()["time_s"]
    assert h200 < 0.9 * h100


def test_headline_is_the_l2_estimate_and_no_reuse_is_kept() -> None:
    p = AttentionProblem(batch=1, seq_len=8192, heads=32, kv_heads=8, head_dim=128)
    d = predict(p, "h100-sxm", "flash2").to_dict()
    assert d["time_s"] == d["l2_estimate"]["time_s"] < d["no_reuse"]["time_s"]
    assert d["bound"] == d["l2_estimate"]["bound"]
    assert d["terms_s"][d["bound"]] == max(d["terms_s"].values())


def test_backend_uses_its_class_floor_and_names_it() -> None:
    d = predict(_decode(1024), "h100-sxm", "flash_decode", backend="trtllm").to_dict()
    cls = kernel_class("attention/decode", "trtllm", "xqa_hmma")   # bf16 cache, GQA, SM90
    assert d["efficiency_class"] == cls.name and d["backend"] == "trtllm"
    assert d["launch_s"] == pytest.approx(cls.floor_s)
    assert d["time_s"] >= cls.floor_s
    with pytest.raises(InputError, match="backend='tensorrt'"):
        predict(_decode(1024), "h100-sxm", "flash_decode", backend="tensorrt")


def test_reported_flops_are_the_useful_ones_with_a_backend() -> None:
    """The decode kernel's MMA padding slows it, but FLOPs stay the useful count."""
    plain = predict(_decode(4096), "h100-sxm", "flash_decode").to_dict()
    fitted = predict(_decode(4096), "h100-sxm", "flash_decode", backend="vllm").to_dict()
    assert fitted["flops"] == plain["flops"]


def _prefill(N: int, B: int = 1, causal: bool = True) -> AttentionProblem:
    return AttentionProblem(batch=B, seq_len=N, heads=32, kv_heads=8, head_dim=128,
                            mask=Mask(causal=causal))


def test_prefill_writes_the_kv_cache_before_its_attention_kernel() -> None:
    """A decoder's prefill runs the KV-cache write kernel before the FMHA (TensorRT-LLM
    invokeQKVPreprocessing, vLLM reshape_and_cache_flash): its HBM bytes at the class's
    bandwidth add to the time as the term "pre"; an encoder (no cache) has none."""
    from memsim.attention import predict_arrays, prepass_bytes
    from memsim.ops.classes import with_class

    gpu = load_gpu("h100-sxm")
    for backend in ("trtllm", "vllm"):
        p = _prefill(4096, B=4)
        a = predict_arrays(p, gpu, "flash2", backend=backend)
        cls = with_class(gpu, kernel_class("attention/context", backend))
        want = prepass_bytes(p, backend, 4, 4096) / cls.achievable_hbm_bytes_per_s
        assert a.l2_timing.terms_s["pre"] == pytest.approx(want)
        assert a.l2_timing.time_s == pytest.approx(
            max(a.l2_timing.compute_s, a.l2_timing.memory_s) + a.l2_timing.launch_s + want)
        enc = predict_arrays(_prefill(4096, B=4, causal=False), "h100-sxm", "flash2",
                             backend=backend)
        assert "pre" not in enc.l2_timing.terms_s
    # K, V of every token: TensorRT-LLM also rewrites the rotated Q, K in place
    p = _prefill(1024)
    e = 2.0
    assert prepass_bytes(p, "vllm", 1, 1024) == 1024 * 2 * 8 * 128 * (2.0 + e)
    assert prepass_bytes(p, "trtllm", 1, 1024) == 1024 * 128 * ((32 + 16) * 2.0
                                                                + (32 + 8) * 2.0 + 16 * e)


def test_prefill_fixed_steps_count_whole_query_tiles() -> None:
    """TensorRT-LLM's Hopper FMHA steps 64 query rows per block: 1 to 64 queries cost one
    tile's fixed steps, 65 two."""
    from memsim.attention import kernel_timer

    def serial(N):
        return kernel_timer(_prefill(N), load_gpu("h100-sxm"), "flash2",
                            backend="trtllm").serial_s

    assert serial(1) == serial(64) == pytest.approx(serial(65) / 2)


def _fa3_brute(N: int, S: int, G: int, D: int, window: int | None, e: int = 2):
    """FA3's m-blocks and tile pairs by walking the m-blocks (hopper/block.h
    get_n_block_min_max with PackGQA's rows): the closed form's reference."""
    from memsim.ops import fa3

    # FA3 drops a window that reaches every key (flash_api.cpp l. 638): causal tiles; one
    # query per sequence without a window is causal only at 64 < D ≤ 128 (l. 641-645)
    local = window is not None and S > window
    causal = not local and not (N == 1 and not 64 < D <= 128)
    Mb, Nb = (int(v) for v in fa3.tile(D, D, local, np.array(N * G), e, causal))
    counts = []
    for i in range(-(-N * G // Mb)):
        t0, t1 = i * Mb // G, (min((i + 1) * Mb, N * G) - 1) // G
        hi = -(-(t1 + S - N + 1) // Nb)
        lo = max(0, t0 + S - N - window + 1) // Nb if window else 0
        counts.append(hi - lo)
    return Mb, Nb, len(counts), sum(counts), max(counts)


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 3000), prefix=st.sampled_from([0, 0, 7, 500]),
       G=st.sampled_from([1, 2, 3, 5, 8, 16, 64]), D=st.sampled_from([64, 128, 192, 256]),
       window=st.sampled_from([None, 128, 1000]), e=st.sampled_from([1, 2]))
def test_fa3_tile_pairs_closed_form_equals_the_walk(N, prefix, G, D, window, e) -> None:
    """memsim.ops.fa3.work (floor sums) counts the m-blocks and K/V tile pairs of FA3's
    PackGQA prefill exactly as walking every m-block does; its longest m-block is exact
    under a causal mask and an upper bound by at most one tile under a window."""
    from memsim.ops import fa3

    S = N + prefix
    Mb, Nb, m, pairs, longest = (np.asarray(v).item() for v in
                                 fa3.work(np.array([N]), np.array([S]), G, D, D, window, e))
    bMb, bNb, bm, bpairs, blongest = _fa3_brute(N, S, G, D, window, e)
    assert (Mb, Nb, m, pairs) == (bMb, bNb, bm, bpairs)
    if window is None:
        assert longest == blongest
    else:
        assert blongest <= longest <= blongest + 1


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 3000), prefix=st.sampled_from([0, 7, 500]),
       G=st.sampled_from([1, 4, 8]), D=st.sampled_from([64, 128, 256]),
       extra=st.integers(0, 5000), e=st.sampled_from([1, 2]))
def test_fa3_window_reaching_every_key_runs_the_causal_kernel(N, prefix, G, D, extra,
                                                              e) -> None:
    """hopper/flash_api.cpp @617264c1 l. 638: ``window_size_left >= max_seqlen_k - 1`` is
    no window, so a window W ≥ S times exactly as no window (tiles, m-blocks, pairs), and
    one of W < S takes the local tiles."""
    from memsim.ops import fa3

    S = N + prefix
    args = (np.array([N]), np.array([S]), G, D, D)
    causal = [np.asarray(v).item() for v in fa3.work(*args, None, e)]
    assert [np.asarray(v).item() for v in fa3.work(*args, S + extra, e)] == causal
    if S > 1:
        Mb, Nb = (np.asarray(v).item() for v in fa3.work(*args, S - 1, e)[:2])
        assert (Mb, Nb) == tuple(int(v) for v in fa3.tile(D, D, True, np.array(N * G), e))


def test_fa3_is_causal_follows_flash_api() -> None:
    """hopper/flash_api.cpp @617264c1 l. 638-645 as vLLM calls it (causal, paged): one
    query per sequence without a window runs non-causal except at 64 < D ≤ 128 with a
    paged cache; a window reaching every key is none; a window is local, not causal. At
    D 64 with more than 64 packed rows the non-causal tile is 192 × 160, not 192 × 128."""
    from memsim.ops import fa3

    def c(window, S, N, D, paged=True):
        return bool(fa3.is_causal(window, np.array(S), np.array(N), D, paged))

    assert c(None, 4096, 1, 128) and c(None, 4096, 1, 96)
    assert not c(None, 4096, 1, 64) and not c(None, 4096, 1, 256)
    assert not c(None, 4096, 1, 128, paged=False)
    assert c(None, 4096, 2, 64) and c(None, 4096, 2, 256)
    assert not c(128, 4096, 1, 128) and not c(128, 4096, 2, 128)
    assert c(8192, 4096, 1, 128) and not c(8192, 4096, 1, 64)
    one, two = (fa3.work(np.array([n]), np.array([4096]), 128, 64, 64, None)[:2]
                for n in (1, 2))
    assert tuple(int(np.asarray(v).item()) for v in one) == (192, 160)
    assert tuple(int(np.asarray(v).item()) for v in two) == (192, 128)


def test_fa3_tiles_follow_tile_size_fwd_sm90() -> None:
    """hopper/tile_size.h with 64-token pages (paged non-TMA): D 128 → 128 × 128, one
    64-row warpgroup when N·G ≤ 64; D 64 → 192 × 128 causal, 192 × 160 with a window;
    D 256 → 128 × 80 (64 with a window)."""
    from memsim.ops import fa3

    def t(D, local, rows):
        return tuple(int(v) for v in fa3.tile(D, D, local, np.array(rows)))

    assert t(128, False, 4096) == (128, 128)
    assert t(128, False, 64) == (64, 128)
    assert t(128, True, 64) == (128, 128)
    assert t(64, False, 4096) == (192, 128)
    assert t(64, True, 4096) == (192, 160)
    assert t(256, False, 4096) == (128, 80)
    assert t(256, True, 4096) == (128, 64)
    # e4m3 (FP8 prefill tiles, two-level accumulation)
    assert tuple(int(v) for v in fa3.tile(128, 128, False, np.array(4096), 1)) == (128, 192)
    assert tuple(int(v) for v in fa3.tile(64, 64, False, np.array(4096), 1)) == (192, 128)
    assert tuple(int(v) for v in fa3.tile(128, 128, False, np.array(64), 1)) == (64, 96)


# hopper/tile_size.h tile_size_fwd_sm90 at vllm-project/flash-attention @617264c1, read
# line by line (l. 14-77): (head_dim, head_dim_v, causal, local, elem_bytes, paged non-TMA,
# one MMA warpgroup) → (kBlockM, kBlockN); every return statement of the 16-bit and the
# two-level FP8 branches at least once. Exact integers, no tolerance.
TILE_SIZE_FWD_SM90 = [
    ((64, 512, True, False, 2, True, False), (64, 64)),
    ((64, 256, True, False, 2, True, False), (128, 96)),
    ((64, 64, True, False, 2, True, True), (64, 192)),
    ((64, 64, True, False, 2, True, False), (192, 128)),
    ((64, 64, False, True, 2, True, False), (192, 160)),
    ((64, 64, False, False, 2, True, False), (192, 160)),
    ((64, 64, False, False, 2, False, False), (192, 192)),
    ((96, 96, True, False, 2, True, False), (192, 128)),
    ((96, 96, False, False, 2, False, False), (192, 144)),
    ((128, 128, True, False, 2, True, True), (64, 128)),
    ((128, 128, False, False, 2, False, True), (64, 176)),
    ((128, 128, True, False, 2, True, False), (128, 128)),
    ((128, 128, False, False, 2, False, False), (128, 160)),
    ((192, 192, True, False, 2, True, False), (128, 96)),
    ((192, 128, False, False, 2, False, False), (128, 128)),
    ((192, 192, False, False, 2, False, False), (128, 96)),
    ((256, 256, True, False, 2, True, False), (128, 80)),
    ((256, 256, False, True, 2, True, False), (128, 64)),
    ((64, 64, True, False, 1, True, True), (64, 128)),
    ((128, 128, True, False, 1, True, True), (64, 96)),
    ((64, 64, True, False, 1, True, False), (192, 128)),
    ((96, 96, True, False, 1, True, False), (128, 128)),
    ((128, 128, True, False, 1, True, False), (128, 192)),
    ((192, 192, True, False, 1, True, False), (128, 96)),
    ((256, 256, True, False, 1, True, False), (128, 128)),
    ((256, 256, False, True, 1, True, False), (128, 64)),
]


@pytest.mark.parametrize(("args", "want"), TILE_SIZE_FWD_SM90)
def test_tile_size_fwd_sm90_transcribes_the_source(args, want) -> None:
    """memsim.ops.fa3.tile_size_fwd_sm90 returns hopper/tile_size.h's tiles (table above)."""
    from memsim.ops import fa3

    assert fa3.tile_size_fwd_sm90(*args) == want


def test_fa3_tile_rule_has_one_home() -> None:
    """vLLM's paged prefill/decode tiles (fa3.tile) and the encoder's TMA tiles
    (encoder.kernel on Hopper) are both fa3.tile_size_fwd_sm90, differing only in the paged
    non-TMA flag and the mask: at D = 64 the encoder's non-causal TMA tile is 192 × 192,
    the paged causal one 192 × 128; one warpgroup at ≤ 64 packed rows in both."""
    from memsim.hardware import load_gpu
    from memsim.ops import encoder, fa3

    h100 = load_gpu("h100-sxm")
    for D in (64, 96, 128, 192, 256):
        for rows in (64, 65, 4096):
            enc = encoder.kernel("vllm", h100, D, rows)
            one = fa3.use_one_mma_wg(D, D, False, rows)
            assert (int(enc.block_m), int(enc.block_n)) == fa3.tile_size_fwd_sm90(
                D, D, False, False, 2, False, bool(one))
            paged = tuple(int(v) for v in fa3.tile(D, D, False, np.array(rows)))
            assert paged == fa3.tile_size_fwd_sm90(D, D, True, False, 2, True, bool(one))
    assert (int(encoder.kernel("vllm", h100, 64, 4096).block_n),
            int(fa3.tile(64, 64, False, np.array(4096))[1])) == (192, 128)


def test_vllm_prefill_on_hopper_times_fa3_tiles_per_kv_head() -> None:
    """vLLM's Hopper prefill is FA3 with PackGQA: the query heads of a KV head share an
    m-block, so at equal query heads and tokens fewer KV heads mean fewer, fuller tiles:
    8 KV heads of 4 queries each at N = 16 fill 8 m-blocks where 32 KV heads fill 32 —
    the MMA work on the busiest SM drops. TensorRT-LLM keeps its own per-head tiles."""
    from memsim.attention import kernel_timer

    gpu = load_gpu("h100-sxm")
    mha = AttentionProblem(batch=64, seq_len=16, heads=32, kv_heads=32, head_dim=128)
    gqa = mha.model_copy(update={"kv_heads": 8})
    work = {p.K: kernel_timer(p, gpu, "flash2", backend="vllm").prefill_tiles["matmul_flops"]
            for p in (mha, gqa)}
    assert work[8] < work[32] / 3
    assert kernel_timer(gqa, gpu, "flash2", backend="trtllm").prefill_tiles is None


def test_trtllm_decode_beyond_32_heads_per_kv_head_runs_as_mha() -> None:
    """XQA takes at most 32 query heads per KV head (supportConfigHMMA/QGMMA); 64 fall back
    to the masked MHA kernel, which reads the KV head once per query head."""
    from memsim.attention import production_problem

    mqa = AttentionProblem(batch=8, seq_len=1, kv_len=4096, heads=64, kv_heads=1,
                           head_dim=128)
    assert production_problem(mqa, "flash_decode", "trtllm").K == 64
    assert production_problem(mqa, "flash_decode", "vllm").K == 1
    g32 = mqa.model_copy(update={"heads": 32})
    assert production_problem(g32, "flash_decode", "trtllm").K == 1
    mha_bytes = predict(mqa.model_copy(update={"kv_heads": 64}), "h100-sxm", "flash_decode",
                        backend="trtllm").cost.hbm_read_bytes
    assert predict(mqa, "h100-sxm", "flash_decode", backend="trtllm").cost.hbm_read_bytes \
        == pytest.approx(mha_bytes)


def test_vllm_decode_on_blackwell_runs_trtllm_gen_kernels() -> None:
    """vLLM on Blackwell decodes through FlashInfer's trtllm-gen kernels: TensorRT-LLM's
    decode class; on Hopper its own FlashAttention-3 class."""
    b200 = predict(_decode(4096), "b200", "flash_decode", backend="vllm").to_dict()
    h100 = predict(_decode(4096), "h100-sxm", "flash_decode", backend="vllm").to_dict()
    assert b200["efficiency_class"] == kernel_class("attention/decode", "trtllm",
                                                    "trtllm_gen").name
    assert h100["efficiency_class"] == kernel_class("attention/decode", "vllm").name
    assert b200["time_s"] == pytest.approx(
        predict(_decode(4096), "b200", "flash_decode", backend="trtllm").to_dict()["time_s"])


def test_vllm_decode_on_blackwell_keeps_every_group_in_trtllm_gen() -> None:
    """vLLM calls trtllm-gen through FlashInfer, not through XQA's dispatch: 64 heads per KV
    head stay grouped (one read of the KV head, not 64) and MHA runs trtllm-gen;
    TensorRT-LLM's own dispatch on Blackwell runs MHA on trtllm-gen too
    (XqaDispatcher::shouldUse), Hopper's on its masked MHA kernel."""
    from memsim.attention import decode_kernel

    b200 = load_gpu("b200")
    mqa = AttentionProblem(batch=8, seq_len=1, kv_len=4096, heads=64, kv_heads=1,
                           head_dim=128)
    mha = mqa.model_copy(update={"kv_heads": 64})
    vllm = predict(mqa, b200, "flash_decode", backend="vllm")
    trt = predict(mqa, b200, "flash_decode", backend="trtllm")
    assert vllm.cost.hbm_read_bytes < trt.cost.hbm_read_bytes / 32
    assert decode_kernel(mha, "trtllm", b200, "vllm") == "trtllm_gen"
    assert decode_kernel(mha, "trtllm", b200) == "trtllm_gen"
    assert decode_kernel(mha, "trtllm", b200, "trtllm") == "trtllm_gen"
    assert decode_kernel(mha, "trtllm", load_gpu("h100-sxm"), "vllm") == "mmha"
    assert predict(mha, b200, "flash_decode", backend="vllm").to_dict()[
        "efficiency_class"] == kernel_class("attention/decode", "trtllm", "trtllm_gen").name


def test_vllm_one_token_prefill_on_blackwell_runs_the_decode_kernel() -> None:
    """vLLM runs a one-token query as its decode (FlashInfer's decode path on Blackwell,
    FA3's one-token call on Hopper): a one-token prefill row is timed as that decode;
    longer queries, other GPUs and the other backends keep the prefill."""
    from memsim.attention import runs_decode_kernel
    from memsim.silicon.classes import context_attention
    from memsim.silicon.tables import Rows

    b200, h100 = load_gpu("b200"), load_gpu("h100-sxm")
    N = np.array([1, 2, 16])
    assert runs_decode_kernel("vllm", b200, N).tolist() == [True, False, False]
    assert runs_decode_kernel("vllm", h100, N).tolist() == [True, False, False]
    assert not runs_decode_kernel("vllm", load_gpu("a100-sxm4-80gb"), N).any()
    assert not runs_decode_kernel("trtllm", b200, N).any()
    cols = {"batch_size": np.array([8, 8]), "isl": np.array([1, 2]),
            "num_heads": np.array([32, 32]), "num_key_value_heads": np.array([8, 8]),
            "head_dim": np.array([128, 128]), "window_size": np.array([0, 0]),
            "attn_dtype": np.array(["bfloat16"] * 2, dtype=object),
            "kv_cache_dtype": np.array(["bfloat16"] * 2, dtype=object)}
    rows = Rows("b200_sxm", "attention", "vllm", "0.24.0", "context_attention_perf", "f",
                "0", np.arange(2), cols)
    m = context_attention(rows, b200)
    assert [p["algorithm"] for p in m.params] == ["flash_decode", "flash2"]
    one = AttentionProblem(batch=8, seq_len=1, kv_len=1, heads=32, kv_heads=8,
                           head_dim=128)
    assert m.time_s["analytic"][0] == pytest.approx(
        predict(one, b200, "flash_decode", backend="vllm").to_dict()["time_s"])


def test_vllm_fp8_decode_on_hopper_has_its_own_class() -> None:
    """An fp8 KV cache runs FA3's e4m3 decode kernel: its own fitted class on Hopper (a
    16-bit cache keeps the bf16 class; SGLang and Blackwell keep theirs)."""
    fp8 = _decode(4096).model_copy(update={"dtype": "fp8"})
    name = {(b, g, d): predict(p, g, "flash_decode", backend=b).to_dict()["efficiency_class"]
            for b in ("vllm", "sglang") for g in ("h100-sxm", "b200")
            for d, p in (("fp8", fp8), ("bf16", _decode(4096)))}
    assert name["vllm", "h100-sxm", "fp8"] == "attention/decode/vllm/fp8"
    assert name["vllm", "h100-sxm", "bf16"] == "attention/decode/vllm"
    assert name["sglang", "h100-sxm", "fp8"] == kernel_class("attention/decode",
                                                             "sglang").name
    assert name["vllm", "b200", "fp8"] == kernel_class("attention/decode", "trtllm",
                                                       "trtllm_gen").name


def test_trtllm_decode_kernel_follows_xqa_dispatch() -> None:
    """XQA's QGMMA kernel only with an fp8 cache on Hopper (supportConfigQGMMA), its HMMA
    kernel for 16-bit caches, MMHA for one head per KV head (MHA, and groups over 32 turned
    into MHA); Blackwell's trtllm-gen kernels their own (the all-kernel class); other
    backends have none."""
    from memsim.attention import decode_kernel, production_problem
    from memsim.hardware import load_gpu

    h100, b200 = load_gpu("h100-sxm"), load_gpu("b200")
    gqa = AttentionProblem(batch=1, seq_len=1, kv_len=4096, heads=32, kv_heads=8,
                           head_dim=128)
    fp8 = gqa.model_copy(update={"dtype": "fp8"})
    mha = gqa.model_copy(update={"kv_heads": 32})
    wide = production_problem(gqa.model_copy(update={"heads": 64, "kv_heads": 1}),
                              "flash_decode", "trtllm")
    assert decode_kernel(gqa, "trtllm", h100) == "xqa_hmma"
    assert decode_kernel(fp8, "trtllm", h100) == "xqa_gmma"
    assert decode_kernel(mha, "trtllm", h100) == decode_kernel(wide, "trtllm", h100) == "mmha"
    assert decode_kernel(gqa, "trtllm", b200) == "trtllm_gen"
    # groups of 17-32 heads per KV head on Blackwell: trtllm-gen, as aiconfigurator's B200
    # rows time them (as MMHA, which xqaDispatcher.cpp names for them, bias +643 %:
    # decode_kernel's docstring)
    g24 = gqa.model_copy(update={"heads": 96, "kv_heads": 4})
    assert decode_kernel(g24, "trtllm", b200) == "trtllm_gen"
    assert decode_kernel(g24, "trtllm", h100) == "xqa_hmma"
    assert decode_kernel(gqa, "vllm", h100) is None
    # both XQA kernels refuse a head size that is not a multiple of 16: MMHA runs it
    for d in (40, 72):
        odd = fp8.model_copy(update={"head_dim": d})
        assert decode_kernel(odd, "trtllm", h100) == "mmha"
        assert decode_kernel(odd.model_copy(update={"dtype": "bf16"}), "trtllm", h100) == "mmha"
    assert decode_kernel(fp8.model_copy(update={"head_dim": 80}), "trtllm", h100) == "xqa_gmma"
    names = {predict(p, "h100-sxm", "flash_decode", backend="trtllm").to_dict()
             ["efficiency_class"] for p in (gqa, fp8, mha)}
    assert names == {f"attention/decode/trtllm/{k}" for k in ("xqa_hmma", "xqa_gmma", "mmha")}


def test_mmha_multi_block_follows_tensorrt_llms_launch() -> None:
    """multi_block_grid_setup (decoderMaskedMultiheadAttentionLaunch.h), worked by hand on
    H100's 132 SMs and 227 KiB of shared memory per block: 512 threads, 16-byte loads of
    16-bit elements, so D = 128 takes 16 threads per value and a 256-key loop (64: 512,
    256: 128); at most ⌈132 / (B·H)⌉ CTAs per (sequence, head), at least the ones the
    softmax's shared memory needs (9600 × 4 keys per CTA); a window splits as its whole
    history."""
    from memsim.attention import mmha_seq_len_tiles

    smem = 232448
    S = np.array([2, 256, 257, 512, 513, 1024, 2048, 16384])
    assert mmha_seq_len_tiles(1, 40, 128, S, None, 132, smem).tolist() == [
        1, 1, 2, 2, 3, 4, 4, 4]
    assert mmha_seq_len_tiles(1, 40, 64, S, None, 132, smem).tolist() == [
        1, 1, 1, 1, 2, 2, 4, 4]
    assert mmha_seq_len_tiles(2, 48, 256, S, None, 132, smem).tolist() == [
        1, 2, 2, 2, 2, 2, 2, 2]
    assert mmha_seq_len_tiles(1, 128, 64, S, 128, 132, smem).tolist() == [
        1, 1, 1, 1, 2, 2, 2, 2]
    # B·H ≥ SMs: one CTA per (sequence, head) until the softmax outgrows shared memory
    assert mmha_seq_len_tiles(64, 40, 128, [38400, 38401, 65536], None, 132,
                              smem).tolist() == [1, 2, 2]


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 256), H=st.integers(1, 128), D=st.sampled_from([64, 80, 128, 256]),
       S=st.integers(1, 1 << 17), sms=st.sampled_from([108, 132, 148]))
def test_mmha_multi_block_grid_fits_one_wave_and_grows_with_the_keys(B, H, D, S, sms):
    """MMHA's split never launches more CTAs than one per SM beyond B·H (nor than the
    shared-memory minimum asks), nor a CTA without a full K/V loop of keys, and never
    shrinks as the cache grows."""
    from memsim.attention import mmha_seq_len_tiles

    smem = 232448
    tiles = int(mmha_seq_len_tiles(B, H, D, S, None, sms, smem))
    more = int(mmha_seq_len_tiles(B, H, D, 2 * S, None, sms, smem))
    shared_min = int(np.ceil(np.ceil(S / 4) / ((smem - 2048) // 24)))
    assert 1 <= tiles <= more
    assert tiles <= max(-(-sms // (B * H)), shared_min, 1)
    assert tiles <= max(-(-S // 128), shared_min)   # 128 keys: the shortest loop (D = 256)


def test_xqa_multi_block_follows_tensorrt_llms_heuristic() -> None:
    """computeMultiBlockCount (decoderXQAImplCommon.h), worked by hand on H100's 132 SMs:
    510 past tokens → ⌊510/128⌋ = 3 CTAs; 131070 → 1023, capped at round(√(8·1023)) = 90;
    batch 16 × 8 KV heads at 131070: cut to 8 waves, ⌊90 / (16·8·90/132/8)⌋ = 8;
    a short cache never splits; batch 2048 keeps 1 (the wave cap)."""
    from memsim.attention import xqa_multi_block

    got = xqa_multi_block(np.array([1, 1, 16, 1, 2048]), np.array([1, 1, 8, 1, 8]),
                          np.array([510, 131070, 131070, 100, 131070]), 132)
    assert got.tolist() == [3, 90, 8, 1, 1]


def test_xqa_splits_count_the_cached_keys_less_the_new_one() -> None:
    """The decoded token's key is in the cache: 512 cached keys are 511 past tokens, ⌊511 /
    128⌋ = 3 CTAs; 513 are 512 past tokens, 4 (≤ round(√32) = 6)."""
    from memsim.attention import xqa_splits

    assert xqa_splits(1, 1, np.array([512, 513]), 132).tolist() == [3, 4]


def test_decode_cta_time_is_the_busiest_sms_plus_one_for_the_reduction() -> None:
    """⌈CTAs / SMs⌉ CTAs' fixed steps on the busiest SM, one more where the keys are split
    (the last CTA reduces the partials)."""
    from memsim.attention import decode_serial_s

    t = decode_serial_s(2e-6, np.array([8.0, 8 * 3, 264.0, 265.0]),
                        np.array([8.0, 8.0, 264.0, 265.0]), 132)
    assert t.tolist() == pytest.approx([2e-6, 4e-6, 4e-6, 6e-6])


def test_xqa_gmma_last_cta_merges_each_partial_at_a_share_of_a_ctas_fixed_time() -> None:
    """mha_sm90.cu: the last CTA of a split (sequence, KV head) loads its nbSubSeq
    partials through 4 buffers: cta_s / 4 per partial, on top of the busiest SM's own
    CTAs; no split, no merge; mha.cu keeps one more CTA's fixed steps."""
    from memsim.attention import XQA_GMMA_PARTIALS_IN_FLIGHT, decode_serial_s, xqa_partial_s

    assert XQA_GMMA_PARTIALS_IN_FLIGHT == 4
    assert xqa_partial_s("xqa_hmma", 2e-6) is None
    partial = xqa_partial_s("xqa_gmma", 2e-6)
    assert partial == pytest.approx(0.5e-6)
    # 90 sub-sequences of one (sequence, KV head): one CTA per SM + 90 partials merged;
    # 8 groups unsplit: nothing to merge
    t = decode_serial_s(2e-6, np.array([90.0, 8.0]), np.array([1.0, 8.0]), 132, partial)
    assert t.tolist() == pytest.approx([2e-6 + 90 * 0.5e-6, 2e-6])


def test_xqa_gmma_streams_whole_64_key_tiles_per_cta() -> None:
    """mha_sm90.cu loads and multiplies whole 64-key tiles, ⌈tiles / sub-sequences⌉ per
    CTA: 2 and 64 cached keys stream one tile, 65 two; 4096 keys over 16 sub-sequences
    are 4 tiles each, 4100 (65 tiles) 5 on the busiest. mha.cu streams the keys in use,
    the window's where it slides."""
    from memsim.attention import xqa_streamed_keys

    S = np.array([2, 64, 65, 4096, 4100])
    subs = np.array([1, 1, 1, 16, 16])
    got = xqa_streamed_keys("xqa_gmma", S, None, subs) / subs
    assert got.tolist() == [64, 64, 128, 256, 320]
    assert xqa_streamed_keys("xqa_hmma", S, None, subs).tolist() == S.tolist()
    assert xqa_streamed_keys("xqa_hmma", S, 128, subs).tolist() == [2, 64, 65, 128, 128]
    # a 128-key window straddling a tile edge: 3 tiles in use, over 2 sub-sequences
    assert (xqa_streamed_keys("xqa_gmma", np.array([4100]), 128, np.array([2]))
            == 2 * 2 * 64).all()


@given(S=st.integers(1, 1 << 20), subs=st.integers(1, 128))
def test_xqa_gmma_streamed_keys_cover_the_tiles_in_whole_tiles(S: int, subs: int) -> None:
    """Whole 64-key tiles, ⌈tiles / subs⌉ per sub-sequence: at least every tile in use,
    under one more tile per sub-sequence, and never fewer keys for more cached keys."""
    from memsim.attention import xqa_gmma_tiles, xqa_streamed_keys

    tiles = float(xqa_gmma_tiles(np.array([S]), None)[0])
    keys = float(xqa_streamed_keys("xqa_gmma", np.array([S]), None, np.array([subs]))[0])
    assert keys % 64 == 0
    assert tiles * 64 <= keys < (tiles + subs) * 64
    more = float(xqa_streamed_keys("xqa_gmma", np.array([S + 1]), None,
                                   np.array([subs]))[0])
    assert more >= keys


def test_xqa_gmma_decode_time_is_flat_within_its_first_tile() -> None:
    """aiconfigurator's H100 rows at batch 1024, 2 query heads per KV head, D = 128, fp8:
    13.7-14.0 µs from 2 to 64 cached keys (one tile), 17.2 µs at 128 (two). While HBM
    does not bind, the prediction at 16 keys is the one at 2 (a cost per key put it 8 %
    higher); two tiles take longer than one."""
    h100 = load_gpu("h100-sxm")
    t = {}
    for S in (2, 16, 64, 128):
        p = AttentionProblem(batch=1024, seq_len=1, kv_len=S, heads=2, kv_heads=1,
                             head_dim=128, dtype="fp8")
        t[S] = predict(p, h100, "flash_decode", backend="trtllm").timing.time_s
    assert t[16] == pytest.approx(t[2], rel=0.01)
    assert t[128] > 1.1 * t[64]


def test_xqa_sub_sequences_that_run_their_fixed_steps() -> None:
    """mha.cu runs every multi-block sub-sequence (an empty one before a sliding window
    included); mha_sm90.cu only min(64-key tiles in use, multi_block), one below two
    tiles. Batch 1, one KV head, H100: 131072 keys → 90 sub-sequences; a 128-key window
    leaves 2 tiles (3 where it straddles a tile edge) to the GMMA kernel."""
    from memsim.attention import xqa_multi_block, xqa_sub_sequences

    S = np.array([64, 128, 4096, 131072, 131072, 131072 + 32])
    window = 128
    hmma = xqa_sub_sequences("xqa_hmma", 1, 1, S, window, 132)
    gmma = xqa_sub_sequences("xqa_gmma", 1, 1, S, window, 132)
    assert hmma.tolist() == xqa_multi_block(1, 1, S - 1, 132).tolist()
    assert hmma[3] == 90
    assert gmma.tolist() == [1, 1, 2, 2, 2, 3]   # 128 keys: multi_block 1
    full = xqa_sub_sequences("xqa_gmma", 1, 1, S, None, 132)
    assert full.tolist() == [1, 1, 16, 90, 90, 91]   # round(√(8·31)) = 16, √(8·1024) = 90.5
    assert np.all(gmma <= hmma) and np.all(full <= hmma)


@pytest.mark.parametrize("window", [None, 128])
def test_xqa_windowed_decode_time_grows_only_where_empty_ctas_cost(window) -> None:
    """At batch 16 a 128-key window leaves XQA HMMA's 1040 CTAs to run their fixed steps
    (the time grows with the cache length), XQA GMMA's few CTAs return at once."""
    h100 = load_gpu("h100-sxm")
    t = {}
    for dtype in ("bf16", "fp8"):
        for S in (1024, 131072):
            p = AttentionProblem(batch=16, seq_len=1, kv_len=S, heads=8, kv_heads=1,
                                 head_dim=64, dtype=dtype, mask=Mask(window=window))
            t[dtype, S] = predict(p, h100, "flash_decode", backend="trtllm").timing.time_s
    if window is None:
        assert t["bf16", 131072] > 4 * t["bf16", 1024]
        assert t["fp8", 131072] > 4 * t["fp8", 1024]
    else:
        assert t["bf16", 131072] > 1.5 * t["bf16", 1024]
        assert t["fp8", 131072] == pytest.approx(t["fp8", 1024], rel=0.05)


def test_xqa_gmma_pads_the_group_to_eight_heads() -> None:
    """mha_sm90.cu (swapAB): ctaNbQHeads = roundUp(group, 8); mha.cu: warpTile.y =
    roundUp(group, 16): 8 heads per KV head fill the GMMA kernel's tile and half the
    mma.sync kernel's."""
    from memsim.attention import kernel_timer

    h100 = load_gpu("h100-sxm")
    gqa = _decode(4096).model_copy(update={"heads": 64})   # 8 heads per KV head
    pads = {d: float(kernel_timer(gqa.model_copy(update={"dtype": d}), h100, "flash_decode",
                                  backend="trtllm").decode_pad) for d in ("bf16", "fp8")}
    assert pads == {"bf16": 2.0, "fp8": 1.0}


def test_decode_cta_time_is_sm_cycles() -> None:
    """A decode CTA's fixed steps are SM cycles: the same class times them 1.98 / 1.41
    longer on A100 than on H100 (the fitted GPUs' clock)."""
    from memsim.attention import kernel_timer
    from memsim.ops.classes import clock_ratio

    h100, a100 = load_gpu("h100-sxm"), load_gpu("a100-sxm4-80gb")
    assert clock_ratio(h100) == clock_ratio(load_gpu("h200")) == 1.0
    assert clock_ratio(a100) == pytest.approx(1.98 / 1.41)
    p = _decode(4096)
    cta = {g.name: float(kernel_timer(p, g, "flash_decode", backend="trtllm").cta_s)
           for g in (h100, a100)}
    assert cta[a100.name] == pytest.approx(cta[h100.name] * 1.98 / 1.41)


def test_xqa_key_stream_time_is_memory_latency_not_sm_cycles() -> None:
    """XQA's per-key time is latency-bound loads, nanoseconds whatever the SM clock: the
    class's key_s at D = 128 on A100 (1.41 GHz) and L40S (2.52 GHz) as on H100."""
    from memsim.attention import kernel_timer

    cls = kernel_class("attention/decode", "trtllm", "xqa_hmma")
    p = AttentionProblem(batch=1, seq_len=1, kv_len=16384, heads=8, kv_heads=1,
                         head_dim=128)
    for name in ("h100-sxm", "a100-sxm4-80gb", "l40s"):
        timer = kernel_timer(p, load_gpu(name), "flash_decode", backend="trtllm")
        assert float(timer.key_s) == pytest.approx(cls.key_s), name


def test_fa3_decode_splits_follow_flashattention3s_heuristic() -> None:
    """FA-3's split count as vLLM runs it, worked by hand on H100's 132 SMs (D 128, 16-bit:
    kBlockN 128). K 8, 65536 keys: 512 key tiles; the static bound (heuristics.h, batch
    taken as 1) is the smallest count within 0.95 of the best wave efficiency, 16
    (128/132); the scheduler's dynamic count (flash_prepare_scheduler.cu) is ⌈512 / ⌈1.1 ·
    512 · 8 / 132⌉⌉ = ⌈512/35⌉ = 15. Batch 64 fills the SMs: 1. 512 keys (4 tiles): 1.
    Batch 2048 (over 992 sequences): 1. K 1, 8192 keys (64 tiles): below 4 tiles per split
    the efficiency drops to 0.85·s/132, best 0.412 at 64, so the static bound is 61, and the
    dynamic count ⌈64 / ⌈0.53⌉⌉ = 64 is capped to it."""
    from memsim.attention import fa3_num_splits

    h100 = load_gpu("h100-sxm")
    gqa = AttentionProblem(batch=1, seq_len=1, kv_len=65536, heads=64, kv_heads=8,
                           head_dim=128)
    got = fa3_num_splits(gqa, h100, np.array([1, 64, 1, 2048]), 1,
                         np.array([65536, 65536, 512, 65536]))
    assert got.tolist() == [15, 1, 1, 1]
    mqa = gqa.model_copy(update={"heads": 8, "kv_heads": 1, "kv_len": 8192})
    assert int(fa3_num_splits(mqa, h100, 1, 1, 8192)) == 61


def test_fa3_decode_tile_pads_the_group_to_the_kernels_block_m() -> None:
    """FA-3's kBlockM for a paged decode (tile_size.h, heuristics.h use_one_mma_wg): one MMA
    warpgroup (64 rows) for D ∈ {64, 128}, no window and ≤ 64 packed rows, 16-bit or fp8;
    128 rows at D 256 or with a window at D 128, 192 at D 64 with a window; TensorRT-LLM's
    XQA a 16-row mma.sync, its GMMA kernel 8 heads (GMMA's N side), MMHA no tile (1);
    FA-2's split-KV kernel (vLLM off Hopper) 64."""
    from memsim.attention import decode_query_tile

    h100, a100 = load_gpu("h100-sxm"), load_gpu("a100-sxm4-80gb")
    assert int(decode_query_tile("vllm", h100, 128, "bf16", 8)) == 64
    assert int(decode_query_tile("vllm", h100, 256, "bf16", 8)) == 128
    assert int(decode_query_tile("vllm", h100, 128, "bf16", 8, local=True)) == 128
    assert int(decode_query_tile("vllm", h100, 64, "fp8", 8)) == 64
    assert int(decode_query_tile("vllm", h100, 64, "fp8", 8, local=True)) == 192
    # FA3's local flag per call (memsim.ops.fa3.is_local): a 128-key window over 100 cached
    # keys is no window (one warpgroup, 64 rows), over 200 it is (128 rows)
    from memsim.ops.fa3 import is_local

    local = is_local(128, np.array([100, 128, 129, 200]))
    assert local.tolist() == [False, False, True, True]
    assert decode_query_tile("vllm", h100, 128, "bf16", 8, local).tolist() == [64, 64, 128, 128]
    assert int(decode_query_tile("vllm", a100, 64, "fp8", 8)) == 64
    assert int(decode_query_tile("trtllm", h100, 128, "bf16", 8)) == 16
    assert int(decode_query_tile("trtllm", h100, 128, "bf16", 8, kernel="xqa_hmma")) == 16
    assert int(decode_query_tile("trtllm", h100, 128, "fp8", 8, kernel="xqa_gmma")) == 8
    assert int(decode_query_tile("trtllm", h100, 128, "bf16", 1, kernel="mmha")) == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(2, 131072),
       st.sampled_from([1, 2, 4, 8]), st.sampled_from([64, 128, 256]),
       st.sampled_from(["bf16", "fp8"]))
def test_fa3_decode_splits_are_bounded_and_never_grow_with_the_batch(
        b1, b2, kv_len, kv_heads, head_dim, dtype) -> None:
    """1 ≤ splits ≤ min(128, SMs, key tiles), and a larger batch never splits more (the
    scheduler's blocks per SM grow with it)."""
    from memsim.attention import fa3_num_splits
    from memsim.ops import fa3
    from memsim.units import DTYPE_BYTES

    h100 = load_gpu("h100-sxm")
    p = AttentionProblem(batch=1, seq_len=1, kv_len=kv_len, heads=8 * kv_heads,
                         kv_heads=kv_heads, head_dim=head_dim, dtype=dtype)
    lo, hi = sorted((b1, b2))
    s_lo, s_hi = (int(fa3_num_splits(p, h100, b, 1, kv_len)) for b in (lo, hi))
    tiles = -(-kv_len // int(fa3.tile(head_dim, head_dim, False, 8, DTYPE_BYTES[dtype])[1]))
    assert 1 <= s_hi <= s_lo <= min(128, h100.spec.sm_count, tiles)


# whose decode kernels vLLM runs per GPU: FlashInfer's trtllm-gen on the SM100 family
VLLM_DECODE_KERNELS = {"b200": "trtllm", "b300": "trtllm", "gb200": "trtllm",
                       "h100-sxm": "vllm", "h200": "vllm", "a100-sxm4-80gb": "vllm"}


@pytest.mark.parametrize("gpu", list(VLLM_DECODE_KERNELS))
@pytest.mark.parametrize("backend", ["trtllm", "vllm", "sglang", None])
def test_vllm_runs_trtllm_gen_kernels_on_the_sm100_family_only(gpu: str, backend) -> None:
    # one rule (memsim.ops.attention_kernels_backend) for the attention timer and the MLA
    # module: vLLM on B200, B300 and GB200 runs FlashInfer's trtllm-gen kernels
    from memsim import attention
    from memsim.ops import attention_kernels_backend

    g = load_gpu(gpu)
    want = VLLM_DECODE_KERNELS[gpu] if backend == "vllm" else backend
    assert attention_kernels_backend(backend, g) == want
    assert attention.kernel_backend(backend, "flash_decode", g) == want
    assert attention.kernel_backend(backend, "flash2", g) == backend   # not a decode kernel


def test_xqa_cta_rows_scale_with_the_head_dim() -> None:
    """XQA's per-row steps move rows × D elements: the fixed CTA time grows by row_s ·
    padded rows per 128 head elements, on top of the class's cta_s."""
    from memsim.attention import XQA_ROW_ELEMS, kernel_timer

    h100 = load_gpu("h100-sxm")
    cls = kernel_class("attention/decode", "trtllm", "xqa_hmma")
    cta = {D: float(kernel_timer(_decode(4096).model_copy(update={"head_dim": D}), h100,
                                 "flash_decode", backend="trtllm").cta_s)
           for D in (64, 128, 256)}
    for D, t in cta.items():
        assert t == pytest.approx(cls.cta_s + cls.row_s * 16 * D / XQA_ROW_ELEMS)
    assert cta[256] - cta[128] == pytest.approx(2 * (cta[128] - cta[64]))


def test_xqa_ctas_stream_their_keys_at_their_own_pace() -> None:
    """Few CTAs cannot pull HBM's bandwidth: each streams its share of the keys at the
    class's key_s per key (× D / 128 for mha.cu's loads), the busiest SM's CTAs one after
    another, and the slower of that and HBM binds. Batch 1, one KV head, 16384 keys:
    32 CTAs of 512 keys, the stream term binds; batch 256: many waves of CTAs, HBM."""
    from memsim.attention import kernel_timer, xqa_sub_sequences

    h100 = load_gpu("h100-sxm")
    cls = kernel_class("attention/decode", "trtllm", "xqa_hmma")
    p = AttentionProblem(batch=1, seq_len=1, kv_len=16384, heads=8, kv_heads=1,
                         head_dim=128)
    timer = kernel_timer(p, h100, "flash_decode", backend="trtllm")
    assert float(timer.key_s) == pytest.approx(cls.key_s)   # D = 128, 1.98 GHz
    t = predict(p, h100, "flash_decode", backend="trtllm").timing
    subs = int(xqa_sub_sequences("xqa_hmma", 1, 1, 16384, None, 132))
    assert subs == 32
    assert t.terms_s["stream"] == pytest.approx(16384 / subs * cls.key_s)
    assert t.terms_s["stream"] > t.terms_s["hbm"]
    wide = predict(p.model_copy(update={"batch": 256, "kv_len": 8192}), h100,
                   "flash_decode", backend="trtllm").timing
    assert wide.terms_s["hbm"] > wide.terms_s["stream"]


def test_xqa_separate_rope_kernel_only_where_qgmma_cannot_rotate_in_kernel() -> None:
    """appliesRoPEInXqaKernel (TensorRT-LLM kernelUtils.cpp): the QGMMA kernel rotates in
    the kernel when the rotary width is at most the head size and a multiple of 16; else,
    and always for the mma.sync kernel (whose floor holds it), invokeQKVPreprocessing runs
    first."""
    from memsim.attention import xqa_separate_rope

    assert not xqa_separate_rope("xqa_gmma", 128, None)
    for d in (40, 72):   # RoPE over the head (None) adds no kernel, whatever the head size
        assert not xqa_separate_rope("xqa_gmma", d, None)
    assert not xqa_separate_rope("xqa_gmma", 128, 128)
    assert not xqa_separate_rope("xqa_gmma", 128, 64)        # partial RoPE, aligned
    assert xqa_separate_rope("xqa_gmma", 64, 128)            # wider than the head
    assert xqa_separate_rope("xqa_gmma", 128, 72)            # not a multiple of 16
    assert not xqa_separate_rope("xqa_hmma", 64, 128)        # in its class's floor
    assert not xqa_separate_rope("mmha", 64, 128)


def test_odd_head_sizes_add_no_rope_kernel_on_hopper() -> None:
    """An fp8-cache grouped decode on H100 with a head size of 40 or 72 (not a multiple of
    16) runs MMHA, not XQA QGMMA: no separate RoPE kernel ("pre") by default."""
    from memsim.attention import predict_arrays

    h100 = load_gpu("h100-sxm")
    for d in (40, 72):
        p = AttentionProblem(batch=64, seq_len=1, kv_len=2048, heads=32, kv_heads=8,
                             head_dim=d, dtype="fp8")
        timed = predict_arrays(p, h100, "flash_decode", backend="trtllm")
        assert "pre" not in timed.l2_timing.terms_s


def test_xqa_gmma_separate_rope_kernel_adds_its_latency_and_what_l2_cannot_hold() -> None:
    """An fp8-cache decode on H100 (XQA QGMMA) with RoPE over 128 of 64 head elements (as
    aiconfigurator's collector runs it) adds the qkv_pre kernel as the term "pre": its
    class floor, its bytes (one token per sequence) staying in L2; at a batch whose QKV
    outgrows the 50 MiB L2 the excess streams at the decode class's HBM bandwidth. With
    RoPE over the head (the default) the time is the XQA kernel's alone."""
    from memsim.attention import predict_arrays, prepass_bytes

    h100 = load_gpu("h100-sxm")
    floor = kernel_class("attention/decode", "trtllm", "qkv_pre").floor_s
    p = AttentionProblem(batch=64, seq_len=1, kv_len=2048, heads=64, kv_heads=8,
                         head_dim=64, dtype="fp8")
    fused = predict_arrays(p, h100, "flash_decode", backend="trtllm")
    apart = predict_arrays(p, h100, "flash_decode", backend="trtllm", rotary_dim=128)
    assert "pre" not in fused.l2_timing.terms_s
    assert float(apart.l2_timing.terms_s["pre"]) == pytest.approx(floor)
    assert float(apart.l2_timing.time_s) == pytest.approx(float(fused.l2_timing.time_s)
                                                          + floor)
    big = p.model_copy(update={"batch": 8192, "heads": 128})
    spill = float(prepass_bytes(big, "trtllm", 8192, 1)) - h100.l2_dram_capacity_bytes
    assert spill > 0
    timed = predict_arrays(big, h100, "flash_decode", backend="trtllm", rotary_dim=128)
    assert float(timed.l2_timing.terms_s["pre"]) == pytest.approx(
        floor + spill / timed.timer.gpu.achievable_hbm_bytes_per_s)
    # the mma.sync kernel (bf16 cache) never adds it apart
    bf16 = p.model_copy(update={"dtype": "bf16"})
    assert float(predict_arrays(bf16, h100, "flash_decode", backend="trtllm",
                                rotary_dim=128).l2_timing.time_s) == pytest.approx(
        float(predict_arrays(bf16, h100, "flash_decode", backend="trtllm").l2_timing.time_s))


def test_trtllm_fp8_prefill_on_hopper_has_its_own_class() -> None:
    """An fp8 cache runs fmha_v2's SM90 e4m3 context kernel (V transposed in shared memory
    by the DMA warpgroup): its own class on Hopper; bf16 keeps the bf16 class, and
    Blackwell (trtllm-gen kernels) the TensorRT-LLM context class."""
    p = AttentionProblem(batch=1, seq_len=4096, heads=32, kv_heads=8, head_dim=128)
    fp8 = p.model_copy(update={"dtype": "fp8"})
    name = {(g, d): predict(q, g, "flash2", backend="trtllm").to_dict()["efficiency_class"]
            for g in ("h200", "b200") for d, q in (("fp8", fp8), ("bf16", p))}
    assert name["h200", "fp8"] == "attention/context/trtllm/fp8"
    assert name["h200", "bf16"] == name["b200", "fp8"] == "attention/context/trtllm"


@given(st.sampled_from([32, 40, 64, 72, 80, 96, 104, 128, 160, 192, 256]),
       st.sampled_from([1, 2]))
def test_fmha_v2_head_dim_pads_to_whole_128_byte_rows_up_to_a_power_of_two(
        D: int, e: int) -> None:
    """kernel_traits.h: D = min(round_up(D, 128 / bytes), next_pow2(D)): never smaller, a
    power of two or a whole number of 128-byte rows; e4m3 pads 192 to 256, bf16 does not."""
    from memsim.fmha_v2 import fmha_v2_head_dim, fmha_v2_head_pad

    padded = fmha_v2_head_dim(D, e)
    pow2 = 1 << (D - 1).bit_length()
    assert D <= padded <= pow2
    assert padded == pow2 or padded % (128 // e) == 0
    assert fmha_v2_head_pad(D, D, e) == padded / D >= 1.0
    assert (fmha_v2_head_dim(192, 1), fmha_v2_head_dim(192, 2)) == (256, 192)


def test_trtllm_hopper_prefill_counts_the_padded_head_and_hides_its_exponentials() -> None:
    """TensorRT-LLM's SM90 e4m3 kernel computes D = 192 as 256 (the matmul term × 4/3 of
    the useful FLOPs, which stay reported as useful), and its two warpgroups hide the
    exponentials under the matmuls (compute = max(matmul, exp) + vector); vLLM's kernels
    keep the sum."""
    p = AttentionProblem(batch=1, seq_len=8192, heads=32, kv_heads=8, head_dim=192,
                         dtype="fp8")
    a = predict(p, "h200", "flash2", backend="trtllm")
    d = a.to_dict()
    t = d["terms_s"]
    from memsim.ops.classes import with_class

    gpu = with_class(load_gpu("h200"), kernel_class("attention/context", "trtllm", "fp8"))
    rate = gpu.achievable_flop_per_s("tensor", "fp8")
    stretch = 1.0 / a.headline.wave_efficiency   # the roofline's wave quantisation
    assert t["matmul"] == pytest.approx(a.cost.matmul_flops * 256 / 192 / rate * stretch,
                                        rel=1e-9)
    assert d["flops"] == pytest.approx(a.cost.flops)
    compute = max(t["matmul"], t["exp"]) + t["vector"] + t["serial"]
    assert a.headline.compute_s == pytest.approx(compute, rel=1e-9)
    v = predict(p.model_copy(update={"dtype": "bf16"}), "h200", "flash2", backend="vllm")
    assert v.headline.compute_s == pytest.approx(
        sum(v.headline.terms_s[k] for k in ("matmul", "vector", "exp", "serial")), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(kv_heads=st.sampled_from([1, 2, 4, 8, 64]), head_dim=st.sampled_from([64, 128, 256]),
       batch=st.integers(1, 256), tokens=st.integers(1, 16384))
def test_vllm_cache_write_runs_one_cta_per_token_in_waves(kv_heads, head_dim, batch,
                                                          tokens) -> None:
    """vLLM's reshape_and_cache_flash (one CTA of min(K·D, 512) threads per token): its
    latency term is whole waves of the CTAs the H100's 2048 threads per SM hold, so it
    never falls with more tokens and is one wave's cta_s up to 132 SMs' worth of CTAs."""
    from memsim.attention import vllm_cache_write_latency_s

    gpu = load_gpu("h100-sxm")
    p = AttentionProblem(batch=1, seq_len=1, kv_len=1, heads=kv_heads, kv_heads=kv_heads,
                         head_dim=head_dim, mask=Mask())
    resident = 2048 // min(kv_heads * head_dim, 512)
    cta_s = 1e-6
    t = vllm_cache_write_latency_s(p, gpu, cta_s, np.array([batch, batch + 1]), tokens)
    assert t[0] <= t[1]
    assert t[0] == pytest.approx(np.ceil(batch * tokens / (132 * resident)) * cta_s)
    assert vllm_cache_write_latency_s(p, gpu, cta_s, 1, 132 * resident) == pytest.approx(cta_s)
