"""One default for every number: the Python API and the CLI answer the same question alike
(issue 11 item 3; docs/DESIGN.md §"Defaults")."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from memsim.attention import costs, predict
from memsim.cli import _register, app
from memsim.problem import AttentionProblem, Indexer, Mask

RUNNER = CliRunner()
_register()
SHAPE = dict(batch=1, heads=32, kv_heads=8, seq_len=4096, head_dim=128)
FLAGS = ["--batch", "1", "--heads", "32", "--kv-heads", "8", "--seq-len", "4096",
         "--head-dim", "128"]


def _cli(*args: str) -> dict:
    result = RUNNER.invoke(app, ["attention", *FLAGS, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("algorithm", ["standard", "flash1", "flash2"])
def test_api_cli_and_vectorised_costs_agree_without_options(algorithm: str) -> None:
    """The same question with every default: `memsim attention`, predict() and costs()
    (flash2 at 4K was 1.16 GB from the CLI and 2.25 GB from costs() before)."""
    cli = _cli("--algorithm", algorithm)
    api = predict(AttentionProblem(**SHAPE), "h100-sxm", algorithm).to_dict()
    vec = costs(algorithm, B=1, N=4096, H=32, K=8, D=128)
    assert cli["mask"] == api["mask"] == "causal"
    for key in ("flops", "global_bytes", "hbm_bytes", "workspace_bytes", "time_s"):
        assert cli[key] == api[key], key
    assert float(vec.global_bytes) == cli["global_bytes"]
    assert float(vec.flops) == cli["flops"]


def test_dsa_indexer_defaults_agree() -> None:
    """dsa with the default indexer: the CLI, Indexer() and costs() (whose indexer tile was
    16 queries against the tiling's 128)."""
    ix = Indexer()
    shape = dict(batch=1, heads=16, kv_heads=1, seq_len=2048, head_dim=576, head_dim_v=512,
                 mla=True)
    cli = RUNNER.invoke(app, ["attention", "--algorithm", "dsa", "--batch", "1", "--heads",
                              "16", "--kv-heads", "1", "--seq-len", "2048", "--head-dim",
                              "576", "--head-dim-v", "512", "--mla", "--top-k", "256",
                              "--json"])
    assert cli.exit_code == 0, cli.output
    cli_row = json.loads(cli.output)
    api = predict(AttentionProblem(**shape, mask=Mask(top_k=256), indexer=ix), "h100-sxm",
                  "dsa").to_dict()
    assert cli_row["flops"] == api["flops"] and cli_row["global_bytes"] == api["global_bytes"]
    t = cli_row["tiling"]
    assert (t["index_heads"], t["index_head_dim"]) == (ix.heads, ix.head_dim)
    vec = costs("dsa", B=1, N=2048, H=16, K=1, D=576, Dv=512, mla=True, mask="topk",
                top_k=256, block_q=t["block_q"], block_kv=t["block_kv"],
                heads_per_block=t["heads_per_block"], index_block_q=t["index_block_q"])
    assert float(vec.flops) == cli_row["flops"]
    assert float(vec.global_bytes) == cli_row["global_bytes"]
