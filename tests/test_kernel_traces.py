"""Every byte a kernel moves, recorded in the CUDA simulator, against memsim's counts.

kernels/access_trace.py runs the kernels with every global and shared array wrapped. For
each kernel family, on tiny awkward shapes and several masks, the recorded global reads and
writes must equal the analytic ``global_read_bytes`` / ``global_write_bytes`` of
memsim.algorithms for the same Tiling exactly, the kernels' own tally of multiply-adds and
exponentials must equal ``matmul_flops`` and ``exp_ops``, and the trace-driven model with
its L2 switched off must count the same global bytes and FLOPs: kernel = analytic = trace.
The recorder itself is checked first on hand-made kernels whose sectors and bank conflicts
are known.
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from memsim.kernels.access_trace import trace_launches
from memsim.kernels.common import Launch
from memsim.kernels.registry import explicit_tiling, family, mismatches
from numba import config, cuda, float32

from memsim.attention import attention_cost
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem, Indexer, Mask
from memsim.trace import simulate

GPU = load_gpu("h100-sxm")
pytestmark = pytest.mark.skipif(not config.ENABLE_CUDASIM,
                                reason="access traces run in the CUDA simulator only")

# ---- the recorder on kernels with known answers -------------------------------------------


@cuda.jit
def _probe(a, m, out, ops):
    x_sh = cuda.shared.array((32, 32), float32)
    y_sh = cuda.shared.array((32, 33), float32)
    t = cuda.threadIdx.x
    x_sh[t, 0] = a[t]                  # column of a 32-wide row-major array: 32-way conflict
    x_sh[0, t] = m[t, 0]               # row: conflict-free; m's column: 32 sectors
    y_sh[t, 0] = a[t]                  # padded to 33 words per row: conflict-free
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = x_sh[0, 0] + y_sh[t, 0]   # x_sh[0, 0]: one word, broadcast


def test_recorder_counts_sectors_and_bank_conflicts() -> None:
    a = np.arange(1, 33, dtype=np.float32)
    m = np.ones((32, 32), np.float32)
    out = np.zeros((2, 32), np.float32)
    trace = trace_launches([Launch("probe", _probe, (2,), 32, ("a", "m", "out"))],
                           {"a": a, "m": m, "out": out})
    ta, tm, to = trace.tensors["a"], trace.tensors["m"], trace.tensors["out"]
    assert (ta.read_requests, ta.read_sectors) == (4, 16)        # 2 blocks × 2 × 4 sectors
    assert (tm.read_requests, tm.read_sectors) == (2, 64)        # 32 sectors per request
    assert (to.write_requests, to.write_sectors, to.write_bytes) == (2, 8, 256)
    x, y = trace.shared["probe:x_sh"], trace.shared["probe:y_sh"]
    assert (x.requests, x.wavefronts) == (6, 2 * (32 + 1 + 1))
    assert (y.requests, y.wavefronts) == (4, 4)
    assert trace.blocks == {("probe", (0, 0, 0)): [384, 128], ("probe", (1, 0, 0)): [384, 128]}
    assert trace.global_read_bytes == 768 and (out == a + 1).all()


# ---- kernels against the analytic counts -----------------------------------------------------


def attention(mask: Mask, dtype: str = "fp32", **kw) -> AttentionProblem:
    shape = dict(batch=1, seq_len=37, kv_len=45, heads=4, kv_heads=2, head_dim=24) | kw
    return AttentionProblem(**shape, dtype=dtype, mask=mask)


MLA = dict(batch=2, seq_len=20, kv_len=20, heads=4, kv_heads=1, head_dim=16, head_dim_v=8,
           mla=True)
DSA_INDEXER = Indexer(heads=2, head_dim=8, dtype="fp16")

CASES = {
    "flash2-window-gqa-fp16": (attention(Mask(window=9), "fp16"), "flash2",
                               dict(block_q=16, block_kv=16)),
    "flash2-band-mla": (attention(Mask(causal=False, window=7), **MLA), "flash2",
                        dict(block_q=8, block_kv=8, threads=16)),
    "flash1-chunk": (attention(Mask(chunk=12)), "flash1", dict(block_q=16, block_kv=16)),
    "flash1-causal-mla": (attention(Mask(), **MLA), "flash1", dict(block_q=8, block_kv=8)),
    "standard-causal-fp16": (attention(Mask(), "fp16"), "standard_blockskip",
                             dict(block_q=16, block_kv=16)),
    "standard-window-mla": (attention(Mask(window=6), **MLA), "standard_blockskip",
                            dict(block_q=8, block_kv=8, threads=16)),
    "decode-masked-split": (attention(Mask(), seq_len=4, kv_len=66), "flash_decode",
                            dict(block_q=4, block_kv=16, kv_splits=5)),
    "decode-window-fp16": (attention(Mask(window=20), "fp16", seq_len=2, kv_len=97),
                           "flash_decode", dict(block_q=2, block_kv=16, kv_splits=3)),
    "dsa-prefill-mla": (attention(Mask(top_k=8), seq_len=24, kv_len=30, kv_heads=1,
                                  head_dim_v=16, mla=True, indexer=DSA_INDEXER), "dsa",
                        dict(block_q=1, block_kv=8, threads=16, index_block_q=8)),
    "dsa-decoding-split": (attention(Mask(top_k=16), seq_len=3, kv_len=40, kv_heads=1,
                                     head_dim_v=16, mla=True, indexer=DSA_INDEXER), "dsa",
                           dict(block_q=1, block_kv=4, threads=16, index_block_q=4,
                                kv_splits=3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recorded_traffic_and_work_equal_the_analytic_counts(case: str) -> None:
    problem, algorithm, tiles = CASES[case]
    tiling = explicit_tiling(problem, algorithm, **({"threads": 32} | tiles))
    module = family(algorithm)
    seed = secrets.randbits(32)
    bufs = module.buffers(problem, tiling, np.random.default_rng(seed))
    trace = trace_launches(module.launches(problem, tiling, count=True), bufs)
    assert not mismatches(problem, tiling, bufs), f"seed={seed}"     # it computed right

    cost, _ = attention_cost(problem, GPU, algorithm, tiling)
    recorded = (trace.global_read_bytes, trace.global_write_bytes, trace.matmul_flops,
                trace.exp_ops)
    assert recorded == (cost.global_read_bytes, cost.global_write_bytes, cost.matmul_flops,
                        cost.exp_ops)
    modelled = simulate(problem, GPU, algorithm, tiling, l2=False).cost
    assert (modelled.global_read_bytes, modelled.global_write_bytes, modelled.matmul_flops,
            modelled.exp_ops) == recorded

    per_block = np.array(list(trace.blocks.values())).sum(axis=0)
    assert tuple(per_block) == recorded[:2]
    for t in trace.tensors.values():           # a 32-byte sector holds at most 32 bytes
        assert 32 * t.read_sectors >= t.read_bytes and 32 * t.write_sectors >= t.write_bytes
    assert all(s.wavefronts >= s.requests > 0 for s in trace.shared.values())
