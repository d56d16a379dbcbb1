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
import re
import sqlite3
import threading
import time
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.status import sql_rank
from dashfrog_sdk.store import schema, tails
from dashfrog_sdk.store.convert import Batch, FlowRow, ProgressRow, StepRow, label_text

_log = logging.getLogger("dashfrog_sdk.store")
WRITE_ERRORS = "store.write_errors"  # diagnostics counter of failed writes

RETENTION_EVERY_S = 60.0
RETENTION_EVERY_FLOWS = 2_000
# Flows deleted per retention transaction: ~30 ms of write lock on an idle machine, 4 s at most
# for 1,000 at load average 19 (benchmarks/store.py), against a 10 s busy timeout.
RETENTION_SLICE = 500

# Several records end a flow that crosses processes (the API's flow span, a worker's flow.end
# event, a downstream failure), in any order: status, end and error follow dashfrog_sdk.status
# (failed > cancelled > completed > running; the latest end), not the order of arrival.
# Numbered parameters, bound from a tuple in `_flow_params`' order (a dict per row, bound by
# name, cost about 4 µs a flow more).
_FLOW_COLUMNS = """
INSERT INTO flows (flow_id, name, tenant, parent_id, status, start_ns, end_ns, timeout_s,
                   deadline_ns, end_on_exit, trace_id, span_id, service, error_type,
                   error_message, labels, seen_ns)
VALUES """
_FLOW_VALUES = (
    "(?1, ?2, ?3, ?4, COALESCE(?5, 'running'), ?6, ?7, ?8, ?6 + CAST(?8 * 1e9 AS INTEGER), "
    "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
)
_UPSERT_FLOW = """
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

# `started` here, not by the schema's trigger (which fills it for writers that leave it out):
# one UPDATE less per label.
_LABEL_COLUMNS = "INSERT OR IGNORE INTO flow_labels (flow_id, key, value, started) VALUES "
_LABEL_VALUES = "(?1, ?2, ?3, (SELECT start_ns FROM flows WHERE flow_id = ?1))"

# Which of two progress values of a step is the later one (each says when it was recorded).
_NEWER_PROGRESS = (
    "excluded.progress_ns IS NOT NULL "
    "AND (steps.progress_ns IS NULL OR excluded.progress_ns >= steps.progress_ns)"
)

# A step's span is authoritative; its start event only fills a row until the span arrives.
_STEP_COLUMNS = """
INSERT INTO steps (span_id, flow_id, trace_id, parent_span_id, name, service, status, optional,
                   start_ns, end_ns, error_type, error_message, attributes, progress_done,
                   progress_total, progress_message, progress_ns)
VALUES """
_STEP_VALUES = "(" + ", ".join(f"?{i}" for i in range(1, 18)) + ")"
_UPSERT_STEP = """
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
    attributes = CASE WHEN excluded.attributes != '{}'
                           AND (excluded.status != 'running' OR steps.status = 'running')
                      THEN excluded.attributes ELSE steps.attributes END,
    {progress}
"""

_UPSERT_STEP = _UPSERT_STEP.replace(
    "{progress}",
    ",\n    ".join(
        f"{column} = CASE WHEN {_NEWER_PROGRESS} THEN excluded.{column} ELSE steps.{column} END"
        for column in ("progress_done", "progress_total", "progress_message", "progress_ns")
    ),
)

# A progress event: the running step's latest value, unless its row already has a later one
# (the span's last value, written at its end). A step with no row yet (its start event was not
# sent) gets its last value from its span.
_UPDATE_PROGRESS = """
UPDATE steps SET progress_done = :done, progress_total = :total, progress_message = :message,
                 progress_ns = :ts_ns
WHERE span_id = :span_id AND (progress_ns IS NULL OR progress_ns <= :ts_ns)
"""

# One row per step and name; the latest value of a name wins.
_UPSERT_ARTIFACT = """
INSERT INTO artifacts (span_id, name, flow_id, step_name, service, ts_ns, value)
VALUES (:span_id, :name, :flow_id, :step_name, :service, :ts_ns, :value)
ON CONFLICT (span_id, name) DO UPDATE SET
    value = excluded.value, ts_ns = excluded.ts_ns
WHERE excluded.ts_ns >= artifacts.ts_ns
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

# Rows per INSERT statement for flows, steps and labels: one multi-row VALUES statement upserts
# its rows one after the other, as executemany's statement per row does (a later row of the
# same key meets the earlier one's row: SQLite inserts VALUES rows in order), but with one
# sqlite3_step, so one release of the GIL, per statement instead of per row: a release while
# another thread wants the GIL hands it over, and the writer waits to get it back. 50 rows
# of 17 values stay under the smallest variable limit SQLite builds use (999).
# tests/store/test_tail_changes.py (test_multi_row_statements_equal_one_row_statements)
# checks the store equals what one row per statement writes.
ROWS_PER_STATEMENT = 50
_PARAM = re.compile(r"\?(\d+)")
_statements: dict[tuple[str, int], str] = {}


def _statement(head: str, values: str, tail: str, width: int, rows: int) -> str:
    """`head` + `rows` copies of `values` (its ?N numbered for row i as ?(N + width * i)) +
    `tail`; kept per shape (a handful: see `_upsert_rows`)."""
    key = (head, rows)
    sql = _statements.get(key)
    if sql is None:
        copies = []
        for i in range(rows):

            def number(m: re.Match[str], shift: int = width * i) -> str:
                return f"?{int(m.group(1)) + shift}"

            copies.append(_PARAM.sub(number, values))
        sql = _statements[key] = head + ", ".join(copies) + tail
    return sql


def _upsert_rows(
    conn: sqlite3.Connection,
    head: str,
    values: str,
    tail: str,
    rows: list[tuple[Any, ...]],
) -> None:
    """Write `rows` as ``executemany(head + values + tail, rows)`` would, in statements of up
    to ROWS_PER_STATEMENT rows: full ones, then the rest by powers of two (a few statement
    shapes, all kept in sqlite3's statement cache)."""
    if not rows:
        return
    width = len(rows[0])
    size = ROWS_PER_STATEMENT
    i = 0
    while i < len(rows):
        n = min(size, len(rows) - i)
        if n < size:
            n = 1 << (n.bit_length() - 1)  # the largest power of two that fits
        chunk = rows[i : i + n]
        conn.execute(_statement(head, values, tail, width, n), [v for row in chunk for v in row])
        i += n


_CHILD_TABLES = ("flow_labels", "steps", "spans", "events", "logs", "artifacts")

# Counter in dashfrog_sdk.stats()["diagnostics"] (and WRITE_ERRORS above).
REOPENED = "store.reopened"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# `_dumps` without building an encoder per call (json.dumps with options builds a JSONEncoder
# and its C encoder every time: 3 µs for a two-label dict, 0.8 µs this way), and "{}" for
# the empty attributes of most steps. Bypasses json.dumps' circular-reference check: what is
# encoded here comes out of convert.jsonable, a tree. tests/store/test_load.py
# (test_fast_json_equals_json_dumps) checks it gives what `_dumps` gives.
def _c_encoder() -> Any:
    """json's C encoder with `_dumps`' options, or None (no C accelerator, or one whose
    arguments or output differ in this Python: checked once here)."""
    if c_make_encoder is None:
        return None
    sample = {"é": [1, 2.5, float("inf"), None, True, {"k": "\n"}], "o": object()}
    try:
        encode = c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
        ok = "".join(encode(sample, 0)) == _dumps(sample)
    except (TypeError, ValueError):
        return None
    return encode if ok else None


_encode = _c_encoder()


def _json(value: dict[str, Any]) -> str:
    if not value:
        return "{}"
    if _encode is None:
        return _dumps(value)
    return "".join(_encode(value, 0))


def _fill(into: FlowRow, row: FlowRow) -> None:
    """Give `into` what `row` (written after it) says and it does not: the upsert's COALESCE,
    where the earlier value wins; the earliest start; the first non-empty labels."""
    # Attribute by attribute rather than a loop over _FLOW_IDENTITY's names with getattr and
    # setattr: three records of each flow fold into its row here (about 2 µs a flow less).
    if into.name is None:
        into.name = row.name
    if into.tenant is None:
        into.tenant = row.tenant
    if into.parent_id is None:
        into.parent_id = row.parent_id
    if into.timeout_s is None:
        into.timeout_s = row.timeout_s
    if into.end_on_exit is None:
        into.end_on_exit = row.end_on_exit
    if into.trace_id is None:
        into.trace_id = row.trace_id
    if into.span_id is None:
        into.span_id = row.span_id
    if into.service is None:
        into.service = row.service
    if row.start_ns is not None and (into.start_ns is None or row.start_ns < into.start_ns):
        into.start_ns = row.start_ns
    if not into.labels:
        into.labels = row.labels


_FLOW_IDENTITY = (
    "name",
    "tenant",
    "parent_id",
    "timeout_s",
    "end_on_exit",
    "trace_id",
    "span_id",
    "service",
)


def _coalesce_flows(rows: list[FlowRow]) -> list[FlowRow]:
    """The batch's flow rows, one per flow wherever that reaches the same result as upserting
    each in turn (tests/store/test_load.py::test_coalesced_writes_equal_row_by_row_writes).

    A row without a status (a start event, a step's or any span's "this flow exists") folds
    into the flow's previous row, or takes that row's place with the previous row's values
    winning. Two rows that both carry a status (two ends) stay two upserts: which end wins is
    the upsert's rule, stated once, in SQL.
    """
    kept: list[FlowRow] = []
    last: dict[str, FlowRow] = {}
    for row in rows:
        prev = last.get(row.flow_id)
        if prev is None:
            last[row.flow_id] = row
            kept.append(row)
        elif row.status is None:
            _fill(prev, row)
        elif prev.status is None:
            _fill(prev, row)
            prev.status, prev.end_ns = row.status, row.end_ns
            prev.error_type, prev.error_message = row.error_type, row.error_message
        else:
            last[row.flow_id] = row
            kept.append(row)
    return kept


def _coalesce_steps(rows: list[StepRow]) -> list[StepRow]:
    """One row per step span id, merged exactly as ``_UPSERT_STEP`` merges a later row into an
    earlier one (so writing the merged row equals upserting both in turn)."""
    merged: dict[str, StepRow] = {}
    for row in rows:
        prev = merged.get(row.span_id)
        if prev is None:
            merged[row.span_id] = row
            continue
        ended = row.status != c.RUNNING
        # A start event's attributes (a step's attempt) never replace its span's.
        keeps = prev.status != c.RUNNING and not ended
        if row.trace_id is not None:
            prev.trace_id = row.trace_id
        if row.parent_span_id is not None:
            prev.parent_span_id = row.parent_span_id
        if prev.service is None:
            prev.service = row.service
        prev.optional = prev.optional or row.optional
        if ended or prev.start_ns is None:
            prev.start_ns = row.start_ns
        if ended:
            prev.status = row.status
        if row.end_ns is not None:
            prev.end_ns = row.end_ns
        if row.error_type is not None:
            prev.error_type = row.error_type
        if row.error_message is not None:
            prev.error_message = row.error_message
        if row.attributes and not keeps:
            prev.attributes = row.attributes
        if row.progress_ns is not None and (
            prev.progress_ns is None or row.progress_ns >= prev.progress_ns
        ):
            prev.progress_done, prev.progress_total = row.progress_done, row.progress_total
            prev.progress_message, prev.progress_ns = row.progress_message, row.progress_ns
    return list(merged.values())


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
        self.retryable = True  # whether the last failure may pass (locked, full, replaced)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file we opened
        self._warned = False
        self._flows_since_retention = 0
        self._last_retention = time.monotonic()
        self._retention_owed = False  # a pass stopped at its slice: more to delete
        self._last_advance = -tails.ADVANCE_EVERY_S  # the first write moves the tails' edges

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and not self._same_file():
            self._reopen()
        if self._conn is None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            conn = schema.connect(self.path, create=True)
            try:
                schema.migrate(conn)
                st = os.stat(self.path)
            except BaseException:
                conn.close()
                raise
            self._conn, self._file = conn, (st.st_dev, st.st_ino)
        return self._conn

    def _same_file(self) -> bool:
        """Whether the path still names the file we opened (one stat per batch).

        A store deleted or replaced under a running process (``rm``, a restore, ``mv``) would
        otherwise take every later write into the unlinked file, and lose it silently.
        """
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._file

    def _reopen(self) -> None:
        diagnostics.report(
            REOPENED,
            "dashfrog flow store %s was deleted or replaced while this process was writing "
            "it; writing to the file now at that path",
            self.path,
        )
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = self._file = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connection (never use one across fork)."""
        self._lock = threading.Lock()
        self._conn = self._file = None

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
        self.retryable = isinstance(exc, (sqlite3.OperationalError, OSError))
        self._close()
        return False

    # -- writes ----------------------------------------------------------------------------
    def write(self, batch: Batch, *, forget: list[str] | None = None) -> bool:
        """Write a batch in one transaction; ``False`` (and one warning) if it could not.

        `forget`: flows to delete in the same transaction (flows the store queue dropped).
        """
        if not len(batch) and not forget:
            return True
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    flows = self._write(conn, batch)
                    if forget:
                        self._forget(conn, forget)
                    if flows or forget:
                        tails.fold(conn)  # what the triggers logged, into the stats tails
                    conn.execute("COMMIT")
                except BaseException:
                    # Not a bare ROLLBACK: after a full disk SQLite has rolled back already,
                    # and "cannot rollback - no transaction is active" hid the real error.
                    schema.rollback(conn)
                    raise
            except (sqlite3.Error, OSError, schema.SchemaError, ValueError, TypeError) as exc:
                return self._fail(exc)
            self._warned = False
            self._flows_since_retention += flows
            if self._retention_due():
                # The batch is committed: a failed retention pass is reported, never retried
                # as the batch (its events would be written twice).
                try:
                    self._retain(conn)
                except (sqlite3.Error, OSError) as exc:
                    self.report_failure(exc)
                    self._close()
            self._advance_tails()
            return True

    def _advance_tails(self) -> None:
        """Move the stats tails' edges with the clock (store/tails.py), at most every
        ``tails.ADVANCE_EVERY_S``, in a transaction of its own after the batch's."""
        now = time.monotonic()
        if self._conn is None or now - self._last_advance < tails.ADVANCE_EVERY_S:
            return
        self._last_advance = now
        try:
            tails.advance(self._conn)
        except (sqlite3.Error, OSError) as exc:
            self.report_failure(exc)
            self._close()

    def _forget(self, conn: sqlite3.Connection, flow_ids: list[str]) -> None:
        rows = [(f,) for f in flow_ids]
        for table in _CHILD_TABLES:
            conn.executemany(f"DELETE FROM {table} WHERE flow_id = ?", rows)
        conn.executemany("DELETE FROM flows WHERE flow_id = ?", rows)

    def _seen_base(self, conn: sqlite3.Connection) -> int:
        """The first ``seen_ns`` of this write: later than every row already committed.

        Writes are serialised by the write lock, so stamping each flow row with a distinct
        value above the store's maximum makes ``seen_ns`` a commit-ordered change sequence
        across processes (their clocks may disagree): ``FlowStore.changes`` pages through it
        exactly, however many flows changed at once.
        """
        (latest,) = conn.execute("SELECT MAX(seen_ns) FROM flows").fetchone()
        now = time.time_ns()
        return now if latest is None or latest < now else int(latest) + 1

    def _write(self, conn: sqlite3.Connection, batch: Batch) -> int:
        flows = _coalesce_flows(batch.flows)
        seen = self._seen_base(conn) if flows else 0
        _upsert_rows(
            conn,
            _FLOW_COLUMNS,
            _FLOW_VALUES,
            _UPSERT_FLOW,
            [
                (
                    r.flow_id,
                    r.name,
                    r.tenant,
                    r.parent_id,
                    r.status,
                    r.start_ns,
                    r.end_ns,
                    r.timeout_s,
                    None if r.end_on_exit is None else int(r.end_on_exit),
                    r.trace_id,
                    r.span_id,
                    r.service,
                    r.error_type,
                    r.error_message,
                    _json(r.labels),
                    seen + i,
                )
                for i, r in enumerate(flows)
            ],
        )
        labels = {(r.flow_id, k): label_text(v) for r in flows for k, v in r.labels.items()}
        if labels:
            _upsert_rows(
                conn,
                _LABEL_COLUMNS,
                _LABEL_VALUES,
                "",
                [(f, k, v) for (f, k), v in labels.items()],
            )
        steps = _coalesce_steps(batch.steps)
        if steps:
            _upsert_rows(
                conn,
                _STEP_COLUMNS,
                _STEP_VALUES,
                _UPSERT_STEP,
                [
                    (
                        s.span_id,
                        s.flow_id,
                        s.trace_id,
                        s.parent_span_id,
                        s.name,
                        s.service,
                        s.status,
                        int(s.optional),
                        s.start_ns,
                        s.end_ns,
                        s.error_type,
                        s.error_message,
                        _json(s.attributes),
                        s.progress_done,
                        s.progress_total,
                        s.progress_message,
                        s.progress_ns,
                    )
                    for s in steps
                ],
            )
        if batch.progress:
            latest: dict[str, ProgressRow] = {}
            for p in batch.progress:
                if p.span_id not in latest or p.ts_ns >= latest[p.span_id].ts_ns:
                    latest[p.span_id] = p
            conn.executemany(_UPDATE_PROGRESS, [vars(p) for p in latest.values()])
        if batch.artifacts:
            conn.executemany(_UPSERT_ARTIFACT, [vars(a) for a in batch.artifacts])
        if batch.spans:
            conn.executemany(
                _INSERT_SPAN, [{**vars(s), "error": int(s.error)} for s in batch.spans]
            )
        if batch.events:
            conn.executemany(
                _INSERT_EVENT,
                [{**vars(e), "attributes": _json(e.attributes)} for e in batch.events],
            )
        if batch.logs:
            conn.executemany(
                _INSERT_LOG, [{**vars(r), "attributes": _json(r.attributes)} for r in batch.logs]
            )
        return len({r.flow_id for r in flows})

    # -- retention -------------------------------------------------------------------------
    def _retention_due(self) -> bool:
        if self.max_age_s is None and self.max_flows is None:
            return False
        return (
            self._retention_owed
            or self._flows_since_retention >= self.retention_every_flows
            or time.monotonic() - self._last_retention >= self.retention_every_s
        )

    def apply_retention(self) -> int:
        """Delete flows older than ``max_age_s`` and the oldest beyond ``max_flows`` now, slice
        by slice (each its own short transaction); return how many were deleted."""
        deleted = 0
        while True:
            with self._lock:
                try:
                    n = self._retain(self._connection())
                except (sqlite3.Error, OSError, schema.SchemaError) as exc:
                    self._fail(exc)
                    return deleted
            deleted += n
            if not self._retention_owed:
                return deleted

    def _retain(self, conn: sqlite3.Connection) -> int:
        """Delete one slice of at most ``RETENTION_SLICE`` flows, then give their pages back.

        One slice is one short transaction (tens of milliseconds), so another process's write
        never waits near its busy timeout: the first pass over an oversized store deleted
        902,000 flows in one 57 s transaction. What is left is owed, and deleted a slice per
        write until none is left.
        """
        self._flows_since_retention = 0
        self._last_retention = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        try:
            doomed: list[tuple[str]] = []
            if self.max_age_s is not None:
                cutoff = time.time_ns() - int(self.max_age_s * 1e9)
                doomed = conn.execute(
                    "SELECT flow_id FROM flows WHERE seen_ns < ? ORDER BY seen_ns LIMIT ?",
                    (cutoff, RETENTION_SLICE),
                ).fetchall()
            if self.max_flows is not None and len(doomed) < RETENTION_SLICE:
                (count,) = conn.execute("SELECT COUNT(*) FROM flows").fetchone()
                excess = min(count - len(doomed) - self.max_flows, RETENTION_SLICE - len(doomed))
                if excess > 0:
                    # The oldest by the same order the age bound uses; skipping what the age
                    # bound already chose (it is the oldest too, so an OFFSET is exact).
                    doomed += conn.execute(
                        "SELECT flow_id FROM flows ORDER BY seen_ns LIMIT ? OFFSET ?",
                        (excess, len(doomed)),
                    ).fetchall()
            if doomed:
                for table in _CHILD_TABLES:
                    conn.executemany(f"DELETE FROM {table} WHERE flow_id = ?", doomed)
                conn.executemany("DELETE FROM flows WHERE flow_id = ?", doomed)
                tails.fold(conn)
            conn.execute("COMMIT")
        except BaseException:
            schema.rollback(conn)
            raise
        self._retention_owed = len(doomed) >= RETENTION_SLICE
        if doomed:
            schema.give_back_space(conn)
        return len(doomed)
