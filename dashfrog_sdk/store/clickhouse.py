"""The flow store's query API over ClickHouse: the rollup that ``dashfrog clickhouse init``
creates from the collector's ``otel_traces`` / ``otel_logs``.

Same methods, arguments and result types as the SQLite :class:`dashfrog_sdk.store.FlowStore`
(see :class:`dashfrog_sdk.store.backend.FlowBackend`); ``FlowStore("clickhouse://...")`` and
``FlowStore("chdb:///...")`` return one of these. Differences that follow from the data:
attribute and label values come back as the strings the exporter stored (``"2"``, ``"true"``),
and a flow is listed once its span or its ``dashfrog.flow.start`` event has arrived.

Every query reads the rollup tables by their keys: a tenant's flows by (tenant, name, hour),
the flows of every tenant by (hour, flow_id) (migration 5's ``dashfrog_flows_by_hour``), ended
flows by status and labels by hour through migration 2's indexes (the candidates they give are
then read by the flows table's full key), a flow's steps, spans, events and logs by flow id;
nothing scans ``otel_traces`` or ``otel_logs`` (ARCHITECTURE.md, "Flows in ClickHouse").
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk.clickhouse import migrate
from dashfrog_sdk.clickhouse.connection import (
    ClickHouseError,
    Target,
    Transport,
    connect,
    literal,
    parse_url,
    redact,
)
from dashfrog_sdk.status import RANK
from dashfrog_sdk.store.convert import label_text
from dashfrog_sdk.store.errors import FlowNotFoundError, StoreError
from dashfrog_sdk.store.model import (
    Flow,
    FlowDetail,
    FlowDurations,
    FlowEvent,
    FlowStats,
    LabelValue,
    LogEntry,
    Progress,
    Results,
    SpanRecord,
    Step,
    artifact_value,
    step_options,
)
from dashfrog_sdk.timeutil import TimeArg, seconds, to_ns

# The rollup ranks statuses 1..4 in this order (sql/001_flow_rollup.sql, indexOf([...])): the
# highest one seen wins, status.RANK's precedence (tests/store/test_clickhouse.py checks the SQL).
RANKED_STATUSES = tuple(sorted(RANK, key=RANK.__getitem__))
# The rank of each ended status in dashfrog_flow_status (sql/002_flow_indexes.sql).
_ENDED_RANKS = {s: i + 1 for i, s in enumerate(RANKED_STATUSES) if i > 0}
# The oldest rollup these queries read (002: the status and label indexes and the step states;
# 003: progress and artifacts; 004: steps' options; 005: the flows keyed by time).
NEEDS_VERSION = 5
# Where a query without a tenant reads flows (sql/005_flows_by_hour.sql): the same rows as
# dashfrog_flows, keyed (hour, flow_id), so the newest flows of every tenant are neighbours.
_BY_TENANT = "dashfrog_flows"
_BY_HOUR = "dashfrog_flows_by_hour"

# Aggregates are named apart from the table's columns (f_*): an alias equal to a column name
# would be what WHERE sees, and made ClickHouse re-plan the query ten times slower.
_FLOW_ROWS = """
SELECT flow_id,
       anyIf(tenant, tenant != '') AS f_tenant,
       anyIf(name, name != '') AS f_name,
       toUnixTimestamp64Nano(min(start)) AS start_ns,
       max(outcome) AS f_outcome,
       max(parent_id) AS f_parent_id,
       max(service) AS f_service,
       max(trace_id) AS f_trace_id,
       max(span_id) AS f_span_id,
       max(timeout_s) AS f_timeout_s,
       anyIf(labels, notEmpty(labels)) AS f_labels
FROM {db}.{table}
WHERE """
_FLOW_ROWS_END = " GROUP BY flow_id"

# `stored` is the rollup's status; `status` adds timed_out (no end, deadline passed), as
# dashfrog_sdk.status.effective_status does for the SQLite store.
_STATUS = """
SELECT *,
       multiIf(f_outcome.1 = 4, 'failed', f_outcome.1 = 3, 'cancelled',
               f_outcome.1 = 2, 'completed', 'running') AS stored,
       if(stored = 'running' AND f_timeout_s > 0
          AND start_ns + toInt64(f_timeout_s * 1e9) < {{now}}, 'timed_out', stored) AS status
FROM ("""

_FLOWS_WHERE = ") WHERE "

_STEPS = """
SELECT span_id,
       argMax(name, final) AS name,
       argMax(service, final) AS service,
       argMax(status, final) AS status,
       toUnixTimestamp64Nano(argMax(start, final)) AS start_ns,
       argMax(end_ns, final) AS end_ns,
       max(optional) AS optional,
       argMax(error_type, final) AS error_type,
       argMax(error_message, final) AS error_message,
       argMax(attributes, final) AS attributes,
       argMax(parent_span_id, final) AS parent_span_id,
       argMax(trace_id, final) AS trace_id
FROM {db}.dashfrog_steps
WHERE flow_id = """
_STEPS_END = " GROUP BY span_id ORDER BY start_ns, span_id"

_CURRENT_STEPS = """
SELECT flow_id, argMax(name, start_ns) AS name, argMax(span_id, start_ns) AS span_id
FROM (
    SELECT flow_id, span_id, argMax(name, final) AS name, argMax(status, final) AS status,
           toUnixTimestamp64Nano(argMax(start, final)) AS start_ns
    FROM {db}.dashfrog_step_states
    WHERE flow_id IN """
_CURRENT_STEPS_END = """
    GROUP BY flow_id, span_id
)
WHERE status = 'running'
GROUP BY flow_id
"""

# The latest progress of each step span asked for (sql/003_step_progress_artifacts.sql).
_PROGRESS = """
SELECT span_id, argMax(done, ts) AS done, argMax(total, ts) AS total,
       argMax(message, ts) AS message, toUnixTimestamp64Nano(max(ts)) AS ts_ns
FROM {db}.dashfrog_step_progress
WHERE flow_id IN """
_PROGRESS_END = " GROUP BY span_id"


# Migration 1 copies every event but the starts into dashfrog_events: these are a step's.
_NOT_FLOW_EVENTS = literal(sorted(c.STEP_EVENTS))

# Everything of one flow but its own row and its steps, in one statement: each statement costs
# its planning on ClickHouse (10-25 ms on chDB) whatever it reads, and these six read a few
# rows each. Every branch has the same columns (`kind` says which table; `text1`, `text2`,
# `number` and `total` hold what only some kinds have: see `_records`).
_RECORD_COLUMNS = (
    "kind, span_id, name, ts_ns, end_ns, service, step_name, trace_id, attributes, "
    "text1, text2, number, total"
)
_RECORDS = f"""
SELECT {_RECORD_COLUMNS} FROM (
SELECT 'span' AS kind, span_id, name, toUnixTimestamp64Nano(start) AS ts_ns, end_ns,
       toString(service) AS service, '' AS step_name, trace_id,
       CAST(map(), 'Map(String, String)') AS attributes, parent_span_id AS text1,
       toString(kind) AS text2, toFloat64(error) AS number, CAST(NULL, 'Nullable(Float64)') AS total
FROM (SELECT * FROM {{db}}.dashfrog_spans WHERE flow_id = {{id}} ORDER BY start LIMIT 1 BY span_id)
UNION ALL
SELECT 'event', span_id, name, toUnixTimestamp64Nano(ts), toInt64(0), toString(service),
       step_name, trace_id, attributes, '', '', toFloat64(0), CAST(NULL, 'Nullable(Float64)')
FROM {{db}}.dashfrog_events WHERE flow_id = {{id}} AND name NOT IN {_NOT_FLOW_EVENTS}
UNION ALL
SELECT 'log', span_id, logger, toUnixTimestamp64Nano(ts), toInt64(0), toString(service),
       step_name, trace_id, attributes, toString(severity), body, toFloat64(0),
       CAST(NULL, 'Nullable(Float64)')
FROM {{db}}.dashfrog_logs WHERE flow_id = {{id}}
UNION ALL
SELECT 'progress', span_id, '', toUnixTimestamp64Nano(max(ts)), toInt64(0), '', '', '',
       CAST(map(), 'Map(String, String)'), argMax(message, ts), '', argMax(done, ts),
       argMax(total, ts)
FROM {{db}}.dashfrog_step_progress WHERE flow_id = {{id}} GROUP BY span_id
UNION ALL
SELECT 'artifact', span_id, name, toUnixTimestamp64Nano(max(ts)), toInt64(0), '', '', '',
       CAST(map(), 'Map(String, String)'), argMax(value, ts), '', toFloat64(0),
       CAST(NULL, 'Nullable(Float64)')
FROM {{db}}.dashfrog_artifacts WHERE flow_id = {{id}} GROUP BY span_id, name
UNION ALL
SELECT 'options', span_id, '', toInt64(0), toInt64(0), '', '', '',
       argMax(options, length(options)), '', '', toFloat64(0), CAST(NULL, 'Nullable(Float64)')
FROM {{db}}.dashfrog_step_options WHERE flow_id = {{id}} GROUP BY span_id
UNION ALL
SELECT 'child', '', '', toInt64(0), toInt64(0), '', '', '', CAST(map(), 'Map(String, String)'),
       '', '', toFloat64(0), CAST(NULL, 'Nullable(Float64)')
FROM (SELECT 1 FROM {{db}}.dashfrog_flows WHERE parent_id = {{id}} LIMIT 1)
) ORDER BY kind, ts_ns, name, span_id
"""


def _progress(row: Mapping[str, Any]) -> Progress:
    total = row["total"]
    return Progress(
        done=float(row["done"]),
        total=None if total is None else float(total),
        message=_none(row["message"]),
        ts_ns=_int(row["ts_ns"]),
    )


def _none(value: Any) -> Any:
    return None if value in ("", None) else value


def _int(value: Any) -> int | None:
    return None if value in (None, "", 0, "0") else int(value)


def _ms(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else (end - start) / 1e6


def _widening(
    inner: list[str],
    outer: list[str],
    now: int,
    limit: int | None,
    windowed: bool,
    since_ns: int | None,
) -> Iterator[tuple[list[str], list[str], int | None]]:
    """The filters of each read of a list, widest last: (inner, outer, lower start bound).

    Newest first with a limit and no lower bound (`windowed`): the last hour, then the last
    day, then everything; the caller stops at the first that holds `limit` rows. A window that
    already holds `limit` matches holds the newest `limit` of all (flows are ordered by start),
    so the answer is the same; the hour key keeps the common case (the latest flows) from
    reading the whole table. Otherwise one read, bounded by `since_ns`."""
    windows: tuple[int | None, ...] = (3600, 86400, None) if windowed and limit else (None,)
    for window in windows:
        bounded, outer_bounded, low = list(inner), list(outer), since_ns
        if window is not None:
            low = now - window * 1_000_000_000
            bounded.append(f"hour >= {_hour(low)}")
            outer_bounded.append(f"start_ns >= {literal(low)}")
        yield bounded, outer_bounded, low


def _hour(ns: int) -> str:
    """The start of the hour holding the instant ``ns``, as SQL (the rollup's ``hour``)."""
    return f"toStartOfHour(fromUnixTimestamp64Nano({literal(ns)}))"


def _quantile(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


class ClickHouseFlowStore:
    """Queries over the dashfrog rollup in a ClickHouse database (a server, or chDB)."""

    def __init__(self, url: str, *, database: str | None = None) -> None:
        self.target: Target = parse_url(url, database)
        self.path = redact(url)  # what the CLI prints: never the password
        self._db = f"`{self.target.database}`"
        try:
            self._transport: Transport = connect(self.target)
        except ClickHouseError as exc:
            raise StoreError(str(exc)) from None
        try:
            self._check_schema()
        except BaseException:
            self._transport.close()
            raise

    def _check_schema(self) -> None:
        db = self.target.database
        try:
            version = migrate.current_version(self._transport, db)
        except ClickHouseError as exc:
            raise StoreError(f"cannot read {self.target.describe()}: {exc}") from None
        if version == 0:
            raise StoreError(
                f"no dashfrog flow rollup in {self.target.describe()}: run "
                f"`dashfrog clickhouse init --url {self.path} --database {db}` once"
            )
        if version < NEEDS_VERSION:
            raise StoreError(
                f"the flow rollup in {self.target.describe()} is version {version}; this "
                f"dashfrog_sdk reads version {NEEDS_VERSION} and later: run `dashfrog clickhouse "
                f"init --url {self.path} --database {db}` once to upgrade it (idempotent; it "
                "fills the new tables from the flows already there)"
            )
        if version > migrate.SCHEMA_VERSION:
            raise StoreError(
                f"the flow rollup in {self.target.describe()} is version {version}, newer than "
                f"this dashfrog_sdk supports ({migrate.SCHEMA_VERSION}); upgrade dashfrog_sdk"
            )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ClickHouseFlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        try:
            return self._transport.rows(sql)
        except ClickHouseError as exc:
            raise StoreError(f"cannot read {self.target.describe()}: {exc}") from None

    # -- flows -------------------------------------------------------------------------------
    def _flow_sql(
        self,
        inner: list[str],
        outer: list[str],
        now: int,
        tail: str = "ORDER BY start_ns DESC",
        table: str = _BY_TENANT,
    ) -> str:
        # Templates get the database first; clauses holding literals are joined in last, so
        # no placeholder is ever looked for inside a value.
        db = self._db
        return (
            _STATUS.replace("{db}", db).replace("{{now}}", literal(now))
            + _FLOW_ROWS.replace("{db}", db).replace("{table}", table)
            + (" AND ".join(inner) or "1")
            + _FLOW_ROWS_END
            + _FLOWS_WHERE
            + (" AND ".join(outer) or "1")
            + " "
            + tail
        )

    def _flow(self, row: Mapping[str, Any], now: int) -> Flow:
        status = str(row["status"])
        start = _int(row["start_ns"])
        outcome = row["f_outcome"]
        end = _int(outcome[1]) if status not in c.OPEN else None
        open_end = now if end is None and status in c.OPEN else end
        timeout = float(row["f_timeout_s"] or 0)
        return Flow(
            id=str(row["flow_id"]),
            name=_none(row["f_name"]),
            tenant=_none(row["f_tenant"]),
            status=status,
            labels=dict(row["f_labels"] or {}),
            start_ns=start,
            end_ns=end,
            duration_ms=_ms(start, open_end),
            parent_id=_none(row["f_parent_id"]),
            service=_none(row["f_service"]),
            trace_id=_none(row["f_trace_id"]),
            span_id=_none(row["f_span_id"]),
            timeout_s=timeout or None,
            error_type=_none(outcome[2]) if status == c.FAILED or outcome[2] else None,
            error_message=_none(outcome[3]) if status == c.FAILED or outcome[3] else None,
        )

    def flows(
        self,
        *,
        tenant: str | None = None,
        name: str | None = None,
        status: str | Iterable[str] | None = None,
        labels: Mapping[str, LabelValue] | None = None,
        since: TimeArg = None,
        until: TimeArg = None,
        running_longer_than: timedelta | float | str | None = None,
        parent_id: str | None = None,
        limit: int | None = 100,
        _ids: list[str] | None = None,
    ) -> Results[Flow]:
        """Flows matching every filter given, newest first (see the SQLite FlowStore)."""
        now = time.time_ns()
        inner: list[str] = []
        outer: list[str] = []
        if tenant is not None:
            inner.append(f"tenant = {literal(tenant)}")
        if name is not None:
            inner.append(f"name = {literal(name)}")
        if parent_id is not None:
            # Most flows have no child: one narrow read of the parent id's skip index says so,
            # where the whole query would plan and merge (flow(id) asks for every flow).
            if not self._rows(
                f"SELECT 1 FROM {self._db}.dashfrog_flows "
                f"WHERE parent_id = {literal(parent_id)} LIMIT 1"
            ):
                return Results()
            inner.append(
                f"flow_id IN (SELECT flow_id FROM {self._db}.dashfrog_flows "
                f"WHERE parent_id = {literal(parent_id)})"
            )
            outer.append(f"f_parent_id = {literal(parent_id)}")
        if _ids is not None:
            inner.append(f"flow_id IN {literal(_ids)}")
        # Rows of one flow share its start hour, so an hour bound prunes by the table's key
        # without losing a flow; the exact bound applies to the flow's merged start.
        since_ns = None if since is None else to_ns(since, now_ns=now)
        until_ns = None if until is None else to_ns(until, now_ns=now)
        for ns, op in ((since_ns, ">="), (until_ns, "<=")):
            if ns is not None:
                inner.append(f"hour {op} {_hour(ns)}")
                outer.append(f"start_ns {op} {literal(ns)}")
        statuses = None
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            outer.append(f"status IN {literal(statuses)}" if statuses else "0")
        if running_longer_than is not None:
            cutoff = now - int(seconds(running_longer_than) * 1e9)
            outer.append(f"stored = 'running' AND start_ns <= {literal(cutoff)}")
        tail = "ORDER BY start_ns DESC"
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        # A tenant's flows are a slice of dashfrog_flows; the flows of every tenant are read
        # where they are neighbours in time. A parent's children and the change feed's ids are
        # found by dashfrog_flows' flow and parent id indexes.
        table = _BY_HOUR if tenant is None and parent_id is None and _ids is None else _BY_TENANT
        if (
            statuses
            and all(s in _ENDED_RANKS for s in statuses)
            and not labels
            and parent_id is None
            and _ids is None
            and running_longer_than is None
        ):
            rows = self._by_status(
                statuses, tenant, name, since_ns, until_ns, inner, outer, now, limit, table
            )
        elif (
            table == _BY_HOUR
            and statuses
            and all(s in c.OPEN for s in statuses)
            and not labels
            and parent_id is None
            and _ids is None
        ):
            rows = self._by_open(
                inner, outer, now, limit, windowed=since is None, bounds=(since_ns, until_ns)
            )
        else:
            rows = self._by_window(
                inner,
                outer,
                now,
                limit,
                tail,
                tenant,
                labels,
                windowed=tenant is None and since is None and _ids is None and not parent_id,
                since_ns=since_ns,
                until_ns=until_ns,
                table=table,
            )
        flows = Results([self._flow(row, now) for row in rows])
        self._fill_current_steps(flows)
        return flows

    def _by_window(
        self,
        inner: list[str],
        outer: list[str],
        now: int,
        limit: int | None,
        tail: str,
        tenant: str | None,
        labels: Mapping[str, LabelValue] | None,
        *,
        windowed: bool,
        since_ns: int | None,
        until_ns: int | None,
        table: str,
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        # With a tenant the key already narrows the read to that tenant's rows: one query.
        for bounded, outer_bounded, low in _widening(inner, outer, now, limit, windowed, since_ns):
            if labels and tenant is None:
                # Flows with every label in the window, from dashfrog_flow_labels_by_hour:
                # `limit` of them read by key, not the window's rows of every tenant.
                rows = self._newest(
                    self._labelled(labels, low, until_ns),
                    bounded,
                    outer_bounded,
                    now,
                    limit,
                    table,
                )
            else:
                bounded.extend(self._label_filters(labels, tenant))
                rows = self._rows(self._flow_sql(bounded, outer_bounded, now, tail, table))
            if limit is None or len(rows) >= limit:
                break
        return rows

    def _label_filters(
        self, labels: Mapping[str, LabelValue] | None, tenant: str | None
    ) -> list[str]:
        # dashfrog_flow_labels is keyed (key, value, tenant, flow_id): with a tenant the
        # subquery reads that tenant's ids only, not every flow that has the label (without
        # one, `_labelled` serves).
        if tenant is None:
            return []
        return [
            f"flow_id IN (SELECT flow_id FROM {self._db}.dashfrog_flow_labels "
            f"WHERE key = {literal(key)} AND value = {literal(label_text(value))} "
            f"AND tenant = {literal(tenant)})"
            for key, value in (labels or {}).items()
        ]

    def _labelled(self, labels: Mapping[str, LabelValue], low: int | None, high: int | None) -> str:
        """Candidates for `_newest`: flows carrying every label, in the hour bounds, by their
        earliest record (the closest to the flow's start, which no record precedes)."""
        pairs = sorted({(key, label_text(value)) for key, value in labels.items()})
        where = [
            f"(key, value) IN ({', '.join(f'({literal(k)}, {literal(v)})' for k, v in pairs)})"
        ]
        if low is not None:
            where.append(f"hour >= {_hour(low)}")
            where.append(f"start >= fromUnixTimestamp64Nano({literal(low)})")
        if high is not None:
            where.append(f"hour <= {_hour(high)}")
        return (
            "SELECT flow_id, tenant, name, toUInt32(hour) AS h, "
            "toUnixTimestamp64Nano(min(start)) AS s "
            f"FROM {self._db}.dashfrog_flow_labels_by_hour WHERE {' AND '.join(where)} "
            f"GROUP BY flow_id, tenant, name, hour HAVING uniqExact(key) = {len(pairs)} "
            "ORDER BY s DESC"
        )

    def _by_status(
        self,
        statuses: list[str],
        tenant: str | None,
        name: str | None,
        since_ns: int | None,
        until_ns: int | None,
        inner: list[str],
        outer: list[str],
        now: int,
        limit: int | None,
        table: str,
    ) -> list[dict[str, Any]]:
        """Ended flows by status through dashfrog_flow_status: the candidates (flows with a
        record of that rank, newest first), then their merged rows from dashfrog_flows, where
        the status is decided as everywhere else (a cancelled candidate may have failed).

        A record starts no earlier than its flow, so `start >= since` on the index loses no
        flow (see `_newest`)."""
        where = [f"rank IN {literal(sorted({_ENDED_RANKS[s] for s in statuses}))}"]
        if tenant is not None:
            where.append(f"tenant = {literal(tenant)}")
        if name is not None:
            where.append(f"name = {literal(name)}")
        if since_ns is not None:
            where.append(f"hour >= {_hour(since_ns)}")
            where.append(f"start >= fromUnixTimestamp64Nano({literal(since_ns)})")
        if until_ns is not None:
            where.append(f"hour <= {_hour(until_ns)}")
        # No GROUP BY: a flow seen twice is one key below (grouping 100k ids cost more than
        # the rest of the query).
        candidates = (
            "SELECT flow_id, tenant, name, toUInt32(hour) AS h, toUnixTimestamp64Nano(start) AS s "
            f"FROM {self._db}.dashfrog_flow_status WHERE {' AND '.join(where)} ORDER BY start DESC"
        )
        return self._newest(candidates, inner, outer, now, limit, table)

    def _by_open(
        self,
        inner: list[str],
        outer: list[str],
        now: int,
        limit: int | None,
        *,
        windowed: bool,
        bounds: tuple[int | None, int | None],
    ) -> list[dict[str, Any]]:
        """Running (or timed-out) flows without a tenant: the candidates are the flows whose
        highest rank is 1, from dashfrog_flows_by_hour's narrow columns (flow id, hour, start,
        the rank of `outcome`), then the newest of them are read in full by key (`_newest`),
        where the status is decided as everywhere else.

        Merging every flow of a window with all its columns (labels, error text, ids) only to
        keep the 5 % still open cost most of the query (1M flows, a day: 380-510 ms, 105-120 ms this
        way); the rank is one byte a row. With a tenant the whole merge of the tenant's slice
        is cheaper than the two statements (benchmarks/store_backends.py).

        The candidates are grouped by flow id over the same rows and filters as the full read,
        so max(outcome.1) here is f_outcome.1 there: a flow is a candidate exactly when its
        merged status is running or timed_out, whatever order its records arrived in
        (tests/store/test_clickhouse.py::test_running_without_tenant_is_the_merged_status
        compares it with the full merge). Without a lower bound: the last hour, then the last
        day, then everything, as `_by_window`."""
        db = self._db
        since_ns, high = bounds
        rows: list[dict[str, Any]] = []
        for bounded, outer_bounded, low in _widening(inner, outer, now, limit, windowed, since_ns):
            # The exact bounds on the flow's start too, so that a page below a cursor (the
            # viewer's `until`) spends no candidate on the flows above it.
            having = ["max(outcome.1) = 1"]
            having += [f"s >= {literal(low)}"] if low is not None else []
            having += [f"s <= {literal(high)}"] if high is not None else []
            # Rows of one flow share its hour (sql/005_flows_by_hour.sql): any(hour) is the key.
            candidates = (
                "SELECT flow_id, toUInt32(any(hour)) AS h, toUnixTimestamp64Nano(min(start)) AS s "
                f"FROM {db}.{_BY_HOUR} WHERE {' AND '.join(bounded) or '1'} "
                f"GROUP BY flow_id HAVING {' AND '.join(having)} ORDER BY s DESC"
            )
            rows = self._newest(candidates, bounded, outer_bounded, now, limit, _BY_HOUR)
            if limit is None or len(rows) >= limit:
                break
        return rows

    def _newest(
        self,
        candidates: str,
        inner: list[str],
        outer: list[str],
        now: int,
        limit: int | None,
        table: str,
    ) -> list[dict[str, Any]]:
        """The newest `limit` flows among `candidates` (SQL returning flow_id, tenant, name,
        h = the hour, s = the record's start; newest first) that match every filter.

        A record starts no earlier than its flow. With a limit, the newest `k` candidates hold
        the answer when at least `limit` of them match and start no earlier than the oldest
        candidate (any flow left out started before it); otherwise `k` grows, up to every
        candidate. Each round reads `k` flows by the full key of `table` (dashfrog_flows:
        tenant, name, hour, flow_id; dashfrog_flows_by_hour: hour, flow_id)."""
        tail = "ORDER BY start_ns DESC" + ("" if limit is None else f" LIMIT {int(limit)}")
        by_hour = table == _BY_HOUR
        key = "(hour, flow_id)" if by_hour else "(tenant, name, hour, flow_id)"
        k = limit
        while True:
            if k is None:  # every candidate: a set built in ClickHouse, however many
                picked = "" if by_hour else "tenant, name, "
                every = f"{key} IN (SELECT {picked}toDateTime(h), flow_id FROM ({candidates}))"
                return self._rows(self._flow_sql([*inner, every], outer, now, tail, table))
            found = self._rows(f"{candidates} LIMIT {int(k)}")
            if not found:
                return []
            keys = ", ".join(
                sorted(
                    {
                        "("
                        + (
                            ""
                            if by_hour
                            else f"{literal(str(r['tenant']))}, {literal(str(r['name']))}, "
                        )
                        + f"{int(r['h'])}, {literal(str(r['flow_id']))})"
                        for r in found
                    }
                )
            )
            # The full key names every granule to read: the skip indexes (the flow id's bloom
            # filter) would only be checked again for each of them. Hours as plain numbers
            # (the set takes the column's type): a toDateTime() call per key doubled the
            # planning of a 100-flow page.
            rows = self._rows(
                self._flow_sql(
                    [*inner, f"{key} IN ({keys})"],
                    outer,
                    now,
                    tail + " SETTINGS use_skip_indexes = 0",
                    table,
                )
            )
            if len(found) < k or limit is None:
                return rows
            oldest = min(int(r["s"]) for r in found)
            if sum(1 for r in rows if int(r["start_ns"]) >= oldest) >= limit:
                return rows
            k = None if k >= 16 * limit else k * 4

    def _fill_current_steps(self, flows: list[Flow]) -> None:
        open_flows = {f.id: f for f in flows if f.status in c.OPEN}
        ids = list(open_flows)
        for chunk in (ids[i : i + 1000] for i in range(0, len(ids), 1000)):
            current: dict[str, Flow] = {}
            for row in self._rows(
                _CURRENT_STEPS.replace("{db}", self._db) + literal(chunk) + _CURRENT_STEPS_END
            ):
                open_flows[str(row["flow_id"])].current_step = str(row["name"])
                current[str(row["span_id"])] = open_flows[str(row["flow_id"])]
            if current:
                for row in self._rows(
                    _PROGRESS.replace("{db}", self._db)
                    + literal(chunk)
                    + f" AND span_id IN {literal(list(current))}"
                    + _PROGRESS_END
                ):
                    current[str(row["span_id"])].current_progress = _progress(row)

    def changes(self, after_ns: int, limit: int = 1000) -> tuple[list[Flow], int]:
        """Flows whose rollup rows (flow or step) were written after ``after_ns`` (the
        server's clock), oldest change first, and the cursor to pass next time."""
        after = f"fromUnixTimestamp64Nano({literal(int(after_ns))})"
        touched = self._rows(
            "SELECT flow_id, toUnixTimestamp64Nano(max(seen)) AS seen_ns FROM ("
            f"SELECT flow_id, seen FROM {self._db}.dashfrog_flows WHERE seen > {after} "
            f"UNION ALL SELECT flow_id, seen FROM {self._db}.dashfrog_steps WHERE seen > {after} "
            f"UNION ALL SELECT flow_id, seen FROM {self._db}.dashfrog_step_progress "
            f"WHERE seen > {after}) "
            f"GROUP BY flow_id ORDER BY seen_ns LIMIT {int(limit)}"
        )
        if not touched:
            return [], after_ns
        order = {str(r["flow_id"]): i for i, r in enumerate(touched)}
        flows = list(self.flows(_ids=list(order), limit=None))
        flows.sort(key=lambda f: order[f.id])
        cursor = max(int(r["seen_ns"]) for r in touched)
        return flows, cursor

    def count(self) -> int:
        rows = self._rows(f"SELECT uniqExact(flow_id) AS n FROM {self._db}.dashfrog_flow_ids")
        return int(rows[0]["n"]) if rows else 0

    # -- one flow ------------------------------------------------------------------------------
    def resolve(self, flow_id: str) -> str:
        """The full id of a flow given its id or a unique prefix of it."""
        return self._locate(flow_id)[0]

    def _locate(self, flow_id: str) -> tuple[str, str]:
        """The full id of a flow (or of the one flow an id prefix names) and the SQL set of
        its keys in dashfrog_flows (tenant, name, hour, flow_id): its rows there are then read
        by key, without a lookup subquery to plan."""
        key = flow_id.strip().lower()
        if not key:
            raise FlowNotFoundError("empty flow id")
        rows = self._rows(
            "SELECT flow_id, groupUniqArray((tenant, name, toUInt32(hour))) AS keys "
            f"FROM {self._db}.dashfrog_flow_ids "
            f"WHERE flow_id >= {literal(key)} AND flow_id < {literal(key + chr(0xFFFF))} "
            "GROUP BY flow_id ORDER BY flow_id LIMIT 2"
        )
        if not rows:
            raise FlowNotFoundError(f"no flow {flow_id} in {self.target.describe()}")
        first = str(rows[0]["flow_id"])
        if len(rows) > 1 and first != key:
            raise FlowNotFoundError(f"flow id prefix {flow_id} is ambiguous; give more characters")
        ident = literal(first)
        keys = ", ".join(
            sorted(
                f"({literal(str(t))}, {literal(str(n))}, {int(h)}, {ident})"
                for t, n, h in rows[0]["keys"]
            )
        )
        return first, keys

    def _one(self, flow_id: str, now: int) -> Flow:
        _, keys = self._locate(flow_id)
        # By the full key, as `_newest` reads a page: the skip indexes would only be checked
        # again for the granules the key names.
        rows = self._rows(
            self._flow_sql(
                [f"(tenant, name, hour, flow_id) IN ({keys})"],
                [],
                now,
                "ORDER BY start_ns DESC SETTINGS use_skip_indexes = 0",
            )
        )
        if not rows:
            raise FlowNotFoundError(f"no flow {flow_id} in {self.target.describe()}")
        return self._flow(rows[0], now)

    def _records(self, flow_id: str) -> dict[str, list[dict[str, Any]]]:
        """The flow's spans, events, logs, its steps' progress, artifacts and options, and
        whether it has a child flow (one row if so), by kind: one statement (`_RECORDS`)."""
        out: dict[str, list[dict[str, Any]]] = {
            kind: []
            for kind in ("span", "event", "log", "progress", "artifact", "options", "child")
        }
        sql = _RECORDS.replace("{db}", self._db)
        for row in self._rows(sql.replace("{id}", literal(flow_id))):
            out[str(row["kind"])].append(row)
        return out

    def _steps(
        self, flow_id: str, records: dict[str, list[dict[str, Any]]] | None = None
    ) -> list[Step]:
        rows = self._rows(_STEPS.replace("{db}", self._db) + literal(flow_id) + _STEPS_END)
        if records is None:
            records = self._records(flow_id)
        span_parents = {str(r["span_id"]): _none(r["text1"]) for r in records["span"]}
        ids = {str(row["span_id"]) for row in rows}
        steps: dict[str, Step] = {}
        for row in rows:
            parent = _none(row["parent_span_id"])
            hops = 0
            while parent is not None and parent not in ids and hops < 64:
                parent, hops = span_parents.get(parent), hops + 1
            parent_step = parent if parent in ids else None
            depth = steps[parent_step].depth + 1 if parent_step in steps else 0
            start, end = _int(row["start_ns"]), _int(row["end_ns"])
            steps[str(row["span_id"])] = Step(
                span_id=str(row["span_id"]),
                name=str(row["name"]),
                service=_none(row["service"]),
                status=str(row["status"]),
                start_ns=start,
                end_ns=end,
                duration_ms=_ms(start, end),
                optional=bool(int(row["optional"])),
                error_type=_none(row["error_type"]),
                error_message=_none(row["error_message"]),
                attributes=dict(row["attributes"] or {}),
                parent_span_id=_none(row["parent_span_id"]),
                parent_step_id=parent_step,
                depth=depth,
                trace_id=_none(row["trace_id"]),
            )
        for row in records["progress"]:
            owner = steps.get(str(row["span_id"]))
            if owner is not None:
                owner.progress = Progress(
                    done=float(row["number"]),
                    total=None if row["total"] is None else float(row["total"]),
                    message=_none(row["text1"]),
                    ts_ns=_int(row["ts_ns"]),
                )
        for row in records["artifact"]:
            owner = steps.get(str(row["span_id"]))
            if owner is not None:
                owner.artifacts[str(row["name"])] = artifact_value(str(row["text1"]))
        for row in records["options"]:
            owner = steps.get(str(row["span_id"]))
            if owner is not None:
                for key, value in step_options(dict(row["attributes"] or {})).items():
                    setattr(owner, key, value)
        return list(steps.values())

    @staticmethod
    def _spans(records: dict[str, list[dict[str, Any]]]) -> list[SpanRecord]:
        return [
            SpanRecord(
                span_id=str(r["span_id"]),
                parent_span_id=_none(r["text1"]),
                name=str(r["name"]),
                kind=_none(r["text2"]),
                service=_none(r["service"]),
                start_ns=_int(r["ts_ns"]),
                end_ns=_int(r["end_ns"]),
                error=bool(r["number"]),
                trace_id=_none(r["trace_id"]),
            )
            for r in records["span"]
        ]

    def _detail(self, flow_id: str) -> tuple[FlowDetail, dict[str, list[dict[str, Any]]]]:
        detail = FlowDetail(**vars(self._one(flow_id, time.time_ns())))
        records = self._records(detail.id)
        detail.spans = self._spans(records)
        detail.steps = self._steps(detail.id, records)
        return detail, records

    def flow(self, flow_id: str) -> FlowDetail:
        """One flow with its steps (in start order), child flows, events, logs and spans."""
        detail, records = self._detail(flow_id)
        current = detail.current
        detail.current_step = current.name if current else None
        detail.current_progress = current.progress if current else None
        if records["child"]:
            detail.children = list(self.flows(parent_id=detail.id, limit=None))
            detail.children.reverse()
        detail.events = [
            FlowEvent(
                name=str(r["name"]),
                ts_ns=_int(r["ts_ns"]),
                service=_none(r["service"]),
                step_name=_none(r["step_name"]),
                attributes=dict(r["attributes"] or {}),
                trace_id=_none(r["trace_id"]),
                span_id=_none(r["span_id"]),
            )
            for r in records["event"]
        ]
        detail.logs = [
            LogEntry(
                ts_ns=_int(r["ts_ns"]),
                severity=_none(r["text1"]),
                body=r["text2"],
                logger=_none(r["name"]),
                step_name=_none(r["step_name"]),
                service=_none(r["service"]),
                attributes=dict(r["attributes"] or {}),
                trace_id=_none(r["trace_id"]),
                span_id=_none(r["span_id"]),
            )
            for r in records["log"]
        ]
        if detail.status in c.OPEN and detail.name is not None:
            detail.pending_steps = self._pending(detail)
        return detail

    def _pending(self, detail: FlowDetail) -> list[str]:
        done = [
            f
            for f in self.flows(name=detail.name, status=c.COMPLETED, limit=2)
            if f.id != detail.id
        ]
        if not done:
            return []
        seen = {s.name for s in detail.steps}
        pending: list[str] = []
        for step in self._steps(done[0].id):
            if step.depth == 0 and step.name not in seen and step.name not in pending:
                pending.append(step.name)
        return pending

    def durations(self, flow_id: str) -> FlowDurations:
        """The flow's duration and each step's, with each step's share of the flow."""
        return FlowDurations.of(self._detail(flow_id)[0])

    # -- aggregates ----------------------------------------------------------------------------
    def stats(
        self, *, since: TimeArg = None, tenant: str | None = None, name: str | None = None
    ) -> Results[FlowStats]:
        """Per flow name and tenant: counts by status, failure rate, p50/p95 duration (ended
        flows). The failure rate is (failed + timed out) over flows that ended or timed out.

        One pass over the window's rows of dashfrog_flows, merged per flow on the columns the
        counts need only (no labels, ids or error text: the per-flow merge is the cost)."""
        now = time.time_ns()
        where: list[str] = []
        having = "1"
        if tenant is not None:
            where.append(f"tenant = {literal(tenant)}")
        if name is not None:
            where.append(f"name = {literal(name)}")
        ns = None if since is None else to_ns(since, now_ns=now)
        if ns is not None:
            where.append(f"hour >= {_hour(ns)}")
            having = f"start_ns >= {literal(ns)}"
        table = _BY_TENANT if tenant is not None else _BY_HOUR
        # The status as a number (RANKED_STATUSES' ranks, 5 timed out), as _STATUS decides it:
        # counting by strings cost about a sixth of the query at 1M flows.
        code = (
            "multiIf(f_outcome.1 = 4, 4, f_outcome.1 = 3, 3, f_outcome.1 = 2, 2, f_timeout_s > 0 "
            f"AND start_ns + toInt64(f_timeout_s * 1e9) < {literal(now)}, 5, 1)"
        )
        codes = {s: i + 1 for i, s in enumerate(RANKED_STATUSES)} | {c.TIMED_OUT: 5}
        rows = self._rows(
            "SELECT f_name AS name, f_tenant AS tenant, count() AS n, "
            + ", ".join(f"countIf(code = {i}) AS {s}" for s, i in codes.items())
            + ", quantilesExactInclusiveIf(0.5, 0.95)((f_outcome.2 - start_ns) / 1e6, "
            f"code IN (2, 3, 4)) AS q FROM (SELECT f_name, f_tenant, f_outcome, start_ns, "
            f"{code} AS code FROM ("
            "SELECT flow_id, anyIf(tenant, tenant != '') AS f_tenant, "
            "anyIf(name, name != '') AS f_name, toUnixTimestamp64Nano(min(start)) AS start_ns, "
            "max((outcome.1, outcome.2)) AS f_outcome, max(timeout_s) AS f_timeout_s "
            f"FROM {self._db}.{table} WHERE {' AND '.join(where) or '1'} "
            f"GROUP BY flow_id HAVING {having})) GROUP BY f_name, f_tenant"
        )
        out: Results[FlowStats] = Results()
        for r in sorted(rows, key=lambda r: (str(_none(r["name"])), str(_none(r["tenant"])))):
            count, running = int(r["n"]), int(r["running"])
            failed, timed_out = int(r["failed"]), int(r["timed_out"])
            ended_count = count - running
            p50, p95 = r["q"] or (None, None)
            out.append(
                FlowStats(
                    name=_none(r["name"]),
                    tenant=_none(r["tenant"]),
                    count=count,
                    running=running,
                    completed=int(r["completed"]),
                    failed=failed,
                    cancelled=int(r["cancelled"]),
                    timed_out=timed_out,
                    failure_rate=(failed + timed_out) / ended_count if ended_count else 0.0,
                    p50_ms=_quantile(p50),
                    p95_ms=_quantile(p95),
                )
            )
        return out
