"""`dashfrog` starts fast: a command loads only what it uses (README, Performance).

`dashfrog --version` took 339 ms, then about a second on a loaded machine, because `cli.py`
imported rich, the store (sqlite3), the renderers and OpenTelemetry at module level. Each is now
imported by the commands that use it; these tests keep it that way, so start-up cannot regress
silently (the figures are in benchmarks/store.py, section 6, not here).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashfrog_sdk import __version__
from tests.support import ROOT, clean_env

# Runs the `dashfrog` console script as installed (its entry point from the package metadata),
# then prints the top-level packages it loaded that a start-up must not.
LOADED = """
import sys
from importlib.metadata import entry_points

(script,) = entry_points(group="console_scripts", name="dashfrog")
sys.argv = ["dashfrog", *sys.argv[1:]]
try:
    script.load()()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = ("rich", "opentelemetry", "sqlite3", "_sqlite3")
found = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
sys.stderr.write(repr(found) + "\\n")
"""


def _loaded(*args: str, env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, *args],
        env=env or clean_env(), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found: list[str] = ast.literal_eval(proc.stderr.strip().splitlines()[-1])
    return proc.stdout, found


def test_dashfrog_version_loads_no_rich_no_opentelemetry_no_sqlite() -> None:
    out, loaded = _loaded("--version")
    assert out == f"dashfrog, version {__version__}\n"
    assert loaded == []


@pytest.mark.parametrize("args", [["--help"], ["flows", "--help"], ["stats", "--help"]])
def test_help_loads_no_rich_no_opentelemetry_no_sqlite(args: list[str]) -> None:
    out, loaded = _loaded(*args)
    assert "Usage: dashfrog" in out
    assert loaded == []


def test_a_command_still_loads_what_it_uses(tmp_path: Path) -> None:
    # The lazy imports are really taken: `flows` on an empty store opens it (sqlite3).
    from dashfrog_sdk.store import schema

    store = tmp_path / "flows.db"
    conn = schema.connect(str(store), create=True)
    schema.migrate(conn)
    conn.close()
    out, loaded = _loaded("flows", "--store", str(store))
    assert out == "no flows match\n"
    assert "sqlite3" in loaded


def test_the_version_shortcut_prints_what_click_prints() -> None:
    # The console script answers `--version` before importing click (dashfrog_sdk._entry):
    # the same line as click's version option on the full command.
    from dashfrog_sdk import cli

    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    out, _ = _loaded("--version")
    assert out == result.output
