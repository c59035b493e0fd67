"""Backward passes in the trace-driven model (issue 13): FA-2's backward with its own
launch tiles, FA-1's Algorithm 4, standard attention's five autograd kernels.

- L2 off: every Cost field the analytic backward counts, the trace counts too, exactly
  (two derivations from the same tiles and mask geometry).
- L2 on: compulsory ≤ trace HBM ≤ analytic HBM; forward+backward = forward + backward
  (the rest of the network runs in between, so the backward starts with a cold L2).
- FA-2's backward tiles are the launch template's on A100 and H100.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memsim.algorithms import compulsory_bytes
from memsim.attention import predict
from memsim.errors import InputError
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Mask
from memsim.tiling import default_tiling, fa2_backward_tiles
from memsim.trace import simulate

GPUS = {name: load_gpu(name) for name in ("h100-sxm", "a100-sxm4-40gb")}
FIELDS = ("matmul_flops", "vector_flops", "exp_ops", "global_read_bytes",
          "global_write_bytes", "hbm_read_bytes", "hbm_write_bytes", "sram_read_bytes",
          "sram_write_bytes", "launches", "blocks")
MASKS = st.sampled_from(["full", "causal", "window", "band", "chunk"])


@st.composite
def training_cases(draw, passes=("backward", "forward+backward")):
    algorithm = draw(st.sampled_from(["flash1", "flash2", "standard"]))
    gpu = draw(st.sampled_from(sorted(GPUS)))
    H = draw(st.sampled_from([1, 2, 4]))
    mla = draw(st.booleans())
    K = 1 if mla else draw(st.sampled_from([k for k in (1, 2, 4) if H % k == 0]))
    D = draw(st.sampled_from([16, 40, 64, 128]))
    N = draw(st.integers(1, 260))
    S = N + draw(st.integers(0, 200))
    kind = draw(MASKS)
    size = draw(st.integers(1, S + 20))
    mask = {"full": Mask(causal=False), "causal": Mask(), "window": Mask(window=size),
            "band": Mask(window=size, causal=False), "chunk": Mask(chunk=size)}[kind]
    try:
        p = AttentionProblem(batch=draw(st.integers(1, 2)), seq_len=N, kv_len=S, heads=H,
                             kv_heads=K, head_dim=D, head_dim_v=D - 8 if mla else D,
                             mla=mla, dtype=draw(st.sampled_from(["bf16", "fp32"])),
                             mask=mask, **{"pass": draw(st.sampled_from(passes))})
        tiling = default_tiling(p, GPUS[gpu], algorithm,
                                block_q=draw(st.sampled_from([None, 16, 64])),
                                block_kv=draw(st.sampled_from([None, 16, 32])))
    except (InputError, ValidationError):
        assume(False)
    return algorithm, p, GPUS[gpu], tiling


def _simulate(*args, **kw):
    """simulate, or skip the example when a backward kernel's own SRAM (FA-1's backward
    holds K, V, Q, O, dO, dQ tiles and ℓ, m) exceeds the GPU's at the forward's tiles."""
    try:
        return simulate(*args, **kw)
    except InputError as err:
        assume("SRAM per block" not in str(err))
        raise


@settings(max_examples=40)
@given(training_cases())
def test_l2_off_backward_equals_the_analytic_count_exactly(case) -> None:
    algorithm, p, gpu, tiling = case
    analytic = predict(p, gpu, algorithm, tiling).cost
    trace = _simulate(p, gpu, algorithm, tiling, l2=False).cost
    for field in FIELDS:
        assert getattr(trace, field) == pytest.approx(getattr(analytic, field), rel=1e-12,
                                                      abs=1e-9), field


@settings(max_examples=25)
@given(training_cases(passes=("forward+backward",)))
def test_l2_on_backward_lies_between_compulsory_and_no_reuse(case) -> None:
    algorithm, p, gpu, tiling = case
    analytic = predict(p, gpu, algorithm, tiling).cost
    both = _simulate(p, gpu, algorithm, tiling).cost
    assert compulsory_bytes(p) <= both.hbm_bytes <= analytic.hbm_bytes * (1 + 1e-12)
    assert both.global_bytes == pytest.approx(analytic.global_bytes, rel=1e-12)
    parts = [simulate(p.model_copy(update={"pass_": x}), gpu, algorithm, tiling).cost
             for x in ("forward", "backward")]
    for field in ("hbm_read_bytes", "hbm_write_bytes", "global_bytes", "matmul_flops"):
        assert getattr(both, field) == pytest.approx(
            getattr(parts[0], field) + getattr(parts[1], field), rel=1e-12), field


@pytest.mark.parametrize("gpu,D,tiles", [
    ("h100-sxm", 32, (128, 128)), ("h100-sxm", 64, (128, 128)), ("a100-sxm4-80gb", 64, (128, 128)),
    ("h100-sxm", 96, (64, 128)), ("h100-sxm", 128, (64, 128)), ("a100-sxm4-80gb", 128, (64, 128)),
    ("h100-sxm", 160, (64, 64)), ("h100-sxm", 256, (64, 64)), ("a100-sxm4-80gb", 256, (64, 64)),
])
def test_fa2_backward_tiles_follow_the_launch_template(gpu: str, D: int, tiles) -> None:
    """flash_bwd_launch_template.h (FlashAttention 2.5, as vendored in PyTorch): hdim 32
    and 64 → kBlockM = kBlockN = 128 with ≥ 144 KB of shared memory per block (A100 and
    H100 have 163 and 227 KB), hdim 96 and 128 → (64, 128), hdim 160–256 → (64, 64)."""
    limit = load_gpu(gpu).spec.shared_memory_per_block_max_bytes
    assert fa2_backward_tiles(D, D, 2, limit) == tiles


def test_fa2_backward_tiles_shrink_like_the_template_below_144_kib() -> None:
    """hdim 128 with less than 144 KB → (64, 64); hdim 64 → (64, 128) (the template's
    else-branches, e.g. sm86's 99 KB)."""
    assert fa2_backward_tiles(128, 128, 2, 99 * 1024) == (64, 64)
    assert fa2_backward_tiles(64, 64, 2, 99 * 1024) == (64, 128)


def test_fa2_backward_drops_the_double_buffer_where_it_does_not_fit() -> None:
    """hdim 256 on A100 (163 KB per block): the template's No_double_buffer variant, 144 KB
    (176 KB double-buffered on H100); the trace holds the kernel's own footprint."""
    p = AttentionProblem(batch=1, seq_len=128, heads=2, head_dim=256, mask=Mask(),
                         **{"pass": "backward"})
    for gpu, kib in (("a100-sxm4-40gb", 144), ("h100-sxm", 176)):
        bwd = [k for k in simulate(p, gpu, "flash2").kernels if k.name == "flash2.bwd"]
        assert bwd[0].sram_bytes_per_block == kib * 1024


@pytest.mark.parametrize("hpb", [1, 2, 4])
def test_fa2_gqa_head_sums_add_h_over_k_minus_one_per_kv_element(hpb: int) -> None:
    """at::sum_out over dk_expanded, dv_expanded (flash_api.cpp, mha_bwd) adds the H/K
    query heads of each KV head: B·K·S·(D + Dv)·(H/K − 1) additions whatever the forward
    packs per block, also where a head group is a part of a KV head (hpb < H/K, kv_div
    > 1); the trace's sum kernels and the analytic count say the same."""
    from memsim.trace.program import WORK_FIELDS
    from memsim.trace.schedule import build_schedule

    B, N, H, K, D = 2, 256, 8, 2, 64
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=K, head_dim=D, mask=Mask(),
                         **{"pass": "backward"})
    gpu = GPUS["h100-sxm"]
    tiling = default_tiling(p, gpu, "flash2", heads_per_block=hpb)
    schedule = build_schedule(p, tiling, "flash2")
    vec = WORK_FIELDS.index("vector_flops")
    sums = sum(k.work_per_instance()[vec] * schedule.instances(k, simulated=False)
               for k in schedule.kernels if k.name.startswith("flash2.bwd_sum_"))
    assert sums == pytest.approx(B * K * N * 2 * D * (H // K - 1), rel=1e-12)
    one_head = predict(p, gpu, "flash2", default_tiling(p, gpu, "flash2", heads_per_block=1))
    analytic = predict(p, gpu, "flash2", tiling).cost.vector_flops
    assert analytic == pytest.approx(one_head.cost.vector_flops, rel=1e-12)
    trace = simulate(p, gpu, "flash2", tiling, l2=False).cost.vector_flops
    assert trace == pytest.approx(analytic, rel=1e-12)


@given(hpb=st.sampled_from([1, 2, 4]), B=st.integers(1, 3), groups=st.integers(1, 3),
       tiles=st.integers(1, 5))
def test_fa2_backward_blocks_launch_as_the_real_grid(hpb, B, groups, tiles) -> None:
    """FA-2's backward grid is (tiles, B, H) (flash_bwd_launch_template.h): launch
    position L runs tile L mod tiles of batch ⌊L/tiles⌋ mod B and query head
    ⌊L/(tiles·B)⌋, whatever the forward's packing groups the template by (hpb heads per
    template, blocks head-major; block id = template block + T · (b + B · group))."""
    from memsim.trace.program import KernelBuilder

    kernel = KernelBuilder("bwd", hpb * tiles, grid_heads=hpb).build()
    ids = kernel.launch_order(B, B * groups)
    if ids is None:
        assert hpb == 1 or B == 1          # the ids' own order is the grid's
        ids = np.arange(hpb * tiles * B * groups)
    T = hpb * tiles
    template, instance = ids % T, ids // T
    head = (instance // B) * hpb + template // tiles
    L = np.arange(len(ids))
    assert sorted(ids) == list(range(len(ids)))
    assert (template % tiles == L % tiles).all()
    assert (instance % B == (L // tiles) % B).all()
    assert (head == L // (tiles * B)).all()


@settings(max_examples=10, deadline=None)
@given(N=st.integers(300, 1500), H=st.sampled_from([4, 8]), B=st.integers(2, 3),
       causal=st.booleans())
def test_fa2_backward_blocks_start_in_the_real_grid_order(N, H, B, causal) -> None:
    """With the forward's packing (H/K heads per template, B > 1), the backward kernels'
    blocks are placed in the real grid's launch order, (tiles, B, H): sorted by
    tile + tiles · (b + B · head), their start times never fall, and the first wave is
    the grid's first blocks. (Before, the template's heads ran batch by batch: head 1
    of batch 0 started before head 0 of batch 1.)"""
    p = AttentionProblem(batch=B, seq_len=N, heads=H, kv_heads=H // 4, head_dim=64,
                         mask=Mask(causal=causal), **{"pass": "backward"})
    gpu = GPUS["h100-sxm"]
    tiling = default_tiling(p, gpu, "flash2", heads_per_block=4)
    result = simulate(p, gpu, "flash2", tiling, record=True)
    kernel, _, start, _ = result._blocks_log
    for ki, k in enumerate(result.kernels):
        if k.name not in ("flash2.bwd_dot_do_o", "flash2.bwd", "flash2.bwd_convert_dq"):
            continue
        ids = np.arange(k.blocks)
        T = k.blocks // (B * H // 4)                 # template: 4 heads' tiles
        tiles = T // 4
        template, instance = ids % T, ids // T
        head = (instance // B) * 4 + template // tiles
        launch = template % tiles + tiles * (instance % B + B * head)
        started = start[kernel == ki][np.argsort(launch)]
        assert (np.diff(started) >= 0).all(), k.name
        assert (started[:min(k.blocks, gpu.spec.sm_count)] == 0).all(), k.name
