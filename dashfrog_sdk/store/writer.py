"""Write converted batches into the SQLite flow store, and keep it bounded.

One :class:`StoreWriter` is shared by the span and log exporters of a process. Each batch is one
``BEGIN IMMEDIATE`` transaction, so several processes (an API and its Celery worker) can write
the same file at once: SQLite's WAL and busy timeout queue them. A locked, unwritable or corrupt
store never raises: :meth:`StoreWriter.write` returns ``False`` and logs one warning until a
write succeeds again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from typing import Any

from dashfrog_sdk import diagnostics
from dashfrog_sdk.status import sql_rank
from dashfrog_sdk.store import schema
from dashfrog_sdk.store.convert import Batch, FlowRow, label_text

_log = logging.getLogger("dashfrog_sdk.store")
WRITE_ERRORS = "store.write_errors"  # diagnostics counter of failed writes

RETENTION_EVERY_S = 60.0
RETENTION_EVERY_FLOWS = 2_000

# Several records end a flow that crosses processes (the API's flow span, a worker's flow.end
# event, a downstream failure), in any order: status, end and error follow dashfrog_sdk.status
# (failed > cancelled > completed > running; the latest end), not the order of arrival.
_UPSERT_FLOW = """
INSERT INTO flows (flow_id, name, tenant, parent_id, status, start_ns, end_ns, timeout_s,
                   deadline_ns, end_on_exit, trace_id, span_id, service, error_type,
                   error_message, labels, seen_ns)
VALUES (:flow_id, :name, :tenant, :parent_id, COALESCE(:status, 'running'), :start_ns, :end_ns,
        :timeout_s, :start_ns + CAST(:timeout_s * 1e9 AS INTEGER), :end_on_exit, :trace_id,
        :span_id, :service, :error_type, :error_message, :labels, :seen_ns)
ON CONFLICT (flow_id) DO UPDATE SET
    name = COALESCE(flows.name, excluded.name),
    tenant = COALESCE(flows.tenant, excluded.tenant),
    parent_id = COALESCE(flows.parent_id, excluded.parent_id),
    start_ns = MIN(COALESCE(flows.start_ns, excluded.start_ns),
                   COALESCE(excluded.start_ns, flows.start_ns)),
    status = CASE WHEN {new_rank} > {old_rank} THEN excluded.status ELSE flows.status END,
    end_ns = CASE WHEN excluded.status = 'running' THEN flows.end_ns
                  ELSE MAX(COALESCE(flows.end_ns, excluded.end_ns),
                           COALESCE(excluded.end_ns, flows.end_ns)) END,
    error_type = CASE WHEN {new_rank} > {old_rank}
                           OR ({new_rank} = {old_rank} AND flows.error_type IS NULL)
                      THEN excluded.error_type ELSE flows.error_type END,
    error_message = CASE WHEN {new_rank} > {old_rank}
                              OR ({new_rank} = {old_rank} AND flows.error_type IS NULL)
                         THEN excluded.error_message ELSE flows.error_message END,
    timeout_s = COALESCE(flows.timeout_s, excluded.timeout_s),
    deadline_ns = MIN(COALESCE(flows.start_ns, excluded.start_ns),
                      COALESCE(excluded.start_ns, flows.start_ns))
                  + CAST(COALESCE(flows.timeout_s, excluded.timeout_s) * 1e9 AS INTEGER),
    end_on_exit = COALESCE(flows.end_on_exit, excluded.end_on_exit),
    trace_id = COALESCE(flows.trace_id, excluded.trace_id),
    span_id = COALESCE(flows.span_id, excluded.span_id),
    service = COALESCE(flows.service, excluded.service),
    labels = CASE WHEN flows.labels = '{}' THEN excluded.labels ELSE flows.labels END,
    seen_ns = excluded.seen_ns
""".replace("{new_rank}", sql_rank("excluded.status")).replace(
    "{old_rank}", sql_rank("flows.status")
)

_INSERT_LABEL = "INSERT OR IGNORE INTO flow_labels (flow_id, key, value) VALUES (?, ?, ?)"

# A step's span is authoritative; its start event only fills a row until the span arrives.
_UPSERT_STEP = """
INSERT INTO steps (span_id, flow_id, trace_id, parent_span_id, name, service, status, optional,
                   start_ns, end_ns, error_type, error_message, attributes)
VALUES (:span_id, :flow_id, :trace_id, :parent_span_id, :name, :service, :status, :optional,
        :start_ns, :end_ns, :error_type, :error_message, :attributes)
ON CONFLICT (span_id) DO UPDATE SET
    trace_id = COALESCE(excluded.trace_id, steps.trace_id),
    parent_span_id = COALESCE(excluded.parent_span_id, steps.parent_span_id),
    service = COALESCE(steps.service, excluded.service),
    status = CASE WHEN excluded.status != 'running' THEN excluded.status ELSE steps.status END,
    optional = MAX(steps.optional, excluded.optional),
    start_ns = CASE WHEN excluded.status != 'running' THEN excluded.start_ns
                    ELSE COALESCE(steps.start_ns, excluded.start_ns) END,
    end_ns = COALESCE(excluded.end_ns, steps.end_ns),
    error_type = COALESCE(excluded.error_type, steps.error_type),
    error_message = COALESCE(excluded.error_message, steps.error_message),
    attributes = CASE WHEN excluded.attributes != '{}' THEN excluded.attributes
                      ELSE steps.attributes END
"""

_INSERT_SPAN = """
INSERT OR REPLACE INTO spans (span_id, flow_id, trace_id, parent_span_id, name, kind, service,
                              start_ns, end_ns, error)
VALUES (:span_id, :flow_id, :trace_id, :parent_span_id, :name, :kind, :service, :start_ns,
        :end_ns, :error)
"""

_INSERT_EVENT = """
INSERT INTO events (flow_id, name, ts_ns, service, trace_id, span_id, step_name, attributes)
VALUES (:flow_id, :name, :ts_ns, :service, :trace_id, :span_id, :step_name, :attributes)
"""

_INSERT_LOG = """
INSERT INTO logs (flow_id, ts_ns, severity, body, logger, step_name, service, trace_id, span_id,
                  attributes)
VALUES (:flow_id, :ts_ns, :severity, :body, :logger, :step_name, :service, :trace_id, :span_id,
        :attributes)
"""

_CHILD_TABLES = ("flow_labels", "steps", "spans", "events", "logs")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _is_placeholder(row: FlowRow) -> bool:
    """A row that only says "this flow exists" (from a step, a log, any span inside it)."""
    return row.status is None and row.service is None and row.timeout_s is None


def _flow_rows(rows: list[FlowRow]) -> list[FlowRow]:
    """Fold the batch's placeholder rows into one per flow; keep the others in order."""
    kept: list[FlowRow] = []
    placeholders: dict[str, FlowRow] = {}
    for row in rows:
        if not _is_placeholder(row):
            kept.append(row)
            continue
        seen = placeholders.get(row.flow_id)
        if seen is None:
            placeholders[row.flow_id] = row
            kept.append(row)
        elif row.start_ns is not None and (seen.start_ns is None or row.start_ns < seen.start_ns):
            seen.start_ns = row.start_ns
    return kept


class StoreWriter:
    """Thread-safe writer of one store file, opened lazily on the first write."""

    def __init__(
        self,
        path: str,
        *,
        max_age_s: float | None = None,
        max_flows: int | None = None,
        retention_every_s: float = RETENTION_EVERY_S,
        retention_every_flows: int = RETENTION_EVERY_FLOWS,
    ) -> None:
        self.path = os.fspath(path)
        self.max_age_s = max_age_s
        self.max_flows = max_flows
        self.retention_every_s = retention_every_s
        self.retention_every_flows = retention_every_flows
        self.failures = 0  # failed writes, for tests and diagnostics
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._warned = False
        self._flows_since_retention = 0
        self._last_retention = time.monotonic()

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            conn = schema.connect(self.path, create=True)
            try:
                schema.migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def report_failure(self, exc: BaseException) -> None:
        """Count a failed write, in `stats()["diagnostics"]["store.write_errors"]` too; warn
        once per writer (it names the store's path) until a write succeeds again."""
        self.failures += 1
        diagnostics.count(WRITE_ERRORS)
        if not self._warned:
            self._warned = True
            _log.warning(
                "dashfrog flow store %s: write failed (%s: %s); flows are not being stored "
                "until it succeeds again",
                self.path,
                type(exc).__name__,
                exc,
            )

    def _fail(self, exc: BaseException) -> bool:
        self.report_failure(exc)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        return False

    # -- writes ----------------------------------------------------------------------------
    def write(self, batch: Batch) -> bool:
        """Write a batch in one transaction; ``False`` (and one warning) if it could not."""
        if not len(batch):
            return True
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    flows = self._write(conn, batch)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                self._warned = False
                self._flows_since_retention += flows
                if self._retention_due():
                    self._retain(conn)
                return True
            except (sqlite3.Error, OSError, schema.SchemaError, ValueError, TypeError) as exc:
                return self._fail(exc)

    def _write(self, conn: sqlite3.Connection, batch: Batch) -> int:
        now = time.time_ns()
        flows = _flow_rows(batch.flows)
        conn.executemany(
            _UPSERT_FLOW,
            [
                {
                    **{k: v for k, v in vars(r).items() if k not in ("labels", "end_on_exit")},
                    "end_on_exit": None if r.end_on_exit is None else int(r.end_on_exit),
                    "labels": _dumps(r.labels),
                    "seen_ns": now,
                }
                for r in flows
            ],
        )
        labels = {(r.flow_id, k): label_text(v) for r in flows for k, v in r.labels.items()}
        if labels:
            conn.executemany(_INSERT_LABEL, [(f, k, v) for (f, k), v in labels.items()])
        if batch.steps:
            conn.executemany(
                _UPSERT_STEP,
                [
                    {
                        **vars(s),
                        "optional": int(s.optional),
                        "attributes": _dumps(s.attributes),
                    }
                    for s in batch.steps
                ],
            )
        if batch.spans:
            conn.executemany(
                _INSERT_SPAN, [{**vars(s), "error": int(s.error)} for s in batch.spans]
            )
        if batch.events:
            conn.executemany(
                _INSERT_EVENT,
                [{**vars(e), "attributes": _dumps(e.attributes)} for e in batch.events],
            )
        if batch.logs:
            conn.executemany(
                _INSERT_LOG, [{**vars(r), "attributes": _dumps(r.attributes)} for r in batch.logs]
            )
        return len({r.flow_id for r in flows})

    # -- retention -------------------------------------------------------------------------
    def _retention_due(self) -> bool:
        if self.max_age_s is None and self.max_flows is None:
            return False
        return (
            self._flows_since_retention >= self.retention_every_flows
            or time.monotonic() - self._last_retention >= self.retention_every_s
        )

    def apply_retention(self) -> int:
        """Delete flows older than ``max_age_s`` and the oldest beyond ``max_flows`` now."""
        with self._lock:
            try:
                return self._retain(self._connection())
            except (sqlite3.Error, OSError, schema.SchemaError) as exc:
                self._fail(exc)
                return 0

    def _retain(self, conn: sqlite3.Connection) -> int:
        self._flows_since_retention = 0
        self._last_retention = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (flow_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM doomed")
            if self.max_age_s is not None:
                cutoff = time.time_ns() - int(self.max_age_s * 1e9)
                conn.execute(
                    "INSERT OR IGNORE INTO doomed SELECT flow_id FROM flows WHERE seen_ns < ?",
                    (cutoff,),
                )
            if self.max_flows is not None:
                (count,) = conn.execute("SELECT COUNT(*) FROM flows").fetchone()
                (already,) = conn.execute("SELECT COUNT(*) FROM doomed").fetchone()
                excess = count - already - self.max_flows
                if excess > 0:
                    conn.execute(
                        "INSERT OR IGNORE INTO doomed SELECT flow_id FROM flows "
                        "WHERE flow_id NOT IN doomed ORDER BY seen_ns, start_ns LIMIT ?",
                        (excess,),
                    )
            (deleted,) = conn.execute("SELECT COUNT(*) FROM doomed").fetchone()
            if deleted:
                for table in _CHILD_TABLES:
                    conn.execute(f"DELETE FROM {table} WHERE flow_id IN doomed")
                conn.execute("DELETE FROM flows WHERE flow_id IN doomed")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(deleted)
