"""Golden numbers with their provenance, and one worked example per algorithm.

Sources:
- FlashAttention-2 (Dao 2023, arXiv 2307.08691) §4.1: "the FLOPs of the forward pass is
  4·seqlen²·head dimension·number of heads; with causal mask, divide by 2; backward
  2.5 × forward".
- FlashAttention (Dao et al. 2022, arXiv 2205.14135) Theorem 2: standard attention makes
  Θ(Nd + N²) HBM accesses, FlashAttention Θ(N²d²M⁻¹), for d ≤ M ≤ Nd (M in elements).
- DeepSeek-V3.2-Exp (docs/reference/inputs.md §B, derived rows [D] from the
  repository's config_671B_v3.2.json and model.py): indexer 2·64·128·L FLOP per token per
  layer, DSA main attention 2·128·2048·(576 + 512), dense MLA 64× that; decode bytes per
  token per layer L·1152 (V3.1) vs L·132 + 2048·1152 (V3.2), 7.7×.
The worked examples' hand arithmetic is written out in each test (and in the closing note).
"""

from __future__ import annotations

import pytest

from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import default_tiling

GPU = load_gpu("h100-sxm")


def flash2(p: AttentionProblem, **tiles: int):
    return attention_cost(p, GPU, "flash2", default_tiling(p, GPU, "flash2", **tiles))


# ---- FlashAttention-2 §4.1 FLOP formula -------------------------------------------------


@pytest.mark.parametrize("N", [1, 97, 1024, 8192, 65536])
@pytest.mark.parametrize(("D", "H"), [(64, 32), (128, 16), (256, 8)])
def test_forward_flops_are_4_n2_d_h_for_full_attention(N: int, D: int, H: int) -> None:
    """FA-2 §4.1: 4·N²·D·H per sequence, exact (every score computed, no mask)."""
    p = AttentionProblem(batch=2, seq_len=N, heads=H, head_dim=D, mask=Mask(causal=False))
    assert flash2(p)[0].flops == 2 * 4 * N**2 * D * H


@pytest.mark.parametrize("N", [1024, 8192, 65536])
@pytest.mark.parametrize(("D", "H"), [(64, 32), (128, 16)])
def test_causal_forward_flops_are_half_within_the_diagonal_tiles(N: int, D: int, H: int) -> None:
    """FA-2 §4.1 "divide by 2", exactly: each row p computes its p + 1 visible scores plus
    at most (Br − 1) + (Bc − 1) masked ones on the diagonal tiles, so
    4DH·N(N+1)/2 ≤ FLOPs ≤ 4DH·(N(N+1)/2 + N(Br + Bc − 2))."""
    p = AttentionProblem(batch=1, seq_len=N, heads=H, head_dim=D, mask=Mask())
    cost, t = flash2(p)
    half = 4 * D * H * N * (N + 1) / 2
    assert half <= cost.flops <= half + 4 * D * H * N * (t.block_q + t.block_kv - 2)
    assert cost.flops == pytest.approx(2 * N**2 * D * H, rel=(t.block_q + t.block_kv) / N)


@pytest.mark.parametrize("mask", [Mask(causal=False), Mask(), Mask(window=700), Mask(chunk=512)])
@pytest.mark.parametrize("D", [64, 128])
def test_flash2_backward_is_2_5_times_forward(mask: Mask, D: int) -> None:
    """FA-2 §4.1: five matmuls backward (S recomputed, dV, dP, dQ, dK) against two forward:
    (6D + 4Dv)/(2(D + Dv)) = 10D/4D = 2.5 exactly at D = Dv, on the same tiles."""
    fwd = AttentionProblem(batch=1, seq_len=3000, heads=4, head_dim=D, mask=mask)
    bwd = fwd.model_copy(update={"pass_": "backward"})
    t = default_tiling(fwd, GPU, "flash2")
    f = attention_cost(fwd, GPU, "flash2", t)[0].flops
    b = attention_cost(bwd, GPU, "flash2", t)[0].flops
    assert b == 2.5 * f
    # standard attention keeps P, so it does not recompute S: 2× (memsim/algorithms/standard.py)
    t = default_tiling(fwd, GPU, "standard")
    assert (attention_cost(bwd, GPU, "standard", t)[0].flops
            == 2 * attention_cost(fwd, GPU, "standard", t)[0].flops)


# ---- FlashAttention Theorem 2 -----------------------------------------------------------


@pytest.mark.parametrize("D", [64, 128])
def test_standard_hbm_accesses_are_theta_nd_plus_n2(D: int) -> None:
    """FA Thm 2, standard attention Θ(Nd + N²). memsim's forward in elements (e = 2 B):
    Q + O once (2ND), S written, read twice, P written, read once (5N²), K and V once per
    query tile (2D·N·⌈N/Br⌉). With ⌈N/Br⌉ ≤ N/Br + 1:
        2ND + (5 + 2D/Br)N² ≤ accesses ≤ 4ND + (5 + 2D/Br)N²,
    so accesses/(ND + N²) lies in [2, max(4, 5 + 2D/Br)] for every N, and tends to
    5 + 2D/Br (6 at D = 64, 7 at D = 128 with Br = 128). The paper's Algorithm 0 is
    standard_blockskip (eager standard adds PyTorch's scale and safe-softmax kernels)."""
    ratios = {}
    for N in [2**k for k in range(8, 17)]:
        p = AttentionProblem(batch=1, seq_len=N, heads=1, head_dim=D, mask=Mask(causal=False))
        cost, t = attention_cost(p, GPU, "standard_blockskip")
        ratios[N] = cost.hbm_bytes / 2 / (N * D + N**2)
        assert 2 <= ratios[N] <= max(4, 5 + 2 * D / t.block_q), N
    assert ratios[2**16] == pytest.approx(5 + 2 * D / t.block_q, rel=0.01)


@pytest.mark.parametrize("D", [64, 128])
def test_flash1_hbm_accesses_are_theta_n2_d2_over_m(D: int) -> None:
    """FA Thm 2, FlashAttention Θ(N²d²/M) with Alg. 1's tiles Bc = ⌈M/4d⌉ (M in elements).
    memsim's forward in elements (e = 2 B): K, V once (2ND); per (row, K/V tile) Q read and
    O, ℓ, m written, and read back after the first tile: N·⌈N/Bc⌉·(3D + 16/e) − N(D + 8/e).
    With Bc ≈ M/4D the product accesses·M/(N²D²) tends to 4(3D + 16/e)/D = 12 + 32/D;
    the K/V term adds at most 2M/(ND) ≤ 2 and the ceiling (3D + 16/e)·M/(ND²) ≤ 3 + 8/D
    (both using M ≤ ND), so it stays in [6, 12 + 32/D + 5 + 8/D] over N and M."""
    limit = 12 + 32 / D
    for M_bytes in (32 * 1024, 64 * 1024, 128 * 1024, GPU.spec.shared_memory_per_block_max_bytes):
        M = M_bytes / 2
        for N in (4096, 16384, 65536):
            assert M <= N * D                                    # Thm 2's range
            p = AttentionProblem(batch=1, seq_len=N, heads=1, head_dim=D,
                                 mask=Mask(causal=False))
            t = default_tiling(p, GPU, "flash1", policy="fa1", sram_limit_bytes=M_bytes)
            accesses = attention_cost(p, GPU, "flash1", t)[0].hbm_bytes / 2
            product = accesses * M / (N**2 * D**2)
            assert 6 <= product <= limit + 5 + 8 / D, (M_bytes, N)
            if N == 65536:
                assert product == pytest.approx(limit, rel=0.05), M_bytes


# ---- DeepSeek-V3.2-Exp DSA (docs/reference/inputs.md §B) ----------------------------------

L = 131_072
V32 = dict(batch=1, seq_len=1, kv_len=L, heads=128, kv_heads=1, mla=True,
           head_dim=512 + 64, head_dim_v=512)  # MQA mode of MLA: 576-wide latent, V = 512


def dsa_decode(**tiles: int):
    p = AttentionProblem(**V32, mask=Mask(top_k=2048), indexer=Indexer(heads=64, head_dim=128))
    return attention_cost(p, GPU, "dsa", default_tiling(p, GPU, "dsa", **tiles))[0], p


def test_dsa_indexer_and_main_attention_flops_per_token() -> None:
    """Per decoded token per layer at L = 131072: indexer 2·64·128·L = 2.15 GFLOP (fp8),
    main attention 2·128·2048·(576 + 512) = 0.57 GFLOP. The indexer part is read two
    independent ways: the fp8 matmul field, and 2·(F(H_I = 64) − F(H_I = 32)) (the indexer
    is linear in its heads, the main attention does not depend on them)."""
    cost, p = dsa_decode()
    half = attention_cost(p.model_copy(update={"indexer": Indexer(heads=32)}), GPU, "dsa",
                          default_tiling(p, GPU, "dsa"))[0]
    indexer = 2 * (cost.flops - half.flops)
    assert indexer == pytest.approx(2 * 64 * 128 * L, rel=0.01)
    assert cost.fp8_matmul_flops == pytest.approx(2 * 64 * 128 * L, rel=0.01)
    assert cost.flops - indexer == pytest.approx(2 * 128 * 2048 * (576 + 512), rel=0.01)


def test_dense_mla_costs_64_times_dsa_main_attention() -> None:
    """Dense MLA decode (V3.1-Terminus, MQA mode) 2·128·L·1088 = 36.5 GFLOP vs DSA's
    0.57 GFLOP: L/k = 131072/2048 = 64×."""
    dense = AttentionProblem(**V32, mask=Mask())
    dense_flops = attention_cost(dense, GPU, "flash_decode")[0].flops
    assert dense_flops == pytest.approx(2 * 128 * L * 1088, rel=0.01)
    cost, _ = dsa_decode()
    assert dense_flops / cost.matmul_flops == pytest.approx(64, rel=0.01)


def test_decode_bytes_per_token_v31_vs_v32() -> None:
    """docs/reference/inputs.md §B: V3.1 reads L·1152 B (bf16 latent), V3.2 L·132 +
    2048·1152 B, 7.7×.
    One split each (no partials to merge): memsim's HBM reads are exactly those plus what
    the reference leaves out —
      dense: Q 128·576·2 and the one fp32 partial 128·(512 + 1)·4 re-read by the reduce;
      dsa:   the fp32 logits re-read by the top-k (4 B per key), the int32 indices
             (2048·4), Q (128·576·2) and the indexer's query and weights 64·(128 + 4),
    which is why memsim's ratio is 7.44×, not 7.7×: the logits cost 4 B per key on top of
    the 132-B indexer key (inside 4 %)."""
    dense = AttentionProblem(**V32, mask=Mask())
    v31 = attention_cost(dense, GPU, "flash_decode",
                         default_tiling(dense, GPU, "flash_decode", kv_splits=1))[0]
    v32, _ = dsa_decode(kv_splits=1)
    q_bytes = 128 * 576 * 2
    assert v31.hbm_read_bytes == L * 1152 + q_bytes + 128 * (512 + 1) * 4
    assert v32.hbm_read_bytes == (L * 132 + 2048 * 1152) + L * 4 + 2048 * 4 + q_bytes + 64 * 132
    assert v31.hbm_read_bytes / v32.hbm_read_bytes == pytest.approx(7.7, rel=0.04)


# ---- worked examples: one per algorithm, by hand ---------------------------------------
#
# Shared prefill problem: B = 1, N = S = 256, H = K = 2, D = Dv = 64, bf16 (e = 2), causal,
# Br = 128, Bc = 64, one head per block, so g = B·H = 2 (batch, head) groups.
# Query tile 0 (rows 0..127) sees keys 0..127 → key tiles 0, 1 (128 keys);
# query tile 1 (rows 128..255) sees keys 0..255 → key tiles 0..3 (256 keys):
#   key_loads = 128 + 256 = 384, area = 128·128 + 128·256 = 49152,
#   row_pairs = 128·2 + 128·4 = 768, union_keys = 256, q_tiles = 2.

PREFILL = dict(batch=1, seq_len=256, heads=2, head_dim=64, mask=Mask(), dtype="bf16")


def worked(algorithm: str, problem: dict, **tiles: int):
    p = AttentionProblem(**problem)
    return attention_cost(p, GPU, algorithm, default_tiling(p, GPU, algorithm, **tiles))[0]


def test_worked_example_flash2() -> None:
    """FA-2 Alg. 1 (memsim/algorithms/flash2.py docstring), per group:
    read Q N·D·e + K/V key_loads·(D + Dv)·e, write O N·Dv·e + L N·4."""
    c = worked("flash2", PREFILL, block_q=128, block_kv=64)
    assert c.matmul_flops == 2 * 49152 * 2 * (64 + 64) == 25_165_824
    assert c.global_read_bytes == 2 * (256 * 64 * 2 + 384 * 128 * 2) == 262_144
    assert c.global_write_bytes == 2 * 256 * (64 * 2 + 4) == 67_584
    assert c.hbm_bytes == c.global_bytes
    assert c.exp_ops == 2 * (49152 + 768) == 99_840          # P = exp(S − m), rescales
    assert c.workspace_bytes == 1 * 2 * 256 * 4 == 2048      # logsumexp for the backward
    assert (c.launches, c.blocks) == (1, 2 * 2)              # one block per (q tile, group)


def test_worked_example_standard_blockskip() -> None:
    """FA Alg. 0 (standard_blockskip.py docstring), per group, scores = area·e = 98304 B:
    QKᵀ  read Q 256·64·2 + K 384·64·2 = 81920, write S 98304;
    softmax read S twice 196608, write P 98304;
    PV   read P 98304 + V 384·64·2 = 147456, write O 256·64·2 = 32768.
    Workspace: dense S and P, 2·B·H·N·S·e."""
    c = worked("standard_blockskip", PREFILL, block_q=128, block_kv=64)
    assert c.matmul_flops == 25_165_824
    assert c.global_read_bytes == 2 * (81920 + 196608 + 147456) == 851_968
    assert c.global_write_bytes == 2 * (98304 + 98304 + 32768) == 458_752
    assert c.workspace_bytes == 2 * 1 * 2 * 256 * 256 * 2 == 524_288
    assert (c.launches, c.blocks) == (3, 3 * 2 * 2)


def test_worked_example_standard_eager() -> None:
    """Eager standard (standard.py docstring: PyTorch's math backend) computes all N·S =
    65536 scores per head under the causal mask, as under full (4·N²·D·H = 33,554,432
    FLOP), with B·H·N·S = 131072 scores of e = 4 B (fp32 storage: no dtype copies; bf16
    is this plus the copies, tests/test_eager_dtypes.py) around the full mask's kernels:
    scale Q, K       read and write B·H·N·D·e = 131072 B each (K: one KV head per group)
    QKᵀ              a GEMM of 128-key output tiles: S's 2 column tiles read Q twice,
                     +131072 (standard.py, GEMM_TILE_KEYS)
    add mask         read S 524288 + the (N, S) mask per head 2·65536·4 = 524288, write S
    isneginf         read S 524288, write 131072 bools
    all              read 131072 bools, write B·H·N = 512 flags, a 32-byte sector each
                     (a warp per row, its first lane stores: Reduce.cuh) 16384
    where            read P 524288 and its two broadcast operands, the row flags and the
                     0.0, each a 32-byte sector per warp of 32 scores (the legacy
                     elementwise path, CUDALoops.cuh): 2·131072, write P 524288
    softmax          reads S once (rows of 256·4 B ≤ 4096 B: PyTorch's warp softmax), not
                     twice: −524288
    and once per call (the causal mask is built from is_causal; the safe softmax's zero):
    ones             write N·S bools 65536
    tril             read the 8-bool chunks on or below the diagonal in whole sectors,
                     8 rows × 32 B × Σ_{n=1..32} ⌈n/4⌉ = 36864, each byte of a chunk by its
                     own instruction: ×8 = 294912; write 65536, ×8 = 524288
                     (TriangularOps.cu: one element per access, a runtime stride)
    scalar_tensor ×3 (−inf, where's 0.0, the safe softmax's 0.0) write 4 B each, a
                     32-byte sector each through L1
    where            read 65536 bools and its two broadcast one-element operands,
                     2·65536 (a sector per warp of 32), write the fp32 (N, S) mask 262144
    reads +2,359,296 + 491,520 = 2,850,816 B, writes +1,458,176 + 852,064 = 2,310,240 B,
    12 more launches, vector ops + 131072 (add) + 2·32768 (scales)."""
    fp32 = PREFILL | {"dtype": "fp32"}
    c = worked("standard", fp32, block_q=128, block_kv=64)
    full = worked("standard_blockskip", fp32 | {"mask": Mask(causal=False)},
                  block_q=128, block_kv=64)
    assert c.matmul_flops == full.matmul_flops == 4 * 256 * 256 * 64 * 2 == 33_554_432
    assert c.global_read_bytes == full.global_read_bytes + 2_850_816
    assert c.global_write_bytes == full.global_write_bytes + 2_310_240
    assert (c.launches, c.vector_flops) == (15, full.vector_flops + 131_072 + 2 * 32_768)


def test_worked_example_flash1() -> None:
    """FA-1 Alg. 1 (flash1.py docstring), per group, state = Dv·e + 2·4 = 136 B per row:
    read K, V once union_keys·(D + Dv)·e = 256·128·2 = 65536, Q per pair
    row_pairs·D·e = 768·128 = 98304, O/ℓ/m after the first touch (768 − 256)·136 = 69632;
    write O/ℓ/m per pair 768·136 = 104448."""
    c = worked("flash1", PREFILL, block_q=128, block_kv=64)
    assert c.matmul_flops == 25_165_824
    assert c.global_read_bytes == 2 * (65536 + 98304 + 69632) == 466_944
    assert c.global_write_bytes == 2 * 104448 == 208_896
    assert c.workspace_bytes == 1 * 2 * 256 * 2 * 4 == 4096  # ℓ and m in fp32
    assert (c.launches, c.blocks) == (1, 2)


DECODE = dict(batch=1, seq_len=1, kv_len=1024, heads=8, kv_heads=2, head_dim=64, mask=Mask())


def test_worked_example_flash_decode() -> None:
    """Split-KV decoding (flash_decode.py docstring): one query token, GQA H = 8, K = 2,
    hpb = 4 heads per block, g = 2 groups; causal at the last position sees all 1024 keys,
    n = 16 tiles of 64 in s = 4 splits of 4 tiles. Per group:
    split  read Q s·N·hpb·D·e = 4·4·64·2 = 2048, K/V 1024·128·2 = 262144,
           write partials s·N·hpb·(Dv + 1)·4 = 4·4·65·4 = 4160;
    reduce read the 4160 partial bytes, write O N·hpb·Dv·e = 512."""
    c = worked("flash_decode", DECODE, block_kv=64, kv_splits=4)
    assert c.matmul_flops == 2 * 4 * 1024 * 2 * (64 + 64) == 2_097_152
    assert c.global_read_bytes == 2 * (2048 + 262144 + 4160) == 536_704
    assert c.global_write_bytes == 2 * (4160 + 512) == 9344
    assert c.workspace_bytes == 1 * 8 * 1 * 4 * 65 * 4 == 8320
    # blocks: the split kernel's g·s set the waves (the reduce kernel's g blocks are tiny)
    assert (c.launches, c.blocks) == (2, 2 * 4)


SPARSE = dict(batch=1, seq_len=1, kv_len=4096, heads=16, kv_heads=1, mla=True, head_dim=576,
              head_dim_v=512, mask=Mask(top_k=512), indexer=Indexer())


def test_worked_example_dsa() -> None:
    """DSA decode (dsa.py docstring), one token at position 4095, k = 512, H = 16 heads in
    one group over a 576-wide MLA latent (V is its first 512), e = 2; indexer H_I = 64,
    D_I = 128 in fp8 (keys 128 + 4 B scale = 132 B), one split.
    indexer  read q_I and weights 64·(128 + 4) = 8448, keys 4096·132 = 540672;
             write fp32 logits 4096·4 = 16384; fp8 FLOPs 4096·64·2·128 = 67108864
    top-k    read logits 16384, write int32 indices 512·4 = 2048
    sparse   read indices 2048, latents 512·576·2 = 589824, Q 16·576·2 = 18432;
             write O and logsumexp 16·(512·2 + 4) = 16448;
             FLOPs 16·512·2·(576 + 512) = 17825792.
    Workspace: logits 1·4096·4 + indices 512·4 + logsumexp 16·4."""
    c = worked("dsa", SPARSE, block_q=1, block_kv=64, kv_splits=1)
    assert c.fp8_matmul_flops == 4096 * 64 * 2 * 128 == 67_108_864
    assert c.matmul_flops == 16 * 512 * 2 * (576 + 512) == 17_825_792
    assert c.global_read_bytes == (8448 + 540672) + 16384 + (2048 + 589824 + 18432) == 1_175_808
    assert c.global_write_bytes == 16384 + 2048 + 16448 == 34_880
    assert c.workspace_bytes == 4096 * 4 + 512 * 4 + 16 * 4 == 18_496
    assert (c.launches, c.blocks) == (3, 1 + 1 + 1)
