"""The layers of DESIGN.md hold: imports run only downward, and no two files import each other.

``training → quality → generation → characters → projects → tower.core``; ``tower`` (outside
core) is the top wiring and may import anything. Read from the source with ``ast`` (nothing is
imported), so a violation is reported however deep inside a function it hides.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("projects", "characters", "generation", "quality", "training")  # bottom to top
PACKAGES = ("tower", *APPS)
CORE = "tower.core"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a file of ours)
    line: int
    runtime: bool  # executed when the source module is imported (not in a function or TYPE_CHECKING)
    parent: bool = False  # a package run on the way to the module named (a cycle's link, not a layer's)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _ours(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules."""
    modules = _modules()
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, runtime: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, runtime
        inner = runtime
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
            isinstance(child, ast.If) and _is_type_checking(child)
        ):
            inner = False
        yield from _walk(child, inner)


@cache
def _imports() -> tuple[Import, ...]:
    found = []
    for module, path in _modules().items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, runtime in _walk(tree, True):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from a import b" imports the module a.b when b is one, else a.
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _ours(name)
                if target is None or target == module:
                    continue
                found.append(Import(module, target, node.lineno, runtime))
                # Importing a.b.c runs a/__init__ and a/b/__init__ too (those the source is not inside).
                parts = target.split(".")[:-1]
                while parts:
                    package = ".".join(parts)
                    if package in _modules() and package != module and not module.startswith(package + "."):
                        found.append(Import(module, package, node.lineno, runtime, parent=True))
                    parts.pop()
    return tuple(found)


def _layered() -> list[Import]:
    return [imp for imp in _imports() if not imp.parent]


def _rank(module: str) -> int | None:
    """Position in the stack: tower.core 0, the apps 1–5, None for the top wiring (anything goes)."""
    if module == CORE or module.startswith(CORE + "."):
        return 0
    top = module.split(".")[0]
    return APPS.index(top) + 1 if top in APPS else None


def _where(imp: Import) -> str:
    path = _modules()[imp.source].relative_to(ROOT)
    return f"{path}:{imp.line} imports {imp.target}"


def test_the_import_graph_is_read():
    """Guards the checks below against passing on an empty graph."""
    targets = {(imp.source, imp.target) for imp in _imports()}
    assert ("generation.models", "projects.models") in targets
    assert any(imp.source == "tower.urls" and not imp.target.startswith(CORE) for imp in _imports())


def test_core_imports_nothing_above_it():
    wrong = [_where(imp) for imp in _layered() if _rank(imp.source) == 0 and _rank(imp.target) != 0]
    assert not wrong, "tower.core imports an app or tower's wiring:\n" + "\n".join(wrong)


def test_apps_import_only_downward():
    wrong = []
    for imp in _layered():
        source, target = _rank(imp.source), _rank(imp.target)
        if source is None or source == 0:
            continue
        if target is None or target > source:
            wrong.append(_where(imp))
    assert not wrong, "upward imports (training → quality → generation → characters → projects → tower.core):\n" + (
        "\n".join(wrong)
    )


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph(*, runtime_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in _imports():
        if imp.runtime or not runtime_only:
            graph.setdefault(imp.source, set()).add(imp.target)
    return graph


def test_no_import_cycles_between_files():
    cycle = _cycle(_graph(runtime_only=True))
    assert cycle is None, "module-level import cycle: " + " → ".join(cycle or [])


# Imports deferred into a function (or kept for type checking) that close a loop, each for a reason;
# a new one fails the test below: move the shared part down instead.
DEFERRED_CYCLES = {
    # The client's type for annotations only.
    frozenset({"generation.comfyui.client", "generation.comfyui.follow"}),
    # The aesthetic head's class is built only once torch is loaded.
    frozenset({"quality.metrics.aesthetic", "quality.metrics.runtime"}),
    # A caption run enqueues itself; the task runs it.
    frozenset({"training.llm.runs", "training.llm.tasks"}),
}


def _loops(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The groups of files that reach each other (strongly connected, more than one file)."""
    loops = set()
    remaining = {node: set(targets) for node, targets in graph.items()}
    while (cycle := _cycle(remaining)) is not None:
        members = set(cycle)
        # Grow to every file on a loop through these (reachable both ways).
        for node in list(remaining):
            if _reaches(remaining, next(iter(members)), node) and _reaches(remaining, node, next(iter(members))):
                members.add(node)
        loops.add(frozenset(members))
        for node in members:
            remaining[node] = remaining.get(node, set()) - members
    return loops


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return start == goal


def test_function_level_cycles_are_the_known_ones():
    new = _loops(_graph(runtime_only=False)) - DEFERRED_CYCLES
    assert not new, "files importing each other through deferred imports: " + "; ".join(
        " ↔ ".join(sorted(loop)) for loop in new
    )


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
