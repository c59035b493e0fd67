"""DeepSeek Sparse Attention (DeepSeek-V3.2-Exp report §1) as three Numba-CUDA kernels,
from a memsim Tiling.

1. ``indexer``: grid ``(⌈N/Br_I⌉, B)`` with ``Br_I = index_block_q`` query tokens of all
   H_I indexer heads per block. The block stages its indexer queries once and walks the
   active causal key tiles, staging each tile of indexer keys; one thread per (token, key)
   computes I = Σ_h w_h·ReLU(q_h·k) for every key of the tile, masked ones too, and writes
   the fp32 logit (−∞ where j > p) to ``logits (B, N, S)``. The per-token weights w are
   staged in shared memory beside the tiles.
2. ``topk``: one block per query token, grid ``(N, B)``. The block streams the token's
   span of logits once (the active tiles of its indexer query tile) in chunks of one value
   per thread; values above the current threshold are appended to a shared candidate
   buffer of ``2^⌈log2(k + threads)⌉`` entries, which is sorted (bitonic) and cut back to
   the k best whenever the next chunk might not fit, raising the threshold to the k-th
   value. It writes the min(k, p + 1) chosen key indices (int32) to ``idx (B, N, k)``.
3. ``sparse``: one block per (query token, head group, batch), grid ``(N, H/hpb, B)``,
   rows = the hpb heads of that token (one token per block: the Tiling's block_q does not
   apply). The block reads the token's indices in tiles of Bc (staged in shared memory),
   gathers those keys' latents (K, and V unless MLA, where V = K[..., :Dv]) into shared
   memory and runs FlashAttention-2's online softmax over them; O and the fp32 logsumexp
   are written once.

When decoding (``kv_splits`` > 1 and all N queries in one indexer tile, as
memsim.algorithms.dsa counts it) the indexer's key tiles are cut into ``kv_splits`` ranges,
one block each (logits of different keys need no reduction), and so are the ⌈min(k, S)/Bc⌉
gathered tiles of the sparse kernel, grid ``(N·s'', H/hpb, B)``: every one of its blocks
reads Q and writes an fp32 partial — O = 0 and lse = −∞ when the range lies past a short
selection — which the split-KV reduce kernel (kernels/decode.py) combines into O.

Indexer inputs ``q_idx (B, N, H_I, D_I)`` and ``k_idx (B, S, D_I)`` are stored at the
indexer's dtype — fp32 or fp16 here (the model's fp8 with per-128 scales has no Numba
type) — and ``w_idx (B, N, H_I)`` in fp32.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, int32

from memsim.errors import InputError
from memsim.problem import AttentionProblem
from memsim.tiling import Tiling

from . import reference
from .common import (
    F32,
    I32,
    NEG_INF,
    ONE,
    OPS_EXP,
    OPS_MATMUL_FLOPS,
    ZERO,
    Launch,
    attention_inputs,
    ceil_div,
    check_tiling,
    numba_storage,
    online_softmax_update,
    poisoned,
    random_tensor,
    skewed_dot,
    softmax_scale,
    storage_dtype,
)
from .decode import reduce_kernel, used_splits

ALGORITHM = "dsa"
OUTPUTS = ("logits", "idx", "o", "lse")


@functools.cache
def indexer_kernel(tiling: Tiling, count: bool = False, split: bool = False):
    """``(q_idx, w_idx, k_idx, logits, n_q, n_kv, ops)``: causal indexer logits over the
    active tiles of each query tile of ``index_block_q`` tokens; with ``split`` the one
    query tile's key tiles are cut into ``kv_splits`` ranges, one per block."""
    BRI, BC, T = tiling.index_block_q, tiling.block_kv, tiling.threads
    HI, DI, SPLITS = tiling.index_heads, tiling.index_head_dim, tiling.kv_splits
    QROWS = BRI * HI                     # indexer query rows, ordered (token, head)
    ISTORE = numba_storage(tiling.index_elem_bytes)
    COUNT, SPLIT = count, split

    @cuda.jit
    def kernel(q_idx, w_idx, k_idx, logits, n_q, n_kv, ops):
        tid = cuda.threadIdx.x
        b = cuda.blockIdx.y
        qi_sh = cuda.shared.array((QROWS, DI), ISTORE)
        ki_sh = cuda.shared.array((BC, DI), ISTORE)
        w_sh = cuda.shared.array((BRI, HI), float32)
        n_mac = 0
        i0 = 0 if SPLIT else cuda.blockIdx.x * BRI
        n_tok = min(BRI, n_q - i0)
        lo = n_kv - n_q + i0
        t_first = 0
        t_last = (lo + n_tok - 1) // BC                    # causal: keys 0 .. last p
        if SPLIT:
            per = (t_last + SPLITS) // SPLITS
            t_first = cuda.blockIdx.x * per
            t_last = min(t_last, t_first + per - 1)
            if t_first > t_last:
                return
        for e in range(tid, n_tok * HI * DI, T):
            r = e // DI
            t = r // HI
            qi_sh[r, e - r * DI] = q_idx[b, i0 + t, r - t * HI, e - r * DI]
        for e in range(tid, n_tok * HI, T):
            t = e // HI
            w_sh[t, e - t * HI] = w_idx[b, i0 + t, e - t * HI]
        for tile in range(t_first, t_last + 1):
            j0 = tile * BC
            nk = min(BC, n_kv - j0)
            cuda.syncthreads()
            for e in range(tid, nk * DI, T):
                c = e // DI
                ki_sh[c, e - c * DI] = k_idx[b, j0 + c, e - c * DI]
            cuda.syncthreads()
            for e in range(tid, n_tok * nk, T):
                t = e // nk
                c = e - t * nk
                score = ZERO
                for hh in range(HI):
                    dot = skewed_dot(qi_sh, t * HI + hh, ki_sh, c, DI, c % DI)
                    if COUNT:
                        n_mac += DI
                    score += w_sh[t, hh] * max(dot, ZERO)
                logits[b, i0 + t, j0 + c] = score if j0 + c <= lo + t else NEG_INF
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)

    return kernel


def _buffer_entries(top_k: int, threads: int) -> int:
    """Candidate buffer of the top-k kernel: a power of two ≥ k + threads."""
    return 1 << (top_k + threads - 1).bit_length()


@functools.cache
def topk_kernel(tiling: Tiling, top_k: int):
    """``(logits, idx, n_q, n_kv, ops)``: the min(k, p + 1) largest logits of each query."""
    BRI, BC, T, K = tiling.index_block_q, tiling.block_kv, tiling.threads, top_k
    BUF = _buffer_entries(top_k, tiling.threads)

    @cuda.jit(device=True)
    def compact(buf_val, buf_idx, state_i, state_f, n, tid):
        """Sort the n candidates descending (bitonic, −∞ padding) and keep the best k."""
        for e in range(n + tid, BUF, T):
            buf_val[e] = NEG_INF
            buf_idx[e] = -1
        cuda.syncthreads()
        size = 2
        while size <= BUF:
            stride = size // 2
            while stride > 0:
                for e in range(tid, BUF // 2, T):
                    lo = 2 * e - (e & (stride - 1))
                    hi = lo + stride
                    a = buf_val[lo]
                    z = buf_val[hi]
                    if (a < z) == ((lo & size) == 0):
                        buf_val[lo] = z
                        buf_val[hi] = a
                        j = buf_idx[lo]
                        buf_idx[lo] = buf_idx[hi]
                        buf_idx[hi] = j
                cuda.syncthreads()
                stride //= 2
            size *= 2
        if tid == 0:
            state_i[0] = min(n, K)
            state_f[0] = buf_val[K - 1] if n >= K else NEG_INF
        cuda.syncthreads()

    @cuda.jit
    def kernel(logits, idx, n_q, n_kv, ops):
        tid = cuda.threadIdx.x
        i = cuda.blockIdx.x
        b = cuda.blockIdx.y
        buf_val = cuda.shared.array(BUF, float32)
        buf_idx = cuda.shared.array(BUF, int32)
        state_i = cuda.shared.array(1, int32)             # candidates held
        state_f = cuda.shared.array(1, float32)           # admission threshold
        p = n_kv - n_q + i
        tile_last = n_kv - n_q + min((i // BRI + 1) * BRI, n_q) - 1
        span = min(n_kv, (tile_last // BC + 1) * BC)      # the indexer wrote 0 .. span−1
        if tid == 0:
            state_i[0] = 0
            state_f[0] = NEG_INF
        cuda.syncthreads()
        for start in range(0, span, T):
            j = start + tid
            if j < span:
                x = logits[b, i, j]
                if x > state_f[0]:
                    slot = cuda.atomic.add(state_i, 0, 1)
                    buf_val[slot] = x
                    buf_idx[slot] = j
            cuda.syncthreads()
            n = state_i[0]
            cuda.syncthreads()                            # all read n before it changes
            if n > BUF - T:                               # the next chunk might not fit
                compact(buf_val, buf_idx, state_i, state_f, n, tid)
        n = state_i[0]
        if n > K:
            compact(buf_val, buf_idx, state_i, state_f, n, tid)
        for c in range(tid, min(K, p + 1), T):
            idx[b, i, c] = buf_idx[c]

    return kernel


@functools.cache
def sparse_kernel(tiling: Tiling, top_k: int, count: bool = False, split: bool = False):
    """``(q, k, v, idx, o, lse, n_q, n_kv, group, ops)``: attention of each query token
    over its gathered keys. With ``split`` block x = (token, split) takes its share of the
    ⌈min(k, S)/Bc⌉ gathered tiles and ``o``, ``lse`` are the fp32 partials
    ``(B, H, kv_splits, N, Dv)`` and ``(B, H, kv_splits, N)``."""
    BC, HPB, T = tiling.block_kv, tiling.heads_per_block, tiling.threads
    D, DV, MLA, SPLITS = tiling.head_dim, tiling.head_dim_v, tiling.mla, tiling.kv_splits
    RPT = ceil_div(HPB, T)
    STORE = numba_storage(tiling.elem_bytes)
    SCALE = softmax_scale(D)
    VR, VC = (1, 1) if MLA else (BC, DV)
    STAGE_O = DV <= D and not split
    K, COUNT, SPLIT = top_k, count, split

    @cuda.jit
    def kernel(q, k, v, idx, o, lse, n_q, n_kv, group, ops):
        tid = cuda.threadIdx.x
        i = cuda.blockIdx.x
        sp = 0
        if SPLIT:                       # blocks (token, split) over the non-empty splits
            all_tiles = (min(K, n_kv) + BC - 1) // BC
            per = (all_tiles + SPLITS - 1) // SPLITS
            used = (all_tiles + per - 1) // per
            i = cuda.blockIdx.x // used
            sp = cuda.blockIdx.x - i * used
        h0 = cuda.blockIdx.y * HPB
        b = cuda.blockIdx.z
        kvh = h0 // group
        q_sh = cuda.shared.array((HPB, D), STORE)
        k_sh = cuda.shared.array((BC, D), STORE)
        v_sh = cuda.shared.array((VR, VC), STORE)
        j_sh = cuda.shared.array(BC, int32)
        acc = cuda.local.array((RPT, DV), float32)
        s = cuda.local.array(BC, float32)
        m = cuda.local.array(RPT, float32)
        ell = cuda.local.array(RPT, float32)
        n_mac = 0
        n_exp = 0
        n_sel = min(K, n_kv - n_q + i + 1)
        g_first = 0                                   # this block's gathered keys
        g_end = n_sel
        if SPLIT:
            g_first = min(n_sel, sp * per * BC)
            g_end = min(n_sel, (sp + 1) * per * BC)
        for e in range(tid, HPB * D, T):
            q_sh[e // D, e % D] = q[b, i, h0 + e // D, e % D]
        for slot in range(RPT):
            m[slot] = NEG_INF
            ell[slot] = ZERO
            for dv in range(DV):
                acc[slot, dv] = ZERO
        for t0 in range(g_first, g_end, BC):
            nk = min(BC, g_end - t0)
            cuda.syncthreads()
            for c in range(tid, nk, T):
                j_sh[c] = idx[b, i, t0 + c]
            cuda.syncthreads()
            for e in range(tid, nk * D, T):                   # gather the chosen latents
                c = e // D
                k_sh[c, e - c * D] = k[b, j_sh[c], kvh, e - c * D]
            if not MLA:
                for e in range(tid, nk * DV, T):
                    c = e // DV
                    v_sh[c, e - c * DV] = v[b, j_sh[c], kvh, e - c * DV]
            cuda.syncthreads()
            for slot in range(RPT):
                r = tid + slot * T
                if r >= HPB:
                    continue
                m_tile = NEG_INF
                for c in range(nk):
                    dot = skewed_dot(q_sh, r, k_sh, c, D, r % D)
                    if COUNT:
                        n_mac += D
                    s[c] = dot * SCALE
                    m_tile = max(m_tile, s[c])
                # online softmax (FA-2 Alg. 1 lines 8-10), −∞-guarded; under MLA V is
                # the first Dv columns of the K tile
                online_softmax_update(acc, m, ell, slot, s, nk, m_tile,
                                      k_sh if MLA else v_sh, DV)
                if COUNT:
                    n_mac += nk * DV
                    n_exp += nk + 1
        if STAGE_O:
            cuda.syncthreads()
        for slot in range(RPT):
            r = tid + slot * T
            if r >= HPB:
                continue
            has = ell[slot] > ZERO        # a split can hold none of a short selection
            inv = ONE / ell[slot] if has else ZERO
            lse_row = m[slot] + float32(math.log(ell[slot])) if has else NEG_INF
            for dv in range(DV):
                if SPLIT:
                    o[b, h0 + r, sp, i, dv] = acc[slot, dv] * inv
                elif STAGE_O:
                    q_sh[r, dv] = STORE(acc[slot, dv] * inv)
                else:
                    o[b, i, h0 + r, dv] = STORE(acc[slot, dv] * inv)
            if SPLIT:
                lse[b, h0 + r, sp, i] = lse_row
            else:
                lse[b, h0 + r, i] = lse_row
        if STAGE_O:
            cuda.syncthreads()
            for e in range(tid, HPB * DV, T):
                o[b, i, h0 + e // DV, e % DV] = q_sh[e // DV, e % DV]
        if COUNT:
            cuda.atomic.add(ops, OPS_MATMUL_FLOPS, 2 * n_mac)
            cuda.atomic.add(ops, OPS_EXP, n_exp)

    return kernel


def _check(problem: AttentionProblem, tiling: Tiling) -> None:
    check_tiling(problem, tiling, ALGORITHM)
    idx = problem.indexer
    if problem.mask.kind != "topk" or idx is None:
        raise InputError("mask", problem.mask.describe(),
                         "dsa kernels need a top-k mask and an explicit indexer")
    storage_dtype(idx.dtype)
    if (tiling.index_heads, tiling.index_head_dim) != (idx.heads, idx.head_dim) or \
            tiling.index_elem_bytes != storage_dtype(idx.dtype).itemsize:
        raise InputError("tiling", tiling.describe(), "was made for another indexer")
    if tiling.index_block_q < 1:
        raise InputError("index_block_q", tiling.index_block_q, "must be at least 1")


def decoding(problem: AttentionProblem, tiling: Tiling) -> bool:
    """Whether the indexer and sparse kernels run split (memsim.algorithms.dsa: kv_splits > 1
    and all queries in one indexer tile), followed by a reduce kernel."""
    return tiling.kv_splits > 1 and tiling.index_block_q >= problem.N


def launches(problem: AttentionProblem, tiling: Tiling, count: bool = False) -> list[Launch]:
    """Indexer, top-k and sparse attention launches (and the reduce when decoding)."""
    _check(problem, tiling)
    p, k, bc = problem, problem.mask.top_k, tiling.block_kv
    v = "k" if p.mla else "v"
    groups = p.H // tiling.heads_per_block
    split = decoding(p, tiling)
    if not split:
        return [
            Launch("dsa.indexer", indexer_kernel(tiling, count),
                   (ceil_div(p.N, tiling.index_block_q), p.B), tiling.threads,
                   ("q_idx", "w_idx", "k_idx", "logits"), (p.N, p.S)),
            Launch("dsa.topk", topk_kernel(tiling, k), (p.N, p.B), tiling.threads,
                   ("logits", "idx"), (p.N, p.S)),
            Launch("dsa.sparse", sparse_kernel(tiling, k, count),
                   (p.N, groups, p.B), tiling.threads,
                   ("q", "k", v, "idx", "o", "lse"), (p.N, p.S, p.H // p.K)),
        ]
    index_splits = used_splits((p.S - 1) // bc + 1, tiling.kv_splits)
    sparse_splits = used_splits(ceil_div(min(k, p.S), bc), tiling.kv_splits)
    return [
        Launch("dsa.indexer", indexer_kernel(tiling, count, split=True),
               (index_splits, p.B), tiling.threads,
               ("q_idx", "w_idx", "k_idx", "logits"), (p.N, p.S)),
        Launch("dsa.topk", topk_kernel(tiling, k), (p.N, p.B), tiling.threads,
               ("logits", "idx"), (p.N, p.S)),
        Launch("dsa.sparse", sparse_kernel(tiling, k, count, split=True),
               (p.N * sparse_splits, groups, p.B), tiling.threads,
               ("q", "k", v, "idx", "o_part", "lse_part"), (p.N, p.S, p.H // p.K)),
        Launch("dsa.reduce",
               reduce_kernel(tiling, p.N * tiling.heads_per_block, count),
               (groups, p.B), tiling.threads, ("o_part", "lse_part", "o"),
               (p.N, sparse_splits)),
    ]


def buffers(problem: AttentionProblem, tiling: Tiling, rng: np.random.Generator,
            logit_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Random attention and indexer inputs; poisoned logits, indices (−1), O and lse (or,
    when decoding, the fp32 partials and O)."""
    _check(problem, tiling)
    p, ix = problem, problem.indexer
    idt = storage_dtype(ix.dtype)
    out = attention_inputs(p, rng, logit_scale)
    out["q_idx"] = random_tensor(rng, (p.B, p.N, ix.heads, ix.head_dim), idt)
    out["w_idx"] = random_tensor(rng, (p.B, p.N, ix.heads), F32)
    out["k_idx"] = random_tensor(rng, (p.B, p.S, ix.head_dim), idt)
    out["logits"] = poisoned((p.B, p.N, p.S), F32)
    out["idx"] = poisoned((p.B, p.N, p.mask.top_k), I32)
    out["o"] = poisoned((p.B, p.N, p.H, p.Dv), storage_dtype(p.dtype))
    if decoding(p, tiling):
        out["o_part"] = poisoned((p.B, p.H, tiling.kv_splits, p.N, p.Dv), F32)
        out["lse_part"] = poisoned((p.B, p.H, tiling.kv_splits, p.N), F32)
    else:
        out["lse"] = poisoned((p.B, p.H, p.N), F32)
    return out


def expected(problem: AttentionProblem, tiling: Tiling,
             bufs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float64 logits (NaN where never written) and the sparse attention over the keys the
    kernel chose (whether they are a valid top-k is :func:`selection_errors`' job)."""
    p = problem
    counts = reference.selected_counts(p.N, p.S, p.mask.top_k)
    chosen = _host(bufs["idx"])
    o, lse = reference.sparse_attention(bufs["q"], bufs["k"], bufs.get("v"), chosen, counts,
                                        p.Dv)
    logits = reference.indexer_logits(bufs["q_idx"], bufs["w_idx"], bufs["k_idx"],
                                      tiling.index_block_q, tiling.block_kv)
    if not decoding(p, tiling):
        return {"logits": logits, "o": o, "lse": lse}
    o_part, lse_part = reference.sparse_partials(
        bufs["q"], bufs["k"], bufs.get("v"), chosen, counts, p.mask.top_k, tiling.block_kv,
        tiling.kv_splits, p.Dv)
    return {"logits": logits, "o": o, "o_part": o_part, "lse_part": lse_part}


def selection_errors(problem: AttentionProblem, tiling: Tiling,
                     bufs: dict[str, np.ndarray]) -> dict[str, float]:
    """0 for ``idx`` if every query's chosen keys are a top-k of the kernel's own logits
    (:func:`valid_top_k`) and nothing beyond them was written; ∞ otherwise."""
    p = problem
    idx = _host(bufs["idx"])
    counts = reference.selected_counts(p.N, p.S, p.mask.top_k)
    unwritten = all((idx[:, i, counts[i]:] == -1).all() for i in range(p.N))
    ok = unwritten and valid_top_k(p, _host(bufs["logits"]), idx, np.arange(p.N))
    return {"idx": 0.0 if ok else float("inf")}


def valid_top_k(problem: AttentionProblem, logits: np.ndarray, idx: np.ndarray,
                rows: np.ndarray) -> bool:
    """Whether, for each query row in ``rows``, ``idx[b, i, :min(k, p + 1)]`` holds that many
    distinct visible keys and no key left out has a larger logit (ties may go either way).
    ``logits (B, N, S)``, ``idx (B, N, k)``."""
    p = problem
    counts = reference.selected_counts(p.N, p.S, p.mask.top_k)
    for b in range(p.B):
        for i in rows:
            chosen = idx[b, i, : counts[i]]
            visible = np.arange(p.S) <= p.S - p.N + i
            if (chosen < 0).any() or (chosen >= p.S).any():
                return False
            if len(set(chosen.tolist())) < counts[i] or not visible[chosen].all():
                return False
            left = visible.copy()
            left[chosen] = False
            if left.any() and logits[b, i, left].max() > logits[b, i, chosen].min():
                return False
    return True


def _host(a) -> np.ndarray:
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)
