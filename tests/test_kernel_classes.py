"""The fitted kernel classes read from memsim/ops/kernel_classes.toml: the numbers moved
there unchanged, the writer replaces only the entries it is given and reads back exactly,
and a bad ``same_as`` names the class."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from memsim.ops import classes
from memsim.ops.classes import (
    DATA_FILE,
    KernelClass,
    kernel_class,
    load_classes,
    read_tables,
    write_classes,
)

# KERNEL_CLASSES as written in memsim/ops/classes.py before the move (commit 0cb3d62)
BEFORE = json.loads((Path(__file__).parent / "data" / "kernel_classes_0cb3d62.json")
                    .read_text())["classes"]


def _chain(name: str, tables: dict) -> list[str]:
    names = [name]
    while "same_as" in tables[names[-1]]:
        names.append(tables[names[-1]]["same_as"])
    return names


def test_classes_not_refitted_since_the_move_answer_exactly_as_before() -> None:
    """A class whose numbers (its own table and every ``same_as`` it follows) still carry
    the source text they had in Python answers with bit-identical numbers; a refit writes
    a new source, so refitted classes drop out of this check instead of breaking it."""
    tables, now = read_tables(), classes.kernel_classes()
    assert set(BEFORE) <= set(now)
    unchanged = [n for n in BEFORE
                 if all(tables[c]["source"] == BEFORE[c]["source"] for c in _chain(n, tables))]
    for name in unchanged:
        old = BEFORE[name]
        assert dataclasses.astuple(now[name]) == (
            name, old["floor_s"], old["efficiency"], old["source"], old["row_s"]), name
    # the lookup the operators use gives the same objects
    for name in unchanged:
        op, backend, *variant = name.split("/")
        if backend in ("trtllm", "vllm", "sglang") and op in ("gemm", "moe"):
            assert kernel_class(op, backend, *variant) == now[name]


def test_module_attribute_is_the_cached_table() -> None:
    assert classes.KERNEL_CLASSES is classes.kernel_classes()
    assert kernel_class("gemm", "vllm", "int4") is classes.KERNEL_CLASSES["gemm/vllm"]
    assert kernel_class("nccl/ring") is classes.KERNEL_CLASSES["nccl/ring"]


def test_writer_replaces_only_its_entries_and_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text(DATA_FILE.read_text())
    before = read_tables(path)
    new = KernelClass("gemm/vllm/bf16", 1.0 / 3 * 1e-5, {"tensor": 0.1 + 0.2, "hbm": 0.7},
                      'fitted "quoted" — text\\', row_s=2.5e-9, cta_s=1.5e-6, key_s=1e-8,
                      host_s=1e-6)
    write_classes({new.name: new, "extra/vllm": dataclasses.replace(new, name="extra/vllm")},
                  path)
    after = read_tables(path)
    assert list(after) == [*before, "extra/vllm"]
    assert {k: v for k, v in after.items() if k not in (new.name, "extra/vllm")} == {
        k: v for k, v in before.items() if k != new.name}
    got = load_classes(path)
    assert got[new.name] == new
    # classes that follow it with same_as follow the new numbers
    assert got["gemm/vllm"].floor_s == new.floor_s
    assert got["gemm/vllm"].source == before["gemm/vllm"]["source"]


@pytest.mark.parametrize(("text", "message"), [
    ('["a/x"]\nsame_as = "b/x"\nsource = ""\n', "names no class"),
    ('["a/x"]\nsame_as = "b/x"\n["b/x"]\nsame_as = "a/x"\n', "cycle"),
    ('["a/x"]\nfloor_s = 1e-6\nefficency = { hbm = 0.5 }\n', "unknown keys"),
    ('["a/x"]\nfloor_s = -1e-6\n', "must be"),
    ('["a/x"]\nfloor_s = 1e-6\nkey_s = -1e-9\n', "key_s must be ≥ 0"),
    ('["a/x"]\nfloor_s = 1e-6\nhost_s = 2e-6\n', "host_s ≤ floor_s"),
    ('["a/x"]\nfloor_s = 1e-6\nskew_s = -1e-6\n', "skew_s ≥ 0"),
    ('["a/x"]\nfloor_s = 1e-6\nprelaunch_s = 2e-6\n', "prelaunch_s ≤ floor_s"),
])
def test_bad_tables_name_the_class(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_classes(path)
    assert "a/x" in str(err.value) or "b/x" in str(err.value)
