"""Validate and time every memsim kernel at a few sizes on a real GPU, one command:

    python -m memsim.kernels.gpu_smoke [--out measurements/h100-sxm/kernels.jsonl]

Each case is :func:`memsim.kernels.bench.run_case` (validated against the float64 reference
on sampled rows, then timed with CUDA events, L2 flushed, median of many). Every result is
printed to stdout and, with ``--out``, appended to that file as one JSON line the moment it
is measured, so an interruption loses nothing already measured; a case that fails (invalid
output, launch error) becomes a line with ``"error"`` and the others still run. ``--quick``
runs the first case of each kernel.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from .bench import problem_from, run_case, tiling_from

GPU_PROFILE = "h100-sxm"


def _case(kernel: str, **kw: Any) -> dict[str, Any]:
    base = dict(kernel=kernel, batch=1, heads=8, kv_heads=None, seq_len=1024, kv_len=None,
                head_dim=64, head_dim_v=None, mla=False, dtype="fp32", causal=False,
                window=None, chunk=None, top_k=None, index_heads=64, index_head_dim=128,
                index_dtype=None)
    return base | kw


def cases() -> Iterator[dict[str, Any]]:
    """The smoke cases, cheapest of each kernel first."""
    for n in (1024, 4096):
        for d in (64, 128):
            for causal in (False, True):
                yield _case("flash2", seq_len=n, head_dim=d, causal=causal)
    yield _case("flash2", seq_len=4096, head_dim=128, causal=True, dtype="fp16")
    yield _case("flash2", seq_len=4096, heads=32, kv_heads=8, head_dim=128, causal=True)
    yield _case("flash2", seq_len=4096, head_dim=64, causal=True, window=1024)
    yield _case("flash2", seq_len=4096, head_dim=64, causal=True, chunk=1024)
    for causal in (True, False):
        yield _case("standard_blockskip", seq_len=1024, head_dim=64, causal=causal)
    yield _case("standard_blockskip", seq_len=4096, head_dim=64, causal=True)
    # FlashAttention-1 runs one block per (batch, head): keep it small
    yield _case("flash1", batch=4, seq_len=1024, head_dim=64, causal=True)
    yield _case("flash1", batch=4, seq_len=1024, head_dim=64, causal=False)
    yield _case("flash_decode", batch=4, seq_len=1, kv_len=32768, heads=32, kv_heads=8,
                head_dim=128, causal=True)
    yield _case("flash_decode", batch=1, seq_len=1, kv_len=32768, heads=32, kv_heads=8,
                head_dim=128, causal=True, dtype="fp16")
    yield _case("dsa", seq_len=2048, heads=16, kv_heads=1, mla=True, head_dim=192,
                head_dim_v=128, dtype="fp16", top_k=256, index_heads=16, index_head_dim=64)
    yield _case("dsa", seq_len=1, kv_len=32768, heads=16, kv_heads=1, mla=True,
                head_dim=192, head_dim_v=128, dtype="fp16", top_k=2048, index_heads=16,
                index_head_dim=64)


def run(case: dict[str, Any], gpu: str) -> dict[str, Any]:
    """One case as a JSON-able row: the bench's dict, or the error."""
    started = time.perf_counter()
    row: dict[str, Any] = {"case": case, "gpu_profile": gpu,
                           "utc": datetime.datetime.now(datetime.UTC).isoformat()}
    try:
        problem = problem_from(argparse.Namespace(**case))
        tiling = tiling_from(problem, case["kernel"], gpu)
        row |= run_case(case["kernel"], problem, tiling)
    except Exception as exc:  # noqa: BLE001 — one failed case must not stop the others
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=4)
    row["wall_s"] = time.perf_counter() - started
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memsim.kernels.gpu_smoke",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON-lines file, appended to (default: stdout only)")
    ap.add_argument("--gpu", default=GPU_PROFILE,
                    help="memsim profile whose shared memory bounds the default tiles")
    ap.add_argument("--quick", action="store_true", help="first case of each kernel only")
    ap.add_argument("--kernel", action="append", help="only these kernels (repeatable)")
    args = ap.parse_args(argv)
    seen: set[str] = set()
    failures = 0
    for case in cases():
        kernel = case["kernel"]
        if (args.kernel and kernel not in args.kernel) or (args.quick and kernel in seen):
            continue
        seen.add(kernel)
        row = run(case, args.gpu)
        failures += "error" in row
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
        status = row.get("error") or (f"{row['time_s'] * 1e3:.3f} ms, "
                                      f"{row['achieved_flop_per_s'] / 1e12:.2f} TFLOP/s "
                                      "(counted matmul FLOPs)")
        print(f"{kernel} {row.get('mask', '')} N={case['seq_len']} D={case['head_dim']}: "
              f"{status}", file=sys.stderr, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
