"""What the README shows is what the program prints: the quickstart's console output, the
`dashfrog flow ID --logs` tree of the demo's failed order, and `flow.fail("message")` shown as the
message alone. Times, ids and durations differ run to run and are compared as placeholders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, clean_env

README = (ROOT / "README.md").read_text()


def _block_after(marker: str) -> list[str]:
    """The lines of the first fenced block at or after `marker` in the README."""
    rest = README[README.index(marker) :]
    start = rest.index("```")
    body = rest[rest.index("\n", start) + 1 :]
    return body[: body.index("```")].rstrip("\n").splitlines()


def _norm(line: str) -> str:
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", "DATETIME", line)
    line = re.sub(r"\d\d:\d\d:\d\d\.\d{3}", "TIME", line)
    line = re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}\b", "ID", line)
    line = re.sub(r"\+?\d+(\.\d+)? (ms|s)\b", "DUR", line)
    return line.rstrip()


def _run(args: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=clean_env(PYTHONPATH=str(ROOT), **env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _cli(store: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dashfrog_sdk", *args, "--store", str(store)], ROOT)


def test_quickstart_output_is_the_readme_s(tmp_path: Path) -> None:
    out = _run([sys.executable, str(ROOT / "examples" / "quickstart.py")], tmp_path)
    # The console tree (the `flow id:` line the script prints may come before or after it).
    console = [_norm(x) for x in out.splitlines() if not x.startswith("flow id:")]
    readme = [_norm(x) for x in _block_after("That is `examples/quickstart.py`")]
    assert console == readme


def test_demo_logs_tree_is_the_readme_s(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    _run([sys.executable, str(ROOT / "examples" / "demo.py")], ROOT, DASHFROG_STORE=str(store))
    listed = json.loads(_cli(store, "flows", "--tenant", "initech", "--json"))
    (failed,) = [f["id"] for f in listed if f["status"] == "failed"]
    out = _cli(store, "flow", failed, "--logs").splitlines()
    marker = "$ dashfrog flow c5429c92 --logs\n"
    rest = README[README.index(marker) + len(marker) :]
    shown = rest[: rest.index("```")].rstrip("\n").splitlines()
    assert [_norm(x) for x in out] == [_norm(x) for x in shown]
    # The log line sits under the step it was logged in.
    step = next(i for i, x in enumerate(out) if "charge_payment" in x)
    assert out[step + 1].startswith("    └── ≡ ERROR payment failed for initech")


def test_flow_fail_with_a_message_shows_the_message(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    script = (
        "from dashfrog_sdk import flow\n"
        "with flow.start('refund', tenant='acme') as fid:\n"
        "    flow.fail('refund window closed')\n"
        "print(fid)\n"
    )
    fid = _run(
        [sys.executable, "-c", script], tmp_path, DASHFROG_STORE=str(store), DASHFROG_CONSOLE="off"
    ).split()[-1]
    shown = _cli(store, "flow", fid)
    assert "refund window closed" in shown
    assert "str:" not in shown
    detail = json.loads(_cli(store, "flow", fid, "--json"))
    assert detail["error_message"] == "refund window closed"
    assert detail["error_type"] is None
    markdown = _cli(store, "flow", fid, "--markdown")
    assert "str:" not in markdown and "refund window closed" in markdown
