"""The catalogue of issue 12: bad or extreme inputs over every subcommand, every file type
memsim reads or writes, and the Python API, each with its expected outcome — exit 2 with
one ``error:`` line naming the field, or exit 0 with finite, non-negative output. Runs
in-process (``memsim.cli.run``) with a per-case time limit."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hardening_support import check_ok, check_refused, invoke
from pydantic import ValidationError

from memsim.errors import InputError

REPO = Path(__file__).resolve().parent.parent
TMP = Path(tempfile.mkdtemp(prefix="memsim-catalogue-"))
OK = None  # expected outcome: exit 0
BIG = "9223372036854775808"  # 2^63

# ---- fixture files (written once per process) ----------------------------------------------

LLAMA = json.loads((REPO / "memsim/presets/meta-llama/Meta-Llama-3-8B/config.json").read_text())
GEMMA2 = json.loads((REPO / "memsim/presets/google/gemma-2-9b/config.json").read_text())
DEEPSEEK = json.loads((REPO / "memsim/presets/deepseek-ai/DeepSeek-V3/config.json").read_text())
H100 = (REPO / "hardware_profiles/h100-sxm.toml").read_text()
RUNS = sorted((REPO / "measurements/h100-sxm").glob("quick-*.jsonl"))


def _config(name: str, base: dict, **changes: object) -> str:
    path = TMP / "configs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**base, **changes}))
    return str(path)


def _file(name: str, data: bytes | str) -> str:
    path = TMP / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _profile(name: str, old: str, new: str) -> str:
    assert old in H100, old
    return _file(f"profiles/{name}.toml", H100.replace(old, new, 1))


def _run(name: str, lines: list[str]) -> str:
    return _file(f"runs/{name}/run.jsonl", "".join(line + "\n" for line in lines))


CASE = {"type": "case", "id": "c1", "status": "ok", "kind": "ceiling"}
HEADER = json.dumps({"type": "header", "run_id": "x", "profile": "h100-sxm"})
(TMP / "empty_folder").mkdir(exist_ok=True)
(TMP / "a_folder.json").mkdir(exist_ok=True)
(TMP / "a_folder.toml").mkdir(exist_ok=True)
(TMP / "out_dir").mkdir(exist_ok=True)
READ_ONLY = TMP / "read_only"
READ_ONLY.mkdir(exist_ok=True)
os.chmod(READ_ONLY, 0o555)
atexit.register(lambda: (os.chmod(READ_ONLY, 0o755), shutil.rmtree(TMP, True)))
AS_ROOT = os.geteuid() == 0  # root writes anywhere: the read-only cases do not apply

BAD_CONFIGS = {  # name → (path, field the error names)
    "binary": (_file("configs/binary.json", b"\x00\x01\x02\xff" * 64), "model"),
    "latin1": (_file("configs/latin1.json", '{"model_type": "llama", "x": "é"}'.encode(
        "latin-1")), "model"),
    "truncated": (_file("configs/truncated.json", json.dumps(LLAMA)[:50]), "model"),
    "empty": (_file("configs/empty.json", b""), "model"),
    "list": (_file("configs/list.json", "[1, 2]"), "model"),
    "deep": (_file("configs/deep.json", "[" * 100_000 + "]" * 100_000), "model"),
    "folder": (str(TMP / "a_folder.json"), "model"),
    "missing": (str(TMP / "nosuch.json"), "model"),
    "model_type_int": (_config("mt_int", LLAMA, model_type=7), "model_type"),
    "model_type_list": (_config("mt_list", LLAMA, model_type=["llama"]), "model_type"),
    "model_type_unknown": (_config("mt_unknown", LLAMA, model_type="llamma"), "model_type"),
    "no_model_type": (_config("mt_none", LLAMA, model_type=None), "model_type"),
    "layers_huge": (_config("layers_huge", LLAMA, num_hidden_layers=10**7),
                    "num_hidden_layers"),
    "layers_zero": (_config("layers_zero", LLAMA, num_hidden_layers=0), "num_hidden_layers"),
    "layers_float": (_config("layers_float", LLAMA, num_hidden_layers=32.5),
                     "num_hidden_layers"),
    "layers_string": (_config("layers_str", LLAMA, num_hidden_layers="32"),
                      "num_hidden_layers"),
    "layers_bool": (_config("layers_bool", LLAMA, num_hidden_layers=True),
                    "num_hidden_layers"),
    "hidden_2_63": (_config("hidden_big", LLAMA, hidden_size=2**63), "hidden_size"),
    "hidden_negative": (_config("hidden_neg", LLAMA, hidden_size=-4096), "hidden_size"),
    "heads_zero": (_config("heads_zero", LLAMA, num_attention_heads=0),
                   "num_attention_heads"),
    "kv_heads_3": (_config("kv_heads_3", LLAMA, num_key_value_heads=3), "num_key_value_heads"),
    "vocab_nan": (_config("vocab_nan", LLAMA, vocab_size=float("nan")), "vocab_size"),
    "vocab_inf": (_config("vocab_inf", LLAMA, vocab_size=float("inf")), "vocab_size"),
    "positions_huge": (_config("pos_huge", LLAMA, max_position_embeddings=2**40),
                       "max_position_embeddings"),
    "tie_string": (_config("tie_str", LLAMA, tie_word_embeddings="false"),
                   "tie_word_embeddings"),
    "bias_number": (_config("bias_num", LLAMA, attention_bias=1), "attention_bias"),
    "gemma2_layer_types_int": (_config("g2_lt_int", GEMMA2, layer_types=7), "layer_types"),
    "gemma2_layer_types_short": (_config("g2_lt_short", GEMMA2,
                                         layer_types=["sliding_attention"] * 3),
                                 "layer_types"),
    "gemma2_layer_types_numbers": (_config("g2_lt_num", GEMMA2, layer_types=[1] * 42),
                                   "layer_types"),
    "gemma2_window_true": (_config("g2_win_true", GEMMA2, sliding_window=True),
                           "sliding_window"),
    "mistral_window_true": (_config("mi_win_true", {**LLAMA, "model_type": "mistral"},
                                    sliding_window=True), "sliding_window"),
    "mistral_window_zero": (_config("mi_win_zero", {**LLAMA, "model_type": "mistral"},
                                    sliding_window=0), "sliding_window"),
    "deepseek_shared_string": (_config("ds_shared_str", DEEPSEEK, n_shared_experts="1"),
                               "n_shared_experts"),
    "deepseek_shared_negative": (_config("ds_shared_neg", DEEPSEEK, n_shared_experts=-1),
                                 "n_shared_experts"),
    "deepseek_topk_over": (_config("ds_topk", DEEPSEEK, num_experts_per_tok=1000),
                           "num_experts_per_tok"),
    "deepseek_first_dense": (_config("ds_first", DEEPSEEK, first_k_dense_replace=1000),
                             "first_k_dense_replace"),
    "deepseek_experts_huge": (_config("ds_experts", DEEPSEEK, n_routed_experts=2**40),
                              "n_routed_experts"),
    "aliases_int": (_config("aliases_int", LLAMA, _memsim_aliases=7), "_memsim_aliases"),
    "expected_string": (_config("expected_str", LLAMA, _memsim_expected_params="8B"),
                        "_memsim_expected_params"),
}

BAD_PROFILES = {  # name → (path, field)
    "binary": (_file("profiles/binary.toml", b"\x00\xff" * 100), "profile"),
    "latin1": (_file("profiles/latin1.toml", "name = 'é'".encode("latin-1")), "profile"),
    "truncated": (_file("profiles/truncated.toml", H100[: len(H100) // 3]), "profile"),
    "empty": (_file("profiles/empty.toml", ""), "section"),
    "folder": (str(TMP / "a_folder.toml"), "profile"),
    "missing": (str(TMP / "nosuch.toml"), "profile"),
    "bandwidth_inf": (_profile("bw_inf", "hbm_bandwidth_bytes_per_s = { value = ",
                               "hbm_bandwidth_bytes_per_s = { value = inf, x = "),
                      "hbm_bandwidth_bytes_per_s"),
    "bandwidth_nan": (_profile("bw_nan", "hbm_bandwidth_bytes_per_s = { value = ",
                               "hbm_bandwidth_bytes_per_s = { value = nan, x = "),
                      "hbm_bandwidth_bytes_per_s"),
    "bandwidth_string": (_profile("bw_str", "hbm_bandwidth_bytes_per_s = { value = ",
                                  "hbm_bandwidth_bytes_per_s = { value = 'fast', x = "),
                         "hbm_bandwidth_bytes_per_s"),
    "sm_count_zero": (_profile("sm_zero", "sm_count = { value = ", "sm_count = { value = 0, x = "),
                      "sm_count"),
    "price_inf": (_profile("price_inf", "usd_per_gpu_hour = { value = ",
                           "usd_per_gpu_hour = { value = inf, x = "), "usd_per_gpu_hour"),
    "efficiency_2": (_profile("eff_2", "tensor = { value = ", "tensor = { value = 2.0, x = "),
                     "tensor"),
    "spec_not_table": (_file("profiles/spec5.toml", "spec = 5\nefficiency = 5\nprice = 5\n"),
                       "spec"),
}

BAD_RUNS = {  # name → (path, field) for validate --summary and calibrate
    "binary": (_file("runs/binary/run.jsonl", b"\x00\xff\xfe" * 50 + b"\n"), "summary"),
    "empty_file": (_file("runs/empty/run.jsonl", b""), "summary"),
    "empty_folder": (str(TMP / "empty_folder"), "summary"),
    "missing": (str(TMP / "nosuch_runs"), "path"),
    "no_id": (_run("no_id", [HEADER, json.dumps({"type": "case", "status": "ok"})]), "summary"),
    "no_status": (_run("no_status", [HEADER, json.dumps({"type": "case", "id": "a"})]),
                  "summary"),
    "time_string": (_run("time_str", [HEADER, json.dumps({**CASE, "time_s": "fast"})]),
                    "summary"),
    "not_json": (_run("not_json", [HEADER, "this is not json"]), "summary"),
    "json_list": (_run("json_list", [HEADER, "[1, 2, 3]"]), "summary"),
}


def _corrupt_middle() -> str:
    """A real run file with one corrupt line in the middle: summarised, the line reported."""
    lines = RUNS[0].read_text().splitlines()
    lines.insert(len(lines) // 2, '{"type": "case", "id": BROKEN')
    return _run("corrupt_middle", lines)


# ---- the catalogue ----------------------------------------------------------------------------

ATTENTION = ["attention", "--json", "--seq-len", "256", "--heads", "8"]
TRACE = ["trace", "--json", "--seq-len", "128", "--heads", "2", "--head-dim", "64"]
PREDICT = ["predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "1024",
           "--json"]
CURVE = ["cost-curve", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--max-context", "4096",
         "--points", "4", "--json"]
SWEEP = ["sweep", "--models", "llama-3-8b", "--gpus", "h100-sxm", "--contexts", "1024"]

SIZE_OPTIONS = {  # option → field named in the error
    "--batch": "batch", "--heads": "heads", "--kv-heads": "kv_heads", "--seq-len": "seq_len",
    "--kv-len": "kv_len", "--head-dim": "head_dim", "--head-dim-v": "head_dim_v",
    "--window": "window", "--chunk": "chunk", "--top-k": "top_k",
    "--index-heads": "index_heads", "--index-head-dim": "index_head_dim",
    "--block-q": "block_q", "--block-kv": "block_kv", "--heads-per-block": "heads_per_block",
    "--kv-splits": "kv_splits", "--threads": "threads", "--sram-limit": "sram_limit",
}
BAD_SIZES = ["0", "-1", "nan", "inf", "1.5", "abc", "", BIG, "1e3", "-0", "0x10"]
BAD_FLOATS = ["nan", "inf", "-inf", "-1", "0", "abc", "", "1e999"]

CATALOGUE: list[tuple[str, list[str], str | None]] = []


def add(name: str, argv: list[str], expect: str | None) -> None:
    """One case; its id must not depend on the temporary folder (xdist workers compare)."""
    CATALOGUE.append((name.replace(str(TMP), "TMP").replace(str(REPO), "REPO"), argv, expect))


for opt, field in SIZE_OPTIONS.items():
    for value in BAD_SIZES:
        add(f"attention {opt}={value!r}", [*ATTENTION, opt, value], field)
for opt, field in SIZE_OPTIONS.items():
    for value in ("0", "nan", BIG):
        add(f"trace {opt}={value!r}", [*TRACE, opt, value], field)
for opt in ("--context", "--tp", "--gpus", "--pp", "--ep", "--prefill-chunk"):
    for value in ("0", "-5", "nan", "2.5", BIG):
        add(f"predict {opt}={value!r}", [*PREDICT, opt, value], opt[2:].replace("-", "_"))
for opt in ("--price", "--acceptance"):
    for value in BAD_FLOATS:
        add(f"predict {opt}={value!r}", [*PREDICT, opt, value], opt[2:])
for value in ("0", "-1", "x", BIG, "1.0"):
    add(f"predict --batch={value!r}", [*PREDICT, "--batch", value], "batch")
for value in ("-1", "x", "1000"):
    add(f"predict --mtp={value!r}", [*PREDICT, "--mtp", value], "mtp")
for opt in ("--max-context", "--points", "--chunk"):
    for value in ("0", "-1", "nan", BIG):
        add(f"cost-curve {opt}={value!r}", [*CURVE, opt, value], opt[2:].replace("-", "_"))
add("cost-curve --points 1e9", [*CURVE, "--points", "1000000000"], "points")
for opt, value, field in [
    ("--contexts", "0", "contexts"), ("--contexts", "1,x", "contexts"),
    ("--contexts", ",,", "contexts"), ("--contexts", BIG, "contexts"),
    ("--batches", "-1", "batches"), ("--batches", "nan", "batches"),
    ("--workers", "-1", "workers"), ("--workers", "nan", "workers"),
    ("--workers", "100000", "workers"), ("--tp", "0", "tp"), ("--format", "xml", "format"),
    ("--models", "nosuch", "model"), ("--gpus", "nosuch", "gpu"),
    ("--attentions", "flash9", "attention"),
    ("--out", str(TMP / "no_folder" / "s.csv"), "out"), ("--out", str(TMP / "out_dir"), "out"),
    ("--contexts", ",".join(["1"] * 10_001), "contexts"),
]:
    add(f"sweep {opt}={value[:30]!r}", [*SWEEP, opt, value], field)
add("sweep error inside --workers 2", [*SWEEP, "--tp", "3", "--workers", "2", "--out",
                                       str(TMP / "workers.jsonl")], "tp")
if not AS_ROOT:
    add("sweep --out read-only folder", [*SWEEP, "--out", str(READ_ONLY / "s.csv")], "out")
    add("report --out read-only folder", ["report", "--out", str(READ_ONLY / "site")], "out")
GEMM = ["op", "gemm", "--m", "64", "--n", "4096", "--k", "4096", "--json"]
ALL_REDUCE = ["op", "all-reduce", "--bytes", "1000000", "--gpus", "8", "--json"]
MOE = ["op", "moe", "--tokens", "64", "--hidden", "4096", "--inter", "1024", "--experts", "8",
       "--top-k", "2", "--json"]
for base, options in ((GEMM, ("--m", "--n", "--k")), (ALL_REDUCE, ("--bytes", "--gpus")),
                      (MOE, ("--tokens", "--hidden", "--inter", "--experts", "--top-k", "--tp",
                             "--ep"))):
    for opt in options:
        for value in ("0", "-3", "nan", "2.5", BIG):
            field = {"--bytes": "message_bytes"}.get(opt, opt[2:].replace("-", "_"))
            add(f"op {base[1]} {opt}={value!r}", [*base, opt, value], field)
for argv, field in [([*GEMM, "--dtype", "fp4"], "dtype"), ([*GEMM, "--backend", "x"], "backend"),
                    ([*MOE, "--top-k", "9"], "top_k"), ([*MOE, "--distribution", "zipf"],
                                                         "distribution"),
                    ([*ALL_REDUCE, "--gpu", "nosuch"], "gpu")]:
    add(f"op {argv[1]} {argv[-2]}={argv[-1]}", argv, field)
for argv in ([*GEMM, "--m", str(2**40), "--n", str(2**20), "--k", str(2**20)],
             [*ALL_REDUCE, "--bytes", str(2**40), "--gpus", "4096"],
             [*MOE, "--tokens", str(2**20), "--experts", "256", "--top-k", "8"]):
    add("ok: op " + " ".join(argv[1:2] + argv[-6:]), argv, OK)
PLAN = ["plan", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "4096", "--json"]
for opt in ("--context", "--isl", "--osl", "--max-gpus"):
    for value in ("0", "-1", "nan", BIG):
        add(f"plan {opt}={value!r}", [*PLAN, opt, value], opt[2:].replace("-", "_"))
for opt in ("--ttft-ms", "--tpot-ms", "--price", "--acceptance"):
    for value in ("nan", "inf", "-1", "0")[:3 if opt == "--acceptance" else 4]:
        add(f"plan {opt}={value!r}", [*PLAN, opt, value], opt[2:].replace("-", "_"))
for argv, field in [([*PLAN, "--isl", "5000"], "isl"), ([*PLAN, "--osl", "4096"], "osl"),
                    ([*PLAN, "--max-mtp", "100"], "max_mtp"), ([*PLAN, "--workers", "-1"],
                                                               "workers"),
                    ([*PLAN, "--gpu", "nosuch"], "gpu"), ([*PLAN, "--model", "nosuch"], "model"),
                    ([*PLAN, "--weight-dtype", "fp3"], "weight_dtype"),
                    ([*PLAN, "--context", "1"], "context")]:
    add(f"plan {argv[-2]}={argv[-1]}", argv, field)
add("ok: plan --ttft-ms 1e9", [*PLAN, "--ttft-ms", "1e9"], OK)
add("ok: plan --acceptance 0 (drafts never accepted)", [*PLAN, "--acceptance", "0"], OK)
for value, field in (("1,0", "seq_len"), ("1,,2", "seq_len"), ("x,1", "seq_len"),
                     (f"1,{BIG}", "seq_len"), (",", "seq_len")):
    add(f"trace list --seq-len={value[:20]!r}", [*TRACE, "--seq-len", value], field)
    add(f"attention list --seq-len={value[:20]!r}", [*ATTENTION, "--seq-len", value], field)
add("attention list --algorithm 'flash2,'", [*ATTENTION, "--algorithm", "flash2,"], "algorithm")
add("ok: attention --seq-len 64,128 --algorithm flash1,flash2",
    [*ATTENTION, "--seq-len", "64,128", "--algorithm", "flash1,flash2"], OK)
for opt, value, field in (("--sample", "0", "sample"), ("--sample", "nan", "sample"),
                          ("--seed", "-1", "seed"), ("--source", "nosuch", "source")):
    add(f"validate {opt}={value}", ["validate", "--source", "aiconfigurator", opt, value], field)
for name, (path, field) in BAD_CONFIGS.items():
    add(f"predict --model config {name}", [*PREDICT[:2], path, *PREDICT[3:]], field)
for name, (path, field) in BAD_PROFILES.items():
    add(f"attention --gpu profile {name}", [*ATTENTION, "--gpu", path], field)
for name, (path, field) in BAD_RUNS.items():
    add(f"validate --summary {name}", ["validate", "--summary", path], field)
    add(f"calibrate {name}", ["calibrate", path], "directory")
add("validate --summary folder of runs, some bad", ["validate", "--summary", str(TMP / "runs"),
                                                   "--json"],
    OK)
for argv, field in [
    (["report", "--out", str(TMP / "configs" / "mt_int.json")], "out"),
    (["report", "--out", str(TMP), "--gpu", "nosuch"], "gpu"),
    (["report", "--out", str(TMP), "--measurements", str(TMP / "nosuch")], "measurements"),
    (["report", "--out", str(TMP), "--model", "nosuch"], "model"),
    (["calibrate", str(RUNS[0]), "--out", str(TMP / "no_folder" / "x.toml")], "out"),
    (["calibrate", str(RUNS[0]), "--out", str(TMP / "out_dir")], "out"),
    ([*TRACE, "--save-trace", str(TMP / "out_dir")], "save_trace"),
    ([*TRACE, "--save-trace", str(TMP / "no_folder" / "t.npz")], "save_trace"),
    ([*TRACE, "--event-budget", "0"], "event_budget"),
    ([*TRACE, "--event-budget", BIG], "event_budget"),
    ([*TRACE, "--heads-sample", "0"], "heads_sample"),
    ([*TRACE, "--l2", "maybe"], "l2"),
    ([*TRACE, "--chunk", "1000", "--seq-len", str(2**30), "--block-q", "1", "--block-kv",
      "16"], "block_q"),
    ([*TRACE, "--seq-len", str(2**30), "--block-q", "1"], "block_q"),
    ([*ATTENTION, "--chunk", "1000", "--seq-len", str(2**30), "--block-q", "1", "--block-kv",
      "16"], "chunk"),
    ([*ATTENTION, "--threads", "2048"], "threads"),
    ([*ATTENTION, "--threads", "100000"], "threads"),
    ([*ATTENTION, "--sram-limit", "10000000"], "sram_limit"),
    ([*ATTENTION, "--sram-limit", "1000"], "tiling"),
    ([*ATTENTION, "--heads-per-block", "3"], "heads_per_block"),
    ([*ATTENTION, "--dtype", "fp12"], "dtype"),
    ([*ATTENTION, "--algorithm", "flash9"], "algorithm"),
    ([*ATTENTION, "--pass", "sideways"], "pass"),
    ([*ATTENTION, "--matmul-unit", "gpu"], "matmul_unit"),
    ([*ATTENTION, "--index-heads", "0"], "index_heads"),
    ([*ATTENTION, "--gpu", "nosuch"], "gpu"),
    ([*ATTENTION, "--gpu", "x" * 5000], "gpu"),
    ([*ATTENTION, "--gpu", "a\x00b.toml"], "profile"),
    ([*ATTENTION, "--gpu", "x" * 5000 + ".toml"], "profile"),
    ([*PREDICT[:2], "a\x00b.json", *PREDICT[3:]], "model"),
    ([*SWEEP, "--out", "a\x00b.csv"], "out"),
    ([*TRACE, "--save-trace", "x" * 5000], "save_trace"),
    ([*ATTENTION, "--nosuch-option", "1"], "nosuch"),
    ([*ATTENTION, "stray"], "stray"),
    ([*ATTENTION, "--causal=3"], "causal"),
    ([*ATTENTION, "--batch"], "batch"),
    (["nosuch-command"], "nosuch-command"),
    (["predict", "--gpu", "h100-sxm", "--context", "10"], "model"),
    ([*PREDICT, "--model", "nosuch"], "model"),
    ([*PREDICT, "--model", "a\x00b"], "model"),
    ([*PREDICT, "--attention", "flash9"], "attention"),
    ([*PREDICT, "--weight-dtype", "fp3"], "weight_dtype"),
    ([*PREDICT, "--kv-dtype", "int4"], "kv_dtype"),
    ([*PREDICT, "--tp", "3"], "tp"),
    (["validate", "--budget-s", "nan", "--summary", str(RUNS[0])], "budget_s"),
    (["validate", "--budget-s", "-1", "--summary", str(RUNS[0])], "budget_s"),
]:
    add(" ".join(a[:40] for a in argv[-3:]), argv, field)
# Extreme but valid: exit 0 and finite, non-negative numbers.
for argv in [
    [*ATTENTION, "--algorithm", "flash_decode", "--batch", "1048576", "--seq-len", "1",
     "--kv-len", "1000000000"],
    [*ATTENTION, "--batch", "1048576", "--seq-len", "1073741824", "--heads", "128"],
    [*ATTENTION, "--seq-len", "1", "--kv-len", "1"],
    [*ATTENTION, "--head-dim", "1"],
    [*ATTENTION, "--window", "1"],
    [*ATTENTION, "--chunk", "1", "--seq-len", "64"],
    [*ATTENTION, "--algorithm", "dsa", "--top-k", "1", "--seq-len", "1", "--kv-len", "10"],
    [*ATTENTION, "--threads", "1024"],
    [*ATTENTION, "--sram-limit", "232448"],
    [*ATTENTION, "--pass", "forward+backward", "--dtype", "fp32"],
    [*PREDICT, "--context", str(2**30 - 1024)],
    [*PREDICT, "--batch", "1048576"],
    [*PREDICT, "--price", "1e-9"],
    [*PREDICT, "--batch", "max"],
    [*CURVE, "--points", "10000"],
    [*CURVE, "--max-context", "1"],
    [*TRACE, "--heads-sample", "1"],
    [*SWEEP, "--out", str(TMP / "ok.jsonl"), "--workers", "0"],
    [*SWEEP, "--out", str(TMP / "ok.csv"), "--contexts", f"1,{2**30 - 1024}"],
    ["gpus", "--json"],
    ["models", "--json"],
    ["validate", "--summary", str(RUNS[0]), "--json"],
]:
    add("ok: " + " ".join(argv[-4:])[:70], argv, OK)
add("validate --summary with a corrupt middle line", ["validate", "--summary",
                                                     _corrupt_middle(), "--json"], OK)


@pytest.mark.parametrize(("name", "argv", "expect"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(name: str, argv: list[str], expect: str | None) -> None:
    outcome = invoke(argv)
    if expect is OK:
        check_ok(outcome)
    else:
        check_refused(outcome, expect)


def test_corrupt_line_is_reported_with_file_and_number() -> None:
    path = _corrupt_middle()
    o = invoke(["validate", "--summary", path, "--json"])
    check_ok(o)
    summary = json.loads(o.stdout)
    assert [b["reason"] for b in summary["bad_lines"]] == ["not valid JSON"]
    assert f"{path}:" in o.stderr and "not valid JSON" in o.stderr


def test_summary_of_one_file_does_not_overwrite_the_folder_summary() -> None:
    folder = TMP / "copied_runs"
    shutil.copytree(RUNS[0].parent, folder, dirs_exist_ok=True)
    before = (folder / "summary.json").read_bytes()
    check_ok(invoke(["validate", "--summary", str(folder / RUNS[0].name), "--json"]))
    assert (folder / "summary.json").read_bytes() == before


def test_failed_write_leaves_no_partial_file() -> None:
    from memsim.files import write_text

    target = TMP / "atomic.txt"
    target.write_text("old")

    class BoomError(Exception):
        pass

    from memsim.files import atomic_open

    with pytest.raises(BoomError), atomic_open(target, "out") as f:
        f.write("half of the new ")
        raise BoomError
    assert target.read_text() == "old"
    assert not [p for p in TMP.iterdir() if p.name.startswith(".atomic.txt.")]
    write_text(target, "new", "out")
    assert target.read_text() == "new"


def test_full_disk_is_one_error(tmp_path: Path) -> None:
    """/dev/full: every write fails with ENOSPC; memsim names the path, exit 2."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    from memsim.files import atomic_open

    with pytest.raises(InputError, match="cannot be written"):  # noqa: SIM117
        with atomic_open(tmp_path / "x.txt", "out") as f:
            os.dup2(os.open("/dev/full", os.O_WRONLY), f.fileno())
            f.write("x" * 100_000)


# ---- the Python API ---------------------------------------------------------------------------


def _costs(**changes: object):  # type: ignore[no-untyped-def]
    from memsim.attention import costs

    kw = dict(B=1, N=256, H=8, D=64)
    return costs("flash2", **{**kw, **changes})


API_BAD = {
    "costs B negative": (lambda: _costs(B=-1), "B"),
    "costs B zero": (lambda: _costs(B=np.array([1, 0])), "B"),
    "costs N NaN": (lambda: _costs(N=np.array([256.0, np.nan])), "N"),
    "costs N fractional": (lambda: _costs(N=2.5), "N"),
    "costs N string": (lambda: _costs(N="256"), "N"),
    "costs N bool": (lambda: _costs(N=True), "N"),
    "costs S below N": (lambda: _costs(S=10), "N"),
    "costs K not dividing H": (lambda: _costs(K=3), "K"),
    "costs shapes mismatch": (lambda: _costs(B=np.ones(3, int), N=np.full(4, 64)), "shapes"),
    "costs D huge": (lambda: _costs(D=2**40), "D"),
    "costs dtype_bytes inf": (lambda: _costs(dtype_bytes=float("inf")), "dtype_bytes"),
    "costs dtype_bytes zero": (lambda: _costs(dtype_bytes=0), "dtype_bytes"),
    "costs block_q zero": (lambda: _costs(block_q=0), "block_q"),
    "costs mask unknown": (lambda: _costs(mask="diagonal"), "mask"),
    "costs pass unknown": (lambda: _costs(pass_="sideways"), "pass"),
    "costs window zero": (lambda: _costs(mask="window", window=0), "window"),
    "problem batch 2^63": (lambda: _problem(batch=2**63), "batch"),
    "problem seq_len nan": (lambda: _problem(seq_len=float("nan")), "seq_len"),
    "problem heads 0": (lambda: _problem(heads=0), "heads"),
    "problem window 2^40": (lambda: _problem(mask={"window": 2**40}), "window"),
    "tiling threads 0": (lambda: _tiling(threads=0), "threads"),
    "tiling threads over GPU": (lambda: _tiling(threads=2048), "threads"),
    "tiling sram 0": (lambda: _tiling(sram_limit_bytes=0), "sram_limit"),
    "tiling kv_splits 0": (lambda: _tiling(kv_splits=0), "kv_splits"),
    "tiling block_q 0": (lambda: _tiling(block_q=0), "block_q"),
    "tiling heads_per_block 0": (lambda: _tiling(heads_per_block=0), "heads_per_block"),
    "from_hf_config not a dict": (lambda: _hf([1, 2]), "config"),
    "from_hf_config layer_types 7": (lambda: _hf({**GEMMA2, "layer_types": 7}), "layer_types"),
    "from_hf_config vision string": (
        lambda: _hf({"model_type": "gemma3", "text_config": {},
                     "vision_config": {"hidden_size": "1152"}}), "vision_config.hidden_size"),
    "from_hf_config text_config list": (
        lambda: _hf({"model_type": "gemma3", "text_config": [1]}), "text_config"),
    "load_gpu missing toml": (lambda: _gpu(str(TMP / "nosuch.toml")), "profile"),
    "load_model NUL": (lambda: _model("x\x00y"), "model"),
    "Setup price inf": (lambda: _setup(usd_per_gpu_hour=float("inf")), "price"),
    "Setup tp 0": (lambda: _setup(tp=0), "tp"),
    "inference predict context 0": (lambda: _inference_predict(0), "context"),
    "inference predict context 2^63": (lambda: _inference_predict(2**63), "context"),
    "inference predict context 2^40": (lambda: _inference_predict(2**40), "context"),
}


def _problem(**changes: object):  # type: ignore[no-untyped-def]
    from memsim.problem import AttentionProblem

    return AttentionProblem(**{"batch": 1, "seq_len": 64, "heads": 8, "head_dim": 64,
                               **changes})


def _tiling(**kw: object):  # type: ignore[no-untyped-def]
    from memsim.hardware import load_gpu
    from memsim.tiling import default_tiling

    return default_tiling(_problem(), load_gpu("h100-sxm"), "flash2", **kw)


def _hf(cfg: object):  # type: ignore[no-untyped-def]
    from memsim.models import from_hf_config

    return from_hf_config(cfg, name="config")  # type: ignore[arg-type]


def _gpu(name: str):  # type: ignore[no-untyped-def]
    from memsim.hardware import load_gpu

    return load_gpu(name)


def _model(name: str):  # type: ignore[no-untyped-def]
    from memsim.models import load_model

    return load_model(name)


def _setup(**kw: object):  # type: ignore[no-untyped-def]
    from memsim.hardware import load_gpu
    from memsim.inference import Setup
    from memsim.models import load_model

    return Setup(load_model("llama-3-8b"), load_gpu("h100-sxm"), **kw)


def _inference_predict(context: int):  # type: ignore[no-untyped-def]
    from memsim.inference import predict

    return predict(_setup(), context, 1)


@pytest.mark.parametrize("name", list(API_BAD))
def test_python_api_refuses(name: str) -> None:
    call, field = API_BAD[name]
    with pytest.raises((InputError, ValidationError)) as info:
        call()
    from memsim.cli import user_error_line

    line = user_error_line(info.value)
    assert line is not None and "\n" not in line and field in line, line


@pytest.mark.parametrize(("name", "call"), [
    ("costs at every ceiling", lambda: _costs(B=2**20, N=2**30, H=2**12, D=256)),
    ("costs arrays broadcast", lambda: _costs(B=np.array([[1], [2]]), N=np.array([64, 128]))),
    ("costs whole floats", lambda: _costs(N=256.0)),
    ("flash_decode a billion keys", lambda: __import__("memsim.attention").attention.costs(
        "flash_decode", B=2**20, N=1, S=2**30, H=128, D=128, block_q=1)),
])
def test_python_api_extremes_are_finite(name: str, call) -> None:  # type: ignore[no-untyped-def]
    cost = call()
    for key, value in vars(cost).items():
        arr = np.asarray(value, dtype=float)
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0), key


def test_catalogue_size() -> None:
    """Issue 12 asks for at least 250 bad or extreme inputs."""
    assert len(CATALOGUE) + len(API_BAD) >= 250
