"""Imports inside memsim.trace run one way (issue 11, item 2): the schedule generators
(``sched_*``) use :mod:`memsim.trace.tiles` and never the dispatcher
:mod:`memsim.trace.schedule`; the trace's timing takes its rates from the roofline."""

from __future__ import annotations

import ast
from pathlib import Path

import memsim.trace

TRACE = Path(memsim.trace.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_schedule_generators_never_import_the_dispatcher() -> None:
    generators = sorted(TRACE.glob("sched_*.py"))
    assert generators
    for path in generators:
        assert "memsim.trace.schedule" not in _imports(path), path.name
    assert not any(m.startswith("memsim.trace.sched") for m in _imports(TRACE / "tiles.py"))


def test_trace_timing_uses_the_roofline_rates() -> None:
    """No second copy of the fp8 fallback: timing.py never asks the profile for rates."""
    source = (TRACE / "timing.py").read_text()
    assert "memsim.roofline" in _imports(TRACE / "timing.py")
    assert "achievable_flop_per_s" not in source
    assert "fp8_tensor_flop_per_s" not in source


def test_a_trace_imports_only_its_own_schedule_generator() -> None:
    """schedule.py names the generators by module (issue 13: start-up of `memsim trace`);
    a FlashAttention-2 trace imports sched_flash2 alone, and every named builder exists."""
    import subprocess
    import sys

    from memsim.trace.schedule import BACKWARD, FORWARD, builders

    probe = ("import sys\nfrom memsim.problem import AttentionProblem\n"
             "from memsim.trace import simulate\n"
             "simulate(AttentionProblem(batch=1, seq_len=256, heads=4, head_dim=64), "
             "'h100-sxm', 'flash2')\n"
             "print(' '.join(sorted(m for m in sys.modules if '.sched_' in m)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=TRACE.parents[1])
    assert out.stdout.split() == ["memsim.trace.sched_flash2"]
    assert all(callable(f) for f in builders().values())
    assert {module for module, _ in (*FORWARD.values(), *BACKWARD.values())} == {
        p.stem for p in TRACE.glob("sched_*.py")}
