"""Mixture-of-experts FFN on one GPU: routing, then a grouped GEMM over the local experts.

Per GPU with expert parallelism ``ep`` and tensor parallelism ``tp`` (TensorRT-LLM/vLLM
fused-MoE layout): the GPU holds ``experts / ep`` experts, each cut to ``inter / tp``
columns. ``tokens`` tokens each pick ``top_k`` experts; an expert gets each token at most
once. Expert loads follow ``distribution``:

- ``"balanced"``: the ``tokens · top_k`` assignments spread as evenly as the experts allow
  (the database's "balanced" rows);
- ``"power_law_<a>"``: the database's skewed routing (aiconfigurator collector/helper.py
  ``power_law_logits_v3`` / ``_generate_power_law_distribution``): each expert's load is an
  independent draw from a power law of exponent ``a`` bounded to [1, 0.8·tokens] (to
  [0.01, 2] when tokens·top_k ≤ experts), scaled to tokens·top_k in all and rounded; experts
  sit on EP ranks in contiguous blocks and the busiest rank is the one measured (every rank
  waits for it). The collector times :data:`DRAWS` such routings and reports their mean, so
  memsim averages the time of the same number of seeded draws (common to every token
  count, so a curve stays smooth).
- ``"strided"``: the aiconfigurator collector's "balanced" routing (collector/helper.py
  ``balanced_logits``, used by collector/trtllm/collect_moe.py and collector/vllm/
  collect_moe.py): with stride s = ⌈E / top_k⌉, token t picks experts
  (t + i·s) mod E (i < top_k) when T ≥ s, else ⌊t·s/T + i·s⌋ mod E. Below s tokens its
  picks are spread over the whole expert range (T per stride block, and the last block
  wraps round onto the first), so an EP rank's contiguous block of experts (TensorRT-LLM's
  local expert ids, vLLM ``determine_expert_map``: rank r holds experts [r·E/ep,
  (r+1)·E/ep); the collector runs rank 0) is touched far more often than an even spread
  of T·top_k assignments would touch it;
- ``"uniform"``: independent uniform routing, expected loads (occupancy of E bins).

The grouped GEMM (CUTLASS grouped / TensorRT-LLM ``moe_gemm``, vLLM/SGLang Triton
``fused_moe``) runs gate+up (``hidden → 2 · inter/tp``, gated) then down
(``inter/tp → hidden``) as tiles of every touched expert in one launch: per tile shape the
tile count is Σ_e ⌈t_e / tile_m⌉ · ⌈n / tile_n⌉ (an expert with 3 tokens costs a whole
tile: the efficiency falls with tokens per expert), waves over the SMs; the weights of
every touched local expert are read from HBM once. The tiles are the kernel's own
(:func:`grouped_tiles`):

- CUTLASS grouped GEMM on SM90 (TensorRT-LLM, FlashInfer): tile_m 128 or 256 only, tile_n
  16 … 256, 2-CTA clusters (TensorRT-LLM cutlass_heuristic.cpp
  ``get_candidate_tiles_sm90``, GROUPED_GEMM: "M tile must be 128 for Grouped GEMM");
- CUTLASS / TRT-LLM-gen grouped GEMMs on SM100: tile_m 64 or 128, tile_n 8 … 256
  (FlashInfer jit/gemm/cutlass/generate_kernels.py, SM100 grouped operations);
- Triton ``fused_moe`` (:func:`runs_triton`: vLLM off Blackwell but for its FlashInfer
  fp8 kernels on Hopper, SGLang on Hopper): BLOCK_SIZE_M
  16 … 128 × BLOCK_SIZE_N 32 … 256 from its tuned configs, no clusters; vLLM's under EP
  also runs a program per block of the other ranks' experts (:func:`triton_ep_terms`);
- OpenAI ``triton_kernels`` ``matmul_ogs`` (TensorRT-LLM's MXFP4 MoE on Hopper, class
  ``moe/trtllm/w4a16_mxfp4``: :func:`runs_triton_kernels`): the same Triton tile range;
- other architectures: memsim's generic CUTLASS tile set.

Routing, permutation, the activation between the two GEMMs (TensorRT-LLM ``doActivation``,
vLLM/SGLang ``silu_and_mul``: reads the rows' 16-bit gate and up outputs, writes their
product in the second GEMM's input type), the final weighted sum and the GEMMs' own reads
of their rows and writes of their outputs are memory-bound passes that gather and scatter
rows by expert; they run at their own fraction of the HBM bandwidth (the class's
``hbm_act``, apart from the weight stream's ``hbm``).
``time_s`` = floor (+ :func:`problem_walk_s` on TensorRT-LLM's block-scaled fp8) + Σ per
GEMM [max(matmul, l2, weight stream) + waves · the class's ``cta_s``, a tile's fixed time
beyond its stream] + the passes (+ :func:`token_walk_s` on TensorRT-LLM's Triton MXFP4 MoE).

Why the two HBM terms are apart (aiconfigurator h200 TensorRT-LLM bf16, 6144/2048, 256
experts, top-8, TP1 EP1, balanced): from 1 to 32 tokens the time doubles with the touched
experts (0.166, 0.300, 0.573, 1.131, 2.22, 4.46 ms: the weights at 0.9 of the datasheet
bandwidth, H100/H200 1.44 = their bandwidth ratio), flat to 512 tokens (4.59 ms), then it
grows with the rows (6.32 ms at 4096) long before the MMAs bind; at TP 32 (64 columns per
expert) the rows' passes are most of the time. One efficiency for both could not hold
decode and prefill rows together (the last fit: +37 % on H200 bf16 below one token per
expert, −20 % above 64).

vLLM's per-tensor fp8 MoE on Hopper (ModelOpt fp8 → FlashInfer's CUTLASS fused MoE, the
database's ``vllm_modeloptfp8moe_flashinfer_cutlass_flashinferexperts``) runs untuned: the
collector calls it without FlashInfer's autotuner (collector/vllm/collect_moe.py has no
autotune step), and FlashInfer's binding then takes its fallback tactic, the first profile
(flashinfer csrc/fused_moe/cutlass_backend/flashinfer_cutlass_fused_moe_binding.cu,
``profile_id == -1 ? mAllProfiles.front()``), on SM90 the first grouped-GEMM candidate:
CtaShape128x16x128B, cluster 1x1x1 (csrc/nv_internal/tensorrt_llm/kernels/cutlass_kernels/
cutlass_heuristic.cpp ``get_candidate_tiles_sm90``, ``get_candidate_configs_sm90``;
:data:`FLASHINFER_SM90_FALLBACK`). Every expert's rows are padded to 128 and its outputs cut
into 16 columns (6144/2048: 256 + 384 = 640 tiles per touched expert, one token or 128).
That orientation (the tile's 128 rows are tokens, its 16 columns outputs) is not read from
the source but inferred from the measured steps: the time is flat from 1 to 128 tokens per
expert, then steps (below). So the kernel is bound by its tiles' waves (the class's
``tensor`` and ``cta_s``), the same on H100 and H200, as the database shows. The fitted
``tensor`` (0.1005) is not an MMA efficiency: it is an effective time per padded k-step of
the 128 × 16 fallback tile (a wave's ``2·128·16·k / (peak / SMs · tensor)``), which takes
in whatever that tile spends per k-step besides its MMAs; the fitted ``hbm_act`` (1.0) sits
at its fit bound (aiconfigurator vllm fp8, H100
over H200 time, median over 533 rows per token count: 1.00 at 1–32 tokens, 1.02 at 512,
1.03 at 1024), not by its weight stream (H200 would be 1.43× faster); the time is flat in
tokens while every expert holds ≤ 128 rows and steps at 128 (h200, 6144/2048/256 top-8:
14.1 ms at 32 tokens, 9.0 at 4096, 22.6 at 6144, 17.9 at 8192). Not modelled: a full tile
is cheaper than a part-filled one (9.0 vs 13.6–14 ms above, H200; H100 11.3) and full tiles
run 1.1–1.25× faster on H200 than on H100, so the class over-predicts from about 2048 tokens
(memsim's error there +14 … +48 %). (The last fit streamed the weights at 0.14 of HBM with
the best of CUTLASS's tiles: H100 +18 %, H200 −10 % median bias.)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from memsim.ops import OpPrediction, as_float, bound_of, cc_major, out, positive, resolve_gpu
from memsim.ops.classes import kernel_class
from memsim.ops.gemm import CLUSTER, OUT_BYTES, TILES

SM90_GROUPED = ((128, 16), (128, 32), (128, 64), (128, 128), (128, 256), (256, 128))
SM100_GROUPED = tuple((m, n) for m in (64, 128) for n in (8, 16, 32, 64, 128, 192, 256))
TRITON = tuple((m, n) for m in (16, 32, 64, 128) for n in (32, 64, 128, 256))
# FlashInfer's CUTLASS fused MoE on SM90 untuned: its fallback tactic, the first grouped-GEMM
# candidate (flashinfer csrc/nv_internal/tensorrt_llm/kernels/cutlass_kernels/
# cutlass_heuristic.cpp get_candidate_tiles_sm90: CtaShape128x16x128B, cluster 1x1x1)
FLASHINFER_SM90_FALLBACK = ((128, 16),)

DRAWS = 5  # routings per power-law row (collector/trtllm/collect_moe.py: num_iter = 5)
SEED = 0   # memsim's draws are seeded: a prediction is a function of its inputs
# weight dtype → (tensor-core rate dtype, weight bytes per element, activation bytes)
MOE_DTYPES = {"bf16": ("bf16", 2.0, 2.0), "fp16": ("fp16", 2.0, 2.0),
              "fp8": ("fp8", 1.0, 1.0), "fp8_block": ("fp8", 1.0, 1.0),
              "w4a16_mxfp4": ("bf16", 0.5, 2.0), "int4_wo": ("bf16", 0.5, 2.0)}


def expert_loads(tokens: np.ndarray, experts: int, top_k: int, ep: int,
                 distribution: str = "balanced") -> np.ndarray:
    """Tokens per local expert of the busiest EP rank, per routing draw:
    shape tokens.shape + (draws, experts / ep); one draw unless the routing is random."""
    from memsim.errors import InputError

    T = np.asarray(tokens, dtype=float)[..., None, None]
    A = T * top_k
    idx = np.arange(experts, dtype=float)
    if distribution == "balanced":
        base = np.floor(A / experts)
        extra = A - base * experts  # experts that get one more
        loads = base + (idx < extra)
        return loads[..., 0::ep]  # rank 0 holds experts 0, ep, 2·ep, ... (round-robin)
    if distribution == "strided":
        return strided_loads(T[..., 0, 0], experts, top_k, ep)[..., None, :]
    if distribution == "uniform":
        loads = experts * (1.0 - (1.0 - 1.0 / experts) ** A)  # expected experts touched
        loads = np.broadcast_to(A / np.maximum(loads, 1.0), T.shape[:-1] + (experts,)) * (
            idx < loads)
        return loads[..., 0::ep]
    if not distribution.startswith("power_law"):
        raise InputError("distribution", distribution,
                         "must be balanced, strided, uniform or power_law_<alpha>")
    try:
        alpha = float(distribution.removeprefix("power_law").lstrip("_") or 1.01)
    except ValueError:
        raise InputError("distribution", distribution,
                         "must be balanced, strided, uniform or power_law_<alpha>") from None
    if alpha <= 0:
        raise InputError("distribution", distribution, "needs a power-law exponent > 0")
    u = np.random.default_rng(SEED).random((DRAWS, experts))
    many = A > experts
    x = _bounded_power_law(u, alpha, np.where(many, 1.0, 0.01),
                           np.where(many, np.maximum(0.8 * T, 1.0 + 1e-6), 2.0))
    loads = _integer(_capped(A * x / x.sum(axis=-1, keepdims=True), x, T), A)
    per_rank = loads.reshape(loads.shape[:-1] + (ep, experts // ep))
    busiest = np.argmax(per_rank.sum(axis=-1), axis=-1)[..., None, None]
    return np.take_along_axis(per_rank, busiest, axis=-2)[..., 0, :]


def strided_loads(tokens: np.ndarray, experts: int, top_k: int, ep: int) -> np.ndarray:
    """Tokens per local expert of EP rank 0 under the collector's "balanced" routing
    (module docstring, ``"strided"``): shape tokens.shape + (experts / ep,). A token's
    picks are counted once each (a pick that repeats an expert, possible only where the
    last stride block wraps round, leaves that token one expert short)."""
    T = np.asarray(tokens, dtype=float)
    out = np.empty(T.shape + (experts // ep,))
    for value in np.unique(T):
        out[T == value] = _strided_rank0(max(int(round(value)), 1), experts, top_k, ep)
    return out


@functools.lru_cache(maxsize=4096)
def _strided_rank0(tokens: int, experts: int, top_k: int, ep: int) -> np.ndarray:
    """:func:`strided_loads` of one token count (cached: every dtype and TP of a model
    shape routes alike). Pick i of token t is (b_t + i·s) mod E with b_t = t (T ≥ s) or
    ⌊t·s/T⌋ (T < s, i·s being whole): each distinct shift i·s mod E adds the base set
    (b_t) once, and two picks of a token meet only where their shifts do.

    Out of the model: shapes whose shifts collide (s divides E and E/s < k, e.g. E = 60,
    k = 22). There ``balanced_logits`` gives a token fewer than k distinct non-zero
    logits and the router's top-k fills the rest from zero-logit ties, which this count
    leaves out (a token is counted on its distinct picks only). Only the database's rows
    route "strided" (whole-model sums route "balanced"), and the expert counts / top-k of
    the models memsim ships (256/8, 128/1, 16/1, 8/2) would not collide."""
    stride = -(-experts // top_k)
    shifts = np.unique(np.arange(top_k) * stride % experts)
    if tokens >= stride:
        # b_t = 0 … T−1: every expert ⌊T/E⌋ times per shift, and the T mod E experts
        # from the shift on once more
        full, rem = divmod(tokens, experts)
        hit = (shifts[:, None] + np.arange(rem)[None, :]) % experts
        loads = full * len(shifts) + np.bincount(hit.ravel(), minlength=experts)
    else:
        base = np.floor(np.arange(tokens) * stride / tokens).astype(np.int64)
        hit = (base[None, :] + shifts[:, None]) % experts
        loads = np.bincount(hit.ravel(), minlength=experts)
    out = loads[:experts // ep].astype(float)
    out.setflags(write=False)
    return out


def _bounded_power_law(u: np.ndarray, alpha: float, lo: np.ndarray, hi: np.ndarray
                       ) -> np.ndarray:
    """Inverse CDF of a power law ∝ x^−alpha on [lo, hi] at quantiles ``u``."""
    if abs(alpha - 1.0) < 1e-9:
        return lo * (hi / lo) ** u
    e = 1.0 - alpha
    return ((hi ** e - lo ** e) * u + lo ** e) ** (1.0 / e)


def _capped(loads: np.ndarray, share: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Loads capped at ``cap`` (a token picks an expert once), the excess handed to the
    uncapped experts in proportion to their share (water-filling), so the total is kept."""
    for _ in range(64):
        excess = np.sum(np.maximum(loads - cap, 0.0), axis=-1, keepdims=True)
        loads = np.minimum(loads, cap)
        if not np.any(excess > 1e-9):
            break
        open_share = np.where(loads < cap, share, 0.0)
        loads = loads + excess * open_share / np.maximum(
            open_share.sum(axis=-1, keepdims=True), 1e-300)
    return loads


def _integer(loads: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Round expected loads to whole tokens summing to ``total`` (largest remainders), the
    most likely routing of a small batch: 8 assignments touch the 8 most popular experts."""
    base = np.floor(loads)
    missing = np.round(total[..., 0] - base.sum(axis=-1))
    order = np.argsort(-(loads - base), axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(loads.shape[-1]), axis=-1)
    return base + (rank < missing[..., None])


def runs_triton(backend: str | None, dtype: str, ep: int, gpu: Any) -> bool:
    """Whether ``backend`` runs the Triton ``fused_moe`` for ``dtype`` with ``ep``-way expert
    parallelism on ``gpu`` (the database's kernel_source column): SGLang on Hopper; vLLM's
    bf16 / fp16 on Ampere, Ada and Hopper (a100 ``vllm_fused_moe``, l40s and h100
    ``vllm_unquantizedfusedmoe_triton_tritonexperts``), its fp8 and fp8_block on Ampere and
    Ada at every EP (l40s ``vllm_modeloptfp8moe_triton_tritonexperts``,
    ``vllm_fp8moe_triton_tritonexperts``) and its fp8_block on Hopper without EP. vLLM on
    Blackwell runs FlashInfer's kernels (:func:`kernel_backend`), its Marlin and OAI-Triton
    MoE (int4_wo, w4a16_mxfp4) are no Triton ``fused_moe``."""
    from memsim.ops import check_backend

    backend, major = check_backend(backend), cc_major(gpu)
    if backend == "sglang":
        return major == 9
    if backend != "vllm" or major not in (8, 9):
        return False
    return (dtype in ("bf16", "fp16") or (major == 8 and dtype in ("fp8", "fp8_block"))
            or (dtype == "fp8_block" and ep == 1))


def writes_ep_zeros(backend: str | None, dtype: str, ep: int, gpu: Any) -> bool:
    """Whether the MoE kernel runs a program per block of the other EP ranks' experts that
    only writes zeros (:func:`triton_ep_terms`): vLLM's Triton ``fused_moe`` with an
    ``expert_map``, i.e. with EP, on every GPU where it runs (:func:`runs_triton`)."""
    from memsim.ops import check_backend

    return check_backend(backend) == "vllm" and ep > 1 and runs_triton(backend, dtype, ep, gpu)


def kernel_backend(backend: str | None, gpu: Any) -> str | None:
    """Whose MoE kernels ``backend`` runs on ``gpu``. On Blackwell vLLM's fused MoE runs
    FlashInfer's TensorRT-LLM kernels (the b200 rows of aiconfigurator's vLLM table name them
    ``…_flashinfer_trtllm_trtllm{bf16,fp8}experts…`` and ``…_flashinfer_cutlass_…``, not
    Triton): TensorRT-LLM's class. Every other GPU: ``backend`` itself."""
    from memsim.ops import check_backend

    backend = check_backend(backend)
    return "trtllm" if backend == "vllm" and cc_major(gpu) >= 10 else backend


def class_variant(backend: str | None, dtype: str, gpu: Any, ep: int = 1) -> str:
    """The kernel class (``moe/<backend>/<variant>``) that times ``dtype`` with ``ep``-way
    expert parallelism on ``gpu``: its fp8 family, except on vLLM
    - per-tensor fp8 off Hopper, which runs Triton ``fused_moe`` (the database's l40s rows:
      ``vllm_modeloptfp8moe_triton_tritonexperts``), the kernel of vLLM's bf16 class, not
      the FlashInfer CUTLASS kernel its fp8 class was fitted on;
    - block-scaled fp8 on Hopper with EP, which runs FlashInfer's CUTLASS block-scaled MoE
      (``vllm_fp8moe_flashinfer_cutlass_flashinferexperts``), not the Triton ``fused_moe``
      of its rows without EP (``vllm_fp8moe_triton_tritonexperts``; :func:`runs_triton`):
      ``fp8_block_flashinfer``;
    and TensorRT-LLM's MXFP4 MoE on Hopper, a Triton kernel of its own
    (:func:`runs_triton_kernels`)."""
    from memsim.ops import check_backend

    vllm = check_backend(backend) == "vllm"
    if dtype == "fp8" and vllm and cc_major(gpu) != 9:
        return "bf16"
    if dtype == "fp8_block" and vllm and cc_major(gpu) == 9 and not runs_triton(
            backend, dtype, ep, gpu):
        return "fp8_block_flashinfer"
    if runs_triton_kernels(backend, dtype, gpu):
        return "w4a16_mxfp4"
    return {"fp8": "fp8", "fp8_block": "fp8_block"}.get(dtype, "bf16")


def runs_triton_kernels(backend: str | None, dtype: str, gpu: Any) -> bool:
    """Whether ``backend`` runs ``dtype`` as TensorRT-LLM's ``TritonFusedMoE``: MXFP4
    weights with bf16 activations on Hopper. aiconfigurator's collector sets
    ``moe_backend = "triton"`` for gpt-oss on 86 < SM < 100 ("Hopper: use triton backend
    for best performance"; CUTLASS elsewhere before Blackwell, TRT-LLM-gen on Blackwell:
    ai-dynamo/aiconfigurator collector/trtllm/collect_moe.py ``run_moe_torch``), and the
    database's rows carry kernel_source ``moe_torch_flow``. That backend is OpenAI's
    ``triton_kernels``: top-k and EP pruning of a routing bitmatrix, then two
    ``matmul_ogs`` calls that gather the token rows and scatter the outputs themselves,
    the MXFP4 weights upcast in the kernel (NVIDIA/TensorRT-LLM
    tensorrt_llm/_torch/modules/fused_moe/fused_moe_triton.py ``TritonEPRouter``,
    ``matmul_ogs``), its tiles chosen by ``opt_flags`` (block_m 16 … 128 from the tokens
    per expert: triton-lang/triton python/triton_kernels/triton_kernels/matmul_ogs_details/
    opt_flags.py ``make_default_opt_flags_nvidia``), no clusters."""
    from memsim.ops import check_backend

    return check_backend(backend) == "trtllm" and dtype == "w4a16_mxfp4" and cc_major(gpu) == 9


def runs_flashinfer_fallback(backend: str | None, dtype: str, gpu: Any) -> bool:
    """Whether ``backend`` runs ``dtype`` as FlashInfer's CUTLASS fused MoE at its fallback
    tactic: vLLM's per-tensor fp8 MoE on Hopper, untuned (module docstring)."""
    from memsim.ops import check_backend

    return check_backend(backend) == "vllm" and dtype == "fp8" and cc_major(gpu) == 9


def requant_bytes_per_row(backend: str | None, dtype: str, gpu: Any, hidden: float,
                          inter_l: float) -> float:
    """Bytes per local row that TensorRT-LLM's block-scaled fp8 MoE on Hopper moves beyond
    memsim's fp8 rows (0 for every other kernel). Its rows stay 16-bit: the permute copies
    bf16 rows and the activation writes bf16 (``CutlassFp8BlockScaleGemmRunner<
    __nv_bfloat16, __nv_fp8_e4m3, __nv_bfloat16>``), and each grouped GEMM first quantizes
    its bf16 input to fp8 with one fp32 scale per 128 elements (NVIDIA/TensorRT-LLM
    cpp/tensorrt_llm/kernels/cutlass_kernels/fp8_blockscale_gemm/fp8_blockscale_gemm.cu
    @0b349035, ``moeGemm``: ``internal_quantize_a`` → ``fp8_grouped_gemm_run`` on the
    runner's workspace ``fp8_mat_a`` / ``per_token_per_128c_scales``). Per row: both
    quantizations read 16-bit and write fp8 + scales, (hidden + inter/tp) · (2 + 1 + 4/128),
    and the activation writes inter/tp · (2 − 1) more than an fp8 product. Blackwell's
    fp8_block MoE (DeepGEMM, the database's ``deepgemm`` rows) quantizes once per token
    before the permute: not this path."""
    from memsim.ops import check_backend

    if check_backend(backend) != "trtllm" or dtype != "fp8_block" or cc_major(gpu) != 9:
        return 0.0
    quant = OUT_BYTES + 1.0 + 4.0 / 128.0
    return (hidden + inter_l) * quant + inter_l * (OUT_BYTES - 1.0)


def route_permute_bytes(backend: str | None, dtype: str, gpu: Any, tokens: np.ndarray,
                        local_rows: np.ndarray, hidden: float, top_k: int, passes_ep: int,
                        e_act: float) -> np.ndarray:
    """HBM bytes of the passes around the GEMMs that move ``hidden``-wide rows: routing,
    permute (gather in), un-permute + weighted sum (scatter back). ``tokens``: tokens
    entering the layer, ``local_rows``: rows routed to the local experts (same shape).

    TensorRT-LLM's CUTLASS MoE (``CutlassFusedMoE``; also FlashInfer's copy of it, vLLM on
    Blackwell) touches every token only to write its output row; the rest follows the
    local rows (NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/cutlass_kernels/
    moe_gemm/moe_kernels.cu):

    - ``expandInputRowsKernel`` loops over the permuted rows below
      ``expert_first_token_offset[num_experts_per_node]``, the local experts' rows only,
      reading each one's source token row and writing it permuted (``e_act`` bytes each);
    - ``finalizeMoeRoutingKernel`` (no all-to-all: the collector runs one rank) launches a
      block per token, sums that token's local rows (16-bit, ``continue`` past the other
      ranks' experts) and writes every token's 16-bit output row, zeros where none is
      local (``finalizeMoeRoutingKernelLauncher``: "must fill invalid output tokens with
      zeros");
    - per-tensor fp8 quantises every token's bf16 input before the op: the permute copies
      rows without converting them (``expandInputRowsKernel`` asserts the input type is
      the expanded type unless it quantises to NVFP4/MXFP8), so its caller does it
      (tensorrt_llm/_torch/modules/fused_moe/fused_moe_cutlass.py ``quantize_input``:
      ``static_quantize_e4m3_per_tensor``, reads 2 bytes and writes 1 per element);
      block-scaled fp8 quantises inside the GEMMs (:func:`requant_bytes_per_row`).

    Other kernels (Triton ``fused_moe``, OpenAI ``triton_kernels``): routing and the
    permute read every token, and ``tokens · top_k / passes_ep`` rows are gathered in and
    scattered back, all 16-bit."""
    from memsim.ops import check_backend

    if check_backend(backend) != "trtllm" or runs_triton_kernels(backend, dtype, gpu):
        return tokens * hidden * OUT_BYTES * (2.0 + 2.0 * top_k / passes_ep)
    quant = OUT_BYTES + 1.0 if dtype == "fp8" else 0.0
    return (tokens * hidden * (OUT_BYTES + quant)
            + local_rows * hidden * (2.0 * e_act + OUT_BYTES))


def problem_walk_s(backend: str | None, dtype: str, gpu: Any, local_experts: int,
                   cls: Any) -> float:
    """Seconds per call that TensorRT-LLM's block-scaled fp8 MoE spends walking its local
    experts, touched or not (0 for every other kernel). On Hopper its two grouped GEMMs are
    DeepGEMM ``GroupedWithOffset`` kernels over ``num_problems`` = the local experts, whose
    scheduler finds each tile's expert in ``problem_m_offsets``, and each GEMM's input
    quantisation (``scale_1x128_kernel``) searches the same offsets (NVIDIA/TensorRT-LLM
    cpp/tensorrt_llm/kernels/cutlass_kernels/fp8_blockscale_gemm/
    fp8_blockscale_gemm_kernel.cuh, ``fp8_grouped_gemm_run`` → ``grouped_gemm_dispatch``);
    on Blackwell it runs DeepGEMM's grouped GEMMs as well (``DeepGemmFusedMoE``, the
    database's ``deepgemm`` rows). ``backend`` is the framework asked for: vLLM on Blackwell
    runs FlashInfer's kernels (:func:`kernel_backend`), which show no such walk. The class's
    ``row_s`` per local expert at the fitted GPUs' SM clock. Evidence (aiconfigurator
    fp8_block, 7168/2048, 384 experts top-8, TP16, 1 token: h100 146, 84, 54, 39, 34 µs at
    EP 1, 2, 4, 8, 16, h200 alike, b200 138, 83, 54, 42, 36 µs: about 0.3 µs per local
    expert, where the 8 touched experts' weights take 3 µs; vLLM's b200 rows, 256 experts
    top-8: 19–21 µs at every EP)."""
    from memsim.ops import check_backend
    from memsim.ops.classes import clock_ratio

    if check_backend(backend) != "trtllm" or dtype != "fp8_block" or cc_major(gpu) not in (9, 10):
        return 0.0
    return local_experts * cls.row_s * clock_ratio(gpu)


def token_walk_s(backend: str | None, dtype: str, gpu: Any, tokens: np.ndarray, cls: Any
                 ) -> np.ndarray:
    """Seconds per call that TensorRT-LLM's Triton MXFP4 MoE on Hopper
    (:func:`runs_triton_kernels`) spends per token entering the layer beyond its roofline
    terms (0 for every other kernel): the class's ``row_s`` per token at the fitted GPUs'
    SM clock. Its router takes the top-k of every token and, with EP, prunes the routing
    bitmatrix to the local experts and compacts it (``TritonEPRouter``: ``topk``,
    ``_routing_shift_bitmatrix_range``, ``compaction``, ``routing_from_bitmatrix``), and
    the second ``matmul_ogs`` scatters into every token's output row. Evidence
    (aiconfigurator TensorRT-LLM w4a16_mxfp4, 2880/2880, 128 experts top-4, TP1,
    balanced): with one local expert (EP128) 73 µs at 1 token, 368 µs at 4096, 1167 µs
    at 16384 on H100, 71/363/1162 µs on H200: 67 ns per token, alike on both GPUs (H200's
    HBM is 1.43× H100's), so not bandwidth; EP 32/64/128 take 1347/1240/1167 µs, so it
    does not follow the local rows. Which of those kernels serialises is not read from
    the source: the term is fitted."""
    if not runs_triton_kernels(backend, dtype, gpu):
        return np.zeros_like(tokens)
    from memsim.ops.classes import clock_ratio

    return tokens * cls.row_s * clock_ratio(gpu)


def matmul_ogs_block_m(tokens: np.ndarray, top_k: int, local_experts: int) -> np.ndarray:
    """block_m that ``triton_kernels``' ``opt_flags`` picks on NVIDIA GPUs (shape of
    ``tokens``): tokens per expert = max(1, m // n_expts_tot) with m every gate of the
    routing (``tokens · top_k``; EP pruning keeps the pruned gates in the index arrays)
    and n_expts_tot the local experts; at most 64 (ragged, likely memory-bound):
    max(16, min(next_pow2(2 · tpe), 64)), else max(16, min(next_pow2(tpe), 128))
    (triton-lang/triton python/triton_kernels/triton_kernels/matmul_ogs_details/
    opt_flags.py ``make_default_opt_flags_nvidia``). Evidence (aiconfigurator TensorRT-LLM
    w4a16_mxfp4 2880/2880, 128 experts top-4, EP2, H100): the time steps where this
    block_m doubles, 388 → 416 µs at 128 → 160 tokens, 417 → 532 at 256 → 320, 574 → 1124
    at 1024 → 1536; counted on the local rows instead, the last two steps would fall at
    256 → 320 and nowhere."""
    T = np.asarray(tokens, dtype=float)
    tpe = np.maximum(1.0, np.floor(T * top_k / local_experts))
    pow2 = lambda x: 2.0 ** np.ceil(np.log2(x))  # noqa: E731
    return np.where(tpe <= 64, np.clip(pow2(2.0 * tpe), 16, 64), np.clip(pow2(tpe), 16, 128))


def grouped_tiles(backend: str | None, dtype: str, ep: int, gpu: Any
                  ) -> tuple[tuple[tuple[int, int], ...], int]:
    """(tile shapes, CTAs per cluster) of the grouped GEMM ``backend`` runs for ``dtype``
    with ``ep``-way expert parallelism on ``gpu`` (module docstring)."""
    if runs_flashinfer_fallback(backend, dtype, gpu):
        return FLASHINFER_SM90_FALLBACK, 1
    if runs_triton_kernels(backend, dtype, gpu):
        return TRITON, 1
    major = cc_major(gpu)
    if major >= 10:
        return SM100_GROUPED, CLUSTER
    if runs_triton(backend, dtype, ep, gpu):
        return TRITON, 1
    if major != 9:
        return TILES, CLUSTER
    return SM90_GROUPED, CLUSTER


def _grouped_terms(loads: np.ndarray, n: float, k: float, gpu: Any, cls: Any, rate: str,
                   e_act: float, e_w: float,
                   tiles: tuple[tuple[int, int], ...] = TILES,
                   cluster: int = CLUSTER, block_m: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """One grouped GEMM (per expert: loads × k times k × n) — best of ``tiles``, of those
    with tile_m = ``block_m`` where the kernel chooses it (shape loads.shape[:-1]).

    Terms (s): ``matmul`` (whole tiles: an expert's rows padded to tile_m, in waves over the
    SMs), ``l2`` (operand panels: each tile reads its expert's actual rows — TMA zero-fills
    the rows past an expert's end without reading them — and half its weight panel, 2-CTA
    multicast) and ``hbm`` (each touched local expert's weights streamed once). The GEMM's
    activation reads and writes are counted with the other activation passes (module
    docstring), so ``hbm_bytes`` here is the weight stream only. Each wave of tiles adds
    the class's ``cta_s``, a tile's fixed time beyond its stream."""
    from memsim.ops.classes import clock_ratio

    sms = float(gpu.spec.sm_count)
    per_sm = gpu.peak_flop_per_s("tensor", rate) * cls.eff("tensor") / sms
    hbm_bw = gpu.spec.hbm_bandwidth_bytes_per_s * cls.eff("hbm")
    l2_bw = gpu.spec.l2_bandwidth_bytes_per_s * cls.eff("l2")
    touched = np.sum(np.minimum(loads, 1.0), axis=-1)  # expected experts with ≥ 1 token
    rows = np.sum(loads, axis=-1)
    tile_s = cls.cta_s * clock_ratio(gpu)  # SM-seconds at the fitted GPUs' clock
    hbm_bytes = touched * n * k * e_w
    hbm = hbm_bytes / hbm_bw
    best = None
    for tm, tn in tiles:
        count = np.sum(np.ceil(loads / tm), axis=-1) * np.ceil(n / tn)
        waves = np.maximum(np.ceil(count / sms), 1.0)
        matmul = waves * 2.0 * tm * tn * k / per_sm
        l2 = (rows * e_act * np.ceil(n / tn) + count * tn * e_w / cluster) * k / l2_bw
        # a tile's fixed time beyond its stream (the class's cta_s): its prologue and
        # epilogue, and a CTA moving to another expert's tile rewrites its TMA descriptors
        # in shared memory and fences them (CUTLASS ptr-array grouped GEMM: kernel/
        # sm90_gemm_array_tma_warpspecialized_cooperative.hpp, did_batch_change →
        # collective tensormaps_perform_update, tensormaps_cp_fence_release); a large share
        # of a tile with a short K loop (high TP)
        t = np.maximum(np.maximum(matmul, l2), hbm) + waves * tile_s
        if block_m is not None:
            t = np.where(block_m == tm, t, np.inf)
        if best is None:
            best = {"t": t, "matmul": matmul, "l2": l2, "tile_m": np.full_like(t, tm)}
        else:
            better = t < best["t"]
            best = {"t": np.where(better, t, best["t"]),
                    "matmul": np.where(better, matmul, best["matmul"]),
                    "l2": np.where(better, l2, best["l2"]),
                    "tile_m": np.where(better, tm, best["tile_m"])}
    best.update(hbm=hbm, hbm_bytes=hbm_bytes, flops=2.0 * rows * n * k)
    return best


def triton_ep_terms(loads: np.ndarray, every: np.ndarray, n: float, k: float, gpu: Any,
                    cls: Any, rate: str, e_act: float, e_w: float) -> dict[str, np.ndarray]:
    """One grouped GEMM of vLLM's Triton ``fused_moe`` under expert parallelism, in seconds;
    same keys as :func:`_grouped_terms`. ``loads``: rows per local expert, ``every``: rows
    per expert of the whole model (the same routing draw), shape (..., draws, experts).

    The kernel's grid covers every expert's padded rows, local or not: ``moe_align_block_size``
    aligns all global experts' rows to BLOCK_SIZE_M, then maps the other ranks' experts to
    -1 (``expert_ids = expert_map[expert_ids]``), and a program whose block has expert -1
    writes zeros into its BLOCK_SIZE_M × BLOCK_SIZE_N outputs and returns (vllm-project/vllm
    @05be9924 model_executor/layers/fused_moe/moe_align_block_size.py
    ``moe_align_block_size``; fused_moe.py ``fused_moe_kernel``: ``if off_experts == -1:
    write_zeros_to_output``). The rows are vLLM 0.24.0 (the tables' collection_meta.yaml),
    whose source is not at hand; the same path holds where ``moe_align_block_size`` takes
    ``ignore_invalid_experts`` (default False; True drops these programs). Per tile shape,
    those programs add their waves of the class's ``cta_s`` to the local tiles' time; the
    best tile shape is taken with them. Not yet counted (a refit of the class is owed):
    their stores, 16-bit zeros into both GEMMs' outputs for the other ranks' token rows
    ((T·top_k − local rows) · n · 2 B; ``write_zeros_to_output`` masks the padding rows
    out), HBM traffic of this kernel. With the class as fitted, counted as a serial pass at
    ``hbm_act`` they put H100's bf16 EP rows above 2048 tokens at +16 % median bias (−1 %
    without); added to the kernel's own ``hbm`` term, overlapping the local tiles' MMAs,
    H100's EP rows went 5.5/19.2 → 7.6/21.8 % median/p90 |error| and H200's 6.6/18.8 →
    5.6/17.2 %. Also not counted: the grid's programs past ``num_tokens_post_padded`` (it
    has ⌈(T·top_k + E·(BLOCK_SIZE_M − 1)) / BLOCK_SIZE_M⌉ rows of programs, EP or not),
    which return after one scalar load (``if pid_m * BLOCK_SIZE_M >= num_tokens_post_padded:
    return``): no source gives a launch-and-exit program's cost, and a tile's ``cta_s``
    (its prologue and epilogue) would overstate it."""
    from memsim.ops.classes import clock_ratio

    sms = float(gpu.spec.sm_count)
    tile_s = cls.cta_s * clock_ratio(gpu)
    best: dict[str, np.ndarray] | None = None
    for tm, tn in TRITON:
        terms = _grouped_terms(loads, n, k, gpu, cls, rate, e_act, e_w, ((tm, tn),), 1)
        zero_programs = (np.sum(np.ceil(every / tm), axis=-1)
                         - np.sum(np.ceil(loads / tm), axis=-1)) * np.ceil(n / tn)
        terms["t"] = terms["t"] + np.ceil(zero_programs / sms) * tile_s
        if best is None:
            best = terms
        else:
            better = terms["t"] < best["t"]
            best = {key: np.where(better, terms[key], best[key]) for key in best}
    return best


def predict(tokens: Any, hidden: int, inter: int, experts: int, top_k: int, *, tp: int = 1,
            ep: int = 1, dtype: str = "bf16", gpu: Any = "h100-sxm",
            backend: str | None = None, distribution: str = "balanced",
            gated: bool = True) -> OpPrediction:
    """Time of one MoE FFN layer on the busiest GPU (module docstring).

    ``tokens``: tokens entering the layer (array ok); ``hidden``: model width; ``inter``:
    one expert's intermediate width (before TP); ``dtype``: weight type (bf16, fp16, fp8,
    fp8_block, w4a16_mxfp4); ``gated``: SwiGLU (gate and up projections) or not.
    """
    from memsim.errors import InputError, closest

    positive("tokens", tokens)
    for name, v in (("hidden", hidden), ("inter", inter), ("experts", experts),
                    ("top_k", top_k), ("tp", tp), ("ep", ep)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise InputError(name, v, "must be a positive integer")
    if top_k > experts:
        raise InputError("top_k", top_k, f"must not exceed experts={experts}")
    if experts % ep:
        raise InputError("ep", ep, f"must divide experts={experts}")
    if inter % tp:
        raise InputError("tp", tp, f"must divide inter={inter}")
    if dtype not in MOE_DTYPES:
        raise InputError("dtype", dtype, f"must be one of {', '.join(MOE_DTYPES)}"
                         + closest(dtype, MOE_DTYPES))
    gpu = resolve_gpu(gpu)
    framework, backend = backend, kernel_backend(backend, gpu)
    cls = kernel_class("moe", backend, class_variant(backend, dtype, gpu, ep))
    rate, e_w, e_act = MOE_DTYPES[dtype]
    (T,) = as_float(tokens)
    loads = expert_loads(T, experts, top_k, ep, distribution)
    inter_l = inter / tp
    g = 2.0 if gated else 1.0          # up-projection outputs per intermediate column
    if writes_ep_zeros(backend, dtype, ep, gpu):
        every = expert_loads(T, experts, top_k, 1, distribution)
        up = triton_ep_terms(loads, every, g * inter_l, float(hidden), gpu, cls, rate, e_act,
                             e_w)
        down = triton_ep_terms(loads, every, float(hidden), inter_l, gpu, cls, rate, e_act,
                               e_w)
    else:
        tiles, cluster = grouped_tiles(backend, dtype, ep, gpu)
        block_m = (np.broadcast_to(matmul_ogs_block_m(T, top_k, experts // ep)[..., None],
                                   loads.shape[:-1])
                   if runs_triton_kernels(backend, dtype, gpu) else None)
        up = _grouped_terms(loads, g * inter_l, float(hidden), gpu, cls, rate, e_act, e_w,
                            tiles, cluster, block_m)
        down = _grouped_terms(loads, float(hidden), inter_l, gpu, cls, rate, e_act, e_w,
                              tiles, cluster, block_m)
    # The activation traffic, memory-bound and serial with the weight streams: routing,
    # permute and un-permute + weighted sum (:func:`route_permute_bytes`); the GEMMs read
    # their rows (k · e_act) and write their outputs (n · 16-bit), and the activation reads
    # gate and up and writes its product. Triton fused_moe sizes its intermediate buffers
    # and runs silu_and_mul and moe_sum over all tokens · top_k rows, local or not (vllm
    # fused_moe.py: intermediate_cache1/2/3); CUTLASS MoE permutes only the local experts'
    # rows. These passes gather and scatter rows by expert (TensorRT-LLM
    # ``expandInputRowsKernel`` / ``finalizeMoeRoutingKernel``, the GEMMs' permuted rows):
    # they run at their own fraction of the HBM bandwidth, the class's ``hbm_act``.
    local_rows = np.sum(loads, axis=-1)
    passes_ep = 1 if runs_triton(backend, dtype, ep, gpu) else ep
    rows = np.maximum(local_rows, T[..., None] * top_k / passes_ep)
    act_bytes = (route_permute_bytes(backend, dtype, gpu, T[..., None], local_rows, hidden,
                                     top_k, passes_ep, e_act)
                 + rows * inter_l * (g * OUT_BYTES + e_act)
                 + local_rows * (hidden * e_act + g * inter_l * OUT_BYTES)
                 + local_rows * (inter_l * e_act + hidden * OUT_BYTES)
                 + local_rows * requant_bytes_per_row(backend, dtype, gpu, hidden, inter_l))
    act_eff = cls.efficiency.get("hbm_act", cls.eff("hbm"))
    passes = act_bytes / (gpu.spec.hbm_bandwidth_bytes_per_s * act_eff)
    # every quantity per routing draw (last axis), then their mean: the measured latency is
    # the mean over the draws
    mean = lambda v: np.mean(np.broadcast_to(v, up["t"].shape), axis=-1)  # noqa: E731
    terms = {"matmul": mean(up["matmul"] + down["matmul"]), "l2": mean(up["l2"] + down["l2"]),
             "hbm": mean(up["hbm"] + down["hbm"]), "act": mean(passes)}
    route = token_walk_s(backend, dtype, gpu, T, cls)
    if runs_triton_kernels(backend, dtype, gpu):
        terms["route"] = route
    gemm_s = mean(up["t"] + down["t"] + passes) + route
    # the fixed time per call: the class's floor and the local experts' walk
    floor = np.full_like(T, cls.floor_s + problem_walk_s(framework, dtype, gpu, experts // ep,
                                                          cls))
    touched = np.sum(np.minimum(loads, 1.0), axis=-1)
    return OpPrediction(
        time_s=out(floor + gemm_s), bound=bound_of(terms, floor),
        flops=out(mean(up["flops"] + down["flops"])),
        hbm_bytes=out(mean(up["hbm_bytes"] + down["hbm_bytes"] + act_bytes)),
        launch_s=out(floor), terms_s={k: out(v) for k, v in terms.items()},
        detail={"kernel_class": cls.name, "distribution": distribution,
                "local_experts": experts // ep,
                "touched_local_experts": out(mean(touched)),
                "tokens_per_touched_expert": out(mean(np.sum(loads, axis=-1)
                                                      / np.maximum(touched, 1e-30))),
                "tile_m_up": out(mean(up["tile_m"]))})
