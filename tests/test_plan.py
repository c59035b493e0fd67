"""`memsim plan`: the search's answers meet their targets, the front is a Pareto front,
an executor gives the serial answer, and the JSON carries the chosen deployment."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from memsim.cli import _register, app
from memsim.hardware import load_gpu
from memsim.inference import Setup, predict
from memsim.models import load_model
from memsim.planning import Query, plan, structures

_register()
RUNNER = CliRunner()
QWEN = Query("qwen2.5-7b", "h100-sxm", isl=7168, osl=1024, tpot_ms=20.0, ttft_ms=2000.0,
             max_gpus=4)


@pytest.fixture(scope="module")
def qwen() -> dict:
    return plan(QWEN)


def test_the_chosen_deployments_meet_their_targets(qwen) -> None:
    d, p = qwen["decode"], qwen["prefill"]
    assert d["tpot_s"] <= 0.020 and p["ttft_s"] <= 2.0
    assert d["usd_per_million_tokens"] == min(
        r["usd_per_million_tokens"] for r in qwen["front"] if r["tpot_s"] <= 0.020)


def test_the_chosen_decode_agrees_with_predict(qwen) -> None:
    """The plan's numbers are predict's: same deployment, batch, mean position."""
    d = qwen["decode"]
    s = Setup(load_model("qwen2.5-7b"), load_gpu("h100-sxm"), weight_dtype="fp8",
              tp=d["tp"], gpus=d["gpus"], pp=d["pp"], ep=d["ep"],
              dp_attention=d["dp_attention"], mtp=d["mtp"])
    r = predict(s, QWEN.isl + QWEN.osl // 2, d["batch"])["decode"]
    assert r["time_per_token_s"] == pytest.approx(d["tpot_s"], rel=1e-9)
    assert r["usd_per_million_tokens"] == pytest.approx(d["usd_per_million_tokens"], rel=1e-9)


def test_front_is_pareto(qwen) -> None:
    front = qwen["front"]
    assert len(front) >= 3
    for a in front:
        for b in front:
            assert not (b["tokens_per_s_per_user"] > a["tokens_per_s_per_user"]
                        and b["tokens_per_s_per_gpu"] > a["tokens_per_s_per_gpu"])
    users = [r["tokens_per_s_per_user"] for r in front]
    assert users == sorted(users, reverse=True)


def test_executor_gives_the_serial_answer(qwen) -> None:
    with ThreadPoolExecutor(2) as ex:
        parallel = plan(QWEN, executor=ex)
    assert parallel["decode"] == qwen["decode"] and parallel["front"] == qwen["front"]
    assert parallel["evaluated"] == qwen["evaluated"] > 500


def test_structures_keep_the_rules() -> None:
    base = Setup(load_model("mixtral-8x7b"), load_gpu("h100-sxm"))
    for st in structures(base, 32):
        Setup(base.model, base.gpu, **st)  # every structure is a valid deployment
        assert st["tp"] <= 8 and st["ep"] in (1, st["gpus"] // st["pp"])


def test_unreachable_target_answers_none() -> None:
    r = plan(Query("qwen2.5-7b", "l40s", isl=4096, osl=1024, tpot_ms=0.01, max_gpus=2))
    assert r["decode"] is None and r["front"]


def test_plan_json_cli() -> None:
    r = RUNNER.invoke(app, ["plan", "--model", "qwen2.5-7b", "--gpu", "l40s", "--context",
                            "8192", "--max-gpus", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"query", "decode", "prefill", "front", "evaluated"} <= set(out)
    assert out["query"]["isl"] + out["query"]["osl"] == 8192
    for key in ("gpus", "tp", "pp", "ep", "dp_attention", "batch", "usd_per_million_tokens"):
        assert key in out["decode"]


def test_plan_compares_gpus_in_one_command() -> None:
    r = RUNNER.invoke(app, ["plan", "--model", "qwen2.5-7b", "--gpu", "l40s,h100-sxm",
                            "--context", "8192", "--max-gpus", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["plans"]) == {"l40s", "h100-sxm"}
    decode = {g: p["decode"]["usd_per_million_tokens"] for g, p in out["plans"].items()}
    assert out["cheapest_decode"] == min(decode, key=decode.get)


def test_nothing_fits_exits_2_with_the_rule() -> None:
    r = RUNNER.invoke(app, ["plan", "--model", "llama-3.1-405b", "--gpu", "l40s", "--context",
                            "8192", "--max-gpus", "1"])
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("error: max-gpus=1 nothing fits")


def test_an_encoder_is_planned_for_prefill_only() -> None:
    r = plan(Query("modernbert-large", "l40s", isl=4096, osl=1, max_gpus=2))
    assert r["decode"] is None and r["front"] == [] and r["prefill"] is not None
