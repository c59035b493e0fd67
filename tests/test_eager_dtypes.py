"""Eager standard attention's dtypes: PyTorch's math backend computes 16-bit inputs in
fp32 and casts the outputs back (memsim/algorithms/standard.py docstring, "Dtypes"), so
for bf16 / fp16 storage memsim's ``standard`` is the fp32 computation plus five copies:
Q, K, V to fp32 and O, the attention weights back to 16 bits. fp32 (and fp8) storage
launch no copies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling
from memsim.trace.simulate import simulate

GPU = load_gpu("h100-sxm")
# B 1, H 2 (MHA), N = S = 256, D 64, causal; per tile 128 queries × 64 keys
TINY = dict(batch=1, seq_len=256, heads=2, head_dim=64, mask=Mask())
FIELDS = ("matmul_flops", "vector_flops", "exp_ops", "global_read_bytes",
          "global_write_bytes", "launches", "blocks", "workspace_bytes")
COPIES = ["standard.to_fp32_q", "standard.to_fp32_k", "standard.to_fp32_v"]
BACK = ["standard.to_storage_o", "standard.to_storage_p"]


def _cost(dtype: str):
    p = AttentionProblem(**TINY, dtype=dtype)
    t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
    return p, t, attention_cost(p, GPU, "standard", t)[0]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_16_bit_storage_is_the_fp32_computation_plus_five_copies(dtype: str) -> None:
    """From first principles, B·H·N·D = 32768 elements of Q, of K and of V (one KV head
    per head), O 32768, the attention weights B·H·N·S = 131072:
    reads  Q, K, V at 2 B (3·65536) + O at 4 B (131072) + P at 4 B (524288) = 851,968 B
    writes Q, K, V at 4 B (3·131072) + O at 2 B (65536) + P at 2 B (262144) = 720,896 B
    five more launches; blocks per head (2 heads): Q and O per 128-query tile (2 each), K
    and V per 64-key tile (4 each), P per query tile (2): 2·14 = 28; no floating-point
    work; S and P (the
    workspace) at 4 B as under fp32."""
    _, _, low = _cost(dtype)
    _, _, fp32 = _cost("fp32")
    assert low.global_read_bytes == fp32.global_read_bytes + 851_968
    assert low.global_write_bytes == fp32.global_write_bytes + 720_896
    assert low.launches == fp32.launches + 5
    assert low.blocks == fp32.blocks + 28
    for field in ("matmul_flops", "vector_flops", "exp_ops", "workspace_bytes"):
        assert getattr(low, field) == getattr(fp32, field)
    assert fp32.workspace_bytes == 2 * 2 * 256 * 256 * 4      # S and P in fp32


def test_the_trace_launches_the_same_kernels_and_bytes() -> None:
    """The trace runs the copies first and last, around the fp32 kernels, with the closed
    form's bytes (the L2 off: global bytes are what the kernels move)."""
    p, t, cost = _cost("bf16")
    trace = simulate(p, GPU, "standard", t)
    names = [k.name for k in trace.kernels]
    assert names[:3] == COPIES and names[-2:] == BACK
    fp32_names = [k.name for k in simulate(*_cost("fp32")[:1], GPU, "standard",
                                           _cost("fp32")[1]).kernels]
    assert names[3:-2] == fp32_names
    by_name = {k.name: k for k in trace.kernels}
    assert by_name["standard.to_fp32_q"].global_read_bytes == 65_536
    assert by_name["standard.to_fp32_q"].global_write_bytes == 131_072
    assert by_name["standard.to_storage_p"].global_read_bytes == 524_288
    assert by_name["standard.to_storage_p"].global_write_bytes == 262_144
    for field in FIELDS[:-1]:
        assert getattr(trace.cost, field) == pytest.approx(getattr(cost, field), rel=1e-12)


@pytest.mark.parametrize("dtype", ["fp32", "fp8"])
def test_other_storage_launches_no_copies(dtype: str) -> None:
    """fp32 is what the math backend computes in; fp8 is not upcast (PyTorch upcasts only
    fp16 and bf16): fifteen kernels under a causal mask (nine per head group, six once per
    call), none a dtype copy."""
    p = AttentionProblem(**TINY, dtype=dtype)
    t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
    names = [k.name for k in simulate(p, GPU, "standard", t).kernels]
    assert len(names) == attention_cost(p, GPU, "standard", t)[0].launches == 15
    assert not set(names) & set(COPIES + BACK)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_16_bit_eager_matmuls_are_timed_on_the_cuda_cores_in_fp32(dtype: str) -> None:
    """PyTorch's math backend multiplies the fp32 copies with cuBLAS's FFMA kernels
    (Nsight Compute: sm80_xmma_gemm_f32f32_f32f32_f32_*_ffma for a bf16 call), so the
    matmul term of a 16-bit eager call is the one ``--matmul-unit fp32`` gives; the
    block-skipping variant (no upcast) keeps the tensor cores."""
    from memsim.algorithms import compute_types
    from memsim.attention import predict

    # 16 heads of 2K: thousands of blocks, so the SM-level wave stretch (roofline) of
    # either algorithm is 1 within a percent and the terms compare the rates
    def matmul_s(dtype: str, algorithm: str = "standard", unit: str = "tensor") -> float:
        p = AttentionProblem(**(TINY | dict(seq_len=2048, heads=16)), dtype=dtype)
        return float(predict(p, GPU, algorithm, matmul_unit=unit).timing.terms_s["matmul"])

    assert matmul_s(dtype) == pytest.approx(matmul_s(dtype, unit="fp32"))
    # on the tensor cores the same FLOPs take a fraction of the time
    assert matmul_s(dtype, "standard_blockskip") < matmul_s(dtype) / 4
    assert compute_types("standard", dtype, "tensor") == ("fp32", "fp32")
    assert compute_types("standard", "fp8", "tensor") == ("fp8", "tensor")
    assert compute_types("flash2", dtype, "tensor") == (dtype, "tensor")


# ---- backward: autograd through the math backend -----------------------------------------

BACKWARD_FP32 = ["standard.bwd_dp", "standard.bwd_dv", "standard.bwd_tmp",
                 "standard.bwd_softmax", "standard.bwd_dq", "standard.bwd_dk",
                 "standard.bwd_scale_k", "standard.bwd_scale_q"]


def _backward(dtype: str, **shape):
    p = AttentionProblem(**(TINY | shape), dtype=dtype, **{"pass": "backward"})
    t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
    return p, t, attention_cost(p, GPU, "standard", t)[0]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_16_bit_backward_is_the_fp32_backward_plus_four_copies(dtype: str) -> None:
    """Autograd casts dO up (ToCopyBackward of the output's ``.to(origin_dtype)``) and
    dV, dK, dQ down (of the inputs' ``.to(float)``), B·H·N·D = 32768 elements each:
    reads  dO at 2 B (65536) + dV, dK, dQ at 4 B (3·131072) = 458,752 B
    writes dO at 4 B (131072) + dV, dK, dQ at 2 B (3·65536) = 327,680 B
    four more launches; blocks per head (2 heads): dO and dQ per 128-query tile (2 each),
    dV and dK per 64-key tile (4 each): 2·12 = 24; the rest is the fp32 backward."""
    _, _, low = _backward(dtype)
    _, _, fp32 = _backward("fp32")
    assert low.global_read_bytes == fp32.global_read_bytes + 458_752
    assert low.global_write_bytes == fp32.global_write_bytes + 327_680
    assert low.launches == fp32.launches + 4 == 12
    assert low.blocks == fp32.blocks + 24
    for field in ("matmul_flops", "vector_flops", "exp_ops", "workspace_bytes"):
        assert getattr(low, field) == getattr(fp32, field)


@pytest.mark.parametrize(("seq_len", "kv_len", "tmp_reads"), [(256, 256, 1), (4, 16384, 2)])
def test_backward_splits_the_softmax_gradient_as_pytorch_does(seq_len: int, kv_len: int,
                                                               tmp_reads: int) -> None:
    """Over standard_blockskip's five kernels (dS from two passes over P and dP: 4 reads
    of a score matrix, 1 write) autograd runs tmp = dP ∘ P (2 reads, 1 write) and the
    softmax backward (tmp once — warp or shared-memory kernel, rows ≤ 48 KiB — or twice
    for longer rows, P once, dS written): (tmp_reads − 1) more score reads, one more
    score write; and the two scale gradients (dQ'·√scale, dK'·√scale: read and write Q
    and K once, one FLOP per element). 16384 fp32 keys are 64 KiB rows: twice."""
    from dataclasses import replace

    from memsim.algorithms import standard_blockskip
    from memsim.algorithms._arrays import from_problem
    from memsim.geometry import MaskGeometry

    p, t, eager = _backward("fp32", seq_len=seq_len, kv_len=kv_len)
    x = replace(from_problem(p, t), geometry=MaskGeometry("full"))
    blockskip = standard_blockskip.backward(x)
    scores = 2 * seq_len * kv_len * 4.0
    qk = 2 * (seq_len + kv_len) * 64 * 4.0          # Q and K of the two heads, fp32
    assert eager.global_read_bytes == blockskip.global_read_bytes + (
        tmp_reads - 1) * scores + qk
    assert eager.global_write_bytes == blockskip.global_write_bytes + scores + qk
    assert eager.launches == blockskip.launches + 3 == 8
    assert eager.vector_flops == blockskip.vector_flops + qk / 4


def test_the_trace_runs_autograds_backward_kernels() -> None:
    """The trace's backward: the fp32 kernels in autograd's order, for bf16 between dO's
    cast up and the three casts down, with the closed form's bytes (L2 off)."""
    names = {}
    for dtype in ("fp32", "bf16"):
        p, t, cost = _backward(dtype)
        trace = simulate(p, GPU, "standard", t, l2=False)
        names[dtype] = [k.name for k in trace.kernels]
        for field in FIELDS[:-1]:
            assert getattr(trace.cost, field) == getattr(cost, field), (dtype, field)
    assert names["fp32"] == BACKWARD_FP32
    assert names["bf16"] == (["standard.bwd_to_fp32_do"] + BACKWARD_FP32
                             + ["standard.bwd_to_storage_dv", "standard.bwd_to_storage_dk",
                                "standard.bwd_to_storage_dq"])


# ---- once per call: the causal mask's construction and the safe softmax's zero ----------

ONCE = ["standard.mask_ones", "standard.mask_tril", "standard.fill_neginf",
        "standard.fill_where_zero", "standard.mask_where"]


def _tril_loaded_columns(row: int, S: int):
    """Columns of ``row`` that triu_tril_kernel<bool, ·, false, 8, false> loads
    (TriangularOps.cu): a thread's chunk of 8 from its first column ``col`` (a multiple of
    8) when ``col - row <= 0``, its elements below S."""
    import numpy as np

    cols = np.arange(S)
    return cols[cols // 8 * 8 <= row]


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(0, 300),
       S=st.one_of(st.integers(1, 300), st.integers(1, 9).map(lambda k: 32 * k)))
def test_tril_reads_the_sectors_of_the_chunks_on_or_below_the_diagonal(rows: int,
                                                                      S: int) -> None:
    """The closed form against the sectors of the loaded bools' real byte addresses
    (row i's column c at i·S + c): exact — each row's sectors and the distinct sectors
    alike — when S is a multiple of 32; otherwise a row starts inside a sector and touches
    as many sectors as the closed form counts for it or one more, and the closed form
    leaves out the bytes of the last row's last sector past the matrix (< 32)."""
    import numpy as np

    from memsim.algorithms.standard import tril_read_bytes

    per_row = [np.unique((i * S + _tril_loaded_columns(i, S)) // 32) for i in range(rows)]
    row_sectors = sum(len(x) for x in per_row)
    closed = tril_read_bytes(rows, S)
    assert closed <= 32 * row_sectors < closed + 32 * (rows + 1)
    if S % 32 == 0:
        distinct = len(np.unique(np.concatenate(per_row))) if rows else 0
        assert closed == 32 * row_sectors == 32 * distinct


@settings(max_examples=40, deadline=None)
@given(N=st.integers(1, 160), S=st.integers(1, 2100))
def test_tril_pieces_are_the_elements_of_pytorchs_blocks(N: int, S: int) -> None:
    """TriangularOps.cu: thread t of the grid (128 threads a block, ⌈N·round_up(S, 8) /
    1024⌉ blocks) owns the 8 padded elements from 8·t — row ⌊8t / round_up(S, 8)⌋, the
    columns from 8t mod round_up(S, 8) below S. memsim's pieces hold exactly the elements
    of each block, and their loaded sectors, less what reaches past the matrix's end, add
    up to the closed form's."""
    import numpy as np

    from memsim.algorithms.standard import (
        tril_blocks,
        tril_piece_read_sectors,
        tril_pieces,
        tril_read_bytes,
        tril_spill_bytes,
    )

    padded = -(-S // 8) * 8
    threads = np.arange(int(tril_blocks(N, S)) * 128)
    element = (8 * threads)[:, None] + np.arange(8)            # padded linear index
    row, col = element // padded, element % padded
    own = (row < N) & (col < S)
    kernel = set(zip((threads[:, None] // 128 + 0 * element)[own], row[own], col[own],
                     strict=True))
    block, r, lo, hi = tril_pieces(N, S)
    pieces = {(b, i, c) for b, i, a, z in zip(block, r, lo, hi, strict=True)
              for c in range(a, z)}
    assert pieces == kernel and len(pieces) == N * S
    assert block.max() + 1 == tril_blocks(N, S)
    past_end = tril_spill_bytes(r, lo, hi, S) * (r == N - 1)
    loaded = 32 * tril_piece_read_sectors(r, lo, hi, S) - past_end
    assert loaded.sum() == tril_read_bytes(N, S)


def test_a_causal_bf16_call_launches_the_twenty_kernels_nsight_compute_lists() -> None:
    """measurements/h100-sxm (ncu/sdpa-math, B 1 H 32 1K causal bf16): 20 kernels. The six
    once per call, in PyTorch's order after Q's scaling — ones, tril, scalar_tensor(-inf),
    where's Scalar 0.0 as a tensor, where — and the safe softmax's zero before its where;
    their bytes do not grow with the batch and the heads: the 1K mask's bools
    (ones 1 MiB written; tril about half read, 1 MiB written; where 1 MiB read, 4 MiB of
    fp32 mask written) and 4 B per one-element tensor — through L1 in sectors: tril's
    8 single-byte loads and stores per thread touch the chunks' sectors 8 times each, a
    one-element fill stores one 32-byte sector."""
    from memsim.algorithms.standard import TRIL_CHUNK, tril_read_bytes

    traces = {}
    for batch, heads in ((1, 32), (2, 4)):
        p = AttentionProblem(batch=batch, seq_len=1024, heads=heads, head_dim=128,
                             mask=Mask(), dtype="bf16")
        t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
        assert attention_cost(p, GPU, "standard", t)[0].launches == 20
        traces[batch] = simulate(p, GPU, "standard", t, l2=False)
    names = [k.name for k in traces[1].kernels]
    assert len(names) == 20
    assert names[4:9] == ONCE and names[4 - 1] == "standard.scale_q"
    assert names[names.index("standard.where") - 1] == "standard.fill_zero"
    for batch in (1, 2):
        k = {x.name: x for x in traces[batch].kernels}
        assert k["standard.mask_ones"].global_write_bytes == 1024 * 1024
        assert k["standard.mask_tril"].global_read_bytes == (TRIL_CHUNK
                                                             * tril_read_bytes(1024, 1024))
        assert k["standard.mask_tril"].global_write_bytes == TRIL_CHUNK * 1024 * 1024
        assert k["standard.mask_where"].global_write_bytes == 1024 * 1024 * 4
        assert k["standard.fill_zero"].global_write_bytes == 32
        assert k["standard.mask_where"].blocks == 8        # one per 128-row query tile
        assert k["standard.mask_tril"].blocks == 1024      # PyTorch's: 1024 bools a block


def test_other_masks_build_no_mask_and_keep_the_safe_softmax_zero() -> None:
    """A full mask has no mask to build; a window mask is the caller's tensor (built
    outside the call): one once-per-call kernel each, the safe softmax's zero."""
    for mask in (Mask(causal=False), Mask(window=64)):
        p = AttentionProblem(**(TINY | dict(mask=mask)), dtype="fp32")
        t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
        names = [k.name for k in simulate(p, GPU, "standard", t).kernels]
        assert not set(names) & set(ONCE) and names.count("standard.fill_zero") == 1


# ---- TF32: only where PyTorch allows it -----------------------------------------------------


def _matmul_s(dtype: str, unit: str = "tensor") -> float:
    from memsim.attention import predict

    p = AttentionProblem(**(TINY | dict(seq_len=2048, heads=16)), dtype=dtype)
    return float(predict(p, GPU, "standard", matmul_unit=unit).timing.terms_s["matmul"])


def test_fp32_eager_matmuls_run_on_the_cuda_cores_by_default() -> None:
    """torch.backends.cuda.matmul.allow_tf32 is False by default: cuBLAS multiplies the
    math backend's fp32 matrices with FFMA whatever the inputs' dtype, so fp32 inputs on
    ``--matmul-unit tensor`` are timed as on the CUDA cores, like bf16's fp32 copies."""
    from memsim.algorithms import TORCH_ALLOW_TF32, compute_types

    assert TORCH_ALLOW_TF32 is False
    assert compute_types("standard", "fp32", "tensor") == ("fp32", "fp32")
    assert _matmul_s("fp32") == pytest.approx(_matmul_s("fp32", unit="fp32"))


def test_with_tf32_allowed_eager_matmuls_take_the_tf32_tensor_rate(monkeypatch) -> None:
    """torch.set_float32_matmul_precision("high") (allow_tf32 = True): the fp32 matmuls
    of fp32 and upcast bf16 inputs run on the tensor cores at the profile's TF32 peak
    (× its tensor efficiency), in the analytic timer and the trace; ``--matmul-unit fp32``
    still asks for the CUDA cores."""
    import memsim.algorithms as algorithms
    from memsim.algorithms import compute_types

    cuda_cores = _matmul_s("fp32")
    monkeypatch.setattr(algorithms, "TORCH_ALLOW_TF32", True)
    for dtype in ("fp32", "bf16"):
        assert compute_types("standard", dtype, "tensor") == ("fp32", "tensor")
        assert compute_types("standard", dtype, "fp32") == ("fp32", "fp32")
    p = AttentionProblem(**(TINY | dict(seq_len=2048, heads=16)), dtype="fp32")
    tf32_s = p.B * p.H * p.N * p.S * 2 * (p.D + p.Dv) / GPU.achievable_flop_per_s(
        "tensor", "tf32")
    assert _matmul_s("fp32") == pytest.approx(tf32_s, rel=0.02)   # wave stretch ≤ 2 %
    assert _matmul_s("fp32") < cuda_cores / 4
    t = default_tiling(p, GPU, "standard", block_q=128, block_kv=64)
    tensor = simulate(p, GPU, "standard", t, l2=False).time_s
    monkeypatch.setattr(algorithms, "TORCH_ALLOW_TF32", False)
    assert tensor < simulate(p, GPU, "standard", t, l2=False).time_s


# ---- Nsight Compute's sector counts: the committed sdpa-math record ------------------------

RECORD = "measurements/h100-sxm/quick-2026-11-22T20-41-48Z.jsonl"


def test_global_writes_equal_the_committed_sdpa_math_record_to_the_byte() -> None:
    """ncu/sdpa-math (H100, B 1 H 32 1K causal bf16; RECORD): the 20 kernels store
    761,266,272 B of sectors (l1tex__t_sectors_pipe_lsu_mem_global_op_st × 32). memsim
    gave 752,910,348 — 8,355,924 short: tril's byte-wise stores (8 × 1 MiB of sectors for
    its 1 MiB, 7,340,032 more), ``all``'s flag stores (a sector per row: 32,768 rows ×
    31 B more, 1,015,808) and the three one-element fills (a sector each, 3 × 28 = 84 B
    more), the whole difference. The closed form, the trace and the line trace agree."""
    import json
    from pathlib import Path

    from memsim.validation.ncu_compare import repredict

    root = Path(__file__).resolve().parent.parent
    case = next(c for c in map(json.loads, (root / RECORD).read_text().splitlines())
                if c.get("group") == "ncu/sdpa-math")
    measured = case["measurement"]["global_write_bytes"]
    assert measured == 761_266_272
    for l2_model in ("tiles", "lines"):
        pred = repredict(case, l2_model)
        assert pred["trace"]["global_write_bytes"] == measured
        assert pred["analytic"]["global_write_bytes"] == measured
