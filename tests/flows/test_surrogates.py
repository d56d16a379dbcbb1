"""Lone surrogates: text Python's str can hold but UTF-8 cannot (``json.loads('"\\ud800"')``,
``os.listdir()`` on undecodable file names). Refused at the call where the argument is the
caller's (names, tenants, labels); cleaned where they arrive at run time (exception messages,
log records, step and event attributes), so one bad string never loses other data."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dashfrog_sdk import flow, step
from dashfrog_sdk.store import FlowStore
from tests.support import ROOT, clean_env

LONE = "\ud800"


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: flow.start("order" + LONE, tenant="acme"), "name"),
        (lambda: flow.start("order", tenant="acme" + LONE), "tenant"),
        (lambda: flow.start("order", tenant="acme", region="eu" + LONE), "region"),
        (lambda: step.start("charge" + LONE), "name"),
    ],
)
def test_refused_at_the_call(call: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"{argument}.*lone surrogate.*errors='replace'"):
        with flow.start("outer", tenant="acme"):
            with call():
                pass


def test_event_name_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match=r"name.*lone surrogate"):
        with flow.start("outer", tenant="acme"):
            flow.event("paid" + LONE)


def test_a_surrogate_pair_written_as_two_code_points_is_one_character() -> None:
    from dashfrog_sdk.text import clean

    assert clean("a\ud83d\ude00b") == "a\U0001f600b"
    assert clean("a" + LONE + "b") == "a\ufffdb"
    assert clean("plain é") == "plain é"


SCRIPT = """
import logging, sys
import dashfrog_sdk
from dashfrog_sdk import flow, step, stats
logging.getLogger().setLevel(logging.INFO)  # no handler of its own: only the capture
bad = "bad \\ud800 text"
for i in range(3):
    try:
        with flow.start("order", tenant="acme") as flow_id:
            logging.getLogger("app").info("log %s %s", bad, i)
            flow.event("noted", note=bad, notes=[bad, "ok"])
            with step.start("charge", card=bad):
                raise ValueError(bad)
    except ValueError:
        pass
try:
    with flow.start("fail_message", tenant="acme"):
        flow.fail(bad)
except Exception:
    pass
with flow.start("clean", tenant="acme"):
    with step.start("ok"):
        pass
assert dashfrog_sdk.flush(20)
print("STATS", stats()["diagnostics"])
"""


def test_cleaned_at_run_time_and_nothing_else_lost(tmp_path: Path) -> None:
    """The embedded default (SQLite store) keeps every flow of the batch, with U+FFFD in place
    of the surrogate, counts what it cleaned, and warns once."""
    store = tmp_path / "flows.db"
    env = clean_env() | {
        "PYTHONPATH": str(ROOT),
        "DASHFROG_STORE": str(store),
        "DASHFROG_CONSOLE": "off",
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "write failed" not in proc.stderr, proc.stderr
    assert proc.stderr.count("lone surrogate") == 1, proc.stderr
    stats_line = next(line for line in proc.stdout.splitlines() if line.startswith("STATS"))
    assert "'text.cleaned'" in stats_line, stats_line
    with FlowStore(store) as s:
        flows = s.flows(limit=100)
        assert sorted(f.name for f in flows) == ["clean", "fail_message", *["order"] * 3]
        orders = [f for f in flows if f.name == "order"]
        assert {(f.status, f.error_message) for f in orders} == {("failed", "bad \ufffd text")}
        detail = s.flow(orders[0].id)
        charge = next(st for st in detail.steps if st.name == "charge")
        assert charge.status == "failed"
        assert charge.error_message == "bad \ufffd text"
        messages = [log.body or "" for log in detail.logs]
        assert any("bad \ufffd text" in m for m in messages), messages
        failed = next(f for f in flows if f.name == "fail_message")
        assert (failed.status, failed.error_message) == ("failed", "bad \ufffd text")


def test_log_record_cleaning_leaves_other_handlers_the_same_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A clean record is not touched (its msg/args stay for other handlers)."""
    with caplog.at_level(logging.INFO), flow.start("order", tenant="acme"):
        logging.getLogger("app").info("plain %s", "args")
    record = next(r for r in caplog.records if r.name == "app")
    assert (record.msg, record.args) == ("plain %s", ("args",))
