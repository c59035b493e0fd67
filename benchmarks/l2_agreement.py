"""One L2 answer (issue 13, item 2): the closed-form L2 estimate against the trace.

Prints, per cell, the HBM bytes (reads + writes inside the kernels, as Nsight Compute
counts them) of the closed-form estimate (``memsim attention``'s "with L2" figure,
:func:`memsim.attention.attention_cost` with ``l2_estimate``) and of the trace-driven
model (:func:`memsim.trace.simulate`, every head group replayed through the LRU L2),
both on the same tiling, and their ratio. Not a ``bench_*`` module: it measures the
model's agreement, not memsim's speed, and its long cells take minutes.

    python -m benchmarks.l2_agreement                     # the default grid, H100
    python -m benchmarks.l2_agreement --seq-len 131072 --algorithm flash2 --pass forward
    python -m benchmarks.l2_agreement --json              # one JSON line per cell

The default grid: H100 SXM, B 1, H 32, D 128, bf16; N 1K … 1M; MHA (K 32) and GQA (K 8);
causal and full; flash1, flash2, standard; forward and backward. A cell whose trace
would take more than ``--max-events`` tile events is skipped (printed as such), so
standard stops where its N² score tiles get expensive and 1M runs only where cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

SEQ_LENS = (1024, 4096, 16384, 65536, 131072, 262144, 1048576)
ALGORITHMS = ("flash2", "flash1", "standard")
PASSES = ("forward", "backward")
#: tile events above which a cell is skipped (about 10 s of trace on 2 cores)
MAX_EVENTS = 1_000_000_000


def cell(gpu, algorithm: str, pass_: str, N: int, H: int, K: int, D: int, causal: bool,
         max_events: int) -> dict:
    """Estimate and trace HBM bytes of one configuration (or why it was skipped)."""
    from memsim.attention import attention_cost
    from memsim.errors import InputError
    from memsim.problem import AttentionProblem, Mask
    from memsim.trace.schedule import build_schedule
    from memsim.trace.simulate import simulate

    p = AttentionProblem(batch=1, seq_len=N, heads=H, kv_heads=K, head_dim=D,
                         mask=Mask(causal=causal), **{"pass": pass_})
    row = {"algorithm": algorithm, "pass": pass_, "N": N, "H": H, "K": K, "D": D,
           "causal": causal}
    try:
        plain, tiling = attention_cost(p, gpu, algorithm)
        est, _ = attention_cost(p, gpu, algorithm, tiling, l2_estimate=True)
        events = build_schedule(p, tiling, algorithm).events()
    except InputError as exc:
        return {**row, "skipped": str(exc)}
    row.update(no_reuse_bytes=plain.hbm_bytes, estimate_bytes=est.hbm_bytes,
               events=events)
    if events > max_events:
        return {**row, "skipped": f"{events:.2e} events > {max_events:.0e}"}
    t0 = time.perf_counter()
    try:
        traced = simulate(p, gpu, algorithm, tiling, event_budget=max(events, 1)).cost
    except InputError as exc:
        return {**row, "skipped": str(exc)}
    row.update(trace_bytes=traced.hbm_bytes, trace_s=time.perf_counter() - t0,
               ratio=est.hbm_bytes / traced.hbm_bytes)
    return row


def _format(row: dict) -> str:
    kind = ("MHA" if row["K"] == row["H"] else f"GQA K{row['K']}")
    mask = "causal" if row["causal"] else "full"
    head = (f"{row['algorithm']:>8} {row['pass']:>8} {row['N']:>8} {kind:>8} {mask:>6}")
    if "ratio" not in row:
        return f"{head}  skipped: {row['skipped']}"
    flag = "" if abs(row["ratio"] - 1) < 0.10 else "  <-- outside 10 %"
    return (f"{head} {row['no_reuse_bytes'] / 1e9:>10.3f} {row['estimate_bytes'] / 1e9:>10.3f}"
            f" {row['trace_bytes'] / 1e9:>10.3f} {row['ratio']:>7.3f} {row['trace_s']:>7.1f}"
            f"{flag}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.l2_agreement",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", default="h100-sxm")
    ap.add_argument("--algorithm", default=",".join(ALGORITHMS))
    ap.add_argument("--pass", dest="passes", default=",".join(PASSES))
    ap.add_argument("--seq-len", default=",".join(map(str, SEQ_LENS)))
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", default="32,8", help="comma-separated K values")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--mask", default="causal,full")
    ap.add_argument("--max-events", type=float, default=MAX_EVENTS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from memsim.hardware import load_gpu

    gpu = load_gpu(args.gpu)
    if not args.json:
        print(f"{args.gpu}, B 1, H {args.heads}, D {args.head_dim}, bf16; HBM bytes in GB")
        print(f"{'alg':>8} {'pass':>8} {'N':>8} {'heads':>8} {'mask':>6} {'no reuse':>10}"
              f" {'estimate':>10} {'trace':>10} {'est/tr':>7} {'trace s':>7}")
    worst = 0.0
    for algorithm in args.algorithm.split(","):
        for pass_ in args.passes.split(","):
            for K in map(int, args.kv_heads.split(",")):
                for mask in args.mask.split(","):
                    for N in map(int, args.seq_len.split(",")):
                        row = cell(gpu, algorithm, pass_, N, args.heads, K, args.head_dim,
                                   mask == "causal", int(args.max_events))
                        if "ratio" in row:
                            worst = max(worst, abs(row["ratio"] - 1))
                        print(json.dumps(row) if args.json else _format(row), flush=True)
    if not args.json:
        print(f"worst |estimate / trace − 1| = {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
