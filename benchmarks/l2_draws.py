"""Random draws of tests/test_l2_estimate.py's forward property, counted (issue 13).

The property ``test_forward_estimate_and_trace_agree`` draws shapes on a shrunken GPU
(1–8 MiB L2, 4–16 SMs) and holds the closed-form L2 estimate / trace HBM bytes within
FORWARD_BOUNDS. This script draws the same domain with numpy (N log-uniform in
64 … 16384) and prints, per algorithm and mask, how many draws lie within 10 % and the
range of estimate / trace, with the worst draws — the figures the property's docstring
quotes.

    python -m benchmarks.l2_draws --algorithm flash2 --causal --seed 31 --draws 60
"""

from __future__ import annotations

import argparse

import numpy as np


def draw(rng: np.random.Generator) -> dict:
    """One shape of the property's domain."""
    H = int(rng.choice([4, 8, 16]))
    return dict(N=int(round(np.exp(rng.uniform(np.log(64), np.log(16384))))), H=H,
                K=max(1, H >> int(rng.integers(0, 4))), D=int(rng.choice([64, 128])),
                B=int(rng.integers(1, 3)), l2_mib=int(rng.choice([1, 2, 4, 8])),
                sms=int(rng.choice([4, 8, 16])))


def ratio(shape: dict, algorithm: str, causal: bool) -> float:
    """Estimate / trace HBM bytes of one drawn shape (the property's own helpers)."""
    from memsim.hardware import load_gpu
    from memsim.problem import AttentionProblem, Mask
    from tests.test_l2_estimate import _estimate_and_trace_hbm_bytes, _small_gpu

    p = AttentionProblem(batch=shape["B"], seq_len=shape["N"], heads=shape["H"],
                         kv_heads=shape["K"], head_dim=shape["D"], mask=Mask(causal=causal))
    gpu = _small_gpu(load_gpu("h100-sxm"), shape["l2_mib"] * 2**20, shape["sms"])
    est, traced = _estimate_and_trace_hbm_bytes(p, gpu, algorithm)
    return est / traced


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithm", default="flash2")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--draws", type=int, default=60)
    ap.add_argument("--worst", type=int, default=5, help="worst draws printed")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = [(ratio(s, args.algorithm, args.causal), s)
            for s in (draw(rng) for _ in range(args.draws))]
    r = np.array([x for x, _ in rows])
    print(f"{args.algorithm} {'causal' if args.causal else 'full'} seed {args.seed}: "
          f"{int(np.sum(np.abs(r - 1) < 0.10))}/{len(r)} within 10 %, "
          f"{r.min():.3f}–{r.max():.3f}")
    for x, s in sorted(rows, key=lambda row: -abs(np.log(row[0])))[:args.worst]:
        print(f"  {x:.3f}  {s}")


if __name__ == "__main__":
    main()
