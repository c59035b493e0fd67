"""vLLM's FlashAttention-4 path on Hopper (head size > 256): routing, tiles, split CTAs."""

from __future__ import annotations

import numpy as np
import pytest

from memsim.attention import (
    VLLM_CUDAGRAPH_MAX_SPLITS,
    VLLM_MAX_CUDAGRAPH_TOKENS,
    kernel_timer,
    predict,
    vllm_fa4,
    vllm_fa4_splits,
    vllm_max_num_splits,
)
from memsim.hardware import load_gpu
from memsim.problem import AttentionProblem


def _decode(batch: int, head_dim: int = 512) -> AttentionProblem:
    return AttentionProblem(batch=batch, seq_len=1, kv_len=64, heads=8, kv_heads=1,
                            head_dim=head_dim)


def test_vllm_runs_fa4_only_where_fa3_has_no_kernel() -> None:
    """fa_utils.get_flash_attn_version upgrades FA3 to FA4 on SM90 for head_size > 256;
    SGLang, Blackwell and head sizes up to 256 keep their kernels and classes."""
    h100, b200 = load_gpu("h100-sxm"), load_gpu("b200")
    assert vllm_fa4(_decode(1), "vllm", h100)
    assert not vllm_fa4(_decode(1, 256), "vllm", h100)
    assert not vllm_fa4(_decode(1), "sglang", h100)
    assert not vllm_fa4(_decode(1), "vllm", b200)
    cls = {(a, d): predict(_decode(4, d).model_copy(update={"seq_len": n, "kv_len": 64}),
                           "h100-sxm", a, backend="vllm").to_dict()["efficiency_class"]
           for a, n in (("flash_decode", 1), ("flash2", 64)) for d in (256, 512)}
    assert cls["flash_decode", 512] == "attention/decode/vllm/fa4"
    assert cls["flash2", 512] == "attention/context/vllm/fa4"
    assert cls["flash_decode", 256] == "attention/decode/vllm"
    assert cls["flash2", 256] == "attention/context/vllm"


def test_fa4_sm90_tiles_for_head_dim_512() -> None:
    """flash_attn/cute/interface.py _tile_size_fwd_sm90: hdim 512 → 64 × 64."""
    from memsim.ops import fa3

    assert tuple(int(v) for v in fa3.tile(512, 512, False, np.array(4096))) == (64, 64)
    assert tuple(int(v) for v in fa3.tile(512, 512, True, np.array(8))) == (64, 64)


def test_fa4_split_count_is_vllms_cuda_graph_bound_up_to_the_largest_graph() -> None:
    tokens = np.array([1, VLLM_MAX_CUDAGRAPH_TOKENS, VLLM_MAX_CUDAGRAPH_TOKENS + 1])
    assert vllm_fa4_splits(tokens, 1).tolist() == [VLLM_CUDAGRAPH_MAX_SPLITS] * 2 + [1]
    assert vllm_fa4_splits(64, 16).tolist() == 1   # 1024 tokens: past the largest graph
    # one reading of vLLM's builder: 32 inside the graph, 0 ("the kernel's heuristic")
    # past it, which FA4's decode on these rows takes as 1
    assert vllm_max_num_splits(tokens, 1).tolist() == [VLLM_CUDAGRAPH_MAX_SPLITS] * 2 + [0]


def test_fa4_decode_pays_every_split_ctas_fixed_steps() -> None:
    """Every split CTA loads its Q tile and writes its partial O: the serial time per
    (sequence, KV head) is num_splits times one CTA's, so it drops by that factor once the
    batch leaves the CUDA-graph range; FA3 (D = 256) has no such step."""
    gpu = load_gpu("h100-sxm")
    top = VLLM_MAX_CUDAGRAPH_TOKENS

    def serial(p: AttentionProblem, b: int) -> float:
        return float(np.asarray(kernel_timer(p, gpu, "flash_decode", backend="vllm",
                                             B=np.array([b]), N=np.array([1]))
                                .serial_s).ravel()[0])

    fa4 = serial(_decode(1), top) / serial(_decode(1), top + 1)
    assert fa4 == pytest.approx(VLLM_CUDAGRAPH_MAX_SPLITS * top / (top + 1))
    fa3 = serial(_decode(1, 256), top) / serial(_decode(1, 256), top + 1)
    assert fa3 == pytest.approx(top / (top + 1))


@pytest.mark.parametrize("system", ["h100_sxm", "h200_sxm"])
def test_fa4_routing_agrees_with_the_tables_kernel_source(system: str) -> None:
    """memsim's routing (head size, GPU) names the kernel aiconfigurator's vLLM 0.24 rows
    record in ``kernel_source`` on every H100/H200 attention row (needs the installed
    database: the silicon extra)."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("aiconfigurator_core")
    from memsim.silicon import source
    from memsim.silicon.classes import vllm_flash_attn
    from memsim.silicon.tables import read

    files = [f for t in ("context_attention_perf", "generation_attention_perf")
             for f in source.table_files(t)
             if f.system == system and f.backend == "vllm" and f.family == "attention"]
    if not files:
        pytest.skip("aiconfigurator-core's tables are not installed")
    for f in files:
        rows = read(f, ["head_dim", "kernel_source"], "test")
        routed = vllm_flash_attn(rows)
        recorded = np.array([str(s).rsplit("_", 1)[-1] for s in rows.col("kernel_source")])
        assert (routed == recorded).all(), f.relative
        assert (routed == "fa4").sum() > 0
