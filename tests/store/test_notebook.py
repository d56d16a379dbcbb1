"""examples/notebooks/tenant_report.ipynb, executed with nbclient on a real kernel against both
backends: the SQLite store the real SDK wrote, and ClickHouse over HTTP (clickhouse-connect to a
ClickHouse endpoint executing in chDB) with the same kind of flows."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.store.conftest import DemoStore
from tests.store.test_clickhouse import http_db  # noqa: F401 - the ClickHouse endpoint fixture
from tests.support import ROOT
from tests.support.clickhouse import ChDatabase

NOTEBOOK = ROOT / "examples" / "notebooks" / "tenant_report.ipynb"


def _run(monkeypatch: pytest.MonkeyPatch, store: str, tenant: str) -> str:
    monkeypatch.setenv("DASHFROG_READ_STORE", store)
    monkeypatch.setenv("REPORT_TENANT", tenant)
    monkeypatch.setenv("REPORT_SINCE", "1d")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    last = nb.cells[-1]
    return "".join(
        o.get("text", "") for o in last.get("outputs", []) if o["output_type"] == "stream"
    )


def test_report_on_the_sqlite_store(monkeypatch: pytest.MonkeyPatch, demo_store: DemoStore) -> None:
    report = _run(monkeypatch, str(demo_store.path), "acme-corp")
    assert report.startswith("Tenant acme-corp, flows since 1d:")
    assert "order_processing: 2 flows, failure rate 50.0 %" in report
    assert "1 order_processing flow(s) failed at charge (ValueError)" in report


def test_report_on_clickhouse(
    monkeypatch: pytest.MonkeyPatch,
    http_db: tuple[ChDatabase, int, dict[str, Any]],  # noqa: F811
) -> None:
    _, port, _ = http_db
    report = _run(monkeypatch, f"clickhouse://127.0.0.1:{port}/otel", "acme-corp")
    assert report.startswith("Tenant acme-corp, flows since 1d: 2 (1 failed or timed out, 50.0 %")
    assert "order_processing: 2 flows, failure rate 50.0 %" in report
    assert "1 order_processing flow(s) failed at charge (ValueError)" in report
