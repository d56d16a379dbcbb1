"""The extras in pyproject.toml: each lists its packages itself (pip's resolver gives up on a
self-referencing extra once it must backtrack), `all` is every integration plus the CLI, and
`examples` brings everything the scripts in examples/ import. Whether they resolve with plain pip
is .ci/check_install.sh's job (it needs the network)."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from tests.support import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
INTEGRATIONS = ("fastapi", "flask", "celery", "requests", "httpx")


def names(extra: str) -> set[str]:
    return {Requirement(r).name.lower() for r in EXTRAS[extra]}


def test_no_extra_refers_to_the_project_itself() -> None:
    for extra, requirements in EXTRAS.items():
        assert all(Requirement(r).name != PROJECT["name"] for r in requirements), extra


def test_all_is_every_integration_and_the_cli() -> None:
    expected = set().union(*(names(e) for e in INTEGRATIONS), names("cli"))
    assert names("all") == expected
    # ...with the same version bounds, so `[all]` resolves as the single extras do.
    single = {r for e in (*INTEGRATIONS, "cli") for r in EXTRAS[e]}
    assert set(EXTRAS["all"]) == single


def test_examples_and_dev_contain_all() -> None:
    assert set(EXTRAS["all"]) <= set(EXTRAS["examples"]) <= set(EXTRAS["dev"])
    assert {"uvicorn", "redis"} <= names("examples")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_examples_extra_brings_every_package_the_examples_import() -> None:
    local = {p.stem for p in (ROOT / "examples").rglob("*.py")}
    imported = set().union(*(_imports(p) for p in (ROOT / "examples").rglob("*.py")))
    # opentelemetry.* (a namespace many distributions share) comes with the core.
    third_party = (
        imported - local - set(sys.stdlib_module_names) - {"dashfrog_sdk", "opentelemetry"}
    )
    # Python 3.10's packages_distributions() reads only top_level.txt, which wheels built by
    # hatchling (httpx) do not have; such a module is named like its distribution.
    dists = packages_distributions()
    needed = {dists.get(m, [m])[0].lower() for m in third_party}
    core = {Requirement(r).name for r in PROJECT["dependencies"]}
    # The examples' server and broker client, started by the examples' run.py scripts.
    needed |= {"uvicorn", "redis"}
    provided = names("examples") | core
    # A package the extra brings through another one (pydantic comes with fastapi).
    transitive = {"pydantic", "kombu"}
    assert needed - provided - transitive == set()
