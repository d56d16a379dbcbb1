"""The `dashfrog` command, run as a real subprocess against stores the real SDK wrote."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.store.conftest import FLOWAPP, ROOT, DemoStore, flowapp_env, run_cli, run_flowapp
from tests.store.mermaid_check import parse_flowchart, parse_sequence
from tests.support.procs import wait_until


def _ok(*args: str, env: dict[str, str] | None = None) -> str:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _error(*args: str, env: dict[str, str] | None = None) -> str:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dashfrog: error: ")
    return lines[0]


def test_flows_table_and_filters(demo_store: DemoStore) -> None:
    store, ids = str(demo_store.path), demo_store.ids
    out = _ok("flows", "--store", store)
    for flow_id in ids.values():
        assert flow_id in out
    assert "FLOW ID" in out and "order_processing" in out and "✘ failed" in out
    failed = _ok("flows", "--store", store, "--status", "failed")
    assert ids["failed"] in failed and ids["completed"] not in failed
    assert "ValueError" in failed
    eu = _ok("flows", "--store", store, "--label", "region=eu", "--tenant", "acme-corp")
    assert ids["completed"] in eu and ids["failed"] not in eu
    assert _ok("flows", "--store", store, "--tenant", "nobody").strip() == "no flows match"
    timed = _ok("flows", "--store", store, "--status", "timed_out", "--since", "1h")
    assert ids["timed_out"] in timed and ids["remote"] not in timed


def test_flows_json(demo_store: DemoStore) -> None:
    rows = json.loads(_ok("flows", "--store", str(demo_store.path), "--json", "--name", "checkout"))
    assert [r["id"] for r in rows] == [demo_store.ids["remote"]]
    row = rows[0]
    assert row["status"] == "completed" and row["labels"] == {"channel": "web"}
    assert row["start"].endswith("+00:00") and row["duration_ms"] > 0


def test_store_from_environment(demo_store: DemoStore) -> None:
    out = _ok("flows", "--json", env={"DASHFROG_STORE": str(demo_store.path)})
    assert len(json.loads(out)) == len(demo_store.ids)


def test_flow_timeline(demo_store: DemoStore) -> None:
    out = _ok("flow", demo_store.ids["failed"], "--store", str(demo_store.path))
    lines = out.splitlines()
    assert lines[0].startswith("flow order_processing") and demo_store.ids["failed"] in lines[0]
    assert "tenant=acme-corp" in out and "✘ failed" in out
    assert any("✔ validate_order" in line and "[api]" in line for line in lines)
    charge = next(line for line in lines if "charge" in line)
    assert "✘" in charge and "ValueError: card declined; code #51" in charge

    nested = _ok("flow", demo_store.ids["completed"][:10], "--store", str(demo_store.path))
    stock = next(line for line in nested.splitlines() if "check_stock" in line)
    assert stock.startswith("│   └── ")  # nested under validate_order
    assert "⚑ payment_retried" in nested and "attempt=2" in nested
    assert "↳ child flow send_receipt" in nested

    remote = _ok("flow", demo_store.ids["remote"], "--store", str(demo_store.path))
    assert "[worker]" in remote and "carrier=dhl" in remote


def test_flow_logs(demo_store: DemoStore) -> None:
    out = _ok("flow", demo_store.ids["completed"], "--logs", "--store", str(demo_store.path))
    assert "logs (2)" in out
    assert "INFO  [validate_order] validating order o-1" in out
    assert "WARN  [charge] card network slow" in out


def test_flow_mermaid_sequence(demo_store: DemoStore) -> None:
    out = _ok("flow", demo_store.ids["remote"], "--mermaid", "--store", str(demo_store.path))
    diagram = parse_sequence(out)
    assert list(diagram.participants.values()) == ["api", "worker"]
    assert [(src, dst, text.split(" (")[0]) for src, _, dst, text in diagram.messages] == [
        ("S0", "S0", "reserve"),
        ("S0", "S0", "enqueue"),
        ("S0", "S1", "↳ ship"),
    ]
    failed = _ok("flow", demo_store.ids["failed"], "--mermaid", "--store", str(demo_store.path))
    parsed = parse_sequence(failed)
    charge = [m for m in parsed.messages if "charge" in m[3]]
    assert charge and charge[0][1] == "-x" and "FAILED" in charge[0][3]
    assert "#59;" in charge[0][3] and "#35;51" in charge[0][3]  # "; code #51", entity-encoded


def test_flow_mermaid_flowchart(demo_store: DemoStore) -> None:
    out = _ok("flow", demo_store.ids["failed"], "--flowchart", "--store", str(demo_store.path))
    chart = parse_flowchart(out)
    fills = {name: style["fill"] for name, style in chart.class_defs.items()}
    assert fills["completed"] == "#28a745" and fills["failed"] == "#dc3545"
    assert fills["running"] == "#fd7e14" and fills["pending"] == "#6c757d"
    by_label = {label.split("<br/>")[0]: node for node, label in chart.nodes.items()}
    assert chart.classes[by_label["validate_order"]] == "completed"
    assert chart.classes[by_label["charge"]] == "failed"
    assert ("F", "-->", by_label["validate_order"]) in chart.edges


def test_flow_markdown(demo_store: DemoStore) -> None:
    out = _ok("flow", demo_store.ids["failed"], "--markdown", "--store", str(demo_store.path))
    for heading in (
        "## Trigger",
        "## End state",
        "## Sequence",
        "## Step-by-step trace",
        "## Error paths",
        "## Performance",
    ):
        assert heading in out
    assert out.startswith("# Flow `order_processing` for tenant `acme-corp`: failed")
    assert "inputs: `order_id=o-2`" in out
    assert "- `charge` in `api` raised `ValueError: card declined; code #51`" in out
    block = out.split("```mermaid\n", 1)[1].split("```", 1)[0]
    parse_sequence(block)
    table = [line for line in out.splitlines() if line.startswith("| `charge`")]
    assert len(table) == 1 and table[0].count("|") == 7


def test_flow_json_and_durations(demo_store: DemoStore) -> None:
    detail = json.loads(
        _ok("flow", demo_store.ids["completed"], "--json", "--store", str(demo_store.path))
    )
    assert [s["name"] for s in detail["steps"]] == ["validate_order", "check_stock", "charge"]
    assert detail["children"][0]["id"] == demo_store.ids["child"]
    out = _ok("durations", demo_store.ids["completed"], "--store", str(demo_store.path))
    assert "validate_order" in out and "flow total" in out and "%" in out


def test_stats(demo_store: DemoStore) -> None:
    out = _ok("stats", "--store", str(demo_store.path))
    row = next(line for line in out.splitlines() if line.startswith("order_processing"))
    assert "acme-corp" in row and "50.0 %" in row  # one of two failed
    rows = json.loads(_ok("stats", "--json", "--store", str(demo_store.path)))
    nightly = next(r for r in rows if r["name"] == "nightly")
    assert nightly["timed_out"] == 1 and nightly["failure_rate"] == 1.0


def test_tail_once_and_timeout(demo_store: DemoStore) -> None:
    out = _ok("tail", "--once", "--since", "1h", "--store", str(demo_store.path))
    lines = out.splitlines()
    failed = [line for line in lines if demo_store.ids["failed"] in line]
    assert [line.split()[2] for line in failed] == ["started", "failed"]
    assert "ValueError: card declined" in failed[1]
    assert any("timed_out" in line and demo_store.ids["timed_out"] in line for line in lines)
    quiet = _ok(
        "tail",
        "--timeout",
        "0.3",
        "--since",
        "0s",
        "--interval",
        "0.1",
        "--store",
        str(demo_store.path),
    )
    assert quiet == ""


def test_tail_follows_new_flows(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    run_flowapp("many", "1", "seed", store=store)  # the store exists before tail starts
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dashfrog_sdk.cli",
            "tail",
            "--since",
            "0s",
            "--interval",
            "0.1",
            "--timeout",
            "120",
            "--store",
            str(store),
        ],
        cwd=ROOT,
        env=flowapp_env(store, "cli"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    app: subprocess.Popen[str] | None = None
    seen: list[str] = []
    try:
        assert tail.stdout is not None and tail.stderr is not None
        assert tail.stderr.readline().startswith("dashfrog: following")  # polling from now on
        threading.Thread(target=lambda: seen.extend(tail.stdout), daemon=True).start()  # type: ignore[arg-type]
        gate = tmp_path / "gate"
        app = subprocess.Popen(
            [sys.executable, str(FLOWAPP), "hold", str(gate)],
            cwd=ROOT,
            env=flowapp_env(store, "batch"),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert app.stdout is not None
        flow_id = json.loads(app.stdout.readline())["flow_id"]

        def line_with(word: str) -> bool:
            return any(word in line and flow_id in line for line in list(seen))

        wait_until(lambda: line_with("crunch"), timeout=30, message=lambda: "".join(seen))
        gate.write_text("go")
        wait_until(lambda: line_with("completed"), timeout=30, message=lambda: "".join(seen))
    finally:
        for proc in (app, tail):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
    mine = [line.split()[2] for line in seen if flow_id in line]
    assert mine[0] == "started" and mine[-1] == "completed"
    assert set(mine[1:-1]) == {"step"}  # "prepare" may come and go between two polls
    assert not any("seed" in line for line in seen)  # written before tail's --since 0s


# -- errors: one line, exit 1 -------------------------------------------------------------------


def test_missing_store(tmp_path: Path) -> None:
    for command in (["flows"], ["flow", "abc"], ["stats"], ["tail", "--once"]):
        line = _error(*command, "--store", str(tmp_path / "none.db"))
        assert "no flow store at" in line
    assert not (tmp_path / "none.db").exists()


def test_corrupt_store(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"garbage" * 1000)
    assert "flow store" in _error("flows", "--store", str(path))
    assert "flow store" in _error("flow", "abc", "--store", str(path))


def test_truncated_store(demo_store: DemoStore, tmp_path: Path) -> None:
    path = tmp_path / "truncated.db"
    shutil.copy(demo_store.path, path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] + b"\x00" * 100)
    proc = run_cli("flows", "--store", str(path))
    assert "Traceback" not in proc.stderr
    if proc.returncode != 0:  # SQLite may still read the first pages; it must never crash
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1


def test_unknown_flow_and_bad_options(demo_store: DemoStore) -> None:
    store = str(demo_store.path)
    assert "no flow 0123456789" in _error("flow", "0123456789", "--store", store)
    assert "--since" in _error("flows", "--since", "yesterday-ish", "--store", store)
    assert "--label" in _error("flows", "--label", "novalue", "--store", store)
    assert "disabled" in _error("flows", env={"DASHFROG_STORE": "off"})


@pytest.mark.parametrize("args", [["--help"], ["flows", "--help"], ["flow", "--help"]])
def test_help(args: list[str]) -> None:
    assert "Usage" in _ok(*args)


# -- progress and artifacts ---------------------------------------------------------------------


def test_progress_while_running_then_the_artifact(tmp_path: Path) -> None:
    """The real SDK in a subprocess: a step says 40% and waits; the CLI shows it in the flows
    list, the flow view and tail; once it ends, its artifact is in the view, --json and the
    Markdown document."""
    store, gate = tmp_path / "flows.db", tmp_path / "gate"
    app = subprocess.Popen(
        [sys.executable, str(FLOWAPP), "hold_progress", str(gate)],
        cwd=ROOT,
        env=flowapp_env(store, "batch"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        flow_id = json.loads(app.stdout.readline())["flow_id"]
        shown = "import_rows 40% (400/1000) loading eu"
        wait_until(
            lambda: store.exists() and shown in _ok("flows", "--store", str(store)),
            timeout=30,
            message="no progress in `dashfrog flows`",
        )
        view = _ok("flow", flow_id, "--store", str(store))
        assert f"at step {shown}" in view
        assert "running  40% (400/1000) loading eu" in view
        assert shown in _ok("tail", "--once", "--since", "1m", "--store", str(store))
        running = json.loads(_ok("flows", "--store", str(store), "--json"))[0]
        assert running["current_progress"]["done"] == 400
        gate.write_text("go")
        assert app.wait(timeout=30) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if app.stdout is not None:
            app.stdout.close()

    def ended() -> bool:
        rows = json.loads(_ok("flows", "--store", str(store), "--json"))
        return rows[0]["status"] == "completed"

    wait_until(ended, timeout=15)
    detail = json.loads(_ok("flow", flow_id, "--store", str(store), "--json"))
    (rows,) = detail["steps"]
    assert rows["artifacts"] == {"summary": {"rows": 1000, "rejected": 3}}
    assert (rows["progress"]["done"], rows["progress"]["total"]) == (1000, 1000)
    assert detail["current_progress"] is None
    view = _ok("flow", flow_id, "--store", str(store))
    assert '◆ summary = {"rows":1000,"rejected":3}' in view
    assert "100% (1000/1000)" in view
    doc = _ok("flow", flow_id, "--store", str(store), "--markdown")
    output = doc.split("## Output\n", 1)[1].split("\n## ", 1)[0]
    assert "### `import_rows` → `summary`" in output
    block = output.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == {"rows": 1000, "rejected": 3}
    assert "progress `100% (1000/1000)`" in doc and "output: `summary`" in doc
