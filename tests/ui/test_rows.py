"""The flows table's row cache (ui/rows.py): a kept row is what rendering it again gives."""

from __future__ import annotations

import dataclasses
import time

from dashfrog_sdk.store import Flow
from dashfrog_sdk.store.model import Progress
from dashfrog_sdk.ui.app import _templates
from dashfrog_sdk.ui.rows import RowCache

NOW = time.time_ns()
HOSTILE = "<script>alert(1)</script>\"'&\x00"


def _flow(**changes: object) -> Flow:
    now = NOW
    base = Flow(
        id="ab" * 16,
        name="order",
        tenant="acme",
        status="running",
        labels={"region": "eu"},
        start_ns=now - 65 * 10**9,
        end_ns=None,
        duration_ms=65_000.0,
        parent_id=None,
        service="api",
        trace_id=None,
        span_id=None,
        timeout_s=None,
        error_type=None,
        error_message=None,
        current_step="charge",
        current_progress=Progress(done=4, total=10, message="rows", ts_ns=now),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _cache() -> RowCache:
    return RowCache(_templates().env)


def test_cached_rows_equal_fresh_rendering() -> None:
    flows = [
        _flow(),
        _flow(
            id="cd" * 16,
            status="failed",
            end_ns=time.time_ns(),
            duration_ms=1234.5,
            error_type="CardDeclined",
            error_message=HOSTILE,
            current_progress=None,
        ),
        _flow(id="ef" * 16, name=HOSTILE, tenant=HOSTILE, labels={HOSTILE: HOSTILE}),
    ]
    wheres = [None, ("charge", "billing"), (HOSTILE, HOSTILE)]
    kept = _cache()
    for tenant_view in (None, "acme"):
        for f, where in zip(flows, wheres, strict=True):
            url = f"/flows/{f.id}"
            first = kept.row(f, where, url, tenant_view)
            again = kept.row(f, where, url, tenant_view)
            fresh = _cache().row(f, where, url, tenant_view)
            assert first == again == fresh
            assert "<script>" not in fresh
            if HOSTILE in (f.name, f.error_message):
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fresh
    assert kept.rendered == 6  # each (flow, view) once; the second asks came from the cache


def test_a_running_rows_elapsed_time_is_fresh_while_the_rest_is_kept() -> None:
    kept = _cache()
    early = kept.row(_flow(duration_ms=65_000.0), None, "/flows/x", None)
    later = kept.row(_flow(duration_ms=125_000.0), None, "/flows/x", None)
    assert kept.rendered == 1
    assert "1m 05s" in early and "2m 05s" in later
    assert later == _cache().row(_flow(duration_ms=125_000.0), None, "/flows/x", None)


def test_a_change_of_anything_shown_renders_the_row_again() -> None:
    kept = _cache()
    kept.row(_flow(), None, "/flows/x", None)
    for changed in (
        _flow(current_step="ship"),
        _flow(current_progress=Progress(done=5, total=10, message="rows", ts_ns=1)),
        _flow(status="completed", end_ns=time.time_ns(), duration_ms=70_000.0),
        _flow(labels={"region": "us"}),
        _flow(labels={"region": "us", "n": 1}),
        _flow(labels={"region": "us", "n": True}),  # equal to 1 as a key, shown otherwise
        _flow(name="refund"),
    ):
        row = kept.row(changed, None, "/flows/x", None)
        assert row == _cache().row(changed, None, "/flows/x", None)
    assert kept.rendered == 8


def test_the_cache_is_bounded() -> None:
    kept = RowCache(_templates().env, size=10)
    for i in range(50):
        kept.row(_flow(id=f"{i:032x}"), None, f"/flows/{i}", None)
    assert len(kept._rows) == 10
