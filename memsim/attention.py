"""Public API for one attention call: problem + GPU + algorithm → Cost, Tiling, Timing.

    >>> from memsim.attention import predict
    >>> from memsim.problem import AttentionProblem
    >>> p = AttentionProblem(batch=1, seq_len=8192, heads=32, kv_heads=8, head_dim=128)
    >>> predict(p, "h100-sxm", "flash2").timing.bound
    'matmul'

:func:`costs` is the vectorised form: numpy arrays of shapes in, a Cost of arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from memsim import limits
from memsim.algorithms import (
    check_supported,
    compulsory_bytes,
    compute_types,
    cost_of,
    from_problem,
    get,
    runs_mask,
)
from memsim.algorithms._arrays import Arrays
from memsim.cost import Cost
from memsim.fmha_v2 import fmha_v2_head_pad
from memsim.geometry import MaskGeometry
from memsim.hardware import GPU, load_gpu
from memsim.problem import AttentionProblem
from memsim.roofline import Timing, busiest_sm_blocks, roofline
from memsim.tiling import Tiling, decode_splits, default_tiling

# The measured kernel class whose calibrated efficiency factors stand for an algorithm:
# PyTorch's flash backend is FlashAttention-2 (forward and split-KV decoding), its math
# backend materialises S and P like `standard`; memsim's own Numba kernels are
# "kernel/<algorithm>" (matmuls on CUDA cores).
PRODUCTION_CLASSES = {"flash2": "sdpa/flash", "flash_decode": "sdpa/flash",
                      "standard": "sdpa/math"}


def attention_cost(problem, gpu, algorithm: str = "flash2", tiling=None,
                   l2_estimate: bool = False) -> tuple[Cost, Tiling]:
    """Cost of one attention call and the Tiling it used: ``(Cost, Tiling)``.

    HBM bytes assume no reuse in L2 (HBM = global), unless ``l2_estimate``: then K/V
    re-reads use the closed-form L2 estimate of :meth:`Arrays.hbm_key_loads`.
    """
    check_supported(algorithm, problem)
    if tiling is None:
        tiling = default_tiling(problem, gpu, algorithm)
    x = from_problem(problem, tiling, gpu if l2_estimate else None)
    return cost_of(algorithm, x, problem.pass_).item(0), tiling


def efficiency_class(gpu: GPU, algorithm: str, matmul_unit: str = "tensor") -> str | None:
    """The kernel class whose fitted factors ``gpu`` has for this prediction, or None."""
    name = f"kernel/{algorithm}" if matmul_unit == "fp32" else PRODUCTION_CLASSES.get(algorithm)
    return name if name in gpu.class_efficiency else None


@dataclass(frozen=True)
class AttentionPrediction:
    problem: AttentionProblem
    gpu: GPU
    algorithm: str
    tiling: Tiling
    cost: Cost
    timing: Timing
    l2_cost: Cost | None = None
    l2_timing: Timing | None = None
    kernel_class: str | None = None
    backend: str | None = None

    @property
    def headline(self) -> Timing:
        """The best estimate: the L2-aware timing (K/V re-reads served by L2), else the
        no-reuse one."""
        return self.timing if self.l2_timing is None else self.l2_timing

    def to_dict(self) -> dict:
        """The JSON contract of ``memsim attention --json``.

        ``time_s``, ``lower_s``, ``upper_s``, ``bound``, ``terms_s`` and ``waves`` are the
        headline (L2-aware) estimate; byte counts are the analytic ones (every global read
        counted at HBM), ``l2_estimate`` holds the L2-aware bytes and ``no_reuse`` the timing
        of the analytic count.
        """
        c = self.cost.to_dict()
        head = self.headline
        return {
            "algorithm": self.algorithm,
            "gpu": self.gpu.name,
            "profile": "calibrated" if self.gpu.calibrated_from else "datasheet",
            "efficiency_class": self.kernel_class,
            "backend": self.backend,
            "problem": self.problem.model_dump(by_alias=True),
            "layout": self.problem.layout,
            "mask": self.problem.mask.describe(),
            "flops": c["flops"],
            "matmul_flops": c["matmul_flops"],
            "vector_flops": c["vector_flops"],
            "exp_ops": c["exp_ops"],
            "global_bytes": c["global_bytes"],
            "global_read_bytes": c["global_read_bytes"],
            "global_write_bytes": c["global_write_bytes"],
            "hbm_read_bytes": c["hbm_read_bytes"],
            "hbm_write_bytes": c["hbm_write_bytes"],
            "hbm_bytes": c["hbm_bytes"],
            "sram_bytes": c["sram_bytes"],
            "sram_read_bytes": c["sram_read_bytes"],
            "sram_write_bytes": c["sram_write_bytes"],
            "workspace_bytes": c["workspace_bytes"],
            "launches": c["launches"],
            "blocks": c["blocks"],
            "time_s": head.time_s,
            "lower_s": head.lower_s,
            "upper_s": head.upper_s,
            "bound": head.bound,
            "launch_s": head.launch_s,
            "arithmetic_intensity_flop_per_byte":
                self.timing.arithmetic_intensity_flop_per_byte,
            "waves": head.waves,
            "terms_s": head.terms_s,
            "no_reuse": {"time_s": self.timing.time_s, "lower_s": self.timing.lower_s,
                         "upper_s": self.timing.upper_s, "bound": self.timing.bound,
                         "terms_s": self.timing.terms_s},
            "tiling": self.tiling.model_dump() | {"sram_bytes": self.tiling.sram_bytes,
                                                   "rows": self.tiling.rows},
            "compulsory_bytes": compulsory_bytes(self.problem),
            "l2_estimate": None if self.l2_cost is None else {
                "hbm_read_bytes": self.l2_cost.to_dict()["hbm_read_bytes"],
                "hbm_bytes": self.l2_cost.to_dict()["hbm_bytes"],
                "time_s": self.l2_timing.time_s,
                "bound": self.l2_timing.bound,
            },
        }


def predict(problem: AttentionProblem, gpu: GPU | str, algorithm: str = "flash2",
            tiling: Tiling | None = None, matmul_unit: str = "tensor",
            backend: str | None = None) -> AttentionPrediction:
    """Cost and time of one attention call (tiling defaults from the GPU).

    With a calibrated profile that fitted factors for this algorithm's kernel class
    (:func:`efficiency_class`), the roofline uses them; ``to_dict()['efficiency_class']``
    says which, and ``['profile']`` whether the profile is datasheet or calibrated.

    ``backend`` ("trtllm", "vllm", "sglang") predicts that framework's production kernel:
    the efficiencies and latency floor fitted for its kernel class
    (:func:`attention_class`, :mod:`memsim.ops.classes`) replace the profile's factors and
    the per-launch constant. None: memsim's own roofline on the profile's factors (and a
    calibrated profile's fitted class), the model the PyTorch/Numba measurements check.

    The one-element case of :func:`predict_arrays` (same cost, same timing).
    """
    if isinstance(gpu, str):
        gpu = load_gpu(gpu)
    a = predict_arrays(problem, gpu, algorithm, tiling=tiling, matmul_unit=matmul_unit,
                       backend=backend)
    return AttentionPrediction(problem, gpu, algorithm, a.tiling, a.cost.item(), a.timing,
                               a.l2_cost.item(), a.l2_timing, a.kernel_class, backend)


@dataclass(frozen=True)
class Timer:
    """How one kernel runs an attention Cost: the roofline's arguments, held once, so that
    :func:`predict`, the silicon comparison and whole-model sums time it alike.

    ``gpu``: the profile with the backend class's efficiencies in place (else as given);
    ``kernel_class``: a calibrated profile's class (no backend); ``floor_s``: the backend
    class's latency floor (None: launches × the profile's launch time); ``serial_s``: the
    class's per-row time over the SMs (arrays like B·N, or None); ``decode_pad``: factor on
    the matmul FLOPs of a production decode kernel, whose MMAs are padded to whole tiles of
    :func:`decode_query_tile` rows (16× the useful FLOPs for MHA in XQA, 2× for 8 heads per
    KV head), None for any other kernel; ``pre_s``: the KV-cache write kernel a production
    prefill runs before its attention kernel (:func:`prepass_bytes`), None where none;
    ``cta_s``: a decode kernel's fixed time per CTA (arrays like B, or None), ``groups``:
    its (sequence, KV head) pairs B·K: then the serial time is that of the busiest SM
    (:func:`decode_serial_s`, the CTAs being ``ctas``, else the Cost's blocks) instead of
    ``serial_s``; ``ctas``: the CTAs a decode kernel launches where that is not the Cost's
    count of non-empty splits (XQA: :func:`xqa_sub_sequences` per (sequence, KV head)),
    None otherwise; ``key_s``, ``keys``: a decode CTA's time per key it streams and the
    keys per (sequence, KV head) (arrays like B): the busiest SM's CTAs stream their
    shares one after another, roofline's memory term "stream" (None: no such term);
    ``matmul_pad``: factor on the MMA FLOPs of a prefill kernel that computes a padded
    head size (:func:`fmha_v2_head_pad`), None for any other kernel; ``partial_s``: the
    seconds a split decode's last CTA spends per partial it merges (:func:`xqa_partial_s`;
    None: its reduction costs one more CTA's fixed steps).
    """

    gpu: GPU
    dtype: str
    matmul_unit: str = "tensor"
    blocks_per_sm: object = None
    kernel_class: str | None = None
    floor_s: float | None = None
    serial_s: object = None
    decode_pad: object = None
    pre_s: object = None
    cta_s: object = None
    groups: object = None
    ctas: object = None
    key_s: object = None
    keys: object = None
    sparse_flops: object = None
    sparse_s: object = None
    prefill_tiles: object = None
    matmul_pad: float | None = None
    exp_overlaps: bool = False
    partial_s: float | None = None

    def kernel_cost(self, cost: Cost) -> Cost:
        """The Cost as the kernel executes it: a production decode kernel reads each staged
        K/V byte from shared memory once (its warps split the keys: FA-2 split-KV,
        TensorRT-LLM XQA, FlashMLA) and computes whole MMA tiles, the scores' softmax of
        the padded rows included (MMAs, exponentials and vector work × ``decode_pad``);
        DSA's SM90 sparse MLA kernel (:func:`sparse_mla_kernel`) leaves the roofline
        (``sparse_flops`` removed, its CTAs timed as ``sparse_s``); otherwise ``cost``
        itself."""
        if self.matmul_pad is not None:
            cost = replace(cost, matmul_flops=cost.matmul_flops * self.matmul_pad)
        if self.sparse_flops is not None:
            cost = replace(cost, matmul_flops=np.maximum(
                cost.matmul_flops - self.sparse_flops, 0.0))
        if self.prefill_tiles is not None:
            # FA3 prefill: whole tiles on the busiest SM, × SMs (memsim.ops.fa3)
            return replace(cost, **self.prefill_tiles)
        if self.decode_pad is None:
            return cost
        return replace(cost, matmul_flops=cost.matmul_flops * self.decode_pad,
                       exp_ops=cost.exp_ops * self.decode_pad,
                       vector_flops=cost.vector_flops * self.decode_pad,
                       sram_read_bytes=cost.sram_write_bytes)

    def __call__(self, cost: Cost) -> Timing:
        """Roofline time of ``cost`` (useful FLOPs) as this kernel runs it."""
        serial_s = self.serial_s
        stream_s = None
        if self.cta_s is not None:
            ctas = cost.blocks if self.ctas is None else self.ctas
            serial_s = decode_serial_s(self.cta_s, ctas, self.groups,
                                       self.gpu.spec.sm_count, self.partial_s)
            if self.key_s is not None:
                # each CTA streams its share of the keys at its own latency-bound pace:
                # the busiest SM's CTAs one after another, or HBM, whichever is slower
                per_sm = busiest_sm_blocks(ctas, self.gpu.spec.sm_count)
                stream_s = per_sm * self.keys / (np.asarray(ctas, dtype=float)
                                                 / self.groups) * self.key_s
        # a separately timed sparse kernel adds as roofline's separate-kernel term, "pre"
        pre_s = self.pre_s
        if self.sparse_s is not None:
            pre_s = self.sparse_s if pre_s is None else np.asarray(pre_s) + self.sparse_s
        return roofline(self.kernel_cost(cost), self.gpu, self.dtype,
                        matmul_unit=self.matmul_unit, blocks_per_sm=self.blocks_per_sm,
                        kernel_class=self.kernel_class, floor_s=self.floor_s,
                        serial_s=serial_s, pre_s=pre_s,
                        serial_overlaps=self.cta_s is None, stream_s=stream_s,
                        exp_overlaps=self.exp_overlaps)


SPARSE_HEAD_TILE = 64  # FlashMLA's sparse kernels: B_H = 64 query heads per CTA


def sparse_mla_kernel(problem: AttentionProblem, gpu: GPU, backend: str | None, B, N,
                      S) -> dict:
    """How ``backend``'s production kernel runs DSA's sparse attention over an MLA latent
    (``problem.mla``; arrays B, N, S): the :class:`Timer` fields it sets, {} for other
    calls (memsim's own roofline of the dsa Cost).

    FlashMLA's sparse kernels (deepseek-ai/FlashMLA, which TensorRT-LLM's and vLLM's DSA
    run) compute one CTA per (query token, 64-head tile), heads padded to whole tiles
    (``B_H`` = 64), over all k = top-k slots (``num_topk_blocks = topk / B_TOPK``), the
    invalid ones (-1, fewer than k causal keys) masked, not skipped. vLLM's
    FLASHMLA_SPARSE picks between FlashMLA's sparse prefill and fp8 decode kernels and
    passes the valid top-k lengths (:mod:`memsim.ops.sparse_mla`, its own classes).
    Where the backend's class ``dsa/<backend>/sparse_sm90`` has a per-row time and the
    GPU is a Hopper, the kernel is the SM90 sparse one (``csrc/sm90/prefill/sparse/phase1.cuh``:
    ``__launch_bounds__(384, 1)``, one CTA per SM), timed by its waves of CTAs, each
    ``SPARSE_HEAD_TILE · row_s`` (``sparse_s``), its MMAs leaving the roofline
    (``sparse_flops``). Elsewhere (TensorRT-LLM on SM100: trtllm-gen's sparse MLA kernel,
    closed cubins, TensorRT-LLM docs/source/blogs/tech_blog/blog15 "Sparse MLA Kernel")
    the MMAs stay in the roofline as the dsa Cost counts them: the selected keys of each
    query token (:func:`memsim.algorithms.dsa.selected_keys`) at its actual heads. Both
    halves are read from the kernels' launcher, trtllm-gen's ``fmhaKernels.cuh``
    (flashinfer-ai/flashinfer include/flashinfer/trtllm/fmha/fmhaKernels.cuh @bcd9bb77,
    vendored from TensorRT-LLM cpp/tensorrt_llm/kernels/trtllmGenKernels/fmha/):
    ``computeCtaAndClusterConfig`` bounds a sparse MLA kernel's key span by
    ``maxAttentionWindow = min(mMaxSeqLenKv, mSparseMlaTopK)`` (the keys a token
    selected, not its cache), and ``selectMlaGenerationKernel`` gives sparse MLA with
    fewer than 128 heads per KV head the SwapsMmaAbForGeneration kernel with
    ``tileSizeQ`` = 8 (≤ 8 heads) or 16, 128 heads the 2-CTA KeepsMmaAbForGeneration
    kernel with ``tileSizeQ`` = 64 per CTA (two CTAs: 128 heads); each CTA takes
    ``numHeadsPerCta = min(mNumHeadsQPerKv, mStepQ)`` heads and the launcher checks that
    they divide the heads (``numHeadsPerCta · numCtasForAllHeadsQ == mNumHeadsQ``), so no
    head tile is padded (16 heads: one 16-row tile; 128: two 64-row tiles). The
    indexer's top-k (:func:`indexer_topk_s`) runs before the kernel (``sparse_s``) on
    every GPU."""
    if backend is None or not problem.mla or problem.mask.top_k is None:
        return {}
    from memsim.algorithms.dsa import selected_keys
    from memsim.ops.classes import kernel_class

    B, N, S = (np.asarray(v, dtype=float) for v in (B, N, S))
    k, H = problem.mask.top_k, problem.H
    width = 2.0 * (problem.D + problem.Dv)   # QKᵀ over D, PV over Dv: FLOPs per key
    if backend == "vllm":
        # vLLM's FLASHMLA_SPARSE: its own kernel choice, head padding and key count
        from memsim.ops.sparse_mla import sparse_time_s

        return {"sparse_flops": B * H * selected_keys(N, S, k) * width,
                "sparse_s": sparse_time_s(problem.dtype == "fp8", H, B, N, S, k, gpu)}
    topk_s = indexer_topk_s(backend, B, N, S, k, gpu)
    sm90 = kernel_class("dsa", backend, "sparse_sm90")
    if (gpu.architecture == "hopper" and sm90.row_s > 0
            and sm90.name.endswith("/sparse_sm90")):
        ctas = B * N * np.ceil(H / SPARSE_HEAD_TILE)
        return {"sparse_flops": B * H * selected_keys(N, S, k) * width,
                "sparse_s": np.ceil(ctas / gpu.spec.sm_count) * SPARSE_HEAD_TILE
                * sm90.row_s + topk_s}
    return {"sparse_s": topk_s}


# TensorRT-LLM cpp/tensorrt_llm/kernels/indexerTopK.cu @07339e94: both top-k kernels
# launch kNumThreadsPerBlock = 512 threads per CTA (``__launch_bounds__(kNumThreadsPerBlock)``)
# with topK · 4 bytes of dynamic shared memory (``smemOutput``) besides the static union
# ``smemFinal`` of topKPerRowJob, whose largest member is ``FinalItems``: kNumFinalItems =
# 2048 indices and 2048 logits, 4 bytes each (the histogram, 2048 bins and a BlockScan's
# storage, is smaller), and four ints
INDEXER_TOPK_THREADS = 512
INDEXER_TOPK_STATIC_SMEM_BYTES = 2048 * (4 + 4) + 4 * 4
INDEXER_TOPK_INDEX_BYTES = 4


def indexer_topk_ctas_per_sm(gpu: GPU, k: int) -> int:
    """Resident CTAs per SM of TensorRT-LLM's indexer top-k kernels at top-k ``k``: the
    fewer of the SM's threads over 512 per CTA and its shared memory over the CTA's
    (static 16 KiB + k · 4 bytes), at most the SM's block limit. Registers per thread
    are the compiler's (no ``minBlocksPerSM`` in the launch bounds) and not counted: at
    512 threads they bind only past 32 per thread on a 64K-register SM."""
    s = gpu.spec
    smem_bytes = INDEXER_TOPK_STATIC_SMEM_BYTES + k * INDEXER_TOPK_INDEX_BYTES
    return max(1, min(s.max_threads_per_sm // INDEXER_TOPK_THREADS,
                      s.shared_memory_per_sm_bytes // smem_bytes, s.max_blocks_per_sm))


def indexer_topk_s(backend: str, B, N, S, k: int, gpu: GPU):
    """Seconds of TensorRT-LLM's DSA indexer top-k (arrays B, N, S; ``k`` the top-k),
    serial before the sparse kernel. Both of its kernels run one CTA per query row over
    the row's logits (cpp/tensorrt_llm/kernels/indexerTopK.cu, NVIDIA/TensorRT-LLM
    07339e94: ``invokeIndexerTopKDecode``, ``gridDim = numRows``; ``invokeIndexerTopKPrefill``
    launches ``topKPerRowPrefill<512>`` over ``numRows`` CTAs, each row its causal
    ``[rowStart, rowEnd)``), a radix select in up to four histogram steps (half, then 11,
    11, 10 bits), each step clearing and prefix-scanning its bins and streaming the row
    through shared-memory atomics twice; a row of at most ``k`` logits takes the shortcut
    (all indices, no select), and a call whose rows all do skips the indexer altogether
    (``skip_indexer_for_short_seqs``, PR-9524). So per wave of the rows past ``k`` over
    the SMs' resident CTAs (:func:`indexer_topk_ctas_per_sm`: 4 per SM on Hopper and
    Blackwell): the class ``dsa/<backend>/indexer_topk``'s fixed steps ``cta_s`` plus
    ``key_s`` per logit of their mean row, in SM cycles
    (:func:`memsim.ops.classes.clock_ratio`). A prefill of N tokens after S − N cached
    ones has a row of p + 1 logits at each position p (:func:`long_topk_rows`). The
    split-row paths for few rows over very long S are not modelled; other backends: 0 s."""
    from memsim.ops.classes import clock_ratio, kernel_class

    B, N, S = (np.asarray(v, dtype=float) for v in (B, N, S))
    cls = kernel_class("dsa", backend, "indexer_topk")
    if backend != "trtllm" or not cls.name.endswith("/indexer_topk"):
        return np.zeros(np.broadcast(B, N, S).shape)
    rows, logits = long_topk_rows(N, S, k)
    slots = gpu.spec.sm_count * indexer_topk_ctas_per_sm(gpu, k)
    waves = np.ceil(B * rows / slots)
    mean_logits = logits / np.maximum(rows, 1.0)
    return waves * (cls.cta_s + cls.key_s * mean_logits) * clock_ratio(gpu)


def long_topk_rows(N, S, k: int):
    """(rows, their logits) of a sequence's N query rows that hold more than ``k``
    logits: the row at position p (S − N ≤ p < S, causal) has p + 1 logits (arrays)."""
    N, S = (np.asarray(v, dtype=float) for v in (N, S))
    first = np.maximum(float(k), S - N)          # first position with more than k logits
    rows = np.maximum(S - first, 0.0)
    return rows, rows * (first + 1.0 + S) / 2.0


def decode_serial_s(cta_s, blocks, groups, sm_count: int, partial_s=None):
    """Serial time of a decode kernel whose CTAs each spend ``cta_s`` on fixed steps
    (loading Q, the page table, the padded MMA rows, softmax bookkeeping, the epilogue):
    the busiest SM runs ⌈blocks / SMs⌉ of them one after another, their fixed steps
    before and after their own K/V loads, so the time adds to the memory time
    (``roofline(serial_overlaps=False)``; the fits agree: on aiconfigurator's H100/H200
    rows it brings the fitted HBM efficiency from 0.68-0.70 to 0.93-1.0, the median error
    down by 1-2 points). mha.cu asks for two resident CTAs per SM on SM90
    (``__launch_bounds__(256, nbCtaPerSM)``, nbCtaPerSM = 2), but overlapping their fixed
    steps (⌈blocks / 2·SMs⌉) fits its rows worse (refitted H100 p90 |error| 35.7 %
    against 25.8 %): they contend rather than hide each other. Where the keys of a
    (sequence, KV head) are split over several CTAs (``blocks`` > ``groups``), the last
    CTA to finish reduces the partials after the others (XQA multi-block mode: a
    semaphore per (sequence, KV head)): ``partial_s`` per partial it merges where given
    (:func:`xqa_partial_s`), else one more CTA's fixed steps (s, arrays). The same serial
    rule times mha_sm90.cu's GMMA kernel, whose launch bounds ask for 2-3 CTAs of 384
    threads per SM (``__launch_bounds__(128 * 3, headElems * ctaNbQHeads <= 128 * 16 ? 3 :
    2)``) unless built with ``OPTIMIZE_FOR_LATENCY``; its overlap was not tested apart."""
    blocks = np.asarray(blocks, dtype=float)
    groups = np.asarray(groups, dtype=float)
    split = (blocks > groups).astype(float)
    own = np.asarray(cta_s, dtype=float) * busiest_sm_blocks(blocks, sm_count)
    if partial_s is None:
        return own + np.asarray(cta_s, dtype=float) * split
    return own + split * np.asarray(partial_s, dtype=float) * blocks / np.maximum(groups, 1.0)


def kernel_timer(problem: AttentionProblem, gpu: GPU, algorithm: str, *,
                 backend: str | None = None, matmul_unit: str = "tensor", B=None, N=None,
                 blocks_per_sm=None, S=None, rotary_dim: int | None = None) -> Timer:
    """The :class:`Timer` of ``algorithm`` on ``gpu`` for the template ``problem`` (its H, K,
    dtype pick the class and the padding) at batch ``B``, ``N`` queries and ``S`` keys
    (arrays; default the problem's). ``backend`` None: memsim's own kernel on the profile's
    factors (and a calibrated profile's class for the algorithm); else that framework's
    fitted class, and DSA's sparse kernel as the framework runs it
    (:func:`sparse_mla_kernel`). ``rotary_dim``: the head elements RoPE rotates (None: the
    whole head), which decides whether TensorRT-LLM's XQA runs a separate RoPE kernel
    (:func:`xqa_separate_rope`)."""
    B = problem.B if B is None else B
    N = problem.N if N is None else N
    S = np.asarray(N) + (problem.S - problem.N) if S is None else S   # the same key offset
    if backend is None:
        dtype, unit = compute_types(algorithm, problem.dtype, matmul_unit)
        return Timer(gpu, dtype, unit, blocks_per_sm,
                     kernel_class=efficiency_class(gpu, algorithm, matmul_unit))
    from memsim.ops.classes import clock_ratio, with_class

    framework = backend
    problem = production_problem(problem, algorithm, framework)
    backend = kernel_backend(framework, algorithm, gpu)
    cls = attention_class(problem, algorithm, backend, gpu, framework)
    timed = with_class(gpu, cls)
    if get(algorithm).DECODES:
        # the query heads sharing a KV head (× N tokens) fill the M side of the kernel's MMA
        # tile, padded to whole tiles: the padded rows cost FLOPs and the fixed per-row steps
        group = max(problem.H // max(problem.K, 1), 1) * np.asarray(N, dtype=float)
        kernel = decode_kernel(problem, backend, gpu, framework)
        from memsim.ops.fa3 import is_local

        tile = decode_query_tile(backend, gpu, problem.D, problem.dtype, group,
                                 is_local(problem.mask.window, S), kernel)
        if kernel == "mmha":
            # decoderMaskedMultiheadAttention: its dot products on the CUDA cores
            matmul_unit = "fp32"
        padded = np.ceil(group / tile) * tile
        if backend == "trtllm" and not problem.mla and kernel != "trtllm_gen":
            # TensorRT-LLM's decode kernels: a fixed time per CTA (the class's cta_s plus
            # its padded M rows × row_s, in SM cycles: clock_ratio), serial on the
            # busiest SM
            groups = np.asarray(B, dtype=float) * problem.K
            ctas, rows, key_s, keys = None, padded, None, None
            cta_s = cls.cta_s
            if kernel == "mmha":
                # MMHA's multi-block CTAs (mmha_seq_len_tiles), one 512-thread CTA per SM
                # resident; every CTA streams its share of the keys at key_s per key (per
                # key of D elements: × D / XQA_ROW_ELEMS); only a multi-block CTA pays
                # cta_s: its partial's
                # write, fence and counter atomic before the last one merges them
                tiles = mmha_seq_len_tiles(B, problem.K, problem.D, S, problem.mask.window,
                                           gpu.spec.sm_count,
                                           gpu.spec.shared_memory_per_block_max_bytes)
                ctas = groups * tiles
                cta_s = cls.cta_s * (tiles > 1)
                key_s = cls.key_s * problem.D / XQA_ROW_ELEMS
                keys = keys_in_use(S, problem.mask.window)
            if kernel in XQA_KERNELS:
                # a key's latency-bound steps in a CTA: mha.cu's warps load its K and V
                # rows (ldgsts, D elements each); mha_sm90.cu's TMA loads run ahead, each
                # tile's after a dependent load of its page indices
                # (KVTilePartLoader::loadPages, two K and two V buffers deep), and its
                # dependent GMMA → softmax → GMMA chain grows with the head rows.
                # Memory latency is nanoseconds, not SM cycles: no clock_ratio
                per_key = problem.D / XQA_ROW_ELEMS
                if kernel == "xqa_gmma":
                    per_key = per_key * padded / XQA_GMMA_HEAD_TILE   # GMMA N slices
                key_s = cls.key_s * per_key
                subs = xqa_sub_sequences(kernel, B, problem.K, S, problem.mask.window,
                                         gpu.spec.sm_count)
                ctas = groups * subs
                keys = xqa_streamed_keys(kernel, S, problem.mask.window, subs)
                # XQA's per-row steps move and multiply rows × D elements (Q, a K/V
                # tile's MMAs, O): row_s is per row of XQA_ROW_ELEMS head elements
                rows = padded * problem.D / XQA_ROW_ELEMS
            return Timer(timed, problem.dtype, matmul_unit, blocks_per_sm,
                         floor_s=cls.floor_s, decode_pad=padded / group,
                         cta_s=(cta_s + cls.row_s * rows) * clock_ratio(gpu),
                         groups=groups, ctas=ctas, key_s=key_s, keys=keys,
                         partial_s=xqa_partial_s(kernel, cls.cta_s * clock_ratio(gpu)),
                         pre_s=xqa_rope_kernel_s(problem, kernel, timed, B, N, rotary_dim))
        # FlashAttention's fixed per-row steps (loading Q, the page table, the epilogue) are
        # those of the group's rows in whole 64-row warpgroup slices; only the MMAs,
        # exponentials and softmax run over the kernel's whole (padded) M tile
        slices = padded if backend == "trtllm" else (
            np.ceil(group / FA2_SPLITKV_BLOCK_M) * FA2_SPLITKV_BLOCK_M)
        if vllm_fa4(problem, framework, gpu):
            # FA4 launches every one of the num_splits CTAs vLLM asks for, each loading its
            # Q tile and writing its partial O, keys or none (vllm_fa4_splits)
            slices = slices * vllm_fa4_splits(B, N)
        return Timer(timed, problem.dtype, matmul_unit, blocks_per_sm, floor_s=cls.floor_s,
                     serial_s=class_serial_s(cls, gpu, np.asarray(B, dtype=float)
                                             * problem.K * slices),
                     decode_pad=padded / group)
    # a decoder's prefill first writes the new keys to the KV cache
    pre_s = None
    if problem.mask.causal:
        pre_s = prepass_bytes(problem, backend, B, N) / timed.achievable_hbm_bytes_per_s
        if backend == "vllm":
            pre_s = np.maximum(pre_s, vllm_cache_write_latency_s(problem, gpu, cls.cta_s,
                                                                 B, N))
    if fa3_prefill(problem, backend, gpu):
        tiles, blocks = fa3_busiest_sm(problem, gpu, B, N, S)
        # the class's hbm efficiency is the cache write's bandwidth (vLLM: beside its CTAs'
        # latency, vllm_cache_write_latency_s); FA3's own reads and writes stream at the
        # profile's factors: the rows run as fast on H200 as on H100 (median time ratio
        # 0.99), so none of them is HBM-bound
        kernel = with_class(gpu, replace(cls, efficiency={
            u: v for u, v in cls.efficiency.items() if u != "hbm"}))
        return Timer(kernel, problem.dtype, matmul_unit, None, floor_s=cls.floor_s,
                     serial_s=class_serial_s(cls, gpu, blocks * gpu.spec.sm_count
                                             * FA3_FIXED_ROWS),
                     pre_s=pre_s, prefill_tiles=tiles)
    # a prefill kernel's fixed steps are per row of its query tiles, the padded rows of the
    # last tile included
    tile = prefill_query_tile(backend, problem.D)
    tiles = np.ceil(np.asarray(N, dtype=float) / tile)
    rows = np.asarray(B, dtype=float) * problem.H * tiles * tile
    sparse = (sparse_mla_kernel(problem, gpu, backend, B, N, S)
              if runs_mask(algorithm, "topk") else {})
    pad = None
    if backend == "trtllm" and gpu.architecture == "hopper" and not problem.mla:
        from memsim.units import DTYPE_BYTES

        pad = fmha_v2_head_pad(problem.D, problem.Dv, DTYPE_BYTES[problem.dtype])
    # Hopper: fmha_v2's two consumer warpgroups ping-pong (warpspec ENABLE_MUTEX; FA3 §3.1).
    # Blackwell: TensorRT-LLM runs closed trtllm-gen cubins; the overlap is assumed from
    # the SM100 design they share with FlashAttention-4 (flash_attn/cute/flash_fwd_sm100.py:
    # one MMA warp issues tcgen05 MMAs while two softmax warpgroups work on the other Q
    # tile), not read from their source.
    overlaps = (backend == "trtllm" and gpu.architecture in ("hopper", "blackwell")
                and not problem.mla and not sparse)
    return Timer(timed, problem.dtype, matmul_unit, blocks_per_sm, floor_s=cls.floor_s,
                 serial_s=class_serial_s(cls, gpu, rows), pre_s=pre_s, matmul_pad=pad,
                 exp_overlaps=overlaps, **sparse)


# vLLM's KV-cache write, vllm-project/vllm csrc/cache_kernels.cu reshape_and_cache_flash:
# ``dim3 grid(num_tokens); dim3 block(std::min(num_heads * head_size, 512))`` (num_heads:
# the KV heads of the key tensor), one CTA per token
CACHE_WRITE_MAX_THREADS = 512


def vllm_cache_write_latency_s(problem: AttentionProblem, gpu: GPU, cta_s: float, B, N):
    """Seconds vLLM's ``reshape_and_cache_flash`` takes when its CTAs' latency binds, not
    HBM's bandwidth (arrays ``B``, ``N``): one CTA per new token (``B``·``N``) of
    min(K·D, 512) threads, as many resident per SM as its threads and block slots allow,
    run in waves of ``cta_s`` each (the class's seconds per CTA: the dependent loads of
    its slot index, then its K/V rows, and the stores; memory latency, not scaled by the
    SM clock). With few KV heads a CTA moves a few hundred bytes, so its latency, not the
    bytes, times the write (:data:`CACHE_WRITE_MAX_THREADS`)."""
    tokens = np.asarray(B, dtype=float) * np.asarray(N, dtype=float)
    threads = min(problem.K * problem.D, CACHE_WRITE_MAX_THREADS)
    resident = min(gpu.spec.max_threads_per_sm // threads, gpu.spec.max_blocks_per_sm)
    return np.ceil(tokens / (gpu.spec.sm_count * resident)) * cta_s


# The class's per-row time × these rows is FA3's fixed time per CTA tile (m-block): loading
# Q, the page table, the O epilogue. It does not shrink with the tile (64-192 rows): on
# aiconfigurator's H100/H200 vLLM bf16 rows a constant per m-block fits better than a cost
# per row of it (median |error| 7.3 % against 8.9 %), so the time is per m-block, written as
# row_s per row of a 128-row tile to keep row_s's unit.
FA3_FIXED_ROWS = 128


def fa3_prefill(problem: AttentionProblem, backend: str | None, gpu: GPU) -> bool:
    """Whether ``backend``'s prefill is FlashAttention-3 on the paged cache
    (:mod:`memsim.ops.fa3`): vLLM and SGLang on Hopper (aiconfigurator's H100/H200 vLLM
    rows name ``vllm_flash_attn_fa3``), causal, not MLA. Blackwell (FlashInfer's
    trtllm-gen prefill under vLLM, tiles not modelled) takes the same structure, unseen."""
    return (backend in ("vllm", "sglang") and gpu.architecture in ("hopper", "blackwell")
            and problem.mask.causal and not problem.mla and problem.pass_ == "forward"
            and problem.mask.chunk is None and problem.mask.top_k is None)


def fa3_busiest_sm(problem: AttentionProblem, gpu: GPU, B, N, S):
    """FA3's padded work on the busiest SM for arrays of ``B``, ``N``, ``S``: (its tile
    pairs' MMA FLOPs and exponentials × SMs as a dict, its m-blocks) —
    :func:`memsim.ops.fa3.work` and :func:`memsim.ops.fa3.busiest_sm`."""
    from memsim.ops import fa3
    from memsim.units import dtype_bytes

    group = max(problem.H // max(problem.K, 1), 1)
    e = dtype_bytes(problem.dtype)
    Mb, Nb, m, pairs, longest = fa3.work(N, S, group, problem.D, problem.Dv,
                                         problem.mask.window, e)
    sms = gpu.spec.sm_count
    tiles, blocks = fa3.busiest_sm(B, problem.K, pairs, longest, m, sms)
    scores = tiles * sms * Mb * Nb
    kv_tile = Nb * (problem.D + problem.Dv) * e
    B = np.asarray(B, dtype=float)
    # QKᵀ and PV: 2·D + 2·Dv FLOPs per score of a whole tile (masked entries included);
    # each m-block loads its K/V tiles through L2 (PackGQA: once for its G heads) and reads
    # Q and the K/V tile from shared memory per tile pair (wgmma's operands)
    rows = tiles * sms * Mb
    return {"matmul_flops": scores * 2.0 * (problem.D + problem.Dv),
            "exp_ops": scores,
            # the softmax's FMAs issue on the FMA pipe while the MUFU computes the
            # exponentials (FA3 §3.1 overlaps both with the other warpgroup's GEMMs): the
            # exponentials time the softmax. MMA + exp at peak is FA3's measured ceiling:
            # 661 / 792 TFLOP/s at D = 128 / 256 on H100 against the fastest vLLM rows'
            # 672 / 758 (aiconfigurator, bf16, causal, ≥ 5 ms)
            "vector_flops": 0.0 * rows,
            "global_read_bytes": (B * problem.K * pairs * kv_tile
                                  + B * np.asarray(N, dtype=float) * problem.H * problem.D * e),
            "sram_read_bytes": tiles * sms * (Mb * problem.D * e + kv_tile),
            "sram_write_bytes": tiles * sms * kv_tile}, blocks


# TensorRT-LLM's masked MHA decode (MMHA), NVIDIA/TensorRT-LLM
# cpp/tensorrt_llm/kernels/decoderMaskedMultiheadAttention/decoderMaskedMultiheadAttentionLaunch.h
# @05316d33: its multi-block launch runs 512 threads per CTA (mmha_launch_kernel_ex:
# 256 × min(⌈SMs · blocks/SM / (B·H)⌉, blocks/SM), capped by MMHA_512_BLOCKSIZE_CHECK; two
# 256-thread CTAs per SM: the steps of aiconfigurator's H100/H200 rows at 256, 512, 1024
# cached keys for D = 256, 128, 64 are those of 512 threads, not 1024), and each CTA walks
# at least one unrolled K/V loop of ⌈threads / threads_per_value⌉ · 8 keys
# (multi_block_grid_setup: seq_len_per_kv_loop)
MMHA_MULTI_BLOCK_THREADS = 512
MMHA_KV_LOOP_UNROLL = 8
MMHA_LOAD_BYTES = 16        # threads_per_value: dh_max · sizeof(T) / 16 (one 16-byte load)
MMHA_QK_SMEM_BYTES = 24     # estimate_min_multi_block_count: 16 + 4 · sizeof(T) per 4 keys
MMHA_SMEM_RESERVED_BYTES = 2048  # attentionOp: sharedMemPerBlockOptin − 2048


def mmha_seq_len_tiles(B, H: int, D: int, S, window: int | None, sm_count: int,
                       smem_per_block_bytes: int) -> np.ndarray:
    """CTAs per (sequence, head) of TensorRT-LLM's MMHA decode (``params.seq_len_tile``)
    for batch ``B``, ``H`` heads of size ``D`` and ``S`` cached keys (arrays, broadcasting),
    its 16-bit activations (T = bf16/fp16, whatever the cache's dtype).

    attentionOp.cpp ``enqueueGeneration``: multi-block mode when
    max_num_seq_len_tiles = max(⌈SMs / (B·H)⌉ (``getMaxNumSeqLenTile``), the shared-memory
    minimum) exceeds 1; the minimum (``estimate_min_multi_block_count``) holds the softmax
    of ⌈(keys + 1) / 4⌉ · 24 bytes (past keys in the window) in sharedMemPerBlockOptin − 2048.
    decoderMaskedMultiheadAttentionLaunch.h ``multi_block_grid_setup``: seq_len_tile =
    clamp(⌈SMs · 1 / (B·H)⌉ (one 512-thread CTA per SM), that minimum,
    min(⌈(tlength + 1) / seq_len_per_kv_loop⌉, max_num_seq_len_tiles)), tlength = S − 1
    past keys, the window left out (a windowed decode splits as its whole history)."""
    B = np.asarray(B, dtype=float)
    S = np.asarray(S, dtype=float)
    past = S - 1.0
    span = past if window is None else np.minimum(past, window)
    per_block = (smem_per_block_bytes - MMHA_SMEM_RESERVED_BYTES) // MMHA_QK_SMEM_BYTES
    min_tiles = np.maximum(np.ceil(np.ceil((span + 1.0) / 4.0) / per_block), 1.0)
    balanced = np.ceil(sm_count / np.maximum(B * H, 1.0))
    dh_max = 1 << (max(D, 32) - 1).bit_length()
    threads_per_value = dh_max * ACTIVATION_BYTES / MMHA_LOAD_BYTES
    kv_loop = np.ceil(MMHA_MULTI_BLOCK_THREADS / threads_per_value) * MMHA_KV_LOOP_UNROLL
    tiles = np.maximum(np.minimum(balanced, np.ceil(S / kv_loop)), min_tiles)
    return np.maximum(tiles, 1.0).astype(np.int64)


XQA_ROW_ELEMS = 128  # head elements per row of XQA's row_s (its classes' unit)
XQA_GMMA_HEAD_TILE = 8  # mha_sm90.cu (swapAB): query heads per CTA padded to 8 (GMMA's N)
XQA_MAX_GROUP = 32  # query heads per KV head TensorRT-LLM's XQA decode kernels take
XQA_KERNELS = ("xqa_hmma", "xqa_gmma")
# XQA's multi-block heuristic (TensorRT-LLM decoderXQAImplCommon.h computeMultiBlockCount,
# decoderXQAConstants.h): at least 128 past tokens per CTA, at most √(8·that) CTAs per
# (sequence, KV head), cut back to 8 waves of CTAs over the SMs, and to the reserved
# workspace of kXQA_MAX_NUM_SUB_SEQ sub-sequences over the batch
XQA_MIN_HISTORY_TOKENS_PER_BLOCK = 128
XQA_TARGET_WAVE_FACTOR = 8
XQA_MAX_NUM_SUB_SEQ = 6000


def xqa_multi_block(B, K: int, history, sm_count: int) -> np.ndarray:
    """CTAs per (sequence, KV head) of TensorRT-LLM's XQA decode kernels for batch ``B``,
    ``K`` KV heads and ``history`` past tokens (arrays, broadcasting): TensorRT-LLM's
    ``computeMultiBlockCount`` (its std::round rounds half away from zero)."""
    B = np.asarray(B, dtype=float)
    mb = np.floor(np.asarray(history, dtype=float) / XQA_MIN_HISTORY_TOKENS_PER_BLOCK)
    mb = np.minimum(mb, np.floor(np.sqrt(mb * 8.0) + 0.5))
    mb = np.maximum(mb, 1.0)
    adjust = B * K * mb / sm_count / XQA_TARGET_WAVE_FACTOR
    mb = np.maximum(np.where(adjust > 1.0, np.floor(mb / np.maximum(adjust, 1.0)), mb), 1.0)
    mb = np.maximum(np.minimum(mb, np.floor(XQA_MAX_NUM_SUB_SEQ / B)), 1.0)
    return mb.astype(np.int64)


def xqa_splits(B, K: int, S, sm_count: int) -> np.ndarray:
    """:func:`xqa_multi_block` for ``S`` cached keys (arrays): the decoded token's own key
    is in the cache, so its history is S − 1 past tokens (the one home of that offset)."""
    return xqa_multi_block(B, K, np.asarray(S) - 1, sm_count)


XQA_GMMA_TILE_KEYS = 64  # mha_sm90.cu gemm0CtaTileNbTokens: keys per K/V tile
XQA_ROPE_ALIGN = 16  # in-kernel RoPE: rotary_dim a multiple of 16 (its 16-byte rope region)
XQA_HEAD_ALIGN = 16  # supportConfigHMMA/QGMMA: head_size a multiple of 16, else no XQA kernel


# mha_sm90.cu's multi-block reduction: the last CTA's IO warps load the sub-sequences'
# partials (row sum/max and O) into MultiBlockSMem::nbBuf = 4 buffers (2 under SPEC_DEC)
XQA_GMMA_PARTIALS_IN_FLIGHT = 4


def xqa_partial_s(kernel: str, cta_s: float) -> float | None:
    """Seconds the last CTA of a split (sequence, KV head) spends per partial it merges,
    for the XQA GMMA kernel; None for the others (their reduction costs one more CTA's
    fixed steps, :func:`decode_serial_s`).

    NVIDIA/TensorRT-LLM cpp/kernels/xqa/mha_sm90.cu (``kernel_mha``, after the
    semaphore's ``atom.acq_rel.gpu.global.inc``): the last CTA walks all ``nbSubSeq``
    partials, its IO warps each loading one (``ldgsts`` of the row sum/max, a TMA of the
    O rows) into one of :data:`XQA_GMMA_PARTIALS_IN_FLIGHT` buffers the math warps merge
    in order. Each load is a global round trip like the CTA's own fixed steps (its Q
    load, its partial's write), so a partial costs ``cta_s`` (the class's, without the
    per-row part) over the loads in flight. aiconfigurator's H100 rows at batch 1, 2 query
    heads per KV head, D = 128: 9.1 → 31.1 µs from 2 K to 128 K cached keys while the
    sub-sequences grow 11 → 90 and each CTA's tiles 3 → 23; one more CTA's fixed steps
    (the former rule) under-predicted them by 14-47 %.

    The 4 buffers are the source's; that one partial's loads cost a CTA's fixed steps is
    an assumption (``cta_s`` also covers the Q load, the page table and the barriers), and
    the residual it explains (0.12-0.18 µs per sub-sequence against ``cta_s`` / 4 = 0.156
    µs) is the one it was built from, so it is not an independent check. It follows
    ``cta_s``'s scaling with the SM clock (:func:`memsim.ops.classes.clock_ratio`), as a
    share of it."""
    if kernel != "xqa_gmma":
        return None
    return cta_s / XQA_GMMA_PARTIALS_IN_FLIGHT


def xqa_separate_rope(kernel: str, head_dim: int, rotary_dim: int | None) -> bool:
    """Whether TensorRT-LLM's XQA decode with ``kernel`` ("xqa_hmma", "xqa_gmma") runs a
    separate kernel before it (``invokeQKVPreprocessing``: RoPE on Q and K, the new K/V
    written to the cache) instead of applying RoPE itself, for RoPE over ``rotary_dim`` of
    the ``head_dim`` elements (None: all of them, which the QGMMA kernel always rotates
    itself: it runs only head sizes that are a multiple of 16, :func:`decode_kernel`).

    NVIDIA/TensorRT-LLM @602593ac ``decoderXQAImplJIT/kernelUtils.cpp``
    ``appliesRoPEInXqaKernel``: only the Hopper QGMMA kernel (mha_sm90.cu) applies RoPE in
    the kernel, and only for a rotary dimension of at most the head size and a multiple of
    16 ("Unsupported shapes fall back to invokeQKVPreprocessing"); ``decoderXQAImplJIT.cpp``
    ``runImpl`` launches the preprocessing kernel otherwise. The mma.sync kernel (mha.cu)
    always has it run first; its class's floor includes it (every one of its rows runs
    it), so only the QGMMA kernel's rows add it apart (:func:`xqa_rope_kernel_s`)."""
    if kernel != "xqa_gmma" or rotary_dim is None:
        return False
    return not (0 < rotary_dim <= head_dim and rotary_dim % XQA_ROPE_ALIGN == 0)


def xqa_rope_kernel_s(problem: AttentionProblem, kernel: str, timed: GPU, B, N,
                      rotary_dim: int | None):
    """Seconds of XQA QGMMA's separate RoPE / KV-cache write kernel where it runs
    (:func:`xqa_separate_rope`), else None: its latency in the CUDA graph, the floor of
    the class ``attention/decode/trtllm/qkv_pre`` (fitted on the QGMMA rows beside
    ``xqa_gmma``), plus what of its bytes (:func:`prepass_bytes`, the prefill's same
    kernel) L2 cannot hold, at the decode class's HBM bandwidth (``timed``); arrays like
    B·N. A decode step's QKV is one token per sequence: the projection writes it just
    before, the attention kernel reads the rotated Q right after, so within L2 it never
    waits on HBM (counting it at HBM anyway: H100/H200 fp8 D = 64 rows at batch ≥ 128
    over-predicted by 9-16 %, and the class fit's median |error| 0.1-0.2 points worse)."""
    if not xqa_separate_rope(kernel, problem.D, rotary_dim):
        return None
    from memsim.ops.classes import kernel_class

    pre = kernel_class("attention/decode", "trtllm", "qkv_pre")
    spill = np.maximum(prepass_bytes(problem, "trtllm", B, N) - timed.l2_dram_capacity_bytes,
                       0.0)
    return pre.floor_s + spill / timed.achievable_hbm_bytes_per_s


def xqa_sub_sequences(kernel: str, B, K: int, S, window: int | None,
                      sm_count: int) -> np.ndarray:
    """CTAs per (sequence, KV head) that run XQA's fixed steps (loading Q, the epilogue,
    the partial written for the multi-block reduction), for ``S`` cached keys (arrays).

    XQA launches a grid of (:func:`xqa_multi_block`, K, B) CTAs
    (decoderXQAImplJIT.cpp ``cuLaunchKernel``); both kernels deal a sequence's K/V tiles
    round-robin to its sub-sequences, from the first tile of a sliding window on. The
    mma.sync kernel (mha.cu, ``seqIterInit = nbSkipLeadingTiles + idxSubSeqInSeq``) runs
    every sub-sequence through its prologue and epilogue, also one left without a tile;
    the GMMA kernel (mha_sm90.cu) uses ``nbSubSeq = min(nbTilesInUse, gridDim.y)``
    sub-sequences of 64-key tiles (one below two tiles) and the others return at once."""
    mb = xqa_splits(B, K, S, sm_count)
    if kernel != "xqa_gmma":
        return mb
    tiles = xqa_gmma_tiles(S, window)
    return np.where(tiles >= 2, np.minimum(tiles, mb), 1)


def xqa_streamed_keys(kernel: str, S, window: int | None, subs) -> np.ndarray:
    """Keys per (sequence, KV head) whose K/V rows the XQA ``kernel``'s CTAs stream at
    their latency-bound pace (``Timer.keys``), for ``S`` cached keys and ``subs``
    sub-sequences (arrays). mha.cu loads the rows of the keys in use (the window's, if
    any). mha_sm90.cu loads and multiplies whole 64-key tiles: its K/V TMA boxes are a
    tile's pages (``KVTilePartLoader::loadData``), its GMMA M side is the tile's 64 keys,
    masked after (``warpGrpApplyMask``), and a CTA walks ⌈tiles / sub-sequences⌉ of
    them (``nbIters``); the busiest CTA's count × sub-sequences, in keys.
    aiconfigurator's H100/H200 rows at batch ≥ 256 time the same from 2 to 64 cached
    keys (13.7-14.0 µs at batch 1024, 2 query heads per KV head, D = 128), which a cost
    per key over-predicted by up to 44 %."""
    if kernel != "xqa_gmma":
        return keys_in_use(S, window)
    per_cta = np.ceil(xqa_gmma_tiles(S, window) / np.asarray(subs, dtype=float))
    return per_cta * np.asarray(subs, dtype=float) * XQA_GMMA_TILE_KEYS


def keys_in_use(S, window: int | None) -> np.ndarray:
    """Cached keys a decode query attends to: ``S``, or the last ``window`` of them
    (arrays, float)."""
    S = np.asarray(S, dtype=float)
    return S if window is None else np.minimum(S, window)


def xqa_gmma_tiles(S, window: int | None) -> np.ndarray:
    """64-key K/V tiles the XQA GMMA kernel (mha_sm90.cu) walks for ``S`` cached keys
    (arrays): ``nbTilesInUse = divUp(cacheSeqLen, 64) − nbSkipLeadingTiles``, the whole
    tiles before a sliding window's first key skipped."""
    S = np.asarray(S, dtype=np.int64)
    skipped = 0 if window is None else np.maximum(S - window, 0)
    return -(-S // XQA_GMMA_TILE_KEYS) - skipped // XQA_GMMA_TILE_KEYS


def fa3_decodes(problem: AttentionProblem, algorithm: str, backend: str | None,
                gpu: GPU) -> bool:
    """Whether ``backend``'s decode of ``problem`` runs FlashAttention-3 (vLLM's and SGLang's
    FLASH_ATTN backend on Hopper; aiconfigurator's vLLM rows name ``vllm_flash_attn_fa3``)."""
    return (backend in ("vllm", "sglang") and gpu.architecture == "hopper"
            and get(algorithm).DECODES and not problem.mla)


# FlashAttention-3's split heuristic (hopper/heuristics.h num_splits_heuristic) and the
# dynamic per-batch split of its varlen scheduler (hopper/flash_prepare_scheduler.cu)
FA3_MAX_SPLITS = 128
FA3_FILL_FRACTION = 0.8       # ≥ 0.8·SMs (batch, KV head, M) tiles: no split
FA3_FEW_BLOCKS = 4            # ≤ 4 key tiles: no split
FA3_MIN_BLOCKS_PER_SPLIT = 4  # fewer key tiles per split: efficiency × 0.85
FA3_SPLIT_MARGIN = 1.1        # the scheduler's 10 % margin on blocks per SM
FA3_SCHEDULER_MAX_BATCH = 992  # one scheduler CTA; more sequences: one split each


# vLLM 0.24 runs FlashAttention-4 (its CuTe DSL kernel) on SM90 where FA3 has no kernel:
# head_size > 256 (vllm/v1/attention/backends/fa_utils.py get_flash_attn_version: "FA3
# does not support head_size=... on SM90: upgrading FlashAttention 3 -> 4"). Its metadata
# builder passes ``num_splits = max_num_splits`` when the batch's tokens fit the largest
# CUDA graph (vllm/v1/attention/backends/flash_attn.py FlashAttentionMetadataBuilder.build:
# ``num_actual_tokens <= max_cudagraph_size``); FA4 (flash_attn/cute/interface.py
# _flash_attn_fwd, vllm-project/flash-attention @617264c1: its heuristic runs only for
# ``num_splits < 1``) launches exactly that many splits per (sequence, KV head, M tile).
VLLM_FA4_MIN_HEAD_DIM = 257
VLLM_MAX_CUDAGRAPH_TOKENS = 512     # vLLM's default largest CUDA-graph capture size
# vllm/envs.py: VLLM_FLASH_ATTN_MAX_NUM_SPLITS_FOR_CUDA_GRAPH, default "32"
VLLM_CUDAGRAPH_MAX_SPLITS = 32


def vllm_fa4(problem: AttentionProblem, backend: str | None, gpu: GPU) -> bool:
    """Whether vLLM runs FlashAttention-4 for ``problem`` on ``gpu``: SM90 with a head size
    FA3 lacks (> 256)."""
    return (backend == "vllm" and gpu.architecture == "hopper" and not problem.mla
            and max(problem.D, problem.Dv) >= VLLM_FA4_MIN_HEAD_DIM)


def vllm_max_num_splits(B, N) -> np.ndarray:
    """``max_num_splits`` vLLM's FlashAttentionMetadataBuilder.build passes to the kernel for
    a batch of ``B`` sequences of ``N`` query tokens (arrays): :data:`VLLM_CUDAGRAPH_MAX_SPLITS`
    while its B·N tokens fit the largest CUDA graph (``num_actual_tokens <=
    max_cudagraph_size``), else 0, "use FA3's heuristics" (vllm/v1/attention/backends/
    flash_attn.py). FA3 and FA4 both read it as their split count when positive
    (hopper/flash_api.cpp ``num_splits <= 0 ? get_num_splits(params) : num_splits``;
    flash_attn/cute/interface.py: the heuristic only for ``num_splits < 1``)."""
    tokens = np.asarray(B, dtype=float) * np.asarray(N, dtype=float)
    return np.where(tokens <= VLLM_MAX_CUDAGRAPH_TOKENS, float(VLLM_CUDAGRAPH_MAX_SPLITS), 0.0)


def vllm_fa4_splits(B, N) -> np.ndarray:
    """Split CTAs per (sequence, KV head, M tile) of vLLM's FA4 decode for batch ``B`` of
    ``N``-token queries (arrays): :func:`vllm_max_num_splits` where positive, else 1 (FA4's
    own heuristic, interface.py num_splits_heuristic, which takes 1 split for ≤ 4 key tiles
    or B·K·m ≥ SMs; the rows' large batches)."""
    splits = vllm_max_num_splits(B, N)
    return np.where(splits > 0, splits, 1.0)


def fa3_num_splits(problem: AttentionProblem, gpu: GPU, B, N, S) -> np.ndarray:
    """Splits per (sequence, KV head) of FlashAttention-3's paged decode as vLLM runs it
    (arrays, broadcasting). vLLM builds FA-3's scheduler metadata ahead of the call
    (vllm/v1/attention/backends/flash_attn.py ``get_scheduler_metadata``, num_splits 0:
    the heuristic), so two rules apply:

    - the static bound, ``get_num_splits`` (hopper/flash_api.cpp) pretending batch 1:
      ``num_splits_heuristic(K·m, SMs, n, ...)`` (hopper/heuristics.h: 1 split if K·m ≥
      0.8·SMs or n ≤ 4 key tiles, or n ≤ 8 with K·m ≥ 32; else the smallest count whose
      wave efficiency is ≥ 0.95 of the best, × 0.85 below 4 tiles per split; at most
      min(128, SMs, n)), m = ⌈N·H/K / kBlockM⌉, n = ⌈S / kBlockN⌉ (tiles of
      :func:`memsim.ops.fa3.tile`; the window's keys for a
      local mask);
    - the dynamic count per sequence (hopper/flash_prepare_scheduler.cu
      ``prepare_varlen_num_blocks_kernel``): blocks per SM ⌈1.1·B·m·n·K / SMs⌉, splits
      ⌈n / that⌉, capped by the static bound; 1 beyond 992 sequences.

    Open (2026-12-02): vLLM passes FA3 the same :func:`vllm_max_num_splits` it passes FA4
    (32 under a full CUDA graph), which FA3 takes as its bound in place of the heuristic
    (hopper/flash_api.cpp @617264c1 l. 1059), and heuristics.h at that commit reads 0.85
    of the best efficiency, without the n ≤ 8 rule or the × 0.85 below 4 tiles per split
    written above. Bound 32 on aiconfigurator's H100/H200 vLLM decode rows (seed 0, 2000
    per GPU), refitted: bf16 median/p90 H100 9.7/22.6 %, H200 7.3/19.4 % (this rule:
    7.9/24.9, 6.8/21.1), fp8 9.1/25.0, 8.8/24.4 (9.6/24.3, 10.9/26.5): not adopted, as
    whether the collector's config has full CUDA graphs was not read."""
    from memsim.ops import fa3
    from memsim.units import DTYPE_BYTES

    sms = gpu.spec.sm_count
    B, N, S = (np.asarray(v, dtype=float) for v in (B, N, S))
    group = (problem.H // max(problem.K, 1)) * N
    block_m, block_n = fa3.tile(problem.D, problem.Dv, fa3.is_local(problem.mask.window, S),
                                group, DTYPE_BYTES[problem.dtype],
                                fa3.is_causal(problem.mask.window, S, N, problem.D))
    m = np.ceil(group / block_m)
    loaded = S if problem.mask.window is None else np.minimum(
        S, problem.mask.window + np.asarray(block_m, dtype=float))
    n = np.ceil(loaded / block_n)
    mblocks = problem.K * m
    best = np.zeros(np.broadcast_shapes(n.shape, mblocks.shape))
    effs = []
    top = np.minimum(np.minimum(FA3_MAX_SPLITS, sms), n)
    for s in range(1, min(FA3_MAX_SPLITS, sms) + 1):
        waves = mblocks * s / sms
        eff = waves / np.ceil(waves)
        eff = np.where(np.floor(n / s) < FA3_MIN_BLOCKS_PER_SPLIT, eff * 0.85, eff)
        eff = np.where(s <= top, eff, 0.0)
        best = np.maximum(best, eff)
        effs.append(eff)
    static = np.zeros_like(best)
    for s in range(len(effs), 0, -1):
        static = np.where(effs[s - 1] >= 0.95 * best, s, static)
    static = np.where((mblocks >= FA3_FILL_FRACTION * sms) | (n <= FA3_FEW_BLOCKS)
                      | ((n <= 2 * FA3_FEW_BLOCKS) & (mblocks >= 32)), 1.0, static)
    n_all = np.ceil(S / block_n)
    per_sm = np.ceil(B * m * n_all * FA3_SPLIT_MARGIN * problem.K / sms)
    dynamic = np.maximum(np.minimum(np.ceil(n_all / per_sm), static), 1.0)
    dynamic = np.where((static <= 1) | (B > FA3_SCHEDULER_MAX_BATCH), 1.0, dynamic)
    return dynamic.astype(np.int64)


def kernel_backend(backend: str | None, algorithm: str, gpu: GPU) -> str | None:
    """Whose production kernel ``backend`` runs for this call on ``gpu``: for the decode
    family (the algorithms that decode) :func:`memsim.ops.attention_kernels_backend` (vLLM
    on Blackwell runs TensorRT-LLM's trtllm-gen kernels through FlashInfer; for 44,664 of
    the 49,980 b200 context rows of aiconfigurator's vLLM 0.24 tables too). Every other
    call: ``backend`` itself."""
    from memsim.ops import attention_kernels_backend

    return attention_kernels_backend(backend, gpu) if get(algorithm).DECODES else backend


# query tokens up to which vLLM runs a request as a decode: its FlashInfer backend reorders
# a batch so that these run the decode path (vllm/v1/attention/backends/flashinfer.py
# FlashInferMetadataBuilder.reorder_batch_threshold = 1, split_decodes_and_prefills)
VLLM_DECODE_QUERY_LEN = 1


def runs_decode_kernel(backend: str | None, gpu: GPU, N) -> np.ndarray:
    """Per prefill call of ``N`` query tokens (array), whether ``backend`` runs it as its
    decode: vLLM for queries of at most :data:`VLLM_DECODE_QUERY_LEN` token, on
    Blackwell through FlashInfer's decode path (``trtllm_batch_decode_with_kv_cache``), on
    Hopper as FA3's call with one query token, which is its decode step's (one MMA
    warpgroup, split-KV heuristic: the structure memsim's decode path holds, not its
    prefill tiles). aiconfigurator's vLLM 0.24 context rows of one token time as its
    decode rows of one cached token (median ratio 0.99-1.00 on H100, H200 and B200; the
    B200 ones name ``vllm_flashinfer_trtllmdecode``)."""
    N = np.asarray(N)
    if backend == "vllm" and gpu.architecture in ("hopper", "blackwell"):
        return N <= VLLM_DECODE_QUERY_LEN
    return np.zeros(N.shape, dtype=bool)


def production_problem(problem: AttentionProblem, algorithm: str,
                       backend: str | None) -> AttentionProblem:
    """The problem ``backend``'s production kernel actually runs. TensorRT-LLM's XQA decode
    kernels take at most 32 query heads per KV head (decoderXQAImplJIT/kernelUtils.cpp
    ``supportConfigHMMA``/``supportConfigQGMMA``: ``head_grp_size * beam_width > 32`` →
    unsupported); larger groups fall back to the masked multi-head attention kernel
    (decoderMaskedMultiheadAttention), one block per query head reading its KV head's
    cache: as MHA (K = H). aiconfigurator's B200 rows with more than 32 heads per KV head
    time the same way (median error −7 % as MHA, −79 % as grouped with the H100/H200 fit),
    so the rule holds there too. ``backend`` is the framework, not the kernel's owner
    (:func:`kernel_backend`): vLLM on Blackwell calls trtllm-gen through FlashInfer
    (flashinfer/decode.py ``trtllm_batch_decode_with_kv_cache``), not through XQA's
    dispatch, and its rows with 40-64 heads per KV head time as 32 do (aiconfigurator's
    B200 vLLM 0.24 rows, K = 1: 10.1-11.2 µs against 10.7-11.1 µs at ≤ 255 cached tokens;
    as MHA memsim was +164 to +270 % there). Every other call runs as given."""
    if (backend == "trtllm" and get(algorithm).DECODES and not problem.mla
            and problem.H // max(problem.K, 1) > XQA_MAX_GROUP):
        return problem.model_copy(update={"kv_heads": problem.H})
    return problem


def decode_query_tile(backend: str | None, gpu: GPU | None = None, head_dim: int = 128,
                      dtype: str = "bf16", group=1, local=False,
                      kernel: str | None = None):
    """M rows of a production decode kernel's MMA tile, which the ``group`` query rows
    sharing a KV head (heads per KV head × queries; arrays) fill. TensorRT-LLM, by its
    decode ``kernel`` (:func:`decode_kernel`): "mmha" 1 (decoderMaskedMultiheadAttention,
    one CTA per (sequence, head), its dot products on the CUDA cores: no MMA tile to pad);
    "xqa_gmma" :data:`XQA_GMMA_HEAD_TILE` (mha_sm90.cu swaps A and B, SWAP_AB = !SPEC_DEC:
    the 64 keys of a tile are the GMMA's M side and the group's query heads its N side,
    padded to 8, ctaNbQHeads = roundUp(headGrpSize, 8)); otherwise XQA's ``mma.sync``
    m16n8k16, 16 rows (mha.cu: warpTile.y = roundUp(headGrpSize, 16)). Elsewhere than
    Hopper FlashAttention-2's split-KV kernel, 64 rows (flash_fwd_launch_template.h
    ``run_mha_fwd_splitkv_dispatch``: kBlockM = 64); vLLM and SGLang on Hopper
    FlashAttention-3's ``kBlockM`` (:func:`memsim.ops.fa3.tile`: its paged non-TMA tiles,
    which a decode takes as a prefill does, one 64-row MMA warpgroup for D ∈ {64, 128}
    without a window, 128 or 192 rows otherwise; FlashAttention-4's 64 for D > 256):
    PackGQA packs the group into one M tile padded to kBlockM, and its MMAs, exponentials
    and softmax run over all of it."""
    if kernel == "mmha":
        return 1
    if kernel == "xqa_gmma":
        return XQA_GMMA_HEAD_TILE
    if backend == "trtllm":
        return MMA_ROWS
    if gpu is None or gpu.architecture != "hopper":
        return FA2_SPLITKV_BLOCK_M
    from memsim.ops import fa3
    from memsim.units import DTYPE_BYTES

    return fa3.tile(head_dim, head_dim, local, group, DTYPE_BYTES[dtype])[0]


FA2_SPLITKV_BLOCK_M = 64        # FA-2 flash_fwd_splitkv kernel


def prefill_query_tile(backend: str | None, head_dim: int) -> int:
    """Query rows per block of ``backend``'s production prefill kernel on Hopper.

    TensorRT-LLM's context FMHA steps 64 query rows per block at every head size (its SM90
    warp-specialised kernels ``fmha_v2_flash_attention_bf16_64_{256,128,64}_S_qkv_{D}
    _tma_ws_sm90``: 64 × 256 tiles for D ≤ 64, 64 × 128 to D = 128, 64 × 64 above);
    FlashAttention-3 (vLLM, SGLang) kBlockM = 192 for D ≤ 64 and 128 above
    (flash-attention hopper/tile_size.h ``tile_size_fwd_sm90``)."""
    if backend == "trtllm":
        return 64
    return 192 if head_dim <= 64 else 128


ACTIVATION_BYTES = 2.0  # the QKV projection's bf16 output, the attention op's input


def prepass_bytes(problem: AttentionProblem, backend: str | None, B, N):
    """HBM bytes of the kernel a production prefill runs before its attention kernel: it
    writes the new tokens' K and V into the paged KV cache (at the problem's dtype).

    TensorRT-LLM's context path (``attentionOp.cpp`` enqueueContext →
    ``invokeQKVPreprocessing``, "in-place, QKV will be modified") reads the packed bf16 QKV,
    writes the rotated Q and K back and K, V to the cache: B·N·D·((H + 2K)·2 + (H + K)·2 +
    2K·e). vLLM's ``reshape_and_cache_flash`` (``do_kv_cache_update``, timed with the
    attention in aiconfigurator's collector/vllm/collect_attn.py) and SGLang's
    ``set_kv_buffer`` read K, V and write them to the cache: B·N·2K·D·(2 + e)."""
    from memsim.units import DTYPE_BYTES

    tokens = np.asarray(B, dtype=float) * np.asarray(N, dtype=float)
    e, H, K, D = DTYPE_BYTES[problem.dtype], problem.H, problem.K, problem.D
    if backend == "trtllm":
        return tokens * D * ((H + 2 * K) * ACTIVATION_BYTES + (H + K) * ACTIVATION_BYTES
                             + 2 * K * e)
    return tokens * 2 * K * D * (ACTIVATION_BYTES + e)


@dataclass(frozen=True)
class ArrayPrediction:
    """:func:`predict_arrays`' answer: every field an array over the broadcast (B, N, S).

    ``cost``: the analytic count (every global read at HBM, useful FLOPs); ``l2_cost``: the
    same with K/V re-reads through the closed-form L2 estimate; ``timing`` / ``l2_timing``
    their times (``l2_timing`` is the headline ``memsim attention`` prints); ``timer``:
    how they were timed (re-time another Cost, or the same at other factors, with it);
    ``kernel_class``: the class whose factors were used (None: the profile's own).
    """

    tiling: Tiling
    cost: Cost
    l2_cost: Cost
    timing: Timing
    l2_timing: Timing
    timer: Timer
    kernel_class: str | None


def predict_arrays(problem: AttentionProblem, gpu: GPU | str, algorithm: str = "flash2", *,
                   B=None, N=None, S=None, tiling: Tiling | None = None,
                   matmul_unit: str = "tensor", backend: str | None = None,
                   rotary_dim: int | None = None) -> ArrayPrediction:
    """:func:`predict` over numpy arrays of batch ``B``, queries ``N`` and keys ``S``
    (broadcasting; default the problem's): the template ``problem`` gives heads, head size,
    dtype, mask and pass. Tiles are the template's (``tiling``, else its default Tiling);
    the split-KV count is chosen per element where B, N or S is given, else it is the
    Tiling's own (as :func:`attention_cost` counts one call).

    ``predict(p, gpu, a, backend=b)`` is this function's one-element case, so a sweep or a
    table of measured rows scores exactly what ``memsim attention`` prints. ``rotary_dim``:
    the head elements RoPE rotates (None: the whole head; :func:`kernel_timer`).
    """
    if isinstance(gpu, str):
        gpu = load_gpu(gpu)
    run = production_problem(problem, algorithm, backend)
    grouped = problem
    if tiling is None or run is not problem:
        tiling = default_tiling(run, gpu, algorithm)
    problem = run
    splits = tiling.kv_splits if B is None and N is None and S is None else None
    empty = "fa2"   # what a split without a key tile writes (flash_decode.EMPTY_SPLITS)
    owner = kernel_backend(backend, algorithm, gpu)   # whose kernels run the call
    if decode_kernel(run, owner, gpu, backend) in XQA_KERNELS:
        b, s = np.broadcast_arrays(problem.B if B is None else B, problem.S if S is None else S)
        splits, empty = xqa_splits(b, problem.K, s, gpu.spec.sm_count), "none"
    elif fa3_decodes(problem, algorithm, owner, gpu):
        b, n, s = np.broadcast_arrays(problem.B if B is None else B,
                                      problem.N if N is None else N,
                                      problem.S if S is None else S)
        splits, empty = fa3_num_splits(problem, gpu, b, n, s), "fa3"
    cost, _ = costs_for(problem, gpu, algorithm, B=B, N=N, S=S, tiling=tiling,
                        kv_splits=splits, empty_splits=empty)
    l2_cost, _ = costs_for(problem, gpu, algorithm, B=B, N=N, S=S, tiling=tiling,
                           kv_splits=splits, l2_estimate=True, empty_splits=empty)
    if grouped is not problem:
        # the MHA fallback of a wide group: its CTAs for the query heads of one KV head are
        # neighbours in the grid (one per head) and run together, so each KV head's cache
        # comes from HBM once and its other reads hit L2: the grouped problem's HBM bytes,
        # the per-head kernel's global (L2) bytes
        once, _ = costs_for(grouped, gpu, algorithm, B=B, N=N, S=S, l2_estimate=True)
        l2_cost = replace(l2_cost, hbm_read_bytes=once.hbm_read_bytes,
                          hbm_write_bytes=once.hbm_write_bytes)
    timer = kernel_timer(problem, gpu, algorithm, backend=backend, matmul_unit=matmul_unit,
                         B=B, N=N, S=S, blocks_per_sm=tiling.blocks_per_sm(gpu),
                         rotary_dim=rotary_dim)
    name = timer.kernel_class if backend is None else attention_class(
        problem, algorithm, owner, gpu, backend).name
    mla = mla_production_timing(problem, gpu, algorithm, backend, B, N, S)
    if mla is not None:   # DeepSeek MLA: the production kernels' own structure
        return ArrayPrediction(tiling, cost, l2_cost, mla[0], mla[0], timer, mla[1])
    enc = encoder_production_timing(problem, gpu, algorithm, backend, B, N, S)
    if enc is not None:   # encoder attention: the production kernels' own structure
        return ArrayPrediction(tiling, cost, l2_cost, enc[0], enc[0], timer, enc[1])
    return ArrayPrediction(tiling, cost, l2_cost, timer(cost), timer(l2_cost), timer, name)


def mla_production_timing(problem: AttentionProblem, gpu: GPU, algorithm: str,
                          backend: str | None, B=None, N=None, S=None
                          ) -> tuple[Timing, str] | None:
    """With a ``backend``, DeepSeek-V3's MLA (one 576-wide latent, Dv = 512, no top-k) as
    :mod:`memsim.ops.mla` times the production kernels — prefill FMHA over the decompressed
    K/V when N = S, FlashMLA-style decode when N = 1 — the timing whole-model sums use
    (:func:`memsim.inference.attention_call.mla_kernel_s`), so ``memsim attention`` and
    ``memsim predict`` agree; with the class name. None for every other call."""
    from memsim.ops import mla

    if (backend is None or not problem.mla or problem.mask.kind != "causal"
            or problem.pass_ != "forward" or problem.dtype not in mla.KV_DTYPES
            or (problem.D, problem.Dv) != (mla.LATENT, mla.KV_LORA_RANK)):
        return None
    B, N, S = (np.asarray(v if v is not None else d) for v, d in
               ((B, problem.B), (N, problem.N), (S, problem.S)))
    pred = mla.production(get(algorithm).DECODES, B, N, S, problem.H,
                          kv_dtype=problem.dtype, gpu=gpu, backend=backend)
    if pred is None:
        return None
    # the roofline's vocabulary: the fp8 quantisation pass runs before the attention
    # kernel, as "pre"; ``bound`` the largest term (the floor is ``launch_s``)
    from memsim.ops import bound_of

    t = pred.time_s
    terms = {k: pred.terms_s[k] for k in ("matmul", "serial", "hbm")}
    terms["pre"] = pred.terms_s["quant"]
    compute = terms["matmul"] + terms["serial"]
    one = np.ones_like(np.asarray(t, dtype=float))
    one = float(one) if one.ndim == 0 else one
    return Timing(lower_s=t, upper_s=t, compute_s=compute, memory_s=terms["hbm"],
                  launch_s=pred.launch_s, terms_s=terms, waves=one,
                  wave_efficiency=one, bound=bound_of(terms, 0.0),
                  arithmetic_intensity_flop_per_byte=np.asarray(pred.flops) / np.maximum(
                      np.asarray(pred.hbm_bytes), 1.0)), pred.detail["kernel_class"]


def encoder_production_timing(problem: AttentionProblem, gpu: GPU, algorithm: str,
                              backend: str | None, B=None, N=None, S=None
                              ) -> tuple[Timing, str] | None:
    """Encoder attention where :func:`memsim.ops.encoder.applies` (with a ``backend``,
    FlashAttention-2 over a bidirectional MHA bf16 forward call, N = S) as
    :mod:`memsim.ops.encoder` times the production kernels (TensorRT-LLM's FMHA behind its
    QKV preprocessing, FlashAttention-3/4 varlen, SGLang's Triton), with the class name;
    the silicon comparison's encoder rows score the same function. None for every other
    call."""
    from memsim.ops import encoder

    B, N, S = (np.asarray(v if v is not None else d) for v, d in
               ((B, problem.B), (N, problem.N), (S, problem.S)))
    if not encoder.applies(problem, algorithm, backend, N, S):
        return None
    pred = encoder.predict(B, N, problem.H, problem.D, gpu=gpu, backend=backend)
    t = pred.time_s
    terms = dict(pred.terms_s)
    one = np.ones_like(np.asarray(t, dtype=float))
    one = float(one) if one.ndim == 0 else one
    return Timing(lower_s=t, upper_s=t, compute_s=pred.detail["compute_s"],
                  memory_s=terms["hbm"], launch_s=pred.launch_s, terms_s=terms, waves=one,
                  wave_efficiency=one, bound=pred.bound,
                  arithmetic_intensity_flop_per_byte=np.asarray(pred.flops) / np.maximum(
                      np.asarray(pred.hbm_bytes), 1.0)), pred.detail["kernel_class"]


MMA_ROWS = 16  # mma.sync m16n8k16: the M rows of one tensor-core MMA (TensorRT-LLM XQA, FA-2)


def backend_time_s(cost: Cost, gpu: GPU, problem: AttentionProblem, algorithm: str,
                   backend: str | None, B, N, blocks_per_sm=None, S=None):
    """Seconds of a (vectorised) attention Cost as ``backend``'s fitted kernel class runs it
    (:func:`kernel_timer`), for whole-model sums over arrays of B, N (and S, which DSA's
    sparse kernel needs; default the template's). ``problem`` is the template (its H, K
    pick the class and the padding)."""
    return kernel_timer(problem, gpu, algorithm, backend=backend, B=B, N=N, S=S,
                        blocks_per_sm=blocks_per_sm)(cost).time_s


def class_serial_s(cls, gpu: GPU, rows):
    """The class's per-row serial time spread over the SMs: row_s · rows / SMs (s), where
    ``rows`` counts the rows of the kernel's query tiles, padding included (arrays)."""
    if not cls.row_s:
        return None
    return cls.row_s * np.asarray(rows, dtype=float) / gpu.spec.sm_count


def attention_class(problem: AttentionProblem, algorithm: str, backend: str | None,
                    gpu: GPU | None = None, framework: str | None = None):
    """The fitted kernel class (memsim.ops.classes) of ``backend``'s kernel for this call:
    "dsa/…" for sparse attention, "mla/…" for MLA, "…/decode/…" for the split-KV decode
    kernel (TensorRT-LLM's per decode kernel, :func:`decode_kernel`, given the ``gpu``),
    "…/context/…" for prefill. ``problem``: the production problem
    (:func:`production_problem`); ``framework``: the framework that calls ``backend``'s
    kernel (:func:`kernel_backend`; None: ``backend`` itself)."""
    from memsim.algorithms import get, runs_mask
    from memsim.ops.classes import kernel_class

    if runs_mask(algorithm, "topk"):
        return kernel_class("dsa", backend)
    family = "mla" if problem.mla else "attention"
    phase = "decode" if get(algorithm).DECODES else "context"
    variant = None
    if phase == "decode" and gpu is not None:
        variant = decode_kernel(problem, backend, gpu, framework)
        if problem.dtype == "fp8" and fa3_decodes(problem, algorithm, backend, gpu):
            variant = "fp8"   # FA3's e4m3 decode: its own tiles and MMAs, its own class
        if vllm_fa4(problem, framework or backend, gpu):
            variant = "fa4"   # FlashAttention-4's CuTe kernel: its own per-CTA steps
    if phase == "context" and problem.dtype == "fp8" and gpu is not None \
            and (fa3_prefill(problem, backend, gpu) or trtllm_qgmma_prefill(problem, backend, gpu)):
        variant = "fp8"   # FA3's or fmha_v2's e4m3 kernel: its own tiles, its own class
    if phase == "context" and gpu is not None and vllm_fa4(problem, framework or backend, gpu):
        variant = "fa4"   # FlashAttention-4's CuTe kernel: its own tiles, its own class
    return kernel_class(f"{family}/{phase}", backend, variant)


def trtllm_qgmma_prefill(problem: AttentionProblem, backend: str | None, gpu: GPU) -> bool:
    """Whether ``backend``'s prefill of ``problem`` is TensorRT-LLM's SM90 e4m3 context FMHA
    (fmha_v2's warp-specialised QGMMA kernels, which an fp8 KV cache forces:
    :func:`memsim.silicon.classes._context_dtype`), a kernel apart from the bf16 one: QGMMA
    takes its B operand K-major only, so the DMA warpgroup transposes every V tile in
    shared memory before the P·V GMMA, through one scratch buffer, with all 128 of its
    threads instead of one TMA thread (NVIDIA/TensorRT-LLM
    cpp/kernels/fmha_v2/src/fmha/warpspec/kernel_traits.h ``DMA_GROUP_TRANSPOSE_V`` for
    e4m3/e5m2, ``V_SCRATCH_BUFFERS`` 1, ``NUM_THREADS_IN_DMA_GROUP`` 128; warpspec/dma.h
    ``transpose_v_tile`` per KV tile of each query-tile pair). Its fixed steps per query
    tile are longer: aiconfigurator's H200 rows with a 128-token window at D = 64, where
    every query-tile pair loads one or two KV tiles, take 1.33× the bf16 kernel's time,
    where the fully causal ones take 0.85×. Hopper only (Blackwell runs trtllm-gen's
    kernels, Ada fmha_v2's non-warp-specialised ones); causal prefill, not MLA."""
    return (backend == "trtllm" and gpu.architecture == "hopper" and problem.dtype == "fp8"
            and problem.mask.causal and not problem.mla and problem.pass_ == "forward")


def decode_kernel(problem: AttentionProblem, backend: str | None, gpu: GPU,
                  framework: str | None = None) -> str | None:
    """Which of TensorRT-LLM's decode kernels runs the (production) GQA/MHA ``problem`` on
    ``gpu``; None for other backends and MLA. Each has its own fitted class
    (``attention/decode/trtllm/<kernel>``), because their fixed cost per CTA differs
    threefold at the same shape (aiconfigurator's H100/H200 rows at batch ≥ 512 and ≤ 16
    cached tokens, SM-time per (sequence, KV head): MMHA 1.5 µs, XQA HMMA 4.5-5.6 µs,
    XQA QGMMA 1.3-2.0 µs at D ≤ 128; H100 = H200, so not a memory cost):

    - "mmha" (Ampere/Hopper): one query head per KV head (MHA, and groups over 32 that
      :func:`production_problem` turns into MHA): decoderMaskedMultiheadAttention, one
      CTA per (sequence, head), several in multi-block mode
      (:func:`mmha_seq_len_tiles`); also any head size not a multiple of
      :data:`XQA_HEAD_ALIGN`, which both XQA kernels refuse
      (NVIDIA/TensorRT-LLM decoderXQAImplJIT/kernelUtils.cpp ``supportConfigHMMA``,
      ``supportConfigQGMMA``: ``head_size % 16 != 0`` → unsupported).
    - "xqa_gmma": XQA's warp-specialised TMA + GMMA kernel (mha_sm90.cu), which
      ``supportConfigQGMMA`` (decoderXQAImplJIT/kernelUtils.cpp) grants only on SM90 with
      an fp8 (E4M3) KV cache.
    - "xqa_hmma": XQA's mma.sync kernel (mha.cu: 4 warps along the keys, 64 keys each,
      ``ctaShapeInWarps = {4, 1, 2}``) for 16-bit caches on Ampere/Hopper and every cache
      elsewhere ``supportConfigHMMA`` accepts.

    On Blackwell TensorRT-LLM decodes with its trtllm-gen kernels, one head per KV head
    included (NVIDIA/TensorRT-LLM @c8b9bfc7 cpp/tensorrt_llm/kernels/xqaDispatcher.cpp
    ``XqaDispatcher::shouldUse``: with ``mUseTllmGen`` it falls back to MMHA only for beam
    search, StreamingLLM, cross attention, variable windows and groups over 16, not for
    MHA; aiconfigurator's B200 MHA rows: 19.5 % median, p90 65.2 % as MMHA, 11.9 % / 28.2 %
    as trtllm-gen, `memsim validate --source aiconfigurator --sample 2000`):
    "trtllm_gen", whose structure is not modelled apart. Groups of 17-32 query heads per
    KV head stay "trtllm_gen" although that source (also @026da036) sends groups over 16
    to MMHA: aiconfigurator's B200 rows of them (TensorRT-LLM 1.3.0rc20, 4384 of the
    table's 50 520 rows, 292 of a `--gpu b200_sxm --backend trtllm --ops
    generation_attention --sample 2000` run) time as trtllm-gen does (median |error|
    14.4 %, bias −13.6 %), not as MMHA (one CTA per KV head: bias +643 %, the run's p90
    26.9 → 435 %; as MHA, one CTA per query head: +256 %, p90 58 %); groups over 32 are
    MHA already (:func:`production_problem`). Trtllm-gen: it
    keeps the all-kernel model (per-row time spread over the SMs, memsim's own split
    count) and the class fitted with it (``attention/decode/trtllm``; Blackwell is never
    fitted). Timing it as the Hopper kernel of the same build (QGMMA: TMA-fed,
    warp-specialised) with this module's per-CTA structure puts B200 at 23.9 % median
    (bias −18 %) against 10.5 % this way (`memsim validate --source aiconfigurator
    --sample 2000`, trtllm rows). A ``framework`` that hands its decode to TensorRT-LLM's
    kernels (:func:`memsim.ops.attention_kernels_backend`, the one home of that rule: vLLM
    on the SM100 family) calls trtllm-gen through FlashInfer for every group, MHA
    included: "trtllm_gen" (vLLM's B200 rows with one head per KV head: p90 |error| 71 %
    as MMHA, 25 % as trtllm-gen).
    """
    from memsim.ops import attention_kernels_backend

    if backend != "trtllm" or problem.mla:
        return None
    if framework is not None and attention_kernels_backend(framework, gpu) != framework:
        return "trtllm_gen"   # the framework calls TensorRT-LLM's kernels through FlashInfer
    if gpu.architecture == "blackwell":
        return "trtllm_gen"
    if problem.H // max(problem.K, 1) <= 1:
        return "mmha"
    if problem.D % XQA_HEAD_ALIGN:
        return "mmha"
    if gpu.architecture == "hopper" and problem.dtype == "fp8":
        return "xqa_gmma"
    return "xqa_hmma"


def costs(algorithm: str, *, B, N, H, D, S=None, K=None, Dv=None, dtype_bytes=None,
          mla=False, block_q=None, block_kv=None, heads_per_block=None, kv_splits=1,
          warps=None, mask: str | None = None, window=0, chunk=1, top_k=None,
          pass_: str = "forward", index_heads=None, index_head_dim=None,
          index_dtype_bytes=None, index_block_q=None) -> Cost:
    """Vectorised attention cost: every size may be a numpy array (they broadcast).

    ``mask``: 'full', 'causal', 'window' (causal, ``window``), 'band' (bidirectional,
    ``window`` wide), 'chunk' (``chunk``), or 'topk' for dsa (``top_k``); default that of
    :class:`~memsim.problem.Mask` (causal). Every default is the one the rest of memsim
    uses: storage dtype that of :class:`~memsim.problem.AttentionProblem`, indexer sizes
    those of :class:`~memsim.problem.Indexer`, and tiles by the algorithm's own rules
    (:func:`memsim.tiling.default_tiling`: heads_per_block = H / K, Bc from FA-2's launch
    templates, Br from the algorithm's ``default_block_q``, 4 warps), so ``costs`` and
    ``memsim attention`` answer the same question alike. Without a GPU the tiles are not
    shrunk to fit shared memory (they fit every profile at D ≤ 128 in 16 bits; pass
    explicit tiles otherwise). No fit check: this is the fast path for sweeps.
    """
    from memsim.algorithms import get
    from memsim.algorithms._tiles import DEFAULT_THREADS, INDEX_BLOCK_Q
    from memsim.problem import Indexer, Mask
    from memsim.tiling import fa2_block_kv
    from memsim.units import DTYPE_BYTES

    module = get(algorithm)
    ix = Indexer()
    mask = mask or Mask().kind
    given = dict(block_q=block_q, block_kv=block_kv, heads_per_block=heads_per_block,
                 kv_splits=kv_splits, warps=warps, index_block_q=index_block_q)
    B, N, S, H, K, D, Dv, i64 = _checked_sizes(
        B, N, S, H, K, D, Dv, mask=mask, pass_=pass_, window=window, chunk=chunk,
        top_k=top_k, index_heads=index_heads, index_head_dim=index_head_dim,
        sizes={k: v for k, v in given.items() if v is not None})
    hpb = H // K if heads_per_block is None else i64(heads_per_block)
    if block_kv is None:
        block_kv = np.vectorize(fa2_block_kv, otypes=[np.int64])(D)
    if block_q is None:
        block_q = module.default_block_q(hpb, N)
    dtype = AttentionProblem.model_fields["dtype"].default
    e = DTYPE_BYTES[dtype] if dtype_bytes is None else limits.finite_array("dtype_bytes",
                                                                            dtype_bytes)
    if index_dtype_bytes is not None:
        index_dtype_bytes = limits.finite_array("index_dtype_bytes", index_dtype_bytes)
    if mask == "band":
        geometry = MaskGeometry("band", half=i64(window) // 2)
    elif mask == "topk":
        geometry = MaskGeometry("causal")
    else:
        geometry = MaskGeometry(mask, w=i64(window), c=i64(chunk))
    x = Arrays(B=i64(B), N=N, S=S, H=H, K=K, D=D, Dv=Dv, e=np.asarray(e, float),
               mla=np.asarray(mla), Br=i64(block_q), Bc=i64(block_kv), hpb=hpb,
               splits=i64(kv_splits), warps=i64(DEFAULT_THREADS // 32 if warps is None
                                                else warps),
               geometry=geometry, top_k=None if top_k is None else i64(top_k),
               index_heads=ix.heads if index_heads is None else index_heads,
               index_head_dim=ix.head_dim if index_head_dim is None else index_head_dim,
               index_e=DTYPE_BYTES[ix.dtype] if index_dtype_bytes is None
               else index_dtype_bytes,
               index_Br=i64(INDEX_BLOCK_Q if index_block_q is None else index_block_q))
    return cost_of(algorithm, x, pass_)


MASKS = ("full", "causal", "window", "band", "chunk", "topk")
PASSES = ("forward", "backward", "forward+backward")


def _checked_sizes(B, N, S, H, K, D, Dv, *, mask, pass_, window, chunk, top_k, index_heads,
                   index_head_dim, sizes):
    """The size arguments of :func:`costs` checked (positive integers below the ceilings of
    :mod:`memsim.limits`, shapes that broadcast, N ≤ S, K divides H) and converted to int64;
    also returns the int64 converter for the tile sizes."""
    from memsim.errors import InputError

    if mask not in MASKS:
        raise InputError("mask", mask, f"must be one of {', '.join(MASKS)}")
    if pass_ not in PASSES:
        raise InputError("pass", pass_, f"must be one of {', '.join(PASSES)}")
    tok, hd, hh = limits.MAX_TOKENS, limits.MAX_HEAD_DIM, limits.MAX_HEADS
    B = limits.size_array("B", B, limits.MAX_BATCH)
    N = limits.size_array("N", N, tok)
    S = N if S is None else limits.size_array("S", S, tok)
    H = limits.size_array("H", H, hh)
    K = H if K is None else limits.size_array("K", K, hh)
    D = limits.size_array("D", D, hd)
    Dv = D if Dv is None else limits.size_array("Dv", Dv, hd)
    if mask in ("window", "band"):
        limits.size_array("window", window, tok)
    if mask == "chunk":
        limits.size_array("chunk", chunk, tok)
    if top_k is not None:
        limits.size_array("top_k", top_k, tok)
    for name, value in sizes.items():
        limits.size_array(name, value, tok)
    if index_heads is not None:
        limits.size_array("index_heads", index_heads, hh)
    if index_head_dim is not None:
        limits.size_array("index_head_dim", index_head_dim, hd)
    limits.check_broadcast(B=B, N=N, S=S, H=H, K=K, D=D, Dv=Dv, **sizes)
    if np.any(N > S):
        raise InputError("N", int(np.max(N)), "must not exceed S (queries are the last N of "
                         "the S positions)")
    if np.any(H % K):
        raise InputError("K", np.asarray(K).ravel()[:3].tolist(), "must divide H")
    return B, N, S, H, K, D, Dv, lambda v: np.asarray(v, dtype=np.int64)


def costs_for(problem: AttentionProblem, gpu: GPU, algorithm: str, *, B=None, N=None,
              S=None, tiling: Tiling | None = None, l2_estimate: bool = False,
              kv_splits: int | None = None, empty_splits: str = "fa2"
              ) -> tuple[Cost, Tiling]:
    """Vectorised cost of ``problem`` with B, N, S replaced by (broadcasting) arrays.

    Tiles come from ``tiling`` or the template problem's default Tiling; for the decoding
    algorithms (flash_decode, dsa) the split count is chosen per element by the rule
    :func:`memsim.tiling.default_tiling` uses, unless ``kv_splits`` fixes it;
    ``empty_splits``: what the decode kernel's launched splits without a key tile write
    (:data:`memsim.algorithms.flash_decode.EMPTY_SPLITS`).
    ``l2_estimate`` counts K/V re-reads through the closed-form L2 estimate
    (:meth:`memsim.algorithms._arrays.Arrays.hbm_key_loads`) instead of assuming no reuse.
    Returns the Cost (arrays of the broadcast shape) and the template Tiling.
    """
    check_supported(algorithm, problem)
    if tiling is None:
        tiling = default_tiling(problem, gpu, algorithm)
    B = limits.size_array("B", problem.B if B is None else B, limits.MAX_BATCH)
    N = limits.size_array("N", problem.N if N is None else N, limits.MAX_TOKENS)
    S = limits.size_array("S", problem.S if S is None else S, limits.MAX_TOKENS)
    limits.check_broadcast(B=B, N=N, S=S)
    B, N, S = np.broadcast_arrays(B, N, S)
    x = replace(from_problem(problem, tiling, gpu if l2_estimate else None), B=B, N=N, S=S)
    # the split-KV count, chosen per element (1 for algorithms that never split)
    if kv_splits is None:
        kv_splits = decode_splits(algorithm, gpu, B, N, S, problem.H, tiling, problem.mask)
    x = replace(x, splits=kv_splits, empty_splits=empty_splits)
    cost = cost_of(algorithm, x, problem.pass_)
    shape = B.shape
    return Cost(**{k: np.broadcast_to(v, np.broadcast_shapes(np.shape(v), shape)).reshape(shape)
                   for k, v in vars(cost).items()}), tiling
