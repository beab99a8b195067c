"""The package's structure (issue 21): no import cycles, equations free of communication."""

from __future__ import annotations

from pathlib import Path

import uniego
from uniego.config import module_files, module_imports

ROOT = Path(uniego.__file__).resolve().parent


def _name(f: Path) -> str:
    parts = f.relative_to(ROOT).with_suffix("").parts
    return ".".join(("uniego", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def import_graph() -> dict[str, set[str]]:
    """module -> the uniego modules it imports (lazy imports inside functions included)."""
    graph = {}
    for f in sorted(ROOT.rglob("*.py")):
        graph[_name(f)] = {_name(g) for m in module_imports(f, ROOT) for g in module_files(m, ROOT)} - {_name(f)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """Not even through imports inside functions: a package's adapters or families import its
    shared pieces from a module of their own, never the package that lists them."""
    graph = import_graph()
    assert len(graph) > 50 and "uniego.teachers.build" in graph["uniego.stages.teachers.extract"] | graph["uniego.teachers"]
    assert cycles(graph) == []


def test_equations_stay_pure():
    """The paper's equations import no communication, I/O or stage code, only each other (STYLE.md)."""
    graph = import_graph()
    for eq in ("uniego.losses", "uniego.spd", "uniego.merge", "uniego.metrics"):
        assert graph[eq] <= {"uniego.errors", "uniego.losses"}, f"{eq} imports {sorted(graph[eq])}"


def test_ruff_is_clean():
    """pyflakes, pycodestyle and import order over the package, tests and benchmarks
    ([tool.ruff] in pyproject.toml); `ruff check --fix .` repairs most findings."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
                         cwd=ROOT.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
