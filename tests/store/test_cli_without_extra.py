"""`dashfrog` installed without the `cli` extra prints how to install it, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, clean_env

# Runs the `dashfrog` console script as installed (its entry point from the package metadata)
# in an interpreter where click and rich cannot be imported, as after `pip install dashfrog-sdk`.
WITHOUT = """
import importlib.abc, sys
from importlib.metadata import entry_points

BLOCKED = sys.argv[1].split(",")

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
(script,) = entry_points(group="console_scripts", name="dashfrog")
sys.argv = ["dashfrog", *sys.argv[2:]]
script.load()()
"""


@pytest.mark.parametrize("missing", ["click", "rich", "click,rich"])
@pytest.mark.parametrize("args", [[], ["flows"], ["--help"]])
def test_dashfrog_without_the_cli_extra_prints_the_install_hint(
    missing: str, args: list[str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT, missing, *args],
        env=clean_env(), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'dashfrog-sdk[cli]'" in lines[0]
    assert missing.split(",")[0] in lines[0]


def test_python_m_dashfrog_sdk_is_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dashfrog_sdk", "--help"],
        env=clean_env(), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "flows" in proc.stdout and "tail" in proc.stdout
