"""The import graph of dashfrog_sdk, read from the source with `ast`, and its cycles.

    .venv/bin/python -m tests.support.import_graph

Every import counts, at module level or inside a function (a function-level import is still a
dependency, only a later one), except those under ``if TYPE_CHECKING:``. Importing
``dashfrog_sdk.a.b`` also runs the package ``dashfrog_sdk.a``; that edge counts too, unless the
importer is inside that package (a package's own modules importing each other is not a circle
through its ``__init__``). The root package ``dashfrog_sdk`` is the composition facade: an edge
to it counts only when a module imports a name from it (``from dashfrog_sdk import __version__``),
not when it merely imports one of its submodules.

Cycles are found with the standard library's `graphlib`, which names one when it finds it.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

from tests.support import ROOT

PACKAGE = "dashfrog_sdk"


def modules(root: Path = ROOT / PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules its imports run."""
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            source = _absolute(name, is_package, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    targets.add(sub)  # `from pkg import module`
                else:
                    targets.add(source)  # `from module import name`: runs `module`
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # the target and each package above it
                ancestor = ".".join(parts[:i])
                if ancestor in known and ancestor != name and not name.startswith(ancestor + "."):
                    edges[name].add(ancestor)
            if target == PACKAGE and name != PACKAGE:
                edges[name].add(PACKAGE)
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `edges` (first module repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as error:
        found: list[str] = error.args[1]
        return list(reversed(found))
    return None


def main() -> int:
    edges = graph()
    found = cycle(edges)
    count = sum(len(targets) for targets in edges.values())
    print(f"{len(edges)} modules, {count} internal imports")
    if found:
        print("import cycle: " + " -> ".join(found))
        return 1
    print("no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
