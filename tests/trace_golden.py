"""Golden trace results (issue 13, trace speed): the cases, how each is summarised, and the
recorder. The engine is rewritten for speed under the rule that its results stay
bit-identical; ``tests/data/trace_golden/golden.json`` holds what the engine gave *before*
the rewrite (its commit is in the file), and tests/test_trace_engine.py compares every case
field by field, exactly (floats compared with ==).

A change of the L2 model's *semantics* (not its speed) changes these numbers on purpose:
re-record them then, with the commit they now come from::

    .venv/bin/python tests/trace_golden.py --record

(or only the cases it changes, with the pre-rewrite engine plus that change: the file's
``rerecorded`` entry says which and how).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "data" / "trace_golden" / "golden.json"

#: (id, problem fields, algorithm, simulate keyword arguments). Small shapes (the whole set
#: runs in seconds) that reach every path of the engine: each algorithm and pass, MHA and
#: GQA, causal and full, an L2 small enough to thrash, the L2 off, a heads sample, DSA's
#: gather and recorded event logs.
CASES = [
    ("flash2_causal_gqa", dict(batch=2, seq_len=1000, heads=8, kv_heads=2, head_dim=64),
     "flash2", {}),
    ("flash2_full_mha_small_l2", dict(batch=1, seq_len=1536, heads=4, head_dim=128,
                                      mask={"causal": False}), "flash2",
     {"l2_bytes": 600_000}),
    ("flash2_causal_thrash", dict(batch=1, seq_len=16384, heads=32, kv_heads=8,
                                  head_dim=128), "flash2", {"l2_bytes": 2_000_000}),
    ("flash2_fwd_bwd", dict(batch=1, seq_len=700, heads=4, head_dim=64,
                            **{"pass": "forward+backward"}), "flash2", {"l2_bytes": 400_000}),
    ("flash2_bwd_window", dict(batch=1, seq_len=900, heads=4, kv_heads=2, head_dim=64,
                               mask={"window": 256}, **{"pass": "backward"}), "flash2", {}),
    ("flash1_fwd_bwd", dict(batch=1, seq_len=600, heads=4, head_dim=64,
                            **{"pass": "forward+backward"}), "flash1", {"l2_bytes": 300_000}),
    ("standard_fwd_bwd", dict(batch=1, seq_len=300, heads=4, head_dim=64,
                              **{"pass": "forward+backward"}), "standard",
     {"l2_bytes": 500_000}),
    ("standard_blockskip", dict(batch=2, seq_len=400, heads=2, head_dim=64),
     "standard_blockskip", {}),
    ("flash2_l2_off", dict(batch=1, seq_len=800, heads=4, head_dim=64), "flash2",
     {"l2": False}),
    ("flash2_heads_sample", dict(batch=1, seq_len=2048, heads=16, kv_heads=4, head_dim=64),
     "flash2", {"heads_sample": 4, "l2_bytes": 1_000_000}),
    ("flash2_chunk", dict(batch=1, seq_len=1024, heads=4, head_dim=64, mask={"chunk": 256}),
     "flash2", {"l2_bytes": 200_000}),
    ("dsa_topk", dict(batch=1, seq_len=512, heads=16, kv_heads=1, head_dim=64,
                      mask={"top_k": 64}, indexer={}), "dsa", {"l2_bytes": 300_000}),
    ("flash2_record", dict(batch=1, seq_len=600, heads=4, kv_heads=2, head_dim=64), "flash2",
     {"record": True, "l2_bytes": 200_000}),
    ("standard_record", dict(batch=1, seq_len=200, heads=2, head_dim=64), "standard",
     {"record": True}),
    ("dsa_record", dict(batch=1, seq_len=256, heads=16, kv_heads=1, head_dim=64,
                        mask={"top_k": 32}, indexer={}), "dsa",
     {"record": True, "l2_bytes": 100_000}),
]
GPU = "h100-sxm"


def run_case(problem: dict, algorithm: str, kwargs: dict):  # type: ignore[no-untyped-def]
    from memsim.problem import AttentionProblem
    from memsim.trace import simulate

    return simulate(AttentionProblem.model_validate(problem), GPU, algorithm, **kwargs)


def summary(result) -> dict:  # type: ignore[no-untyped-def]
    """What must not change: bytes per tensor and kernel, hits, time, events, and a digest
    of the event log when one was recorded."""
    c = result.cost
    out = {
        "events": result.events, "time_s": result.time_s, "l2_hit_rate": result.l2_hit_rate,
        "hbm_read_bytes": c.hbm_read_bytes, "hbm_write_bytes": c.hbm_write_bytes,
        "global_read_bytes": c.global_read_bytes, "global_write_bytes": c.global_write_bytes,
        "hbm_write_after_bytes": result.hbm_write_after_bytes,
        "tensors": [[t["name"], t["global_read_bytes"], t["global_write_bytes"],
                     t["hbm_read_bytes"], t["hbm_write_bytes"]] for t in result.tensors],
        "kernels": [[k.name, k.events, k.makespan_s, k.time_s, k.hbm_read_bytes,
                     k.hbm_write_bytes, k.hbm_write_after_bytes] for k in result.kernels],
    }
    if result._events_log:
        digest = hashlib.sha256()
        for a in result._events_log:
            digest.update(np.ascontiguousarray(a).tobytes())
        out["event_log_sha256"] = digest.hexdigest()
        out["event_log_hits"] = int(np.count_nonzero(result._events_log[6]))
    return out


def record() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True, cwd=GOLDEN.parent).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "memsim"],
                           capture_output=True, text=True, check=True,
                           cwd=GOLDEN.parent).stdout.strip()
    cases = {cid: summary(run_case(p, a, kw)) for cid, p, a, kw in CASES}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({
        "recorded_at_commit": commit + (" (memsim/ modified)" if dirty else ""),
        "gpu": GPU, "command": "python tests/trace_golden.py --record", "cases": cases},
        indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(cases)} cases, commit {commit})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/trace_golden.py --record")
    record()
