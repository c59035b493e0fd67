"""One-way imports (docs/DESIGN.md §"Layers"): core ← algorithms ← trace/kernels ← inference
← validation/reports ← cli. Every import of a memsim module, at module level or inside a
function, goes to the same layer or a lower one, and the packages import each other
without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Layer of each top-level memsim module or package; a lower number is lower.
LAYERS = {
    "memsim": 0, "memsim.units": 0, "memsim.errors": 0, "memsim.files": 0,
    "memsim.limits": 0, "memsim.problem": 0, "memsim.geometry": 0, "memsim.cost": 0,
    "memsim.hardware": 0, "memsim.roofline": 0, "memsim.models": 0, "memsim.fmha_v2": 0,
    "memsim.algorithms": 1, "memsim.tiling": 1, "memsim.attention": 1, "memsim.ops": 1,
    "memsim.trace": 2, "memsim.kernels": 2,
    "memsim.inference": 3, "memsim.planning": 3,
    "memsim.validation": 4, "memsim.silicon": 4, "memsim.reports": 4,
    "memsim.cli": 5, "memsim.__main__": 5,
}
#: A top-level module not named above (a new one) sits with inference: above the analytic
#: and trace models, below validation, reports and the CLI.
DEFAULT_LAYER = LAYERS["memsim.inference"]
#: Source folders and the package each is installed as (pyproject.toml package-dir).
SOURCES = {"memsim": "memsim", "kernels": "memsim.kernels", "reports": "memsim.reports"}


def _module(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = SOURCES[folder].split(".") + rest
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """memsim modules imported anywhere in ``path`` (relative imports resolved)."""
    name = _module(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.add(target if node.level else (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "memsim" or m.startswith("memsim.")}


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _layer(module: str) -> int:
    return LAYERS.get(_top(module), DEFAULT_LAYER)


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            edges[_module(path)] = _imports(path)
    return edges


def _upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
                  for a, targets in edges.items() for b in targets if _layer(b) > _layer(a))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a path that returns to a node on it), or None."""
    state: dict[str, int] = {}       # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_imports_point_down_the_layers() -> None:
    edges = _edges()
    assert len(edges) > 50 and "memsim.tiling" in edges
    upward = _upward(edges)
    assert not upward, "\n".join(upward)


def test_top_level_modules_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for a, targets in _edges().items():
        graph.setdefault(_top(a), set()).update(_top(b) for b in targets if _top(b) != _top(a))
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle)


def test_the_checks_see_an_upward_import_and_a_cycle() -> None:
    """Not vacuous: the back-edges this project removed would be flagged."""
    assert _upward({"memsim.kernels.bench": {"memsim.attention"}}) == []   # 2 → 1: fine
    assert _upward({"memsim.kernels.ceilings": {"memsim.validation.device"},
                    "memsim.algorithms.flash2": {"memsim.trace.schedule"}})
    assert _cycle({"memsim.tiling": {"memsim.algorithms"},
                   "memsim.algorithms": {"memsim.tiling"}})


#: Never imported while the CLI starts or runs an analytic command (docs/DESIGN.md: fast
#: start-up): the GPU and JIT stacks, plotting, the silicon extra's data stack.
HEAVY = ("numba", "llvmlite", "plotly", "pandas", "pyarrow", "scipy")
#: Commands that must stay analytic (no trace, no kernels) and what they may import.
ANALYTIC_COMMANDS = (
    ["attention", "--algorithm", "flash2,standard", "--gpu", "h100-sxm", "--heads", "32",
     "--kv-heads", "8", "--seq-len", "8192", "--head-dim", "128", "--json"],
    ["predict", "--model", "llama-3-8b", "--gpu", "h100-sxm", "--context", "8192", "--json"],
    ["op", "gemm", "--m", "16", "--n", "8192", "--k", "8192", "--gpu", "h200"],
)


def _top_level_modules_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after running ``code``."""
    import subprocess
    import sys

    probe = (f"{code}\nimport sys\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_cli_start_up_imports_neither_numpy_nor_pydantic() -> None:
    """Registering the commands (what `memsim --help` and every command pay first) imports
    typer and memsim's light core only: pydantic alone costs ~0.1 s, and it crept in once
    (the --index-heads default read from an Indexer() built at import: --help went from
    0.23 to 0.37 CPU s)."""
    loaded = _top_level_modules_after("import memsim.cli; memsim.cli._register()")
    assert "typer" in loaded
    assert not loaded & {"numpy", "pydantic", "rich", *HEAVY}, loaded & {"numpy", "pydantic"}


def test_analytic_commands_import_no_jit_plotting_or_data_stack() -> None:
    for argv in ANALYTIC_COMMANDS:
        loaded = _top_level_modules_after(
            "import contextlib, io, memsim.cli\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    memsim.cli.run({argv!r})")
        assert "numpy" in loaded and "pydantic" in loaded       # the probe ran the command
        assert not loaded & set(HEAVY), (argv[0], loaded & set(HEAVY))
