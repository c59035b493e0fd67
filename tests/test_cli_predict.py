"""`memsim predict`, `cost-curve`, `sweep`, `models` through typer's runner; JSON contracts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.models import load_model, preset_names

_register()
RUNNER = CliRunner()


def run(*args: str):
    return RUNNER.invoke(app, list(args))


VRAM_KEYS = {"weights_bytes", "kv_cache_bytes", "activation_bytes", "workspace_bytes",
             "total_bytes", "capacity_bytes", "fits", "min_gpus_to_fit"}


def _tp_for(name: str) -> str:
    heads = load_model(name).groups[0].attention.heads
    return "8" if load_model(name).params_total > 1e11 and heads % 8 == 0 else "1"


@pytest.mark.parametrize("name", preset_names())
def test_predict_json_contract_every_preset(name: str) -> None:
    r = run("predict", "--model", name, "--gpu", "h100-sxm", "--context", "4096",
            "--batch", "2", "--tp", _tp_for(name), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["vram"]) >= VRAM_KEYS
    assert {"time_s", "tokens_per_s", "usd_per_million_tokens"} <= set(out["prefill"])
    assert {"time_per_token_s", "tokens_per_s", "usd_per_million_tokens"} <= set(out["decode"])
    assert out["prefill"]["time_s"] > 0
    assert isinstance(out["vram"]["fits"], bool)


@pytest.mark.parametrize("name", preset_names())
def test_cost_curve_json_contract_every_preset(name: str) -> None:
    r = run("cost-curve", "--model", name, "--gpu", "h100-sxm", "--max-context", "8192",
            "--points", "4", "--tp", _tp_for(name), "--json")
    assert r.exit_code == 0, r.output
    curve = json.loads(r.stdout)
    assert len(curve) == 4
    for row in curve:
        assert {"position", "batch", "fits", "prefill_usd_per_million_tokens",
                "decode_usd_per_million_tokens"} <= set(row)
        assert isinstance(row["fits"], bool)


def test_predict_table_has_breakdown_and_takeaway() -> None:
    r = run("predict", "--model", "gemma-3-27b", "--gpu", "h100-sxm", "--context", "32768")
    assert r.exit_code == 0, r.output
    for text in ("weights", "kv cache", "global layers", "prefill", "decode", "%"):
        assert text in r.stdout
    assert "dominated by" in r.stdout


def test_predict_golden_llama3_70b_128k() -> None:
    r = run("predict", "--model", "llama-3-70b", "--gpu", "h100-sxm", "--context", "131072",
            "--tp", "2", "--json")
    out = json.loads(r.stdout)
    assert out["vram"]["kv_cache_bytes"] == 327_680 * 131_072 / 2
    assert "warning" in r.stderr and "8192" in r.stderr  # beyond the trained length


def test_models_lists_presets() -> None:
    r = run("models", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert len(rows) == 21
    assert {"name", "params", "kv_bytes_per_token_bf16", "layer_groups"} <= set(rows[0])
    assert run("models").exit_code == 0


def test_model_from_config_path(tmp_path) -> None:
    from memsim.models import PRESETS_DIR

    path = tmp_path / "my.json"
    path.write_text((PRESETS_DIR / "Qwen/Qwen2.5-7B/config.json").read_text())
    r = run("predict", "--model", str(path), "--gpu", "h100-sxm", "--context", "1000", "--json")
    assert r.exit_code == 0, r.output


def test_sweep_jsonl_and_csv(tmp_path) -> None:
    out = tmp_path / "s.jsonl"
    r = run("sweep", "--models", "llama-3-8b,mistral-7b", "--gpus", "h100-sxm",
            "--contexts", "1024,4096", "--batches", "1,8", "--attentions", "auto,flash2",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 * 2
    csv_out = tmp_path / "s.csv"
    r = run("sweep", "--models", "llama-3-8b", "--gpus", "h100-sxm", "--contexts", "1024",
            "--out", str(csv_out))
    assert r.exit_code == 0, r.output
    assert csv_out.read_text().splitlines()[0].startswith("model,gpu,attention")


@pytest.mark.parametrize(("args", "needle"), [
    (("predict", "--model", "llama-3-71b", "--gpu", "h100-sxm", "--context", "10"),
     "did you mean"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "0"), "context=0"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "-5"), "context=-5"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "10", "--batch",
      "0"), "batch=0"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "10", "--price",
      "0"), "price=0"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "10", "--tp", "3"),
     "tp=3"),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100", "--context", "10"), "gpu="),
    (("predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "10",
      "--attention", "flash3"), "attention="),
    (("cost-curve", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--max-context", "0"),
     "max_context=0"),
    (("sweep", "--models", "llama-3-8b", "--gpus", "h100-sxm", "--contexts", "1,x"),
     "contexts='x'"),
])
def test_bad_input_exit_2_no_traceback(args, needle) -> None:
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output


def test_bad_config_file_exit_2(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    r = run("predict", "--model", str(path), "--gpu", "h100-sxm", "--context", "10")
    assert r.exit_code == 2
    assert "missing" in r.output
