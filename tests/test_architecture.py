"""The layout rules the README promises, checked by parsing the source (no imports executed).

- The import graph of experiments/, tasks/ and pefs_web/ has no cycle, counting imports inside
  functions too: a cycle means two modules cannot be understood (or changed) one without the other.
- The engine (tasks/, except the Celery side) and experiments/space/ import nothing from Django,
  Channels or Celery.
- No module (migrations aside) is longer than about 600 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
PACKAGES = ("experiments", "tasks", "pefs_web")
MAX_LINES = 600
# The worker side of the job loop: the only modules of tasks/ allowed to see Django or Celery.
TASKS_WEB_SIDE = {"tasks.jobs", "tasks.worker"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (BASE_DIR / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: `if TYPE_CHECKING:` blocks are for type checkers only."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name this module imports, anywhere in its body (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, is_package)
            names.add(target)
            # `from experiments import services` imports the submodule experiments.services
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _internal(name: str) -> str | None:
    """The project module a dotted import name refers to (longest known prefix), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_internal(name) for name in imported_names(module, path)}
        # Importing a.b.c from outside package a.b first runs a.b's __init__: that is an edge too
        # (experiments.api.downloads -> experiments.services.artifacts ran experiments.services,
        # whose re-exports led back to downloads: a cycle no edge between the two modules shows).
        ancestors = {".".join(t.split(".")[:end]) for t in targets if t for end in range(1, t.count(".") + 1)}
        targets |= {a for a in ancestors if a in MODULES and not module.startswith(a + ".")}
        # A package's own __init__ is not a dependency of its submodules' identity; a module
        # importing its parent package counts (that is how cycles through __init__ re-exports arise).
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a list of modules, or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for root in sorted(graph):
        if colour[root] != WHITE:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour.get(child, BLACK) == GREY:
                return path[path.index(child):] + [child]
            elif colour.get(child) == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def _is_package_parent(module: str, target: str) -> bool:
    return module.startswith(target + ".")


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    # Importing one's own parent package only runs its __init__; a cycle through it is real only
    # if the __init__ imports back, which the graph then shows as a separate edge.
    graph = {m: {t for t in ts if not _is_package_parent(m, t)} for m, ts in graph.items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_imports_for_type_checkers_only_are_not_edges():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n")
    found = {alias.name for node in _runtime_nodes(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert found == {"b", "c"}


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(("tasks", "experiments.space"))
                                          and m not in TASKS_WEB_SIDE))
def test_the_engine_and_the_space_do_not_import_the_web(module):
    names = imported_names(module, MODULES[module])
    offending = sorted(n for n in names if n.split(".")[0] in {"django", "channels", "celery", "rest_framework"}
                       or n.startswith(("experiments.models", "experiments.services", "experiments.selectors",
                                        "pefs_web")))
    assert not offending, f"{module} imports {offending}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_the_size_limit(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(BASE_DIR)} has {lines} lines (limit {MAX_LINES})"
