"""The one fit of the kernel classes (``memsim/ops/kernel_classes.toml``) to measured rows.

``memsim validate --source aiconfigurator --fit-classes [--classes PATTERN] [--write]``
(``make fit-classes``) and the calibration section of every ``--source aiconfigurator``
summary both run :func:`fit_spec`.

What is fitted is memsim's own prediction: a trial set of class numbers is put in place
with :func:`memsim.ops.classes.trial_classes` and the op class's row mapper
(:mod:`memsim.silicon.classes`, :mod:`memsim.silicon.op_rows`) re-predicts the rows, so the
fitted numbers are exactly the ones ``memsim op`` / ``memsim attention --backend`` use,
with whatever physics the mapper has today (no re-timing approximation).

- Rows: per :class:`FitSpec` (one class, or several fitted together such as the four
  custom all-reduce algorithms), the scored rows (mapped, not outliers) of one op class
  and backend whose dtype column has the class's value, on the GPUs of
  :data:`memsim.ops.classes.FIT_GPUS` (H100 SXM, H200) only: a seeded sample of whole
  model shapes, at most ``max_rows`` per GPU (:func:`memsim.silicon.run._choose`).
- Objective: ``scipy.optimize.least_squares`` on r = log(t_pred / t_meas), loss soft-L1
  with f_scale 0.1 (quadratic inside ±10 %, linear beyond: the median error is the target,
  and a few structural misses must not drag every other row), parameters in log space
  within :data:`BOUNDS`, starting from the file's numbers, until the loss or the
  parameters change by less than 1e-4 (relative) or after :data:`MAX_NFEV` iterations.
  Free parameters per spec: ``floor_s``, ``row_s`` and efficiency units; the others keep
  the file's values.
- Numbers are rounded to 4 significant digits and every error is computed with the
  rounded numbers (what is written is what is scored).
- Bound shares (:func:`bound_share`): per fitted efficiency, the share of the fitted rows
  whose time it sets with the fit's numbers. A unit that binds on (almost) no row is not
  determined by the rows — its number is wherever the fit left it — yet it can bind on an
  unseen GPU; the report prints the shares so such a unit is seen.
- Checks: per fitted GPU, median / p90 |error| of the fit; leave-one-GPU-out (refit on
  the other fitted GPU from mid-range numbers, :data:`NEUTRAL`, score this one); every
  other GPU (B200, B300, GB200, A100, L40S) is "unseen": never in a fit, scored with the
  fitted numbers.

scipy comes with the ``silicon`` extra; it is imported only when a fit runs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from memsim.ops.classes import DATA_FILE, KernelClass, trial_classes
from memsim.ops.comm import COLLECTOR_CLONED
from memsim.silicon.tables import Rows

LOSS, F_SCALE = "soft_l1", 0.1
BOUNDS = {"floor_s": (1e-7, 1e-2), "row_s": (1e-12, 1e-5), "cta_s": (1e-9, 1e-4),
          "key_s": (1e-12, 1e-6), "host_share": (1e-3, 1.0), "prelaunch_share": (1e-3, 1.0),
          "skew_s": (1e-7, 1e-3), "efficiency": (0.01, 1.0)}
# parameters that are class fields, not efficiencies
TIMES = ("floor_s", "row_s", "cta_s", "key_s", "host_s", "prelaunch_s", "skew_s")
# parameters fitted as a share of another field: host_s = host_share × floor_s (the host
# work after the last launch is part of the floor: memsim.ops.classes._build requires
# host_s ≤ floor_s, which a share in (0, 1] keeps by construction); likewise prelaunch_s,
# the host work before the launch
SHARES = {"host_share": ("host_s", "floor_s"), "prelaunch_share": ("prelaunch_s", "floor_s")}
MAX_ROWS = 2000        # per fitted GPU and spec (a seeded sample of whole model shapes)
MAX_NFEV = 40          # least_squares iterations (each costs 1 + parameters predictions)
TOL = 1e-4             # relative change of the loss or the parameters that ends a fit
DIGITS = 4             # significant digits written
DSA_RERUNS = 6         # refits of the DSA decode spec from its own numbers (specs())
# where a leave-one-GPU-out fit starts (mid-range, seen no row)
NEUTRAL = {"floor_s": 1e-5, "row_s": 1e-7, "cta_s": 1e-6, "key_s": 1e-8,
           "host_share": 0.5, "prelaunch_share": 0.5, "skew_s": 1e-5, "eff": 0.5}
ALLREDUCE_ALGOS = ("oneshot", "twoshot", "ring", "nvls")
METHOD = ("scipy least_squares on log time, soft-L1 f_scale 0.1, re-predicting the rows "
          "with memsim's own mapper")


def _neutral(param: str) -> float:
    """The mid-range start of ``param`` (:data:`NEUTRAL`; every efficiency starts at 0.5)."""
    return NEUTRAL.get(param, NEUTRAL["eff"])


@dataclass(frozen=True)
class FitSpec:
    """Classes fitted together on one op class's rows of one backend.

    ``keys``: the kernel classes; ``free``: their parameters fitted (``floor_s``,
    ``row_s`` or an efficiency unit); ``where``: column → value the rows must have (the
    kernel family, e.g. ``{"gemm_dtype": "fp8"}``); ``unused``: (class, parameter) pairs
    of ``free`` that one class's model never reads (neither fitted nor written);
    ``min_rows``: the sample per GPU the spec needs at least (a smaller ``--sample`` is
    raised to it: :meth:`rows_per_gpu`), where fewer rows leave a parameter unidentified;
    ``reruns``: refits from its own rounded numbers until they repeat, for a spec whose
    rerun from the numbers it wrote moves them (:func:`fit_spec_numbers`), so that the
    written numbers are the fit's fixed point;
    ``tied``: parameter → class whose current value of it the spec's classes are held at
    (copied at fit time by :func:`tied_base`, never fitted, named in the source text)."""

    keys: tuple[str, ...]
    op_class: str
    backend: str
    free: tuple[str, ...]
    where: dict[str, str] = field(default_factory=dict)
    unused: tuple[tuple[str, str], ...] = ()
    min_rows: int = 0
    reruns: int = 0
    tied: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.keys[0] if len(self.keys) == 1 else "+".join(self.keys)

    def rows_per_gpu(self, max_rows: int) -> int:
        """The rows per GPU this spec is fitted on when ``max_rows`` are asked for."""
        return max(max_rows, self.min_rows)

    def describe(self) -> str:
        rows = " ".join(f"{v}" for v in self.where.values())
        return f"{rows + ' ' if rows else ''}{self.op_class}/{self.backend}"

    def select(self, rows: Rows) -> np.ndarray:
        from memsim.silicon.classes import DERIVED_COLUMNS

        keep = np.ones(len(rows), dtype=bool)
        for column, value in self.where.items():
            col = (DERIVED_COLUMNS[column](rows) if column in DERIVED_COLUMNS
                   else rows.col(column, ""))
            keep &= np.asarray(col, dtype=object).astype(str) == value
        return keep


def specs() -> list[FitSpec]:
    """Every class memsim can fit on the database, by the key :func:`kernel_class` uses."""
    from memsim.ops.gemm import launch_of

    out: list[FitSpec] = []
    families = (("bf16", "bfloat16"), ("fp8", "fp8"), ("fp8_block", "fp8_block"))
    for b in ("trtllm", "vllm", "sglang"):
        for fam, db in families:
            # vLLM's block-scaled fp8 GEMM is three kernels (memsim.ops.gemm): fitted together
            keys = ((f"gemm/{b}/{fam}", f"gemm/{b}/{fam}_flashinfer", f"gemm/{b}/{fam}_cutlass")
                    if (b, fam) == ("vllm", "fp8_block") else (f"gemm/{b}/{fam}",))
            # vLLM's per-token fp8 quantisation: a cost per CTA (row) as well
            row = ("row_s",) if launch_of(b, fam).token_ctas else ()
            out.append(FitSpec(keys, "gemm", b, ("floor_s", "tensor", "hbm", "l2", *row),
                               {"gemm_dtype": db}))
        # TensorRT-LLM's MXFP4 MoE on Hopper is a Triton kernel of its own
        # (memsim.ops.moe.runs_triton_kernels); no other backend has a class for it
        moe_families = families + ((("w4a16_mxfp4", "w4a16_mxfp4"),) if b == "trtllm" else ())
        for fam, db in moe_families:
            # MoE: the weight stream (hbm) and the activation passes (hbm_act) apart; the
            # per-wave tile time (cta_s) only where it was kept: on moe/trtllm/fp8 it made
            # the leave-one-GPU-out errors worse; vLLM's per-tensor fp8 runs FlashInfer's
            # untuned 128 × 16 tile, bound on its tiles (memsim.ops.moe, docs/silicon.md);
            # vLLM's Triton bf16 under EP runs a program per block of every expert, local
            # or not (memsim.ops.moe.triton_ep_terms)
            tile = ("cta_s",) if (b, fam) in (("trtllm", "bf16"), ("vllm", "fp8"),
                                              ("vllm", "bf16")) else ()
            # TensorRT-LLM's block-scaled fp8 on Hopper walks every local expert per call
            # (row_s: memsim.ops.moe.problem_walk_s)
            if (b, fam) == ("trtllm", "fp8_block"):
                tile = ("row_s",)
            # its Triton MXFP4 MoE on Hopper pays a time per token entering the layer
            # (row_s: memsim.ops.moe.token_walk_s)
            if (b, fam) == ("trtllm", "w4a16_mxfp4"):
                tile = ("row_s",)
            # vLLM fp8 is bound on its tiles, not on its weight stream (equal on H100 and
            # H200): its hbm is tied to the CUTLASS grouped GEMM's weight stream as fitted on
            # TensorRT-LLM's fp8 MoE (moe/trtllm/fp8's current value), else the fit
            # buys its high-token rows' H200 speed-up with an HBM-bound decode (at 0.20:
            # H100/H200 1.24 at 1-1024 tokens, measured 1.00-1.03); 2000 rows are two model
            # shapes (sampled whole), 6000 six of its 14
            fallback = (b, fam) == ("vllm", "fp8")
            weights = () if fallback else ("hbm",)
            tied = {"hbm": "moe/trtllm/fp8"} if fallback else {}
            # moe/trtllm/bf16: 8000 rows per GPU, as a 2000-row sample of whole shapes (about
            # 25 of its ~530) misrepresents the table: fitted on 2000 / 4000 / 8000 rows, the
            # full table's bf16 rows scored H100 12.8/49.7, 11.4/41.3, 8.5/32.0 % median/p90
            # (H200 13.1/46.2, 10.9/36.6, 8.7/28.1 %)
            rows = {("trtllm", "bf16"): 8000, ("vllm", "fp8"): 6000}.get((b, fam), 0)
            # vLLM's block-scaled fp8 on Hopper is two kernels, Triton without EP and
            # FlashInfer's CUTLASS with it (memsim.ops.moe.class_variant): fitted together
            keys = ((f"moe/{b}/{fam}", f"moe/{b}/{fam}_flashinfer")
                    if (b, fam) == ("vllm", "fp8_block") else (f"moe/{b}/{fam}",))
            out.append(FitSpec(keys, "moe", b,
                               ("floor_s", "tensor", *weights, "l2", "hbm_act", *tile),
                               {"moe_dtype": db}, min_rows=rows, tied=tied))
        out.append(FitSpec(tuple(f"allreduce/{a}/{b}" for a in ALLREDUCE_ALGOS), "allreduce",
                           b, ("floor_s", "link")))
        bf16_kv = {"kv_cache_dtype": "bfloat16"}
        # vLLM's prefill first writes the KV cache, one CTA per token, each CTA's latency
        # (cta_s) binding where it moves few bytes (memsim.attention
        # .vllm_cache_write_latency_s)
        vllm_write = ("cta_s",) if b == "vllm" else ()
        # vLLM's prefill rows on at least 3000 per GPU, the sample its classes were fitted on
        context_rows = 3000 if b == "vllm" else 0
        out += [
            FitSpec((f"attention/context/{b}",), "context_attention", b,
                    ("floor_s", "tensor", "hbm", "row_s", *vllm_write),
                    {"attn_dtype": "bfloat16", **bf16_kv}, min_rows=context_rows),
        ]
        # encoder attention (memsim.ops.encoder): fmha_v2's warp-specialised kernel waits
        # out a fixed time per key tile (cta_s); FA3's ping-pong hides it, but its softmax
        # (exp + FP32 FMAs, fp32) binds against its MMAs at D = 64
        if b != "sglang":
            out.append(FitSpec((f"attention/encoder/{b}",), "encoder_attention", b,
                               ("floor_s", "tensor", "row_s",
                                "cta_s" if b == "trtllm" else "fp32"),
                               {"attn_dtype": "bfloat16"}))
        if b == "vllm":
            # vLLM with an fp8 cache runs FA3's e4m3 kernel (memsim.attention.fa3_prefill)
            out.append(FitSpec((f"attention/context/{b}/fp8",), "context_attention", b,
                               ("floor_s", "tensor", "hbm", "row_s", *vllm_write),
                               {"attn_dtype": "bfloat16", "kv_cache_dtype": "fp8"},
                               min_rows=context_rows))
            # vLLM's FlashAttention-4 prefill on SM90 (head size > 256: memsim.attention
            # .vllm_fa4): 64 × 64 tiles, one K/V stage, P through shared memory
            out.append(FitSpec((f"attention/context/{b}/fa4",), "context_attention", b,
                               ("floor_s", "tensor", "hbm", "row_s"),
                               {"attn_dtype": "bfloat16", **bf16_kv,
                                "vllm_flash_attn": "fa4"}))
        if b == "trtllm":
            # TensorRT-LLM with an fp8 cache runs fmha_v2's e4m3 kernel whatever attn_dtype
            # says (memsim.attention.trtllm_qgmma_prefill)
            out.append(FitSpec((f"attention/context/{b}/fp8",), "context_attention", b,
                               ("floor_s", "tensor", "hbm", "row_s"), {"kv_cache_dtype": "fp8"}))
        # decode: tensor held (MMAs padded to 16 rows; the rows cannot tell it apart);
        # TensorRT-LLM: one class per decode kernel (memsim.attention.decode_kernel), each
        # on the rows that kernel runs, whatever their KV-cache dtype
        if b == "trtllm":
            # XQA QGMMA's rows with a separate RoPE kernel (memsim.attention
            # .xqa_separate_rope) fit that kernel's latency, class qkv_pre, beside it; on
            # at least 3000 rows per GPU (at 2000 the seeded H200 sample holds no D = 64
            # row, the only rows that run that kernel, and qkv_pre is unidentified: H100
            # leave-one-GPU-out p90 72.6 %)
            pre = f"attention/decode/{b}/qkv_pre"
            out += [FitSpec((f"attention/decode/{b}/{k}", *((pre,) if k == "xqa_gmma" else ())),
                            "generation_attention", b,
                            ("floor_s", "hbm", "row_s",
                             *(("cta_s", "key_s") if k.startswith("xqa") else ()),
                             *(("fp32", "cta_s", "key_s") if k == "mmha" else ())),
                            {"decode_kernel": k},
                            tuple((pre, p) for p in ("hbm", "row_s", "cta_s", "key_s"))
                            if k == "xqa_gmma" else (),
                            min_rows=3000 if k == "xqa_gmma" else 0)
                    for k in ("xqa_hmma", "xqa_gmma", "mmha")]
        else:
            out.append(FitSpec((f"attention/decode/{b}",), "generation_attention", b,
                               ("floor_s", "hbm", "row_s"), bf16_kv))
        if b == "vllm":
            # vLLM with an fp8 cache runs FA3's e4m3 decode (memsim.attention.fa3_decodes):
            # tensor free, since its MMAs over the padded kBlockM rows (64 at D ≤ 128, 128
            # above: memsim.ops.fa3.tile) time the fp8 rows, which run as fast on H200 as
            # on H100 and slow down with the head size where the bf16 rows do not
            out.append(FitSpec((f"attention/decode/{b}/fp8",), "generation_attention", b,
                               ("floor_s", "tensor", "hbm", "row_s"), {"kv_cache_dtype": "fp8"}))
            # vLLM's FlashAttention-4 decode on SM90 (head size > 256: memsim.attention
            # .vllm_fa4): its split CTAs' fixed steps (row_s) on its own rows
            out.append(FitSpec((f"attention/decode/{b}/fa4",), "generation_attention", b,
                               ("floor_s", "hbm", "row_s"),
                               {**bf16_kv, "vllm_flash_attn": "fa4"}))
        # MLA (memsim.ops.mla): one class per phase and KV-cache dtype (an fp8 cache runs
        # fp8 kernels after a quantisation pass), on the per-kernel tables (vLLM has none:
        # its MLA decode classes are fitted on the module rows, below; its prefill class is
        # not fitted, docs/silicon.md), and the absorbed BMMs per dtype
        for fam, db in (("bf16", "bfloat16"), ("fp8", "fp8")):
            out += [FitSpec((f"mla/{phase}/{b}/{fam}",), op, b,
                            ("floor_s", "tensor", "hbm", "row_s"), {"kv_cache_dtype": db})
                    for phase, op in (("context", "context_mla"),
                                      ("decode", "generation_mla")) if b != "vllm"]
            out.append(FitSpec((f"mla_bmm/{b}/{fam}",), "mla_bmm", b,
                               ("floor_s", "tensor", "hbm", "l2"), {"bmm_dtype": db}))
    # TensorRT-LLM's DSA decode on Hopper, two kernels fitted together on the same rows
    # (decode module rows, bf16 cache: the only one SM90 DSA runs; the context module
    # rows stay held out): FlashMLA's SM90 sparse kernel (memsim.attention
    # .sparse_mla_kernel), its per-row cost, and the indexer's top-k before it
    # (memsim.attention.indexer_topk_s), its per-row fixed steps and per-logit time.
    # Fitted one after the other, each fit moved the other's optimum: no rerun
    # reproduced the file. Fitted together, the last written digit of key_s still flipped
    # between reruns (TOL, and the 1e-3 relative step of the Jacobian in log space, are
    # coarser than the 4 digits written; a tighter TOL alone did not settle it): refitted
    # from its own numbers until they repeat
    sm90, topk = "dsa/trtllm/sparse_sm90", "dsa/trtllm/indexer_topk"
    out.append(FitSpec((sm90, topk), "dsa_generation_module", "trtllm",
                       ("row_s", "cta_s", "key_s"), {"kv_cache_dtype": "bfloat16"},
                       unused=((sm90, "cta_s"), (sm90, "key_s"), (topk, "row_s")),
                       reruns=DSA_RERUNS))
    # vLLM's FlashMLA sparse kernels (memsim.ops.sparse_mla) on its CUDA-graphed decode
    # module rows: a bf16 cache runs the sparse prefill kernel, an fp8 cache the fp8
    # sparse decode kernel; the host's time per kernel launch of the eager DSA prefill
    # module (the collector runs it without a CUDA graph: memsim.inference.mla_module
    # ._graphed, .eager_host_s) on the context module rows, fitted after the two sparse
    # classes (its rows' kernel time uses them)
    for kernel, db, row in (("prefill", "bfloat16", ("row_s",)), ("decode", "fp8", ())):
        out.append(FitSpec((f"dsa/vllm/sparse_{kernel}",), "dsa_generation_module", "vllm",
                           ("floor_s", "tensor", *row), {"kv_cache_dtype": db}))
    out.append(FitSpec(("module/vllm/eager",), "dsa_context_module", "vllm", ("floor_s",)))
    # the element-wise kernels of vLLM's MLA module in its CUDA graph
    # (memsim.inference.mla_module.aux_s: native norms and RoPE, copies): one kernel's time
    # and their streaming, on the prefill-module rows of the MHA path (FlashAttention
    # prefill: no decode kernel class in them)
    out.append(FitSpec(("module/vllm/graph",), "mla_context_module", "vllm",
                       ("floor_s", "hbm"), {"kernel_source": "FLASH_ATTN"}))
    # the element-wise kernels of TensorRT-LLM's MLA module (memsim.inference.mla_module
    # .trtllm_aux_s: the latent norms, the latent concat, K's assembly) on its prefill
    # module rows, which no other class is fitted on
    out.append(FitSpec(("module/trtllm/graph",), "mla_context_module", "trtllm",
                       ("floor_s", "hbm")))
    # vLLM's MLA decode kernels on Hopper (FlashAttention-3 MLA, FlashMLA): the database has
    # no vLLM per-kernel MLA table, so on the MLA decode *module* rows (memsim.inference
    # .mla_module; the prefill and DSA module rows stay held out)
    for fam, db in (("bf16", "bfloat16"), ("fp8", "fp8")):
        out.append(FitSpec((f"mla/decode/vllm/{fam}",), "mla_generation_module", "vllm",
                           ("floor_s", "hbm", "row_s"), {"kv_cache_dtype": db}))
    return out + _comm_specs()


#: The DeepEP calls whose framework code does host work after the last kernel launch, so
#: that the kernels run under it (memsim.ops.comm.moe_all_to_all ``host_s``), chosen by the
#: source, not by the fit: vLLM's normal-mode ``prepare`` (prepare_finalize/deepep_ht.py
#: ``_do_dispatch``: DeepEP's ``dispatch`` returns after launching the copy kernel, then
#: ``_receiver`` runs its ``torch.where`` on the expert ids,
#: ``ExpertTokensMetadata.make_from_list`` and the quantisation check on the host). vLLM's
#: normal ``finalize`` ends in DeepEP's ``combine``, its low-latency ``finalize``
#: (deepep_ll.py ``_finalize``) in ``low_latency_combine`` and its low-latency ``prepare``
#: in ``low_latency_dispatch``'s launch: no host work follows them.
VLLM_HOST_HIDDEN = {("vllm", "normal", "dispatch")}
#: The collector rows whose kernel first waits for every rank's messages, timed without a
#: barrier right before the start event (memsim.ops.classes.KernelClass ``skew_s``):
#: vLLM's low-latency combine (internode_ll.cu ``combine`` waits on every rank's
#: ``rdma_recv_flag``; collector/wideep/vllm/collect_moe_a2a.py's only barrier is
#: ``clean_low_latency_buffer``'s, before the start event)
COLLECTOR_SKEWED = {("vllm", "low_latency", "combine")}


def _comm_specs() -> list[FitSpec]:
    """Collectives (memsim.ops.comm): DeepEP dispatch/combine per backend, mode and phase
    (row_s: seconds per token copy), NCCL's own collectives (row_s: seconds per step)."""
    out = []
    for b, prefix in (("trtllm", "trtllm_"), ("vllm", "")):   # no SGLang moe_a2a rows
        for mode, tag in (("normal", "ht"), ("low_latency", "ll")):
            for phase in ("dispatch", "combine"):
                # vLLM's rows time its eager Python calls; where the host works on after
                # the last launch (VLLM_HOST_HIDDEN, by source), the kernels hide behind
                # it: host_s, fitted as its share of the floor
                host = ("host_share",) if (b, mode, phase) in VLLM_HOST_HIDDEN else ()
                host += ("skew_s",) if (b, mode, phase) in COLLECTOR_SKEWED else ()
                # the clone's host work: memsim.ops.comm COLLECTOR_CLONED, one rule for
                # the fit and the prediction
                host += ("prelaunch_share",) if (b, mode, phase) in COLLECTOR_CLONED else ()
                rate = "l2" if mode == "normal" else "link"   # comm.a2a_*_bytes_per_s
                out.append(FitSpec((f"a2a/{mode}/{phase}/{b}",), "moe_a2a", b,
                                   ("floor_s", rate, "row_s", *host),
                                   {"comm_backend": f"{prefix}deepep_{tag}", "phase": phase}))
    # NCCL rings (memsim.ops.comm.nccl_ring_s): fill = the pipeline's fill and drain, a
    # fraction of one ring step per pass; NVLS has no ring steps (no row_s, no fill)
    nvls = "nccl/all_reduce/nvls"
    out.append(FitSpec(("nccl/all_reduce/ring", nvls), "nccl_all_reduce", "nccl",
                       ("floor_s", "link", "row_s", "fill"),
                       unused=((nvls, "row_s"), (nvls, "fill"))))
    for op in ("all_gather", "reduce_scatter"):
        out.append(FitSpec((f"nccl/{op}",), f"nccl_{op}", "nccl",
                           ("floor_s", "link", "row_s", "fill")))
    out.append(FitSpec(("nccl/alltoall",), "nccl_alltoall", "nccl", ("floor_s", "link", "row_s")))
    return out


def select_specs(pattern: str | None, own_numbers: set[str]) -> list[FitSpec]:
    """The specs whose classes match ``pattern`` (comma-separated shell patterns on class
    names); without one, the classes that have their own numbers in the file (a class
    that takes another's with ``same_as`` is fitted only when named)."""
    pats = [p.strip() for p in (pattern or "").split(",") if p.strip()]
    out = []
    for s in specs():
        if pats:
            if any(fnmatch.fnmatchcase(k, p) for k in s.keys for p in pats):
                out.append(s)
        elif all(k in own_numbers for k in s.keys):
            out.append(s)
    return out


# ---- data -----------------------------------------------------------------------------


@dataclass
class GpuRows:
    """A spec's rows on one GPU profile, with their measured time (s)."""

    profile: str
    rows: Rows
    measured_s: np.ndarray


def rows_for(spec: FitSpec, chunks: list[Any], max_rows: int = MAX_ROWS, seed: int = 0
             ) -> dict[str, GpuRows]:
    """From ``chunks`` (:class:`memsim.silicon.run.Chunk`), the spec's scored rows per GPU
    profile: a seeded sample of whole model shapes, at most ``max_rows`` per GPU (or the
    spec's own :attr:`FitSpec.min_rows`, where larger). A GPU's chunks (one per table
    file: several where the database ships several families or versions for it) are
    pooled before the sample, so every file's rows can be drawn."""
    from memsim.silicon import outliers
    from memsim.silicon.classes import CLASSES
    from memsim.silicon.run import _choose
    from memsim.silicon.tables import concat

    by_gpu: dict[str, list[tuple[Rows, np.ndarray]]] = {}
    for c in chunks:
        if c.op_class != spec.op_class or c.rows.backend != spec.backend:
            continue
        keep = c.mapped & ~c.outlier & spec.select(c.rows)
        if keep.any():
            by_gpu.setdefault(c.profile, []).append((c.rows.take(keep), c.measured_s[keep]))
    out = {}
    case = CLASSES[spec.op_class].case
    for profile, parts in sorted(by_gpu.items()):
        rows = concat([r for r, _ in parts])
        meas = np.concatenate([m for _, m in parts])
        ids = outliers.curve_ids(rows, case) if case else None
        pick = _choose(len(rows), spec.rows_per_gpu(max_rows), seed,
                       f"{spec.name}@{profile}", ids)
        out[profile] = GpuRows(profile, rows.take(pick), meas[pick])
    return out


def predict(spec: FitSpec, classes: dict[str, KernelClass], data: GpuRows) -> np.ndarray:
    """memsim's time (s) of ``data``'s rows with ``classes`` in place of the file's."""
    from memsim.hardware import load_gpu
    from memsim.silicon.classes import CLASSES

    with trial_classes(classes):
        mapped = CLASSES[spec.op_class].mapper(data.rows, load_gpu(data.profile))
    return np.asarray(mapped.time_s["analytic"], dtype=float)


# ---- the fit --------------------------------------------------------------------------


def tied_base(spec: FitSpec, classes: dict[str, KernelClass]) -> dict[str, KernelClass]:
    """The spec's classes from ``classes`` (key → class), each with the parameters of
    :attr:`FitSpec.tied` copied from the class the tie names (an efficiency unit or a
    time field of :data:`TIMES`)."""
    out = {k: classes[k] for k in spec.keys}
    for param, source in spec.tied.items():
        if param in spec.free:
            raise ValueError(f"{spec.name}: {param} is both free and tied to {source}")
        value = _get(classes[source], param)
        out = with_params(out, [(k, param) for k in spec.keys], np.full(len(spec.keys), value))
    return out


def _params(spec: FitSpec) -> list[tuple[str, str]]:
    return [(k, p) for k in spec.keys for p in spec.free if (k, p) not in spec.unused]


def _get(cls: KernelClass, param: str) -> float:
    if param in SHARES:
        part, whole = SHARES[param]
        return float(getattr(cls, part) / getattr(cls, whole)) if getattr(cls, whole) else 0.0
    if param in TIMES:
        return float(getattr(cls, param))
    return float(cls.efficiency.get(param, 1.0))


def _bounds(param: str) -> tuple[float, float]:
    return BOUNDS.get(param, BOUNDS["efficiency"])


def with_params(base: dict[str, KernelClass], params: list[tuple[str, str]],
                values: np.ndarray) -> dict[str, KernelClass]:
    """``base`` (the classes of a spec) with ``params`` set to ``values``; a share
    (:data:`SHARES`) is applied after the field it is a share of is set."""
    out = dict(base)
    pairs = list(zip(params, values, strict=True))
    for (key, param), v in sorted(pairs, key=lambda kv: kv[0][1] in SHARES):
        cls = out[key]
        if param in SHARES:
            part, whole = SHARES[param]
            out[key] = replace(cls, **{part: min(float(v), 1.0) * getattr(cls, whole)})
        elif param in TIMES:
            out[key] = replace(cls, **{param: float(v)})
        else:
            out[key] = replace(cls, efficiency={**cls.efficiency, param: float(v)})
    return out


def _round(v: float) -> float:
    return float(f"{v:.{DIGITS}g}")


def fit_spec_numbers(spec: FitSpec, base: dict[str, KernelClass], data: list[GpuRows],
                     max_nfev: int = MAX_NFEV) -> tuple[dict[str, KernelClass], int]:
    """The spec's classes fitted to the rows of ``data`` (from ``base``), rounded; and
    the number of least-squares evaluations. A spec with ``reruns`` refits from its own
    rounded numbers until they come back unchanged (at most ``reruns`` more fits)."""
    from scipy.optimize import least_squares

    params = _params(spec)
    lo = np.log([_bounds(p)[0] for _, p in params])
    hi = np.log([_bounds(p)[1] for _, p in params])
    span = hi - lo
    meas = np.log(np.concatenate([d.measured_s for d in data]))

    def residual(x: np.ndarray) -> np.ndarray:
        classes = with_params(base, params, np.exp(x))
        pred = np.concatenate([predict(spec, classes, d) for d in data])
        r = np.log(np.where(pred > 0, pred, np.nan)) - meas
        return np.nan_to_num(r, nan=10.0, posinf=10.0, neginf=-10.0)

    def solve(start: np.ndarray) -> tuple[np.ndarray, int]:
        start = np.clip(np.log(start), lo + 1e-6 * span, hi - 1e-6 * span)
        res = least_squares(residual, start, bounds=(lo, hi), loss=LOSS, f_scale=F_SCALE,
                            diff_step=1e-3, max_nfev=max_nfev, method="trf", ftol=TOL,
                            xtol=TOL)
        return np.array([_round(v) for v in np.exp(res.x)]), int(res.nfev)

    # a parameter the file holds at 0 (a per-row cost never fitted) starts mid-range
    values, nfev = solve(np.array([_get(base[k], p) or _neutral(p) for k, p in params]))
    for _ in range(spec.reruns):
        again, more = solve(values)
        nfev += more
        if np.array_equal(again, values):
            break
        values = again
    return with_params(base, params, values), nfev


def bound_share(spec: FitSpec, classes: dict[str, KernelClass], data: list[GpuRows],
                key: str, unit: str) -> float:
    """The share (0–1) of ``data``'s rows whose time the efficiency ``unit`` of class
    ``key`` sets: those whose predicted time rises when it is lowered by 1 % (a term
    below the roofline's maximum, or under an eager launch's host floor, moves nothing)."""
    now = np.concatenate([predict(spec, classes, d) for d in data])
    if not len(now):
        return 0.0
    cls = classes[key]
    lower = {**classes, key: replace(cls, efficiency={**cls.efficiency,
                                                      unit: 0.99 * _get(cls, unit)})}
    moved = np.concatenate([predict(spec, lower, d) for d in data])
    return float(np.mean(moved > now * (1 + 1e-6)))


def error_stats(predicted_s: np.ndarray, measured_s: np.ndarray) -> dict[str, Any]:
    """n, median and p90 of |predicted / measured − 1|, and the median signed error."""
    e = predicted_s / measured_s - 1.0
    e = e[np.isfinite(e)]
    if len(e) == 0:
        return {"n": 0, "median_abs": None, "p90_abs": None, "bias": None}
    return {"n": int(len(e)), "median_abs": float(np.median(np.abs(e))),
            "p90_abs": float(np.quantile(np.abs(e), 0.9)), "bias": float(np.median(e))}


@dataclass
class FitResult:
    """One spec's fit: the classes before and after, and every error (see :func:`fit_spec`)."""

    spec: FitSpec
    before: dict[str, KernelClass]
    after: dict[str, KernelClass]
    fitted: dict[str, dict[str, Any]]             # fitted GPU → errors of the fit
    fitted_before: dict[str, dict[str, Any]]      # the same rows with the file's numbers
    leave_one_gpu_out: dict[str, dict[str, Any]]  # held-out GPU → errors of the other's fit
    unseen: dict[str, dict[str, Any]]             # never-fitted GPU → errors of the fit
    unseen_before: dict[str, dict[str, Any]]
    nfev: int = 0
    note: str = ""
    used: list[str] = field(default_factory=list)  # keys some fitted row is timed with
    # "class:unit" → share of the fitted rows that efficiency binds on (bound_share)
    bound: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        num = lambda c: {"floor_s": c.floor_s, "efficiency": c.efficiency,  # noqa: E731
                         "row_s": c.row_s, "cta_s": c.cta_s, "key_s": c.key_s,
                         "host_s": c.host_s, "skew_s": c.skew_s,
                         "prelaunch_s": c.prelaunch_s}
        return {"classes": list(self.spec.keys), "rows": self.spec.describe(),
                "free": list(self.spec.free), "before": {k: num(c) for k, c in
                                                        self.before.items()},
                "after": {k: num(c) for k, c in self.after.items()}, "fitted": self.fitted,
                "fitted_before": self.fitted_before,
                "leave_one_gpu_out": self.leave_one_gpu_out, "unseen": self.unseen,
                "unseen_before": self.unseen_before, "nfev": self.nfev, "note": self.note,
                "used": self.used, "bound": self.bound}


def timed_rows(spec: FitSpec, classes: dict[str, KernelClass], data: GpuRows,
               keys: tuple[str, ...] | list[str], now: np.ndarray | None = None
               ) -> np.ndarray:
    """Which of ``data``'s rows one of ``keys`` times: those whose time moves when the
    classes' floors double and their efficiencies halve. On a GPU the classes were not
    fitted on, a row of the op class may run another kernel (vLLM's decode on SM100 runs
    FlashInfer's trtllm-gen, so TensorRT-LLM's class): such a row says nothing about these
    classes, so their unseen-GPU errors leave it out. ``now``: the rows' times with
    ``classes``, where the caller has them."""
    now = predict(spec, classes, data) if now is None else now
    moved = {**classes, **{k: replace(classes[k], floor_s=2 * classes[k].floor_s + 1e-6,
                                      efficiency={u: 0.5 * e for u, e
                                                  in classes[k].efficiency.items()})
                           for k in keys}}
    return ~np.isclose(predict(spec, moved, data), now, rtol=1e-9, equal_nan=True)


def _unseen_stats(spec: FitSpec, classes: dict[str, KernelClass], data: GpuRows,
                  keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """:func:`error_stats` of the rows of an unseen GPU that ``keys`` time (:func:`timed_rows`)."""
    now = predict(spec, classes, data)
    mine = timed_rows(spec, classes, data, keys, now)
    return error_stats(now[mine], data.measured_s[mine])


def _used_keys(spec: FitSpec, base: dict[str, KernelClass], data: list[GpuRows]
               ) -> list[str]:
    """The spec's classes some row is actually timed with: those whose floor or one of
    whose fitted parameters (:func:`_moved`) moves some row's time (a custom all-reduce
    algorithm, or a GEMM kernel family, that no row picks cannot be fitted: its numbers
    stay the file's; a class read for its per-row or per-logit time only, as DSA's SM90
    sparse kernel and top-k, is used through those)."""
    if len(spec.keys) == 1:
        return list(spec.keys)
    now = [predict(spec, base, d) for d in data]
    used = []
    for k in spec.keys:
        params = ["floor_s", *(p for key, p in _params(spec) if key == k and p != "floor_s")]
        if any(not np.allclose(predict(spec, {**base, k: _moved(base[k], p)}, d), t,
                               rtol=1e-9, equal_nan=True)
               for p in params for d, t in zip(data, now, strict=True)):
            used.append(k)
    return used


def _moved(cls: KernelClass, param: str) -> KernelClass:
    """``cls`` with ``param`` moved far enough to show in a row's time that reads it: a
    time doubled (plus 1 µs, so a 0 moves too), an efficiency or share halved."""
    v = _get(cls, param)
    moved = 2 * v + 1e-6 if param in TIMES else v / 2
    return with_params({"k": cls}, [("k", param)], np.array([moved]))["k"]


def fit_spec(spec: FitSpec, base: dict[str, KernelClass], data: dict[str, GpuRows],
             fit_gpus: tuple[str, ...]) -> FitResult:
    """Fit ``spec`` on the rows of ``fit_gpus`` in ``data`` and score every GPU in it."""
    fit_data = [data[g] for g in fit_gpus if g in data]
    unseen = [g for g in sorted(data) if g not in fit_gpus]
    result = FitResult(spec, base, base, {}, {}, {}, {}, {})
    if not fit_data:
        result.note = f"no rows on {', '.join(fit_gpus)}: not fitted"
        result.unseen = result.unseen_before = {
            g: _unseen_stats(spec, base, data[g], spec.keys) for g in unseen}
        return result
    result.used = _used_keys(spec, base, fit_data)
    for g in unseen:
        result.unseen_before[g] = _unseen_stats(spec, base, data[g], result.used)
    sub = replace(spec, keys=tuple(result.used))
    after, result.nfev = fit_spec_numbers(sub, base, fit_data)
    result.after = after
    result.bound = {f"{k}:{p}": bound_share(sub, after, fit_data, k, p)
                    for k, p in _params(sub) if p not in TIMES and p not in SHARES}
    for d in fit_data:
        result.fitted[d.profile] = error_stats(predict(spec, after, d), d.measured_s)
        result.fitted_before[d.profile] = error_stats(predict(spec, base, d), d.measured_s)
    if len(fit_data) > 1:
        # started from neutral numbers: the file's and the fit's have seen the held-out GPU
        neutral = with_params(base, _params(sub), np.array([_neutral(p) for _, p in _params(sub)]))
        for held in fit_data:
            rest = [d for d in fit_data if d is not held]
            alone, _ = fit_spec_numbers(sub, neutral, rest)
            result.leave_one_gpu_out[held.profile] = error_stats(
                predict(spec, alone, held), held.measured_s)
    for g in unseen:
        result.unseen[g] = _unseen_stats(spec, after, data[g], result.used)
    return result


# ---- the source text ------------------------------------------------------------------

_GPU_NAMES = {"h100-sxm": "H100", "h200": "H200", "b200": "B200", "b300": "B300",
              "gb200": "GB200", "a100-sxm4-80gb": "A100", "l40s": "L40S",
              "h100-pcie": "H100 PCIe"}


def _gpu(name: str) -> str:
    return _GPU_NAMES.get(name, name)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def source_text(r: FitResult, package: str, max_rows: int, seed: int) -> str:
    """The ``source`` written with a fitted class: method, rows, and every error."""
    spec = r.spec
    fitted = ", ".join(f"{_gpu(g)} {_pct(s['median_abs'])} (p90 {_pct(s['p90_abs'])}, "
                       f"n={s['n']})" for g, s in r.fitted.items())
    logo = ", ".join(f"{_gpu(g)} {_pct(s['median_abs'])}"
                     for g, s in r.leave_one_gpu_out.items()) or "n/a (one fitted GPU)"
    unseen = ", ".join(f"{_gpu(g)} {_pct(s['median_abs'])} (p90 {_pct(s['p90_abs'])}, "
                       f"n={s['n']})" for g, s in r.unseen.items() if s["n"]) or "none"
    together = (f"; fitted together: {', '.join(r.used)}" if len(spec.keys) > 1 else "")
    by_key: dict[str, list[str]] = {}
    for k, p in spec.unused:
        by_key.setdefault(k, []).append(p)
    unused = "".join(f" (unused: {k}'s {', '.join(ps)})" for k, ps in by_key.items())
    held = "".join(f"; held: {p} = {k}'s" for p, k in spec.tied.items())
    return (f"fitted by `memsim validate --source aiconfigurator --fit-classes` ({METHOD}; "
            f"free: {', '.join(spec.free)}{unused}{held}{together}) to {spec.describe()} rows of "
            f"{' and '.join(_gpu(g) for g in r.fitted)} in {package} (seed {seed}, at most "
            f"{spec.rows_per_gpu(max_rows)} rows per GPU, whole model shapes): "
            f"median |error| {fitted}; "
            f"leave-one-GPU-out median {logo}; unseen {unseen}")


def with_sources(r: FitResult, package: str, max_rows: int, seed: int
                 ) -> dict[str, KernelClass]:
    """The fitted classes of ``r`` (only those some row used) with their source text."""
    text = source_text(r, package, max_rows, seed)
    return {k: replace(r.after[k], source=text) for k in r.used}


def _fmt(s: dict[str, Any]) -> str:
    return f"{_pct(s['median_abs'])} / {_pct(s['p90_abs'])}"


def _numbers(c: dict[str, Any]) -> str:
    eff = ", ".join(f"{u} {v:.3g}" for u, v in c["efficiency"].items())
    row = f", row {c['row_s'] * 1e9:.4g} ns" if c["row_s"] else ""
    cta = f", cta {c['cta_s'] * 1e9:.4g} ns" if c.get("cta_s") else ""
    key = f", key {c['key_s'] * 1e9:.4g} ns" if c.get("key_s") else ""
    host = f", host {c['host_s'] * 1e6:.3g} µs" if c.get("host_s") else ""
    host += f", prelaunch {c['prelaunch_s'] * 1e6:.3g} µs" if c.get("prelaunch_s") else ""
    host += f", skew {c['skew_s'] * 1e6:.3g} µs" if c.get("skew_s") else ""
    return f"floor {c['floor_s'] * 1e6:.3g} µs, {eff}{row}{cta}{key}{host}"


def report_text(results: list[dict[str, Any]]) -> str:
    """Per spec (:meth:`FitResult.to_dict`): numbers before → after; |error| median / p90
    per GPU with the file's numbers → with the fit's."""
    lines = ["kernel classes fitted on H100 + H200 rows only (|error| median / p90; "
             "'file': the numbers of memsim/ops/kernel_classes.toml before this fit, "
             "themselves fitted on H100 + H200 rows, so in-sample there; unseen GPUs are "
             "never fitted):"]
    for r in results:
        lines.append(f"  {'+'.join(r['classes'])}  [{r['rows']}]"
                     + (f"  {r['note']}" if r["note"] else f"  ({r['nfev']} evaluations)"))
        for k in r["classes"]:
            mark = "" if k in r["used"] or r["note"] else "  (no row uses it: kept)"
            lines.append(f"    {k}: {_numbers(r['before'][k])}  →  "
                         f"{_numbers(r['after'][k])}{mark}")
        if r.get("bound"):
            lines.append("    binds on (share of the fitted rows): " + ", ".join(
                f"{name} {100 * share:.1f}%" for name, share in r["bound"].items()))
        for g, s in r["fitted"].items():
            held = r["leave_one_gpu_out"].get(g)
            lines.append(f"    fitted {_gpu(g):6} file {_fmt(r['fitted_before'][g])}  →  fit "
                         f"{_fmt(s)}  n={s['n']}"
                         + (f"   leave-one-GPU-out {_fmt(held)}" if held else ""))
        for g, s in r["unseen"].items():
            if s["n"]:
                lines.append(f"    unseen {_gpu(g):6} file {_fmt(r['unseen_before'][g])}  →  "
                             f"fit {_fmt(s)}  n={s['n']} (bias {_pct(s['bias'])})")
    return "\n".join(lines)


def have_scipy() -> bool:
    """Whether scipy (the ``silicon`` extra) is installed: the fit needs it."""
    import importlib.util

    try:
        return importlib.util.find_spec("scipy.optimize") is not None
    except (ImportError, ValueError):
        return False


NO_SCIPY = "not fitted: needs scipy (pip install 'memsim[silicon]')"


def fit_run(chunks: list[Any], max_rows: int = MAX_ROWS, seed: int = 0,
            echo: Any = None) -> dict[str, dict[str, Any]]:
    """Every spec with rows among ``chunks`` (a ``--source aiconfigurator`` run) fitted
    and scored, as the summary's calibration section: spec name → :meth:`FitResult.to_dict`
    (``{}`` without scipy). Nothing is written."""
    from memsim.ops.classes import FIT_GPUS, kernel_classes

    if not have_scipy():
        if echo is not None:
            echo(f"calibration {NO_SCIPY}")
        return {}
    present = {(c.op_class, c.rows.backend) for c in chunks}
    current = kernel_classes()
    out = {}
    for spec in specs():
        if (spec.op_class, spec.backend) not in present:
            continue
        data = rows_for(spec, chunks, max_rows, seed)
        if not data:
            continue
        r = fit_spec(spec, tied_base(spec, current), data, FIT_GPUS)
        out[spec.name] = r.to_dict()
        if echo is not None:
            echo(f"fitted {spec.name}: {r.note or f'{r.nfev} evaluations'}")
    return out


def refit_times(chunk: Any, index: np.ndarray, fits: dict[str, dict[str, Any]]
                ) -> list[float | None]:
    """memsim's time (s) of a chunk's rows ``index`` with the numbers :func:`fit_run`
    fitted for their class (None where no fit covers the row)."""
    out: list[float | None] = [None] * len(index)
    rows = chunk.rows.take(index)
    for spec in specs():
        if (spec.op_class, spec.backend) != (chunk.op_class, chunk.rows.backend):
            continue
        fitted = fits.get(spec.name)
        keep = spec.select(rows)
        if not fitted or fitted["note"] or not keep.any():
            continue
        classes = {k: KernelClass(k, v["floor_s"], dict(v["efficiency"]), "", v["row_s"],
                                  v.get("cta_s", 0.0), v.get("key_s", 0.0),
                                  v.get("host_s", 0.0), v.get("skew_s", 0.0),
                                  v.get("prelaunch_s", 0.0))
                   for k, v in fitted["after"].items()}
        at = np.nonzero(keep)[0]
        t = predict(spec, classes, GpuRows(chunk.profile, rows.take(at), np.ones(len(at))))
        for j, v in zip(at.tolist(), t.tolist(), strict=True):
            out[j] = v
    return out


# ---- the command ----------------------------------------------------------------------

COLLECT_ROWS = 20_000   # a spec's rows predicted per table file before its fit's sample


def fit_classes(pattern: str | None = None, gpus: set[str] | None = None,
                max_rows: int = MAX_ROWS, seed: int = 0, write: bool = False,
                extract: list[Rows] | None = None, echo: Any = print,
                path: Path = DATA_FILE) -> tuple[list[FitResult], dict[str, KernelClass]]:
    """Fit the selected classes (:func:`select_specs`) of the class file ``path`` on the
    installed database (or the rows of ``extract``); with ``write``, replace their entries
    in that file. Returns the results and the classes written (or that would be)."""
    from memsim.errors import InputError
    from memsim.ops.classes import FIT_GPUS, load_classes, read_tables, write_classes
    from memsim.silicon import run, source

    if not have_scipy():
        raise InputError("fit-classes", "on", NO_SCIPY.removeprefix("not fitted: "))
    own = {k for k, t in read_tables(path).items() if "same_as" not in t}
    chosen = select_specs(pattern, own)
    if not pattern:
        no_spec = sorted(own - {k for s in specs() for k in s.keys})
        if no_spec:
            echo("not fitted (no fit spec in memsim.silicon.fit.specs names them): "
                 + ", ".join(no_spec))
    if not chosen:
        raise InputError("classes", pattern, "matches no kernel class memsim can fit "
                         "(e.g. 'gemm/*', 'attention/decode/vllm', 'allreduce/*/trtllm')")
    current = load_classes(path)
    missing = sorted({k for s in chosen for k in s.keys} - set(current))
    if missing:
        raise InputError("classes", ",".join(missing), "are not in the class file")
    package, results, written = source.PACKAGE, [], {}
    for spec in chosen:
        # each spec's own rows read and sampled: one sample of a table file for every spec
        # on it can hold none of one spec's rows (with seed 0, H200's moe/trtllm 20 000-row
        # sample held none of its 46 737 bf16 rows)
        collected = run.collect([spec.op_class], gpus, {spec.backend}, sample=COLLECT_ROWS,
                                seed=seed, echo=echo, extract=extract, where=spec.select)
        if collected.chunks:
            package = f"{source.PACKAGE} {collected.chunks[0].rows.package_version}"
        data = rows_for(spec, collected.chunks, max_rows, seed)
        # a tie takes the value this run wrote where it fitted the class tied to
        r = fit_spec(spec, tied_base(spec, {**current, **written}), data, FIT_GPUS)
        results.append(r)
        echo(f"fitted {spec.name}: {r.note or f'{r.nfev} evaluations'}")
        if not r.note:
            written.update(with_sources(r, package, max_rows, seed))
    if write and written:
        write_classes(written, path)
    return results, written
