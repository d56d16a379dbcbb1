"""A flow's timeout is a positive, finite number of seconds: anything else is refused at the call,
and a bad one arriving at run time (baggage from another process, a row an older version wrote)
never crashes `dashfrog flow`, `--markdown` or `tail --once`."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from dashfrog_sdk import flow
from tests.store.conftest import run_cli, run_flowapp

BAD = [math.inf, -math.inf, math.nan, -1, 0, 1e300, 10**400, True, "60"]


@pytest.mark.parametrize("value", BAD, ids=lambda v: repr(v)[:12])
def test_bad_timeout_is_refused_at_the_call(value: object) -> None:
    with pytest.raises((ValueError, TypeError), match=r"flow.start\(\): timeout must be"):
        flow.start("o", tenant="t", timeout=value)  # type: ignore[arg-type]


def test_good_timeouts_are_accepted() -> None:
    for value in (0.001, 1, 600, 30 * 24 * 3600):
        flow.start("o", tenant="t", timeout=value)


def _cli_ok(store: Path, *args: str) -> str:
    proc = run_cli(*args, "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
    return proc.stdout


def test_a_timeout_from_baggage_that_is_not_finite_is_ignored(tmp_path: Path) -> None:
    """A caller (another version, a hand-written client) sends `timeout_s=inf` in baggage: the
    worker joins the flow without a timeout, and the store and CLI show it."""
    store = tmp_path / "flows.db"
    started = json.loads(run_flowapp("start_remote", store=store))
    carrier = started["carrier"]
    assert "dashfrog.flow.timeout_s" not in carrier["baggage"]
    carrier["baggage"] += ",dashfrog.flow.timeout_s=inf"
    run_flowapp("finish_remote", json.dumps(carrier), store=store, service="worker")
    fid = started["flow_id"]
    for args in (("flow", fid), ("flow", fid, "--markdown"), ("tail", "--once")):
        _cli_ok(store, *args)
    with sqlite3.connect(store) as db:
        (timeout,) = db.execute("SELECT timeout_s FROM flows WHERE flow_id = ?", (fid,)).fetchone()
    assert timeout is None


@pytest.mark.parametrize("stored", [math.inf, math.nan, 1e300])
def test_a_stored_bad_timeout_does_not_crash_the_cli(tmp_path: Path, stored: float) -> None:
    """A store written by an older version, which accepted `timeout=float("inf")`."""
    store = tmp_path / "flows.db"
    fid = json.loads(run_flowapp("timeout", store=store))["flow_id"]
    with sqlite3.connect(store) as db:
        db.execute("UPDATE flows SET timeout_s = ?, deadline_ns = NULL", (stored,))
    for args in (("flow", fid), ("flow", fid, "--markdown"), ("tail", "--once"), ("flows",)):
        out = _cli_ok(store, *args)
        assert fid[:8] in out
