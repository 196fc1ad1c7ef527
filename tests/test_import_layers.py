"""The package's imports form no cycle, counting those inside functions (the lazy ones too).

Every ``import``/``from ... import`` of ``src/jetscale`` is read with ``ast`` (module level, inside functions and
methods, under ``TYPE_CHECKING``): an edge from the importing module to each module of the package it names
(``from . import x`` names the submodule ``x`` when there is one, else the package). A cycle among these edges
means two modules each need the other: the layering of ``docs/architecture.md`` does not hold.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "jetscale"


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` (file ``path``) imports anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in known else target)
    return {e for e in edges if e in known and e != module}


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "jetscale.train.loop" in graph["jetscale.train"]  # lazily, inside the package's __getattr__
    assert "jetscale.train.runner" in graph["jetscale.train.loop"]  # from .runner import ...
    assert "jetscale.train.checkpoint" in graph["jetscale.train.runner"]  # from . import checkpoint as ckpt
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (each a set of modules that import one another): " + "; ".join(
        " <-> ".join(c) for c in found
    )


# What loading and validating a config may never reach: the grid and the settings built on it, the pipeline's
# stages, and the commands. (It reads the catalogs: models, pretraining methods, metrics, fit forms, inputs.)
ABOVE_CONFIG = ("jetscale.grid", "jetscale.settings", "jetscale.workflow", "jetscale.results_dir", "jetscale.status")
STAGES = ("jetscale.train", "jetscale.evaluate", "jetscale.report", "jetscale.launch", "jetscale.cli")


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_loading_a_config_imports_nothing_above_it():
    reached = reachable(import_graph(), "jetscale.config")
    above = sorted(
        m for m in reached if m in ABOVE_CONFIG or m.startswith(tuple(s + "." for s in STAGES)) or m in STAGES
    )
    assert not above, f"jetscale.config reaches modules above it: {above}"
    assert "jetscale.models.catalog" in reached  # the walk does follow config's imports
