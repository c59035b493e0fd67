"""Standard attention as eager PyTorch runs it (the math backend of
``scaled_dot_product_attention``, and autograd through it): S = QKᵀ, P = softmax(S), O = PV
with S and P materialised in HBM over **all** N × S scores whatever the mask — the
additive mask is added to the dense S afterwards (``attn.add_(mask)``), no tile is skipped.

Forward, per (batch, head group of ``hpb`` heads), dense (area = N·S), in launch order:
    scale Q, scale K    Q and K times √scale into copies (read, write, one op each)
    QKᵀ, softmax, PV    as memsim.algorithms.standard_blockskip over the full mask, but
                        softmax reads S as PyTorch's kernel does (softmax_reads: once
                        for rows that fit in registers or shared memory, else 3 times)
                        and QKᵀ, a cuBLAS GEMM, re-reads each query tile's Q rows for
                        every output tile of GEMM_TILE_KEYS keys (q_loads)
    add mask            (masks other than full) read S and the (N, S) additive mask, write
                        S: area·hpb·e + area·e, area·hpb·e; one vector op per score
    isneginf, all,      the safe softmax (rows masked entirely give 0): area·hpb·e read,
    where               area·hpb bools written; read back; P read and written again,
                        beside the two broadcast operands, the row flags and the zero,
                        re-read by every warp (:func:`broadcast_load_bytes`)
Backward (:func:`backward`): the kernels autograd runs through the math backend — dP, dV,
tmp = dP ∘ P, the softmax backward, dQ', dK', the two scale gradients — at the compute
width over the dense scores; the mask adds none (the additive mask's gradient is the
identity).

Dtypes: PyTorch ≥ 2.5 computes the math backend in fp32 for fp16 / bf16 inputs (unless
``torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)``): it copies Q, K, V to
fp32, runs every kernel above on fp32 tensors (S, P, the mask: 4 bytes per element), and
casts the output and the attention weights back (``.to(origin_dtype)``). For 2-byte
storage (``e == 2``) :func:`forward` is therefore the fp32 computation plus those five
copies (:func:`_dtype_copies`); Nsight Compute lists them for one causal bf16 call on
H100 (``direct_copy_kernel_cuda`` up, ``bfloat16_copy_kernel_cuda`` down, fp32
``sm80_xmma_gemm_f32f32`` matmuls, ``softmax_warp_forward<float, ...>``;
measurements/h100-sxm/quick-2026-11-22T20-41-48Z.jsonl). Autograd's backward through
the casts is the fp32 backward plus four copies (:func:`_backward_copies`: dO up; dV, dK,
dQ down).

Once per call (:func:`_once_per_call`): ``_safe_softmax``'s zero (a one-element
``scalar_tensor``), and for the causal mask (``is_causal=True``) its construction —
``ones((N, S), bool).tril()`` and ``convert_boolean_attn_mask``'s ``where(mask, 0.0,
scalar_tensor(-inf))`` with the Scalar 0.0 made a tensor too: Nsight Compute's
FillFunctor<bool>, triu_tril_kernel<bool>, two FillFunctor<float> and a where kernel, the
6 of the 20 kernels of one causal bf16 call (measurements/h100-sxm) that the rest leaves.
Other masks are the caller's tensor, built outside the call.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from memsim.algorithms import standard_blockskip
from memsim.algorithms._arrays import Arrays, handoff_hit_fraction
from memsim.cost import Cost
from memsim.geometry import DENSE_MASKS, MaskGeometry

NAME = "standard"
PASSES = standard_blockskip.PASSES

# What the rest of memsim asks of standard (docs/DESIGN.md §"The algorithm registry"):
# the block-skipping variant's tile rules (same kernels, same tiles).
LABEL = "standard, eager (S, P in HBM, every score)"  # in tables and report pages
MASKS = DENSE_MASKS
DECODES = False
SCHEDULE = "standard"  # trace builder: memsim.trace.schedule.builders()
KERNEL_FAMILY = None  # memsim's Numba kernels skip masked tiles: standard_blockskip's
UPCASTS_16BIT = True  # 16-bit inputs run in fp32 (compute_e; PyTorch's math backend)
default_block_q = standard_blockskip.default_block_q
kv_splits = standard_blockskip.kv_splits
splits_keys = standard_blockskip.splits_keys
extra_fields = standard_blockskip.extra_fields
shrink_first = standard_blockskip.shrink_first
backward_tiling = standard_blockskip.backward_tiling


def sram_bytes(t):
    """standard_blockskip's shared memory per block at the compute width
    (:func:`compute_e`: the fp32 kernels of a 16-bit call stage fp32 tiles)."""
    return standard_blockskip.sram_bytes(_at_width(t, compute_e(t.elem_bytes)))


def _at_width(t, elem_bytes):
    """Tiling ``t`` (or its array form) with ``elem_bytes`` in place of its own."""
    from types import SimpleNamespace

    return SimpleNamespace(rows=t.rows, head_dim=t.head_dim, head_dim_v=t.head_dim_v,
                           block_kv=t.block_kv, elem_bytes=elem_bytes)


def dense(x: Arrays) -> Arrays:
    """The same arrays under the full mask: eager attention computes every score."""
    return replace(x, geometry=MaskGeometry("full"))


def _mask_kernel(x: Arrays, mask_e: float = 0.0) -> Cost:
    """One elementwise pass over the dense (B, H, N, S) scores for any mask but full:
    read and write each score, one vector op per score. ``mask_e``: bytes per element of
    an additive (N, S) mask read beside the scores (the forward's ``attn.add_(mask)``;
    each block reads its mask tile once for its heads), 0 for the scores' pass alone."""
    m = np.asarray(0.0 if x.geometry.kind == "full" else 1.0)
    scores = m * np.asarray(x.B, dtype=np.float64) * x.H * x.N * x.S
    mask_read = m * x.groups * x.N * x.S * mask_e
    return Cost(vector_flops=scores, global_read_bytes=scores * x.e + mask_read,
                global_write_bytes=scores * x.e, hbm_read_bytes=scores * x.e + mask_read,
                hbm_write_bytes=scores * x.e, launches=m + 0 * scores,
                blocks=m * x.groups * -(-x.N // x.Br))


#: PyTorch's elementwise kernels over operands that are not all contiguous (a broadcast
#: one has stride 0) take the legacy path (aten/src/ATen/native/cuda/CUDALoops.cuh,
#: ``gpu_kernel_impl_nocast`` → ``launch_legacy_kernel<128, unroll_factor>``: Nsight
#: Compute's ``elementwise_kernel<128, 2, gpu_kernel_impl_nocast...>`` for the fp32 where):
#: each thread loads every operand of its element, and a warp's 32 threads take 32
#: consecutive elements — 32 keys of one score row. A broadcast operand (stride 0 along
#: the keys) is then one address per warp load: one 32-byte sector for every 32 keys of a
#: row, whatever its dtype, and L1 or L2 hits after its first load. memsim counts the
#: warps per row in its key tiles, ⌈c/32⌉ for a tile of c keys (exact when S and Bc are
#: multiples of 32, as in the measured call; the kernel's flat index lets a warp straddle
#: two rows otherwise).
SECTOR_BYTES = 32
WARP_THREADS = 32


def row_warps(keys):
    """Warp loads of one score row's tile of ``keys`` keys, ⌈keys/32⌉: a broadcast
    operand's sectors per row of the tile (numpy-broadcasting; the rule's one home, the
    trace's where kernels use it too: memsim.trace.sched_standard)."""
    return -(-np.asarray(keys, dtype=np.int64) // WARP_THREADS)


def sector_keys(S, Bc):
    """Σ over the key tiles (Bc keys, the last S mod Bc) of :func:`row_warps`·32: a
    broadcast operand's global bytes per score row (numpy-broadcasting)."""
    S, Bc = np.asarray(S, dtype=np.int64), np.asarray(Bc, dtype=np.int64)
    warps = row_warps(Bc) * (S // Bc) + row_warps(S % Bc)
    return (warps * SECTOR_BYTES).astype(np.float64)


def broadcast_load_bytes(rows, S, Bc):
    """Global bytes one broadcast operand of a legacy elementwise kernel over ``rows``
    score rows of ``S`` keys loads: a sector per warp (:func:`sector_keys`)."""
    return np.asarray(rows, dtype=np.float64) * sector_keys(S, Bc)


def _elementwise(read_bytes, write_bytes, vector_flops, blocks) -> Cost:
    """One elementwise kernel at no reuse: every byte through L1 and from and to HBM. The
    bytes are those of the sectors its warp instructions touch, each access counted (an
    instruction that uses part of a 32-byte sector moves all of it; Nsight Compute counts
    sectors): a narrow access repeated at one address is that many accesses, each of
    which reaches HBM with no cache to keep it (the trace with its L2 off: the same
    bytes). The L2 estimate keeps the repeats from HBM (:func:`_repeat_hbm_bytes`)."""
    return Cost(vector_flops=vector_flops, global_read_bytes=read_bytes,
                global_write_bytes=write_bytes, hbm_read_bytes=read_bytes,
                hbm_write_bytes=write_bytes, launches=1.0 + 0 * blocks, blocks=blocks)


def _math_backend_kernels(x: Arrays) -> Cost:
    """The elementwise kernels PyTorch's math backend runs around the two matmuls
    (``_scaled_dot_product_attention_math`` and ``_safe_softmax``,
    aten/src/ATen/native/transformers/attention.cpp, PyTorch 2.5–2.11; Nsight Compute lists
    them for one causal call, measurements/h100-sxm): Q and K times √scale into copies
    (per query tile and per key tile of each head group; under GQA each head group scales
    its KV head, as repeat_interleave + scale move the expanded K), then ``isneginf(S)``
    (a bool per score), ``all`` over each row (a bool per row; reduce_kernel<512, 1>: a
    warp reduces a row and its first lane stores the flag, one 32-byte sector per row,
    aten/src/ATen/native/cuda/Reduce.cuh) and ``where(rows, 0, P)``
    into the P that PV reads: the row flags (B, H, N, 1) and ``scalar_tensor(0.0)`` are
    broadcast operands, each loaded :func:`broadcast_load_bytes` (the L2 estimate reads
    the flags from HBM once, :func:`_around_hbm_reads`). The trace runs the same kernels
    (memsim.trace.sched_standard.build)."""
    B = np.asarray(x.B, dtype=np.float64)
    q_elems = x.groups * x.N * x.hpb * x.D
    k_elems = x.groups * x.S * x.D
    scores = B * x.H * x.N * x.S
    rows = B * x.H * x.N
    q_blocks = x.groups * -(-x.N // x.Br)
    return (_elementwise(q_elems * x.e, q_elems * x.e, q_elems, q_blocks)
            + _elementwise(k_elems * x.e, k_elems * x.e, k_elems,
                           x.groups * -(-x.S // x.Bc))
            + _elementwise(scores * x.e, scores, 0 * scores, q_blocks)       # isneginf
            + _elementwise(scores, rows * SECTOR_BYTES, 0 * scores, q_blocks)  # all
            + _elementwise(scores * x.e + 2 * broadcast_load_bytes(rows, x.S, x.Bc),
                           scores * x.e, 0 * scores, q_blocks))              # where


#: PyTorch's softmax over the last dim (aten/src/ATen/native/cuda/SoftMax.cu,
#: host_softmax): rows of ≤ 1024 elements and ≤ 4096 B run the warp softmax
#: (softmax_warp_forward, the row in registers: one read); longer rows that fit in
#: sharedMemPerBlock (48 KiB) less the per-warp reduction slots (32 × 4 B) and split into
#: 16-byte vectors run cunn_SoftMaxForwardSmem (one read, the row in shared memory);
#: otherwise cunn_SoftMaxForward reads the row three times (max, sum of exps, output).
SOFTMAX_SMEM_BYTES = 48 * 1024 - 32 * 4


def softmax_reads(S, e):
    """Reads of each score by PyTorch's softmax kernel for rows of S elements of e bytes
    (1 or 3; see SOFTMAX_SMEM_BYTES); numpy-broadcasting."""
    S, e = np.asarray(S), np.asarray(e, dtype=np.float64)
    warp = (S <= 1024) & (S * e <= 4096)
    smem = (S * e < SOFTMAX_SMEM_BYTES) & (np.mod(S * e, 16) == 0)
    return np.where(warp | smem, 1, 3)


#: Keys per output tile of the cuBLAS GEMM that runs eager QKᵀ: Nsight Compute lists the
#: two matmuls of one causal bf16 call on H100 as ``sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_
#: tilesize128x128x8_stage3_warpsize2x2x1_ffm…`` and its ``tn`` twin
#: (measurements/h100-sxm/quick-2026-11-22T20-41-48Z.jsonl, kernel_names): each thread
#: block computes one 128 × 128 tile of S = Q Kᵀ and loads its own operand
#: panels from global memory — the tile's 128 rows of Q and 128 columns of Kᵀ (the
#: threadblock tiling of NVIDIA/cutlass media/docs/efficient_gemm.md, "Hierarchical
#: Structure") — so Q's rows are read once per column tile, K's once per row tile.
#: Observed in that one H100 Nsight Compute record only (one shape, one dtype), and
#: applied to every GPU and shape: cuBLAS's heuristic may pick another tile elsewhere.
GEMM_TILE_KEYS = 128


def q_reload_tiles(Bc):
    """Key tiles of ``Bc`` keys per output tile of eager QKᵀ's GEMM: a query tile's Q
    rows are loaded at the first of every this many key tiles, ⌊GEMM_TILE_KEYS / Bc⌋ and
    at least 1 — exact for the power-of-two key tiles up to 128 that memsim picks; an
    explicit Bc that does not divide 128 counts the whole key tiles an output tile holds,
    one wider than 128 one load per key tile; numpy-broadcasting."""
    return np.maximum(1, GEMM_TILE_KEYS // np.asarray(Bc))


def q_loads(S, Bc):
    """Loads of each query tile's Q rows by eager QKᵀ over S keys in tiles of ``Bc``:
    ⌈⌈S/Bc⌉ / q_reload_tiles(Bc)⌉ (one per GEMM output tile; memsim.trace.sched_standard
    loads them so); numpy-broadcasting."""
    key_tiles = -(-np.asarray(S) // np.asarray(Bc))
    return -(-key_tiles // q_reload_tiles(Bc))


def _q_rereads(x: Arrays) -> Cost:
    """Eager QKᵀ's loads of Q beyond the first (:func:`q_loads` − 1 per query tile), staged
    in shared memory as the first (standard_blockskip.forward's QKᵀ counts one); at no
    reuse every byte from HBM."""
    q_bytes = x.groups * x.N * x.hpb * x.D * x.e
    reread = (q_loads(x.S, x.Bc) - 1) * q_bytes
    return Cost(global_read_bytes=reread, hbm_read_bytes=reread, sram_write_bytes=reread,
                sram_read_bytes=reread * x.warps)


def _q_reread_hit_fraction(x: Arrays):
    """Fraction of :func:`_q_rereads` that hit the L2 under the closed-form estimate:
    between two loads of a query tile's Q rows each block in flight (``slots`` at once,
    or all blocks if fewer) reads its Q tile and writes q_reload_tiles S tiles, and the
    head groups in flight read q_reload_tiles K tiles; the re-read hits iff those
    distinct bytes fit the L2 (1 or 0; numpy-broadcasting)."""
    q_tiles = -(-np.asarray(x.N) // x.Br)
    in_flight = np.minimum(np.maximum(x.slots, 1), x.groups * q_tiles)
    heads = -(-in_flight // q_tiles)
    m = q_reload_tiles(x.Bc)
    rows = x.Br * x.hpb
    between = (in_flight * (rows * x.D + m * rows * x.Bc) + heads * m * x.Bc * x.D) * x.e
    return np.where(between <= x.l2_bytes, 1.0, 0.0)


def compute_e(e):
    """Bytes per element the math backend computes in for storage of ``e`` bytes: fp32
    for 16-bit inputs (PyTorch's upcast), else the storage width."""
    e = np.asarray(e, dtype=np.float64)
    return np.where(e == 2, 4.0, e)


def _dtype_copies(x: Arrays) -> Cost:
    """The copies around the fp32 computation for 2-byte storage (none otherwise): Q, K, V
    to fp32 (read e, write 4 bytes per element; per head group, as the scale kernels —
    under GQA each head group copies its KV head), the output O and the attention weights
    P (B, H, N, S) back to the storage dtype (read 4, write e). One launch each, elementwise,
    no floating-point operations; every byte from and to HBM. The trace runs the same
    kernels (memsim.trace.sched_standard.build)."""
    up = np.where(np.asarray(x.e) == 2, 1.0, 0.0)
    e, c = x.e, compute_e(x.e)
    B = np.asarray(x.B, dtype=np.float64)
    q_blocks = x.groups * -(-x.N // x.Br)
    k_blocks = x.groups * -(-x.S // x.Bc)
    q = x.groups * x.N * x.hpb * x.D
    k = x.groups * x.S * x.D
    v = np.where(x.mla, 0.0, x.groups * x.S * x.Dv)
    o = x.groups * x.N * x.hpb * x.Dv
    p = B * x.H * x.N * x.S
    none = 0 * p
    copies = (_elementwise(q * e, q * c, none, q_blocks)
              + _elementwise(k * e, k * c, none, k_blocks)
              + _elementwise(v * e, v * c, none, k_blocks * (v > 0))
              + _elementwise(o * c, o * e, none, q_blocks)
              + _elementwise(p * c, p * e, none, q_blocks))
    launches = 4 + np.where(x.mla, 0.0, 1.0)
    return replace(copies.times(up), launches=up * launches + none)


def forward(x: Arrays) -> Cost:
    """Eager forward: for 2-byte storage the fp32 computation and the dtype copies around
    it (module docstring), else the computation at the storage width."""
    cost = _forward_computed(replace(x, e=compute_e(x.e))) + _dtype_copies(x)
    if x.slots is None:
        return cost
    return replace(cost, hbm_read_bytes=cost.hbm_read_bytes - _copies_l2_hits(x))


def _copies_l2_hits(x: Arrays):
    """Bytes of the fp32 copies' hand-offs that the L2 estimate keeps from HBM (2-byte
    storage; 0 otherwise): the scale kernels' reads of the fp32 Q and K the upcasts just
    wrote, PV's of the fp32 V, and the downcasts' reads of the fp32 O and P, each hitting
    as much as :func:`handoff_hit_fraction` leaves of it past the kernels in between
    (their distinct bytes taken from the capacity). The estimate of
    :func:`_forward_computed` and :func:`_dtype_copies` charges all of them to HBM."""
    up = np.where(np.asarray(x.e) == 2, 1.0, 0.0)
    e, c, cap = x.e, compute_e(x.e), x.l2_bytes
    B = np.asarray(x.B, dtype=np.float64)
    q = x.groups * x.N * x.hpb * x.D
    k = B * x.K * x.S * x.D                     # the head groups of a KV head share it
    v = np.where(x.mla, 0.0, B * x.K * x.S * x.Dv)
    o = x.groups * x.N * x.hpb * x.Dv
    scores = B * x.H * x.N * x.S * c
    flags = scores / c
    hit_q = handoff_hit_fraction(q * (e + c), 2 * q * c, cap - (k + v) * (e + c))
    hit_k = handoff_hit_fraction(k * (e + c), 2 * k * c, cap - v * (e + c) - 2 * q * c)
    between_v = 2 * (q + k) * c + 3 * scores + flags     # scale, QKᵀ … where: S, P, P_safe
    hit_v = handoff_hit_fraction(v * (e + c), scores + v * c, cap - between_v)
    hit_o = handoff_hit_fraction(scores + (v + o) * c, o * (c + e), cap)
    hit_p = handoff_hit_fraction(2 * scores + flags / x.S, scores / c * (c + e),
                                 cap - (v + o) * c - o * (c + e))
    return up * (q * c * hit_q + k * c * hit_k + v * c * hit_v + o * c * hit_o
                 + scores * hit_p)


#: Bools per thread of PyTorch's triu_tril_kernel (aten/src/ATen/native/cuda/
#: TriangularOps.cu, ``launch_triu_tril_kernel``: ``elements_per_thread = 8 /
#: sizeof(scalar_t)`` for 1-byte elements). The kernel moves a thread's chunk one element
#: at a time, ``data[offset + i * strides[dims - 1]]`` with a runtime stride (no vector
#: access): each of the chunk's TRIL_CHUNK loads and stores is a warp instruction of its
#: own over the warp's 32 consecutive chunks, and touches every 32-byte sector they span —
#: the chunks' sectors TRIL_CHUNK times (stores: 32 × 8 B = 8 sectors per instruction for
#: 32 bytes).
TRIL_CHUNK = 8

#: Threads per block of triu_tril_kernel (TriangularOps.cu: ``constexpr static int
#: block_size = 128``): a block covers TRIL_BLOCK_ELEMENTS = 128 · TRIL_CHUNK elements of
#: the matrix with its rows padded to a multiple of TRIL_CHUNK (``last_dim_padded =
#: round_up(S, elements_per_thread)``, ``dim_grid = N_padded / elements_per_thread /
#: block_size`` rounded up).
TRIL_BLOCK_THREADS = 128
TRIL_BLOCK_ELEMENTS = TRIL_BLOCK_THREADS * TRIL_CHUNK


def _sum_ceil(m, k: int):
    """Σ_{n=1..m} ⌈n/k⌉ (numpy-broadcasting): a = ⌊m/k⌋ whole runs of k, then m mod k."""
    a, s = np.floor(m / k), np.mod(m, k)
    return k * a * (a + 1) / 2 + s * (a + 1)


def tril_row_width(row, S):
    """Bools ``tril()`` loads of row ``row`` (numpy-broadcasting): triu_tril_kernel's
    out-of-place path loads a thread's chunk of TRIL_CHUNK elements only when its first
    column is on or below the diagonal (``has_mask = col - row <= k``, k = 0), so the row's
    first min(8·(⌊row/8⌋ + 1), S) bools."""
    return np.minimum(TRIL_CHUNK * (np.floor_divide(row, TRIL_CHUNK) + 1), S)


def tril_read_bytes(rows, S):
    """Bytes of the sectors ``tril()`` reads of a (rows, S) bool matrix, each sector once
    (its DRAM reads): row i's first w = :func:`tril_row_width` bools, ⌈w/32⌉ sectors
    counted from the row's start — the sectors of the bools' real addresses i·S … i·S +
    w − 1 when S is a multiple of 32; otherwise a row starts inside a sector and touches
    ⌈w/32⌉ or one more (tests/test_eager_dtypes.py bounds the difference), and the last
    row's last sector may reach past the matrix's end, bytes outside the tensor that are
    not counted (:func:`tril_spill_bytes`). Summed in closed form (numpy-broadcasting).
    Its global loads are TRIL_CHUNK times these (one instruction per element of the
    chunk)."""
    rows, S = np.asarray(rows, dtype=np.float64), np.asarray(S, dtype=np.float64)
    c = TRIL_CHUNK
    inside = np.minimum(rows, c * np.floor(S / c))   # rows whose chunks end inside the row
    q, r = np.floor(inside / c), np.mod(inside, c)
    per_sector = SECTOR_BYTES // c                     # chunks per sector
    sectors = c * _sum_ceil(q, per_sector) + r * np.ceil((q + 1) / per_sector)
    last = tril_spill_bytes(rows - 1, 0, tril_row_width(rows - 1, S), S)
    return (SECTOR_BYTES * (sectors + (rows - inside) * np.ceil(S / SECTOR_BYTES))
            - np.where(rows > 0, last, 0))


def tril_blocks(N, S):
    """Blocks of ``tril()`` on an (N, S) matrix: ⌈N · round_up(S, 8) / 1024⌉, PyTorch's
    grid (:data:`TRIL_BLOCK_ELEMENTS`; numpy-broadcasting)."""
    N, S = np.asarray(N, dtype=np.int64), np.asarray(S, dtype=np.int64)
    padded = -(-S // TRIL_CHUNK) * TRIL_CHUNK
    return (-(-N * padded // TRIL_BLOCK_ELEMENTS)).astype(np.float64)


def tril_pieces(N: int, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pieces of rows the blocks of ``tril()`` on an (N, S) matrix cover: block b
    holds the padded elements [1024·b, 1024·(b + 1)) (row r's column c at r·round_up(S, 8)
    + c; TriangularOps.cu), so its part of row r is the columns [lo, hi) of that range
    below S. Returns int64 arrays (block, row, lo, hi), one entry per piece, row-major
    (every row's pieces in column order; pieces of a row are 1024 bools long but at its
    ends)."""
    padded = -(-S // TRIL_CHUNK) * TRIL_CHUNK
    row = np.arange(N, dtype=np.int64)
    first = row * padded // TRIL_BLOCK_ELEMENTS
    last = (row * padded + S - 1) // TRIL_BLOCK_ELEMENTS
    n = last - first + 1
    row = np.repeat(row, n)
    block = np.repeat(first, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    lo = np.maximum(block * TRIL_BLOCK_ELEMENTS - row * padded, 0)
    hi = np.minimum((block + 1) * TRIL_BLOCK_ELEMENTS - row * padded, S)
    return block, row, lo, hi


def tril_piece_read_sectors(row, lo, hi, S):
    """Sectors a block of ``tril()`` loads of its piece [lo, hi) of ``row``: those of the
    row's loaded :func:`tril_row_width` bools (counted from the row's start, as
    :func:`tril_read_bytes`) whose first byte is in the piece, from column 32·⌈lo/32⌉ —
    over a row's pieces, ⌈w/32⌉, the closed form's. A sector that a block edge cuts is
    the next block's (both blocks' warps touch it on the GPU; 1024-bool blocks cut one
    only when S is not a multiple of 32). numpy-broadcasting."""
    end = np.minimum(hi, tril_row_width(row, S))
    return np.maximum(-(-end // SECTOR_BYTES) + (lo // -SECTOR_BYTES), 0)


def tril_spill_bytes(row, lo, hi, S):
    """Bytes of a piece's :func:`tril_piece_read_sectors` past the end of its row (S not
    a multiple of 32): the next row's first bytes, where the memory goes on
    (numpy-broadcasting)."""
    first = -(lo // -SECTOR_BYTES) * SECTOR_BYTES
    end = first + SECTOR_BYTES * tril_piece_read_sectors(row, lo, hi, S)
    return np.where(end > first, np.maximum(end - S, 0), 0)


def _once_per_call(x: Arrays) -> Cost:
    """The kernels PyTorch's math backend runs once per call, whatever the batch and heads
    (``_scaled_dot_product_attention_math`` and ``_safe_softmax``, attention.cpp, PyTorch
    2.5–2.11), at the compute width ``x.e``: ``_safe_softmax``'s ``scalar_tensor(0.0)``
    (one element written: one 32-byte sector, :func:`_elementwise`); for the causal mask
    ``ones((N, S), bool)`` (N·S bools written), ``tril()`` (:func:`tril_read_bytes` read,
    N·S written, each TRIL_CHUNK times), the two one-element tensors of
    ``where(mask, 0.0, scalar_tensor(-inf))`` and the where itself (N·S bools read, its
    two one-element operands broadcast, :func:`broadcast_load_bytes` each, the (N, S)
    additive mask written). Blocks: one per query tile (Br rows of the mask), tril's
    PyTorch's grid (:func:`tril_blocks`), one per one-element fill. The trace runs the same
    kernels (memsim.trace.sched_standard.build)."""
    B = np.asarray(x.B, dtype=np.float64)
    causal = np.asarray(1.0 if x.geometry.kind == "causal" else 0.0) + 0 * B
    ns = x.N * x.S * 1.0
    q_tiles = -(-x.N // x.Br) + 0 * B
    none = 0 * B
    scalar = _elementwise(none, SECTOR_BYTES + none, none, 1.0 + none)   # one element
    tril_read = tril_read_bytes(x.N, x.S)
    build = (_elementwise(none, ns, none, q_tiles)                   # ones
             + _elementwise(TRIL_CHUNK * tril_read, TRIL_CHUNK * ns, none,     # tril
                            tril_blocks(x.N, x.S) + 0 * B)
             + scalar + scalar                                        # -inf, 0.0
             + _elementwise(ns + 2 * broadcast_load_bytes(x.N, x.S, x.Bc), ns * x.e,
                            none, q_tiles))
    return scalar + build.times(causal)


def _repeat_hbm_bytes(x: Arrays) -> tuple:
    """(read, write) bytes of the repeated accesses at one address that the no-reuse
    counts of :func:`_math_backend_kernels` and :func:`_once_per_call` charge to HBM and
    the L2 estimate keeps from it (their first access reaches HBM, the rest hit L1 / L2):
    ``all``'s flag byte stored once per 32-byte sector; the one-element fills' element
    stored once per sector (SECTOR_BYTES / e stores of e bytes); ``tril()``'s sectors
    loaded and its bools stored TRIL_CHUNK times; the causal where's two broadcast
    operands, e bytes each from HBM once (numpy-broadcasting)."""
    causal = 1.0 if x.geometry.kind == "causal" else 0.0
    rows = np.asarray(x.B, dtype=np.float64) * x.H * x.N
    ns = x.N * x.S * 1.0
    scalars = 1.0 + 2 * causal               # the softmax's zero; the mask's 0.0 and -inf
    reads = causal * ((TRIL_CHUNK - 1) * tril_read_bytes(x.N, x.S)
                      + 2 * broadcast_load_bytes(x.N, x.S, x.Bc) - 2 * x.e)
    writes = (rows * (SECTOR_BYTES - 1) + scalars * (SECTOR_BYTES - x.e)
              + causal * (TRIL_CHUNK - 1) * ns)
    return reads, writes


def _forward_computed(x: Arrays) -> Cost:
    # standard_blockskip's softmax reads S twice; PyTorch's, softmax_reads times
    passes = softmax_reads(x.S, x.e)
    extra_reads = (passes - 2) * np.asarray(x.B, dtype=np.float64) * x.H * x.N * x.S * x.e
    softmax = Cost(global_read_bytes=extra_reads, hbm_read_bytes=extra_reads)
    mask_add = _mask_kernel(x, mask_e=x.e)
    around = _math_backend_kernels(x)
    once = _once_per_call(x)
    d = dense(x)
    # the no-reuse counts; the L2 estimate below replaces their HBM bytes (standard_blockskip
    # would otherwise estimate them once more, for nothing)
    rereads = _q_rereads(x)
    cost = (standard_blockskip.forward(replace(d, slots=None)) + rereads + softmax
            + mask_add + around + once)
    if x.slots is None:
        return cost
    # the L2 estimate over QKᵀ, the mask add (as masked_fill over S), softmax and PV: S
    # may stay in L2 from kernel to kernel (standard_blockskip.forward_hbm_bytes); the
    # (N, S) mask reaches HBM whole, the elementwise kernels around hit as
    # _around_hbm_reads says
    reads, writes = standard_blockskip.forward_hbm_bytes(
        d, d.tiles(), masked_fill=x.geometry.kind != "full", softmax_reads=passes)
    mask_reads = mask_add.hbm_read_bytes - _mask_kernel(x).hbm_read_bytes
    # the head groups sharing a KV head write one scaled copy of it (dirty once)
    shared_k = (x.groups - np.asarray(x.B, dtype=np.float64) * x.K) * x.S * x.D * x.e
    reread_misses = rereads.hbm_read_bytes * (1 - _q_reread_hit_fraction(x))
    # the once-per-call kernels (a few N·S bytes) and all's flags: each sector once
    repeat_reads, repeat_writes = _repeat_hbm_bytes(x)
    return replace(cost, hbm_read_bytes=reads + reread_misses + mask_reads
                   + _around_hbm_reads(x) + once.hbm_read_bytes - repeat_reads,
                   hbm_write_bytes=writes + around.hbm_write_bytes - shared_k
                   + once.hbm_write_bytes - repeat_writes)


def _around_hbm_reads(x: Arrays):
    """HBM reads of the elementwise kernels of :func:`_math_backend_kernels` under the L2
    estimate: Q and K come from HBM (inputs), and QKᵀ's first reads of their scaled
    copies hit as much as the scale kernels leave; isneginf's S, all's flags and where's P hit
    as much as :func:`handoff_hit_fraction` leaves of them from the kernel before
    (softmax: S and P; isneginf: S and the flags; isneginf and all before where). Every
    dirty unit is written back once, so their writes are the no-reuse ones."""
    B = np.asarray(x.B, dtype=np.float64)
    scores = B * x.H * x.N * x.S * x.e
    flags = scores / x.e
    rows = B * x.H * x.N
    cap = x.l2_bytes
    to_isneginf = handoff_hit_fraction(2 * scores, scores + flags, cap)
    to_all = handoff_hit_fraction(scores + flags, flags + rows, cap)
    # where reads P; since softmax wrote it: all of S, P, the flags and the row flags,
    # and where's own output before that unit
    to_where = handoff_hit_fraction(2 * scores + flags + rows, 3 * scores + flags + rows,
                                    cap)
    q_in = x.groups * x.N * x.hpb * x.D * x.e
    k_in = B * x.K * x.S * x.D * x.e     # the head groups of a KV head share it in L2
    # QKᵀ's first reads of the scaled copies (counted as misses by forward_hbm_bytes)
    # hit what the scale kernels left: Q's copy with scale_k's K and copy in between
    qk = q_in + k_in + scores
    to_qk_q = handoff_hit_fraction(2 * q_in, qk, cap - 2 * k_in)
    to_qk_k = handoff_hit_fraction(2 * k_in, qk, cap)
    # Q and K read from HBM by the scale kernels, less the copies' hits in QKᵀ
    return (q_in * (1 - to_qk_q) + k_in * (1 - to_qk_k)
            + scores * (1 - to_isneginf) + flags * (1 - to_all)
            + scores * (1 - to_where) + rows)


def softmax_backward_reads(S, e):
    """Reads of each element of the softmax gradient's input (autograd's dP ∘ P) by
    PyTorch's softmax backward kernel for rows of S elements of e bytes
    (aten/src/ATen/native/cuda/SoftMax.cu, host_softmax_backward): 1 where the row fits
    the warp kernel (softmax_warp_backward) or shared memory (cunn_SoftMaxBackwardSmem,
    the same bounds as the forward's, :func:`softmax_reads`), else 2 (cunn_SoftMaxBackward:
    the row sum, then the output pass); numpy-broadcasting."""
    return np.where(softmax_reads(S, e) == 1, 1, 2)


def backward(x: Arrays) -> Cost:
    """Eager backward as autograd runs it through the math backend (PyTorch 2.5–2.11), in
    its order, at the compute width (:func:`compute_e`: fp32 for 2-byte storage):

        dO → fp32          2-byte storage: ToCopyBackward of the output's cast
        dP = dO Vᵀ         BmmBackward (self) — standard_blockskip's dP kernel
        dV = Pᵀ dO         BmmBackward (mat2), over the saved fp32 P
        tmp = dP ∘ P       softmax_backward_cuda_out's ``grad * output``
        dS                 _softmax_backward_data(tmp, P) (``_safe_softmax``'s derivative):
                           tmp read :func:`softmax_backward_reads` times, P once
        dQ' = dS K', dK' = dSᵀ Q'   BmmBackward of QKᵀ over the scaled copies it saved
        dK = dK'·√scale, dQ = dQ'·√scale   MulBackward of the two scalings
        dV, dK, dQ → storage   2-byte storage: ToCopyBackward of the input casts

    The mask adds no kernel: ``attn.add_(mask)``'s gradient is the identity (PyTorch
    before 2.5 used ``masked_fill``, whose gradient zeroed dS once more). Not modelled:
    under GQA, repeat_interleave's gradient (a sum over each head group), and the copy
    AccumulateGrad makes of dK when the leaf's strides differ from the transposed
    gradient's. The trace runs the same kernels (memsim.trace.sched_standard)."""
    return _backward_computed(replace(x, e=compute_e(x.e))) + _backward_copies(x)


def _backward_computed(x: Arrays) -> Cost:
    """The backward's kernels at ``x``'s width (the compute width), over the dense scores:
    standard_blockskip's five (dV, dP, dS in two passes over P and dP, dQ, dK), with its
    dS kernel's counts replaced by PyTorch's two (tmp = dP ∘ P; softmax backward), and the
    two scale gradients. Under the L2 estimate the five kernels' HBM bytes are
    standard_blockskip's closed-form estimate (its dS kernel standing in for tmp and the
    softmax backward); the bytes the two split kernels move beyond it, and the scale
    gradients', are counted at no reuse."""
    d = dense(x)
    B = np.asarray(x.B, dtype=np.float64)
    scores = B * x.H * x.N * x.S * x.e
    r = softmax_backward_reads(x.S, x.e)
    # tmp: P, dP read, tmp written; softmax backward: tmp r times, P once, dS written —
    # against standard_blockskip's dS kernel (P, dP twice each; dS written)
    extra_r, extra_w = (3 + r - 4) * scores, scores
    q_blocks = x.groups * -(-x.N // x.Br)
    split = Cost(global_read_bytes=extra_r, global_write_bytes=extra_w,
                 hbm_read_bytes=extra_r, hbm_write_bytes=extra_w,
                 launches=1.0 + 0 * scores, blocks=q_blocks + 0 * scores)
    q_elems = x.groups * x.N * x.hpb * x.D
    k_elems = x.groups * x.S * x.D
    scale_grads = (_elementwise(k_elems * x.e, k_elems * x.e, k_elems,
                                x.groups * -(-x.S // x.Bc))
                   + _elementwise(q_elems * x.e, q_elems * x.e, q_elems, q_blocks))
    # with ``slots``, standard_blockskip's closed-form L2 estimate of its five kernels
    # (memsim.algorithms._l2_backward.standard_backward_hbm)
    return standard_blockskip.backward(d) + split + scale_grads


def _backward_copies(x: Arrays) -> Cost:
    """The backward's dtype copies for 2-byte storage (none otherwise): dO to fp32, then
    dV, dK and dQ back to the storage dtype (under MLA no dV: V is part of the latent K,
    as :func:`_dtype_copies`), one elementwise launch each, per head group as the forward's
    copies; every byte from and to HBM."""
    up = np.where(np.asarray(x.e) == 2, 1.0, 0.0)
    e, c = x.e, compute_e(x.e)
    q_blocks = x.groups * -(-x.N // x.Br)
    k_blocks = x.groups * -(-x.S // x.Bc)
    do = x.groups * x.N * x.hpb * x.Dv
    dq = x.groups * x.N * x.hpb * x.D
    dk = x.groups * x.S * x.D
    dv = np.where(x.mla, 0.0, x.groups * x.S * x.Dv)
    none = 0 * do
    copies = (_elementwise(do * e, do * c, none, q_blocks)
              + _elementwise(dv * c, dv * e, none, k_blocks * (dv > 0))
              + _elementwise(dk * c, dk * e, none, k_blocks)
              + _elementwise(dq * c, dq * e, none, q_blocks))
    launches = 3 + np.where(x.mla, 0.0, 1.0)
    return replace(copies.times(up), launches=up * launches + none)
