"""Tiling: default tiles (FA-2 launch templates, FA-1 Alg. 1 line 1), SRAM fit, occupancy,
Flash-Decoding splits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsim.algorithms import ALGORITHMS
from memsim.algorithms._tiles import FA2_FORWARD_REGISTERS
from memsim.errors import InputError
from memsim.hardware import gpu_names, load_gpu
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import (
    UNSOURCED_REGISTERS_PER_THREAD,
    Tiling,
    blocks_per_sm,
    default_tiling,
    fa2_block_kv,
    sram_footprint_bytes,
)
from memsim.units import ACCUM_BYTES as FP32_BYTES

H100 = load_gpu("h100-sxm")
A100 = load_gpu("a100-sxm4-80gb")


def problem(D: int = 128, H: int = 32, K: int | None = None, N: int = 4096,
            S: int | None = None, **kw: object) -> AttentionProblem:
    return AttentionProblem(batch=1, seq_len=N, kv_len=S, heads=H, kv_heads=K, head_dim=D,
                            **kw)


# ---- FA-2 launch templates (flash_fwd_launch_template.h, A100/H100, no dropout) --------


@pytest.mark.parametrize(("D", "Bc"), [(32, 128), (64, 128), (96, 64), (128, 64), (160, 32),
                                       (192, 64), (256, 64), (576, 32)])
def test_fa2_key_tile_follows_the_launch_templates(D: int, Bc: int) -> None:
    """run_mha_fwd_hdim{32,64}: 128×128; hdim{96,128}: 128×64; hdim160: 128×32;
    hdim{192,256}: 128×64 (A100) / 64×64 (H100); beyond FA-2's templates: 32."""
    assert fa2_block_kv(D) == Bc


@pytest.mark.parametrize(("D", "Br", "Bc"), [(64, 128, 128), (128, 128, 64)])
def test_default_flash2_tiles_on_h100(D: int, Br: int, Bc: int) -> None:
    t = default_tiling(problem(D), H100, "flash2")
    assert (t.block_q, t.block_kv, t.heads_per_block, t.threads) == (Br, Bc, 1, 128)


def test_default_flash2_tiles_at_d256_on_a100_follow_the_template() -> None:
    """FA-2's run_mha_fwd_hdim256 launches 128×64 tiles on A100."""
    t = default_tiling(problem(256), A100, "flash2")
    assert (t.block_q, t.block_kv) == (128, 64)


def test_gqa_packs_the_heads_of_one_kv_head_into_a_block() -> None:
    """FA-2 GQA packing: H/K = 4 query heads share a block; Br shrinks so the block keeps
    128 query rows."""
    t = default_tiling(problem(128, H=32, K=8), H100, "flash2")
    assert (t.heads_per_block, t.block_q, t.rows) == (4, 32, 128)


# ---- FA-1 Alg. 1 line 1: Bc = ⌈M/4d⌉, Br = min(Bc, d) -------------------------------------


@pytest.mark.parametrize(("D", "limit", "Br", "Bc"), [
    # M = 232448 B = 116224 bf16 elements: Bc = ⌈116224/256⌉ = 454, Br = min(454, 64) = 64
    (64, None, 64, 454),
    # Bc = ⌈116224/512⌉ = 227, Br = min(227, 128) = 128
    (128, None, 128, 227),
    # M = 65536 B: Bc = ⌈32768/512⌉ = 64, Br = 64 needs (64·128 + 64·256 + 64·128)·2 + 64·8
    # = 66048 B > 65536, so Br halves to 32 (49408 B)
    (128, 65536, 32, 64),
])
def test_fa1_policy_uses_algorithm_1_line_1(D: int, limit: int | None, Br: int, Bc: int) -> None:
    t = default_tiling(problem(D), H100, "flash1", policy="fa1", sram_limit_bytes=limit)
    M_elements = (limit or H100.spec.shared_memory_per_block_max_bytes) / 2
    assert t.block_kv == math.ceil(M_elements / (4 * D)) == Bc
    assert t.block_q == Br
    assert t.block_q <= min(t.block_kv, D)


# ---- SRAM fit -----------------------------------------------------------------------------


def test_sram_footprints_by_hand() -> None:
    """tiling.py docstring, D = Dv = 128, bf16, rows = Br = 128, Bc = 64:
    flash2  (128·128 + 64·128 + 64·128)·2 = 65536 B (S, P in registers);
    flash1  + O tile 128·128·2 + ℓ, m 128·2·4 = 65536 + 32768 + 1024 = 99328 B;
    standard max(QKᵀ (128·128 + 64·128)·4, PV (128·64 + 64·128)·4) = 98304 B (the
             math backend's kernels run in fp32 for bf16 inputs: memsim/algorithms/
             standard.py, "Dtypes"; standard_blockskip keeps the storage width: 49152 B);
    MLA (V a slice of K): flash2 drops the V tile: (128·128 + 64·128)·2 = 49152 B."""
    args = dict(rows=128, block_q=128, block_kv=64, D=128, Dv=128, mla=False, elem_bytes=2)
    assert sram_footprint_bytes("flash2", **args) == 65536
    assert sram_footprint_bytes("flash1", **args) == 65536 + 32768 + 128 * 2 * FP32_BYTES
    assert sram_footprint_bytes("standard", **args) == 98304
    assert sram_footprint_bytes("standard_blockskip", **args) == 49152
    assert sram_footprint_bytes("flash2", **{**args, "mla": True}) == 49152


def test_explicit_tiles_that_do_not_fit_name_the_sizes() -> None:
    """Br = Bc = 512 at D = 128: (512·128 + 512·256)·2 = 393216 B > H100's 232448 B."""
    with pytest.raises(InputError) as err:
        default_tiling(problem(128), H100, "flash2", block_q=512, block_kv=512)
    msg = str(err.value)
    assert err.value.field == "tiling"
    for part in ("Br=512", "Bc=512", "393216 B", "232448 B", "h100-sxm"):
        assert part in msg


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@given(gpu=st.sampled_from(gpu_names()), D=st.sampled_from([32, 64, 128, 256]),
       group=st.sampled_from([1, 4, 8]), N=st.sampled_from([1, 8, 4096]))
def test_default_tiles_shrink_until_they_fit(algorithm: str, gpu: str, D: int, group: int,
                                             N: int) -> None:
    """Defaults are halved (Br first, then Bc) until the footprint fits the GPU
    (flash_decode only decodes: its one query tile holds all N ≤ 8 tokens)."""
    g = load_gpu(gpu)
    if algorithm == "flash_decode":
        N = min(N, 8)
    kw: dict = {}
    if algorithm == "dsa":
        kw = dict(mask=Mask(top_k=2048), indexer=Indexer())
    p = problem(D, H=8 * group, K=8, N=N, S=8192, **kw)
    t = default_tiling(p, g, algorithm)
    assert t.sram_bytes <= g.spec.shared_memory_per_block_max_bytes
    assert t.block_kv >= 16 and t.block_q >= 1


# ---- occupancy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("sram", "threads", "regs", "expected", "binding"), [
    (65536, 128, 128, 3, "SRAM: 233472 // 65536"),
    (1024, 1024, 32, 2, "threads: 2048 // 1024"),
    (1024, 256, 255, 1, "registers: 65536 // (256·255)"),
    (1024, 32, 16, 32, "hardware cap: 32 blocks per SM"),
])
def test_blocks_per_sm_takes_the_tightest_limit(sram: int, threads: int, regs: int,
                                                expected: int, binding: str) -> None:
    """H100: 233472 B shared memory, 2048 threads, 65536 registers, 32 blocks per SM."""
    assert int(blocks_per_sm(H100, sram, threads, regs)) == expected, binding


def test_tiling_blocks_per_sm_uses_its_own_footprint() -> None:
    """FA-2 hdim 128: 64 KiB would allow 3 blocks, its 255 registers (ptxas, sm_80,
    Dao-AILab/flash-attention #1630) × 128 threads allow 2."""
    t = default_tiling(problem(128), H100, "flash2")
    assert t.registers_per_thread == FA2_FORWARD_REGISTERS == 255
    assert t.blocks_per_sm(H100) == min(233472 // t.sram_bytes, 2048 // 128,
                                        65536 // (128 * 255), 32) == 2


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "flash2"])
def test_algorithms_without_a_register_record_keep_the_unsourced_default(
        algorithm: str) -> None:
    kw: dict = dict(mask=Mask(top_k=2048), indexer=Indexer()) if algorithm == "dsa" else {}
    p = problem(128, N=1 if algorithm == "flash_decode" else 4096, **kw)
    t = default_tiling(p, H100, algorithm)
    assert t.registers_per_thread == UNSOURCED_REGISTERS_PER_THREAD == 128


@given(registers=st.integers(171, 255), sram_bytes=st.integers(1, 233472))
def test_fa2_register_counts_above_128_share_one_occupancy(registers: int,
                                                           sram_bytes: int) -> None:
    """Why one FA-2 count serves its variants (250, 255, the 64-row 180): with 128
    threads every count in 171..255 leaves the same blocks per SM (65536 registers)."""
    for name in gpu_names():
        gpu = load_gpu(name)
        if gpu.spec.registers_per_sm != 65536:
            continue
        assert int(blocks_per_sm(gpu, sram_bytes, 128, registers)) == int(
            blocks_per_sm(gpu, sram_bytes, 128, FA2_FORWARD_REGISTERS))


# ---- Flash-Decoding splits -------------------------------------------------------------------


@pytest.mark.parametrize(("B", "S", "splits"), [
    # 8 head groups (H = 32, K = 8): ⌈132/8⌉ = 17 blocks each would fill the SMs once, but
    # 128 key tiles in ranges of ⌈128/17⌉ = 8 leave the 17th empty: 16 (FA-2's
    # is_split_eligible: ⌈128/17⌉ = ⌈128/16⌉, so 17 is never chosen)
    (1, 8192, 16),
    # S = 128 has only 2 key tiles of 64: at most one split per tile
    (1, 128, 2),
    # 64 sequences × 8 groups already fill 132 SMs: no split
    (64, 8192, 1),
])
def test_flash_decode_splits_fill_the_sms(B: int, S: int, splits: int) -> None:
    p = AttentionProblem(batch=B, seq_len=1, kv_len=S, heads=32, kv_heads=8, head_dim=128)
    t = default_tiling(p, H100, "flash_decode")
    assert (t.kv_splits, t.block_q, t.heads_per_block) == (splits, 1, 4)


def test_flash_decode_needs_every_query_token_in_one_tile() -> None:
    p = problem(128, N=8, S=4096)
    with pytest.raises(InputError, match="block_q=4 must hold all seq_len=8"):
        default_tiling(p, H100, "flash_decode", block_q=4)


def test_splits_apply_to_decoding_only() -> None:
    with pytest.raises(InputError) as err:
        default_tiling(problem(128), H100, "flash2", kv_splits=4)
    assert err.value.field == "kv_splits" and err.value.value == 4


def test_heads_per_block_must_divide_the_group() -> None:
    with pytest.raises(InputError, match="heads_per_block=3 must divide"):
        default_tiling(problem(128, H=32, K=8), H100, "flash2", heads_per_block=3)


def test_unknown_algorithm_is_an_input_error() -> None:
    with pytest.raises(InputError, match="algorithm='flash3'"):
        default_tiling(problem(), H100, "flash3")


def test_tiling_is_frozen() -> None:
    t = Tiling(algorithm="flash2", block_q=64, block_kv=64, head_dim=64, head_dim_v=64,
               elem_bytes=2)
    with pytest.raises(Exception, match="frozen"):
        t.block_q = 128  # type: ignore[misc]


def test_mla_decode_tiles_shrink_the_packed_heads_where_sram_is_small() -> None:
    """128 MLA heads × a 576-wide latent do not fit Ada's 99 KiB per block even at one
    token and 16 keys; the default gives up packing before giving up."""
    from memsim.hardware import load_gpu

    l40s = load_gpu("l40s")
    p = AttentionProblem(batch=1, seq_len=1, kv_len=4096, heads=128, kv_heads=1,
                         head_dim=576, head_dim_v=512, mla=True)
    t = default_tiling(p, l40s, "flash_decode")
    assert t.heads_per_block < 128 and 128 % t.heads_per_block == 0
    assert t.sram_bytes <= l40s.spec.shared_memory_per_block_max_bytes
    assert default_tiling(p, H100, "flash_decode").heads_per_block == 128


def test_defaults_keep_tiles_about_square_under_a_small_limit() -> None:
    """Under Numba's 48 KiB static limit at fp32 the default halves the larger of the
    query rows and the key tile, instead of shrinking the rows to one."""
    p = problem(64, dtype="fp32")
    t = default_tiling(p, H100, "flash2", sram_limit_bytes=48 * 1024)
    assert t.rows >= 16 and t.block_kv >= 16
    assert t.sram_bytes <= 48 * 1024
