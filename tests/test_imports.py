"""Imports inside the package run one way: no module of `recommender` imports itself back,
however far round and however lazily (an import inside a function counts), and each stage
package imports only the stages below it (:data:`MAY_IMPORT`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "recommender"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                # `from recommender import formats` imports the submodule formats.
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                # `import a.b.c` also runs a and a.b; the package's own __init__ is not
                # an edge worth counting (every module would import it).
                while target and target not in graph:
                    target = target.rpartition(".")[0]
                if target and target != module and target != "recommender":
                    graph[module].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as one cycle
    through it, so a failure names the modules to untangle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """One closed path through a strongly connected group (breadth first from its first
    member back to itself)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def test_the_checker_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_resolves_relative_imports():
    parquet = _resolve("recommender.data.formats.parquet", False, 2, "records")
    assert parquet == "recommender.data.records"
    manifest = _resolve("recommender.data.formats", True, 1, "manifest")
    assert manifest == "recommender.data.formats.manifest"
    assert _resolve("recommender.cli", False, 1, None) == "recommender"


def test_package_imports_run_one_way():
    graph = import_graph()
    assert "recommender.data.datasets" in graph and graph["recommender.cli"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in recommender/ (one cycle per tangle; break every edge "
    "that points back): " + "; ".join(" -> ".join(cycle) for cycle in cycles)


# The stage packages and the top-level modules each may import (besides themselves). The
# shared helpers (errors, blas, mapped, checksums, paths, filetypes, limits, archives) and
# config (the parameters' dataclasses and defaults) sit below everything and import only
# each other.
BASE = {
    "errors", "blas", "mapped", "checksums", "paths", "filetypes", "limits", "archives", "config",
}  # fmt: skip
STAGES = {"data", "vision", "features", "engines", "fit", "store", "query", "evaluation"}
MAY_IMPORT: dict[str, set[str]] = {
    **{name: set() for name in BASE},
    "data": set(),
    "vision": set(),
    "store": set(),
    "features": {"data", "vision"},
    "query": {"data", "vision", "store"},
    "fit": {"data", "vision", "store", "query"},
    "engines": {"data", "vision", "features", "fit"},
    "evaluation": {"data", "vision", "features", "engines", "fit", "store", "query"},
    "ui": {"query", "vision", "data"},
    "build": STAGES,
    "cli": STAGES | {"build", "ui"},
    "spark_submit": {"cli"},
    "__main__": {"cli"},
    "recommender": {"query"},  # the lazy HashtagRecommender of the package's __init__
}
# Crossings still to remove; none may be added.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "recommender"


def layer_crossings(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every import from one stage into another that :data:`MAY_IMPORT` does not allow."""
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if _stage(target) != _stage(module)
        and _stage(target) not in BASE | MAY_IMPORT[_stage(module)]
    }


def test_the_layer_checker_names_a_crossing():
    graph = {"recommender.store.model_io": {"recommender.query.scoring", "recommender.errors"}}
    assert layer_crossings(graph) == {("recommender.store.model_io", "recommender.query.scoring")}
    config = {"recommender.config": {"recommender.query.scoring", "recommender.errors"}}
    assert layer_crossings(config) == {("recommender.config", "recommender.query.scoring")}


def test_every_module_belongs_to_a_known_stage():
    assert {_stage(module) for module in import_graph()} <= set(MAY_IMPORT)


def test_stages_import_only_the_stages_below_them():
    crossings = layer_crossings(import_graph())
    new = sorted(crossings - KNOWN_CROSSINGS)
    assert not new, "imports against the stage layers: " + "; ".join(f"{a} -> {b}" for a, b in new)
    assert crossings == KNOWN_CROSSINGS, f"crossings removed: drop {KNOWN_CROSSINGS - crossings}"


def test_only_the_page_and_the_cli_import_ui():
    importers = {
        m for m, targets in import_graph().items() if any(_stage(t) == "ui" for t in targets)
    }
    assert importers <= {"recommender.cli"} | {m for m in importers if _stage(m) == "ui"}
