"""Run one memsim kernel on a real GPU: validate it, time it, count its work; raw
measurements only (the prediction for the same Tiling is memsim.validation's job).

    python -m memsim.kernels.bench --kernel flash2 --batch 1 --heads 8 --seq-len 4096 \\
        --head-dim 64 --causal --dtype fp32

prints one JSON line. Steps (llm.c dev/cuda's discipline: checked before timed):

1. refuse to run in Numba's CUDA simulator or without a GPU;
2. allocate the inputs (random, never zeros) and poisoned outputs on the device;
3. run once and validate against the float64 textbook formula on a sample of query rows
   (:data:`SAMPLE_ROWS`, first and last included) — every output element must also have
   been written (no poison left, no NaN) — and raise :class:`KernelInvalidError` if the
   relative error exceeds the dtype's tolerance;
4. time (kernels/timing.py, the one CUDA-event timer): warm-up runs, then ``repeats`` runs
   (default: 5 to 50, about 2 s in all) each preceded by a memset of a buffer twice the L2
   size (so every run starts with a cold L2), CUDA events around each of the algorithm's
   launches; the median is reported;
5. count: one more, untimed run of the kernels built with ``count=True``, whose threads
   tally the multiply-adds and exponentials they execute (kernels/common.py): the
   ``matmul_flops`` and ``exp_ops`` reported, and ``achieved_flop_per_s`` over the median
   time. Bytes are not reported: no counter here sees them (Nsight Compute does:
   memsim.validation.ncu), and memsim's own byte count is a prediction, not a measurement;
6. report each kernel's registers per thread, static shared memory per block and local
   memory per thread from Numba's dispatcher.

:func:`run_case` is the same as a function, for the validation harness.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

import numpy as np

from memsim.algorithms import runs_mask
from memsim.errors import InputError
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.tiling import Tiling

from . import reference
from .common import OPS_SLOTS, Launch
from .registry import KERNELS, RELATIVE_TOLERANCE, family, relative_error
from .tiles import kernel_tiling
from .timing import event_times_s

#: Query rows validated per run (all of them when N is smaller).
SAMPLE_ROWS = 48
L2_FLUSH_FACTOR = 2


class KernelInvalidError(RuntimeError):
    """The kernel's output disagrees with the reference: it is not timed."""


def require_gpu() -> None:
    """Raise RuntimeError under the CUDA simulator or when no GPU is visible."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        raise RuntimeError("the bench times real kernels: unset NUMBA_ENABLE_CUDASIM "
                           "(the CUDA simulator is for tests and access traces)")
    if not cuda.is_available():
        raise RuntimeError("no CUDA GPU is available to Numba")


# ---- validation on sampled rows -----------------------------------------------------------


def sample_rows(n_rows: int, count: int = SAMPLE_ROWS) -> np.ndarray:
    """Up to ``count`` query rows spread over 0..n_rows−1, first and last included."""
    return np.unique(np.linspace(0, n_rows - 1, min(n_rows, count)).round().astype(int))


def validate(problem: AttentionProblem, tiling: Tiling, host: dict,
             out: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative errors of the outputs ``out`` (host copies) on sampled rows; ∞ for an
    output with an unwritten (NaN) element where every element must be written."""
    p = problem
    rows = sample_rows(p.N)
    errors = {"o_written": 0.0 if np.isfinite(out["o"]).all() else float("inf")}
    if "idx" in out:                          # a top-k selection: sparse attention
        return errors | _validate_sparse(p, host, out, rows)
    o_ref, lse_ref = reference.attention(host["q"], host["k"], host.get("v"), p.mask, p.Dv,
                                         rows=rows)
    errors["o"] = relative_error(out["o"][:, rows], o_ref)
    if "lse" in out:                           # logsumexp (B, H, N)
        errors["lse"] = relative_error(out["lse"][:, :, rows], lse_ref)
    elif "m" in out and "ell" in out:          # FA-1's running max and sum
        with np.errstate(divide="ignore"):
            lse = out["m"].astype(np.float64) + np.log(out["ell"].astype(np.float64))
        errors["lse"] = relative_error(lse[:, :, rows], lse_ref)
    return errors


def _validate_sparse(p: AttentionProblem, host: dict, out: dict,
                     rows: np.ndarray) -> dict[str, float]:
    from .dsa import valid_top_k

    counts = reference.selected_counts(p.N, p.S, p.mask.top_k)[rows]
    o_ref, lse_ref = reference.sparse_attention(host["q"][:, rows], host["k"], host.get("v"),
                                                out["idx"][:, rows], counts, p.Dv)
    errors = {"o": relative_error(out["o"][:, rows], o_ref)}
    if "lse" in out:
        errors["lse"] = relative_error(out["lse"][:, :, rows], lse_ref)
    # indexer logits of the visible keys of the sampled rows
    qi, w, ki = (host[n].astype(np.float64) for n in ("q_idx", "w_idx", "k_idx"))
    dots = np.einsum("bnhd,bsd->bnhs", qi[:, rows], ki)
    want = np.einsum("bnh,bnhs->bns", w[:, rows], np.maximum(dots, 0.0))
    vis = reference.visible(Mask(), p.N, p.S)[rows]
    got = out["logits"][:, rows]
    errors["logits"] = relative_error(np.where(vis, got, 0.0), np.where(vis, want, 0.0))
    errors["idx"] = 0.0 if valid_top_k(p, out["logits"], out["idx"], rows) else float("inf")
    return errors


# ---- timing --------------------------------------------------------------------------------


def _l2_bytes() -> int:
    from numba import cuda

    size = getattr(cuda.get_current_device(), "L2_CACHE_SIZE", 0)
    return int(size) or 64 * 2**20


def _dispatcher_info(launch: Launch, bufs: dict, ops) -> dict[str, Any]:
    """Registers per thread, static shared memory per block and local memory per thread
    of the kernel compiled for this launch's arguments."""
    args = [bufs[n] for n in launch.args] + list(launch.scalars) + [ops]
    kernel = launch.kernel.specialize(*args)
    return {
        "registers_per_thread": int(kernel.get_regs_per_thread()),
        "shared_mem_per_block_bytes": int(kernel.get_shared_mem_per_block()),
        "local_mem_per_thread_bytes": int(kernel.get_local_mem_per_thread()),
        "grid": list(launch.grid), "threads": launch.threads,
    }


def launch_and_validate(kernel: str, problem: AttentionProblem, tiling: Tiling,
                        seed: int | None = None) -> tuple[Any, list[Launch], dict, Any, dict]:
    """Compile and launch ``kernel``'s launches once on random inputs and compare the
    outputs with the float64 reference: ``(module, launches, device buffers, ops counter,
    relative errors)``. Raises :class:`KernelInvalidError` beyond the dtype's tolerance.
    Runs under the CUDA simulator too (nothing is timed here)."""
    from numba import cuda

    module = family(kernel)
    if tiling.algorithm != kernel:
        raise InputError("tiling.algorithm", tiling.algorithm, f"must be {kernel!r}")
    launches = module.launches(problem, tiling)
    rng = np.random.default_rng(seed)
    host = module.buffers(problem, tiling, rng)
    bufs = {name: cuda.to_device(a) for name, a in host.items()}
    ops = cuda.to_device(np.zeros(OPS_SLOTS, np.int64))
    for launch in launches:                                    # compiles, then validates
        launch(bufs, ops)
    cuda.synchronize()
    out = {n: bufs[n].copy_to_host() for n in module.OUTPUTS if n in bufs}
    errors = validate(problem, tiling, host, out)
    tolerance = RELATIVE_TOLERANCE[problem.dtype]
    if not all(e <= tolerance for e in errors.values()):
        raise KernelInvalidError(f"{kernel} {problem.mask.describe()}: relative errors "
                                 f"{errors} exceed {tolerance}")
    return module, launches, bufs, ops, errors


def run_case(kernel: str, problem: AttentionProblem, tiling: Tiling, *,
             repeats: int | None = None, warmup: int = 3,
             seed: int | None = None) -> dict[str, Any]:
    """Validate, then time and count ``kernel`` (a memsim algorithm name) on ``problem``
    under ``tiling``; the dict of the JSON line (module docstring), measured quantities
    only. Raises :class:`KernelInvalidError` when validation fails, before any timing."""
    from numba import cuda
    from numba.cuda.cudadrv.driver import device_memset

    require_gpu()
    module, launches, bufs, ops, errors = launch_and_validate(kernel, problem, tiling, seed)
    tolerance = RELATIVE_TOLERANCE[problem.dtype]

    flush = cuda.device_array(L2_FLUSH_FACTOR * _l2_bytes(), np.uint8)
    timed = event_times_s([functools.partial(launch, bufs, ops) for launch in launches],
                          backend="numba", flush=lambda: device_memset(flush, 0, flush.size),
                          warmup=warmup, min_repeats=repeats or 5,
                          max_repeats=repeats or 50, target_s=2.0)
    time_s = timed.median_s

    info = {launch.name: _dispatcher_info(launch, bufs, ops) for launch in launches}
    registers = max(i["registers_per_thread"] for i in info.values())
    counted = _counted_ops(module.launches(problem, tiling, count=True), bufs)
    device = cuda.get_current_device()
    return {
        "kernel": kernel,
        "device": device.name.decode() if isinstance(device.name, bytes) else device.name,
        "problem": problem.model_dump(by_alias=True),
        "mask": problem.mask.describe(),
        "tiling": tiling.model_dump() | {"rows": tiling.rows, "sram_bytes": tiling.sram_bytes},
        "validation": errors, "tolerance": tolerance,
        "time_s": time_s, "time_s_min": min(timed.runs_s), "time_s_max": max(timed.runs_s),
        "repeats": len(timed.runs_s),
        "launch_time_s": {launch.name: t for launch, t in zip(launches,
                                                              timed.step_medians_s(),
                                                              strict=True)},
        "matmul_flops": counted["matmul_flops"], "exp_ops": counted["exp_ops"],
        "achieved_flop_per_s": counted["matmul_flops"] / time_s,
        "registers_per_thread": registers,
        "kernels": info,
        "l2_flush_bytes": int(flush.size),
    }


def _counted_ops(launches: list[Launch], bufs: dict) -> dict[str, int]:
    """Matmul FLOPs and exponentials tallied by the threads of one untimed run of the
    ``count=True`` build (kernels/common.py); the outputs are rewritten with the same
    values."""
    from numba import cuda

    from .common import OPS_EXP, OPS_MATMUL_FLOPS

    ops = cuda.to_device(np.zeros(OPS_SLOTS, np.int64))
    for launch in launches:
        launch(bufs, ops)
    cuda.synchronize()
    tally = ops.copy_to_host()
    return {"matmul_flops": int(tally[OPS_MATMUL_FLOPS]), "exp_ops": int(tally[OPS_EXP])}


# ---- command line ----------------------------------------------------------------------


def problem_from(args: argparse.Namespace) -> AttentionProblem:
    """The AttentionProblem of the command-line arguments."""
    mask = Mask(causal=args.causal or args.top_k is not None or args.chunk is not None,
                window=args.window, chunk=args.chunk, top_k=args.top_k)
    indexer = None
    if runs_mask(args.kernel, "topk"):
        indexer = Indexer(heads=args.index_heads, head_dim=args.index_head_dim,
                          dtype=args.index_dtype or args.dtype)
    return AttentionProblem(
        batch=args.batch, seq_len=args.seq_len, kv_len=args.kv_len, heads=args.heads,
        kv_heads=args.kv_heads, head_dim=args.head_dim, head_dim_v=args.head_dim_v,
        dtype=args.dtype, mla=args.mla, mask=mask, indexer=indexer)


def tiling_from(problem: AttentionProblem, kernel: str, gpu: str, *,
                block_q: int | None = None, block_kv: int | None = None,
                threads: int | None = None, kv_splits: int | None = None,
                index_block_q: int | None = None) -> Tiling:
    """The Tiling the kernel runs with (:func:`memsim.kernels.tiles.kernel_tiling`) on the
    memsim profile named ``gpu``."""
    from memsim.hardware import load_gpu

    return kernel_tiling(problem, load_gpu(gpu), kernel, block_q=block_q, block_kv=block_kv,
                         threads=threads, kv_splits=kv_splits, index_block_q=index_block_q)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m memsim.kernels.bench", description=__doc__
                                 .split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kernel", required=True, choices=sorted(KERNELS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int)
    ap.add_argument("--seq-len", type=int, required=True, help="N, query tokens")
    ap.add_argument("--kv-len", type=int, help="S, key/value tokens (default N)")
    ap.add_argument("--head-dim", type=int, required=True)
    ap.add_argument("--head-dim-v", type=int)
    ap.add_argument("--mla", action="store_true")
    ap.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--window", type=int)
    ap.add_argument("--chunk", type=int)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--index-heads", type=int, default=64)
    ap.add_argument("--index-head-dim", type=int, default=128)
    ap.add_argument("--index-dtype", choices=("fp32", "fp16"))
    ap.add_argument("--block-q", type=int)
    ap.add_argument("--block-kv", type=int)
    ap.add_argument("--index-block-q", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--kv-splits", type=int)
    ap.add_argument("--gpu", default="h100-sxm",
                    help="memsim profile whose shared memory bounds the default tiles")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--out", help="also append the JSON line to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        problem = problem_from(args)
        tiling = tiling_from(problem, args.kernel, args.gpu, block_q=args.block_q,
                             block_kv=args.block_kv, threads=args.threads,
                             kv_splits=args.kv_splits, index_block_q=args.index_block_q)
        row = run_case(args.kernel, problem, tiling, repeats=args.repeats, seed=args.seed)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, KernelInvalidError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    line = json.dumps(row)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
