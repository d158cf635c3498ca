"""The folders are the architecture: imports follow the layers, nothing imports in a cycle,
only the Dagster layer imports Dagster, and only the state store touches its tables."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "mixsync_dagster"

# Lower layers never import higher ones. Within layer 1 the three packages are independent.
LAYERS = {
    "errors": 0,
    "clock": 0,
    "config": 0,
    "core.records": 0,
    "state": 1,
    "providers": 1,
    "targets": 1,
    "core": 2,
    "dagster": 3,
    "cli": 4,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def layer_of(mod: str) -> tuple[str, int]:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if mod == prefix or mod.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    return mod, 0  # the package root (__init__)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(mixsync modules imported at module level, imported anywhere), and third-party roots."""
    tree = ast.parse(path.read_text())
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            anywhere.add(n)
            if node in tree.body:
                top.add(n)
    return top, anywhere


def all_modules() -> dict[str, Path]:
    return {
        module_name(p): p for p in PKG.rglob("*.py") if "migrations" not in p.relative_to(PKG).parts
    }


def internal(names: set[str], known: set[str]) -> set[str]:
    out = set()
    for n in names:
        if n.startswith("mixsync_dagster."):
            m = n[len("mixsync_dagster.") :]
            while m and m not in known:
                m = m.rpartition(".")[0]
            if m:
                out.add(m)
    return out


def test_imports_follow_the_layers():
    mods = all_modules()
    known = set(mods)
    wrong = []
    for mod, path in mods.items():
        _, anywhere = imports(path)
        me, rank = layer_of(mod)
        for dep in internal(anywhere, known):
            them, theirs = layer_of(dep)
            if theirs > rank or (rank == theirs == 1 and me != them):
                wrong.append(f"{mod} imports {dep}")
    assert wrong == []


def test_no_import_cycles():
    mods = all_modules()
    known = set(mods)
    graph = {m: internal(imports(p)[0], known) - {m} for m, p in mods.items()}
    # A package's __init__ re-exporting its submodules is not a cycle of concerns.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    seen: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for d in sorted(graph.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in seen:
                visit(d, [*stack, d])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])
    assert cycles == []


def test_only_the_dagster_layer_imports_dagster():
    outside = []
    for mod, path in all_modules().items():
        if mod.startswith("dagster"):
            continue
        _, anywhere = imports(path)
        if any(n == "dagster" or n.startswith("dagster.") for n in anywhere):
            outside.append(mod)
    assert outside == []


def test_only_the_state_store_touches_its_tables():
    mods = all_modules()
    state_modules = {m for m in mods if m.startswith("state.")}
    outside = []
    for mod, path in mods.items():
        if mod.startswith("state"):
            continue
        _, anywhere = imports(path)
        if internal(anywhere, set(mods)) & state_modules:
            outside.append(mod)
    assert outside == []  # others use the `mixsync_dagster.state` facade only
