"""The committed Nsight Compute records against memsim's *current* models.

A run's records keep the predictions memsim made when the run was measured; after the
models change, those are stale. This re-predicts every ``ncu`` case of the records (no
GPU: the measured counters are read back, the predictions recomputed the way
:mod:`memsim.validation.runner` makes them) and prints, per case, the counters that the
trace and the closed form are judged on: DRAM reads and writes, global (L1 → L2) reads
and writes, and the signed error predicted / measured − 1.

    python -m memsim.validation.ncu_compare measurements/h100-sxm [--json]

The ``store`` target's rows (``ncu/store-all 24M``: one ``fill_`` of 24 MiB under
``--cache-control all``) are the measurement that decides how the trace counts DRAM
writes (docs/DESIGN.md §"The L2 model", "What ``dram__bytes_write`` counts").

Only the newest record of each case id is used (a run repeated later supersedes it).
The trace is run as Nsight Compute measures: every kernel from a flushed L2, DRAM writes
counted only while a kernel runs (``dram__bytes_write.sum`` is a per-kernel counter and
``--cache-control all`` flushes the L2 between kernels, outside them). The committed
records bear that out: the 1K fp32 memsim FA-2 kernel (O = 2.10 MB, everything fits the
50 MiB L2) shows 0.46 MB of DRAM writes, so the write-back of the lines still dirty at
its end is not counted.

The ``trace-lines`` rows replay the same schedule through the line-level L2 (32 B
sectors of 128 B lines, the profile's sets and ways; :mod:`memsim.trace.l2_lines`). It
moves no record's DRAM writes by more than 1 % (4K SDPA-flash 17.4 → 17.5 MB, eager 1K
410.3 → 411.3 MB, the 1K kernel 0 → 0; 4–64 ways and a modulo index alike): sets, ways
and sectors do not explain what ``dram__bytes_write`` counts. Measured writes lie
between "evictions inside the kernel" and "every byte written" — at 1.10, 0.58 and 0.22
of the bytes still dirty at the end — so no rule without a fitted parameter matches the
three records (docs/DESIGN.md §"The L2 model").

What remains (2026-12-01): at 4K, PyTorch's flash kernel writes back all of O during the
kernel (35.7 MB ≥ O + LSE 34.1 MB) where a 50 MiB byte-LRU keeps 16.7 MB dirty to the end
(at 10 MiB still 3.7 MB) — and at 1K 22 % of O is written back with no capacity pressure
at all: the L2 writes dirty lines back earlier than any LRU capacity explains. Its DRAM
reads are 26 MB (25 %) above Q + K + V, which the trace reaches at every capacity down to
10 MiB. Eager attention (sdpa-math, bf16 inputs, 1K causal): memsim runs the 20 kernels
Nsight Compute lists (the five dtype copies, the causal mask's construction, the safe
softmax's pieces: memsim.algorithms.standard), global writes −1.1 %, trace DRAM reads
−0.4 %; global reads were −18.7 % (1335 of 1643 MB). cuBLAS's QKᵀ (128 × 128 output
tiles, ``tilesize128x128x8``) re-reads each Q tile per column tile of S, 7 × 16.8 MB ≈
117 MB more, modelled since 2026-12-02 (memsim.algorithms.standard.GEMM_TILE_KEYS): global
reads −11.6 % (1453 MB), the re-reads hit the L2 (trace DRAM reads unchanged, −0.4 %;
DRAM writes −13.5 → −10.7 %: QKᵀ writes 15 MB more of S back during the kernel, Q,
touched again per output tile, staying in the L2 in S's place); the where kernels'
broadcast operands (one 32-byte sector per warp load, ≈ 67 MB): −7.3 %. Global writes
are exact since 2026-12-02 (761,266,272 B, all three models): Nsight Compute counts the
sectors each warp instruction touches, and tril moves its 8-byte chunks a byte per
instruction (8 × 1 MiB of sectors stored for 1 MiB), ``all`` stores a row's flag from one
lane (a sector per row) and each one-element fill a sector (memsim.algorithms.standard
TRIL_CHUNK, tril_read_bytes; tests/test_eager_dtypes.py). Reads −7.1 % (1525.8 MB, tril's
byte loads +3.8 MB); the 116.9 MB left is not modelled (a candidate cause, unverified,
and the GPU run that would settle it: docs/DESIGN.md §"Open questions (unverified)").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: (measured quantity, label) compared, in print order.
QUANTITIES = (("hbm_read_bytes", "dram read"), ("hbm_write_bytes", "dram write"),
              ("global_read_bytes", "global read"), ("global_write_bytes", "global write"))


def ncu_cases(path: Path | str) -> list[dict[str, Any]]:
    """The newest ``ok`` record of every ncu case under ``path`` (a folder or a file)."""
    from memsim.validation.records import ok_cases, read_cases

    newest: dict[str, dict[str, Any]] = {}
    for case in ok_cases(read_cases(path)):
        if case.get("kind") == "ncu":
            newest[case["id"]] = case     # read_cases yields runs oldest first
    return list(newest.values())


#: (row label, simulate's l2_model, the prediction's key) of each model compared
MODELS = (("analytic", "tiles", "analytic"), ("trace", "tiles", "trace"),
          ("trace-lines", "lines", "trace"))


def repredict(case: dict[str, Any], l2_model: str = "tiles") -> dict[str, Any]:
    """memsim's prediction for one ncu case, made now (as the runner's ``_ncu`` makes it);
    ``l2_model``: the trace's L2 (tiles, or lines: sectors, sets and ways)."""
    from memsim.hardware import load_gpu
    from memsim.validation.predictions import ncu_prediction

    return ncu_prediction(case["params"], load_gpu(case["prediction"]["profile"]), l2_model)


def row_label(case: dict[str, Any]) -> str:
    """The table's first column: the group, and the buffer size of a ``store`` case
    (``ncu/store-none 96M``: its cases differ only in size)."""
    size_mib = case["params"].get("size_mib")
    return case["group"] if size_mib is None else f"{case['group']} {size_mib}M"


def compare(path: Path | str) -> list[dict[str, Any]]:
    """One row per (case, model, quantity): measured, predicted then and now, errors. The
    records predate the line model: its rows have no recorded prediction."""
    rows = []
    for case in ncu_cases(path):
        now = {l2: repredict(case, l2) for l2 in ("tiles", "lines")}
        for model, l2, key in MODELS:
            then_q = (case.get("prediction") or {}).get(model) or {}
            now_q = now[l2].get(key) or {}
            for quantity, label in QUANTITIES:
                measured = case["measurement"].get(quantity)
                if not measured:
                    continue
                row = {"group": case["group"], "label": row_label(case), "case": case["id"],
                       "model": model,
                       "quantity": label, "measured": measured,
                       "recorded": then_q.get(quantity), "now": now_q.get(quantity)}
                for key in ("recorded", "now"):
                    value = row[key]
                    row[f"{key}_error"] = None if value is None else value / measured - 1.0
                rows.append(row)
    return rows


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f}%"


def format_text(rows: list[dict[str, Any]]) -> str:
    """The rows as a table: bytes in MB (1e6), errors as predicted / measured − 1."""
    head = (f"{'group':18} {'model':11} {'quantity':12} {'measured MB':>12} "
            f"{'recorded MB':>12} {'err':>8} {'now MB':>10} {'err':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rec = "–" if r["recorded"] is None else f"{r['recorded'] / 1e6:.1f}"
        now = "–" if r["now"] is None else f"{r['now'] / 1e6:.1f}"
        lines.append(f"{r.get('label', r['group']):18} {r['model']:11} {r['quantity']:12} "
                     f"{r['measured'] / 1e6:12.1f} {rec:>12} {_pct(r['recorded_error']):>8} "
                     f"{now:>10} {_pct(r['now_error']):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    if len(paths) != 1 or not Path(paths[0]).exists():
        print(f"error: path={paths[0] if paths else ''} must be one existing folder or "
              "file of validation records", file=sys.stderr)
        return 2
    rows = compare(paths[0])
    if as_json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
