"""The package's import graph: no module imports, even late inside a function, a module that
imports it back; no module looks another up in `sys.modules`; the version lives in a leaf."""

from __future__ import annotations

import ast
from importlib.metadata import version

from dashfrog_sdk import __version__
from tests.support import import_graph


def test_the_package_has_no_import_cycle() -> None:
    edges = import_graph.graph()
    assert import_graph.cycle(edges) is None
    # The graph is really read: the hot path's known imports are in it.
    assert "dashfrog_sdk.lifecycle.records" in edges["dashfrog_sdk.flow"]
    assert "dashfrog_sdk.setup" in edges["dashfrog_sdk"]


def test_the_cycle_check_finds_a_late_import_cycle() -> None:
    # The circle this check exists for: a function-level import back to the root.
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    found = import_graph.cycle(edges)
    assert found is not None and found[0] == found[-1] and set(found) == {"a", "b", "c"}


def test_the_runtime_and_diagnostics_import_no_composition_root() -> None:
    edges = import_graph.graph()
    assert edges["dashfrog_sdk._runtime"] <= {"dashfrog_sdk.diagnostics"}
    assert edges["dashfrog_sdk.diagnostics"] == set()
    assert edges["dashfrog_sdk._version"] == set()


def test_no_module_looks_another_up_by_name() -> None:
    for name, path in import_graph.modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "modules":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), name


def test_the_version_is_the_one_in_pyproject() -> None:
    assert version("dashfrog-sdk") == __version__  # the installed metadata, from pyproject
