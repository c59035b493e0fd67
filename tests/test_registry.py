"""The algorithm registry is complete: every module declares what the rest of memsim asks
of it, the trace builders and the kernel families are the ones the algorithms name, and no
module outside memsim/algorithms/ branches on an algorithm's name (docs/DESIGN.md §"The
algorithm registry")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memsim.algorithms import ALGORITHMS, DECLARATIONS, DEFAULT, for_layer
from memsim.geometry import DENSE_MASKS

ROOT = Path(__file__).resolve().parents[1]
NAMES = set(ALGORITHMS)
#: What a branch on an algorithm's name compares the name with.
SUBJECTS = ("algorithm", "kernel", "choice", "family")


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_module_declares_what_memsim_asks_of_it(name: str) -> None:
    module = ALGORITHMS[name]
    missing = [d for d in DECLARATIONS if not hasattr(module, d)]
    assert not missing, f"{name} lacks {missing}"
    assert module.NAME == name
    assert set(module.MASKS) <= {*DENSE_MASKS, "topk"} and module.MASKS
    assert ("backward" in module.PASSES) == hasattr(module, "backward")
    assert isinstance(module.DECODES, bool)


def test_trace_builders_are_the_ones_the_algorithms_name() -> None:
    from memsim.trace.schedule import builders

    assert {m.SCHEDULE for m in ALGORITHMS.values()} == set(builders())


def test_kernel_families_are_the_ones_the_algorithms_name() -> None:
    from memsim.kernels.registry import KERNELS

    # None: no Numba kernels (eager standard; memsim's kernels skip masked tiles)
    families = {m.KERNEL_FAMILY for m in ALGORITHMS.values()} - {None}
    assert families == set(KERNELS)
    for name, module in ALGORITHMS.items():
        if module.KERNEL_FAMILY is not None:
            assert KERNELS[module.KERNEL_FAMILY].ALGORITHM == name


def test_model_layers_pick_registered_algorithms() -> None:
    """'auto': a dense prefill runs the default, a dense decode the decode kernel, a sparse
    layer the top-k algorithm; a decode kernel chosen for prefill runs the default."""
    decoders = [n for n, m in ALGORITHMS.items() if m.DECODES]
    topk = [n for n, m in ALGORITHMS.items() if "topk" in m.MASKS]
    assert for_layer("auto", "prefill", False) == DEFAULT
    assert for_layer("auto", "decode", False) == decoders[0]
    assert for_layer("auto", "prefill", True) == topk[0]
    for name in decoders:
        assert for_layer(name, "prefill", False) == DEFAULT
    for name in ALGORITHMS:
        for phase in ("prefill", "decode"):
            for sparse in (False, True):
                assert for_layer(name, phase, sparse) in ALGORITHMS


def _name_branches(path: Path) -> list[str]:
    """Comparisons of an algorithm (kernel, choice) with an algorithm's name
    (``algorithm == "flash2"``, ``args.kernel in ("flash1", "flash2")``) and dicts keyed by
    every algorithm name, in ``path``."""
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = (node.left, *node.comparators)
            named = any(any(isinstance(c, ast.Constant) and c.value in NAMES
                            for c in (s.elts if isinstance(s, ast.Tuple | ast.List | ast.Set)
                                      else [s])) for s in sides)
            subject = any(w in ast.unparse(s) for s in sides for w in SUBJECTS)
            if named and subject:
                found.append(f"{where}:{node.lineno}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if NAMES <= keys:
                found.append(f"{where}:{node.lineno} (name list)")
    return found


def test_no_module_outside_algorithms_branches_on_an_algorithm_name() -> None:
    files = [p for d in ("memsim", "kernels", "reports") for p in (ROOT / d).rglob("*.py")
             if "algorithms" not in p.relative_to(ROOT).parts]
    assert files
    found = [hit for p in files for hit in _name_branches(p)]
    assert not found, found


def test_the_scan_sees_a_name_branch(tmp_path: Path) -> None:
    """The scan above is not vacuous: it flags a branch and a name list."""
    bad = tmp_path / "probe.py"
    bad.write_text('def f(algorithm, x):\n'
                   '    return algorithm == "flash2" or x.kernel in ("dsa",)\n'
                   'D = {n: 1 for n in ()}\nE = {"standard": 1, "flash1": 2, "flash2": 3, '
                   '"flash_decode": 4, "dsa": 5, "standard_blockskip": 6}\n')
    hits = _name_branches(bad)
    assert len(hits) == 3, hits
