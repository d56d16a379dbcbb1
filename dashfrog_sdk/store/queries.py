"""Read the local flow store: flows by tenant, name, status, labels and time; one flow in full."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from dashfrog_sdk import conventions as c
from dashfrog_sdk.status import effective_status
from dashfrog_sdk.store import schema, tails
from dashfrog_sdk.store.aggregate import aggregate_bins, aggregate_sql
from dashfrog_sdk.store.backend import is_remote
from dashfrog_sdk.store.convert import label_text
from dashfrog_sdk.store.errors import FlowNotFoundError, StoreError, StoreNotFoundError
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
from dashfrog_sdk.validation import received_timeout

R = TypeVar("R")

_FLOW_COLUMNS = (
    "flow_id, name, tenant, status, labels, start_ns, end_ns, parent_id, service, trace_id, "
    "span_id, timeout_s, deadline_ns, error_type, error_message"
)
_STEP_COLUMNS = (
    "span_id, name, service, status, start_ns, end_ns, optional, error_type, error_message, "
    "attributes, parent_span_id, trace_id, progress_done, progress_total, progress_message, "
    "progress_ns"
)


# stats() reads only this index (schema v3); named, because the planner preferred to walk
# flows_name_status for the GROUP BY and read every table row (17x slower at 20k flows).
_STATS_INDEX = "flows_start_stats"
# stats() reads every matching flow up to this many (exact percentiles), the tails above it.
EXACT_STATS_UP_TO = 20_000
# Index range counts that choose the side a label filter starts from stop here.
LABEL_PLAN_CAP = 20_000
# Once the size at which a label counted as "common" (collected first below it); the label plan
# (`FlowStore._label_plan`) now measures both sides instead. Kept for callers that set it.
COMMON_LABEL = 5_000


def _column(row: sqlite3.Row, name: str) -> Any:
    value = row[name]
    if name == "attributes":
        return _loads(value)
    return bool(value) if name == "error" else value


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _progress(row: sqlite3.Row) -> Progress | None:
    if row["progress_done"] is None:
        return None
    return Progress(
        done=row["progress_done"],
        total=row["progress_total"],
        message=row["progress_message"],
        ts_ns=row["progress_ns"],
    )


def _ms(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else (end - start) / 1e6


def _status_clause(status: str, now: int) -> tuple[str, list[Any]]:
    """`effective_status` as a WHERE clause."""
    if status == c.RUNNING:
        return "(status = 'running' AND (deadline_ns IS NULL OR deadline_ns >= ?))", [now]
    if status == c.TIMED_OUT:
        return "(status = 'running' AND deadline_ns < ?)", [now]
    return "status = ?", [status]


def _flow_filter(
    now: int,
    tenant: str | None = None,
    name: str | None = None,
    status: str | Iterable[str] | None = None,
    labels: Mapping[str, LabelValue] | None = None,
    since: TimeArg = None,
    until: TimeArg = None,
    running_longer_than: timedelta | float | str | None = None,
    parent_id: str | None = None,
    common_label: Callable[[str, str], bool] | None = None,
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses and parameters of FlowStore.flows() and FlowStore.count() filters.

    `common_label(key, value)`: true when each candidate flow's label is to be checked by
    primary key (the other filters pick the candidates: `FlowStore.flows`' flows side);
    otherwise the label's flow ids are collected first (`count()`)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("tenant", tenant), ("name", name), ("parent_id", parent_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        clauses = [_status_clause(s, now) for s in statuses]
        where.append("(" + " OR ".join(sql for sql, _ in clauses) + ")" if clauses else "0")
        params.extend(p for _, ps in clauses for p in ps)
    for key, label in (labels or {}).items():
        value = label_text(label)
        if common_label is not None and common_label(key, value):
            where.append(
                "EXISTS (SELECT 1 FROM flow_labels l WHERE l.flow_id = flows.flow_id "
                "AND l.key = ? AND l.value = ?)"
            )
        else:
            where.append("flow_id IN (SELECT flow_id FROM flow_labels WHERE key = ? AND value = ?)")
        params.extend([key, value])
    if since is not None:
        where.append("start_ns >= ?")
        params.append(to_ns(since, now_ns=now))
    if until is not None:
        where.append("start_ns <= ?")
        params.append(to_ns(until, now_ns=now))
    if running_longer_than is not None:
        where.append("status = 'running' AND start_ns <= ?")
        params.append(now - int(seconds(running_longer_than) * 1e9))
    return where, params


class FlowStore:
    """Queries over a flow store file written by the store exporters.

    ``FlowStore(path)`` raises :class:`StoreNotFoundError` when there is no file and
    :class:`StoreError` when it is not a readable dashfrog store. Usable as a context manager.
    """

    def __new__(cls, path: str | os.PathLike[str]) -> Any:
        # A ClickHouse or chDB URL opens the ClickHouse backend (same API, see store.backend).
        if cls is FlowStore and is_remote(path):
            from dashfrog_sdk.store.clickhouse import ClickHouseFlowStore

            return ClickHouseFlowStore(str(path))
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise StoreNotFoundError(f"no flow store at {self.path}")
        try:
            self._conn = schema.connect(self.path, create=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open flow store {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._check_schema()
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self) -> None:
        try:
            version = schema.current_version(self._conn)
            if version == 0:
                other = self._conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                if other:
                    raise StoreError(f"{self.path} is an SQLite database but not a flow store")
            schema.migrate(self._conn, known=version)
        except schema.SchemaError as exc:
            raise StoreError(str(exc)) from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flow store {self.path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> FlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, list(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flow store {self.path}: {exc}") from None

    # -- flows -------------------------------------------------------------------------------
    def _flow(self, row: sqlite3.Row, now: int) -> Flow:
        status = effective_status(row["status"], row["deadline_ns"], now)
        start, end = row["start_ns"], row["end_ns"]
        open_end = now if end is None and status in c.OPEN else end
        return Flow(
            id=row["flow_id"],
            name=row["name"],
            tenant=row["tenant"],
            status=status,
            labels=_loads(row["labels"]),
            start_ns=start,
            end_ns=end,
            duration_ms=_ms(start, open_end),
            parent_id=row["parent_id"],
            service=row["service"],
            trace_id=row["trace_id"],
            span_id=row["span_id"],
            timeout_s=received_timeout(row["timeout_s"]),  # older versions stored inf
            error_type=row["error_type"],
            error_message=row["error_message"],
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
    ) -> Results[Flow]:
        """Flows matching every filter given, newest first.

        ``status`` is one status or several (``timed_out`` included); ``since``/``until`` bound
        the flow's start; ``running_longer_than`` keeps flows with no end that started at least
        that long ago (seconds, a timedelta or "10m"); ``limit=None`` returns all.
        """
        now = time.time_ns()
        rest = (since, until, running_longer_than, parent_id)
        planned = self._label_plan(now, labels, tenant, name, status, *rest) if labels else None
        if planned is not None:
            sql, params = planned
        else:
            where, params = _flow_filter(
                now,
                tenant,
                name,
                status,
                labels,
                *rest,
                # From the other filters' side: each candidate's labels by primary key.
                common_label=(lambda k, v: True) if labels else None,
            )
            sql = f"SELECT {_FLOW_COLUMNS} FROM flows"
            order = " ORDER BY start_ns DESC"
            if labels and tenant is not None:
                # The tenant's flows newest first, each label checked by primary key with
                # the id the index holds, until the LIMIT (`_label_plan` found them fewer
                # than the label's).
                sql += " INDEXED BY flows_tenant_start"
            elif labels:
                # The other filters' index picks the candidates (fewer than the label's
                # flows), then they are sorted: not a walk of the start index.
                order = " ORDER BY +start_ns DESC"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += order
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        flows = Results([self._flow(row, now) for row in self._query(sql, params)])
        self._fill_current_steps(flows)
        return flows

    def _label_plan(
        self,
        now: int,
        labels: Mapping[str, LabelValue],
        tenant: str | None,
        name: str | None,
        status: str | Iterable[str] | None,
        since: TimeArg,
        until: TimeArg,
        running_longer_than: timedelta | float | str | None,
        parent_id: str | None,
    ) -> tuple[str, list[Any]] | None:
        """The label-side query of `flows(labels=...)`, or None when the other filters match
        fewer flows than the rarest label (then they drive, `flows()`'s other branch).

        Label side: the rarest label's rows in ``flow_labels_kv_started`` (key, value,
        started) are walked newest first, each joined to its flow by primary key and checked
        against the other filters, until the LIMIT: no sort, and no more rows read than the
        page needs when the other filters keep most of the label's flows. Which side is
        smaller is decided by index range counts that stop at ``LABEL_PLAN_CAP`` (a few ms)."""
        low = None if since is None else to_ns(since, now_ns=now)
        high = None if until is None else to_ns(until, now_ns=now)
        bounds, bound_params = "", []
        if low is not None:
            bounds += " AND l.started >= ?"
            bound_params.append(low)
        if high is not None:
            bounds += " AND l.started <= ?"
            bound_params.append(high)
        texts = {key: label_text(value) for key, value in labels.items()}
        sizes = {
            key: int(
                self._query(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM flow_labels l WHERE l.key = ? "
                    f"AND l.value = ?{bounds} LIMIT ?)",
                    [key, value, *bound_params, LABEL_PLAN_CAP],
                )[0]["n"]
            )
            for key, value in texts.items()
        }
        drive = min(sizes, key=lambda key: sizes[key])
        where, params = _flow_filter(
            now, tenant, name, status, None, *(since, until), running_longer_than, parent_id
        )
        if any(f is not None for f in (tenant, name, status, running_longer_than, parent_id)):
            others = self._query(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM flows WHERE "
                + " AND ".join(where)
                + " LIMIT ?)",
                [*params, LABEL_PLAN_CAP],
            )
            if int(others[0]["n"]) < sizes[drive]:
                return None
        for key, value in texts.items():
            if key != drive:
                where.append(
                    "EXISTS (SELECT 1 FROM flow_labels o WHERE o.flow_id = flows.flow_id "
                    "AND o.key = ? AND o.value = ?)"
                )
                params.extend([key, value])
        columns = ", ".join("flows." + col.strip() for col in _FLOW_COLUMNS.split(","))
        sql = (
            f"SELECT {columns} FROM flow_labels l INDEXED BY flow_labels_kv_started "
            "CROSS JOIN flows ON flows.flow_id = l.flow_id "
            f"WHERE l.key = ? AND l.value = ?{bounds}"
            + "".join(" AND " + clause for clause in where)
            + " ORDER BY l.started DESC"
        )
        return sql, [drive, texts[drive], *bound_params, *params]

    def _fill_current_steps(self, flows: list[Flow]) -> None:
        open_flows = {f.id: f for f in flows if f.status in c.OPEN}
        if not open_flows:
            return
        ids = list(open_flows)
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT flow_id, name, progress_done, progress_total, progress_message, "
                f"progress_ns FROM steps WHERE status = 'running' AND flow_id IN ({marks}) "
                "ORDER BY start_ns",
                chunk,
            )
            for row in rows:  # the latest started wins
                open_flows[row["flow_id"]].current_step = row["name"]
                open_flows[row["flow_id"]].current_progress = _progress(row)

    def changes(self, after_ns: int, limit: int = 1000) -> tuple[list[Flow], int]:
        """Flows written after ``after_ns``, oldest change first, and the cursor to pass next
        time. Each write stamps its flows above every change already committed (see
        ``StoreWriter._seen_base``), so paging with the returned cursor misses and repeats
        nothing, however many flows changed at once; a flow changed again is returned again."""
        now = time.time_ns()
        rows = self._query(
            f"SELECT {_FLOW_COLUMNS}, seen_ns FROM flows WHERE seen_ns > ? "
            "ORDER BY seen_ns LIMIT ?",
            (after_ns, limit),
        )
        flows = [self._flow(row, now) for row in rows]
        self._fill_current_steps(flows)
        cursor = max((int(row["seen_ns"]) for row in rows), default=after_ns)
        return flows, cursor

    def count(
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
    ) -> int:
        """How many flows match the filters (those of :meth:`flows`); all flows by default."""
        where, params = _flow_filter(
            time.time_ns(),
            tenant,
            name,
            status,
            labels,
            since,
            until,
            running_longer_than,
            parent_id,
        )
        sql = "SELECT COUNT(*) AS n FROM flows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self._query(sql, params)[0]["n"])

    # -- one flow ------------------------------------------------------------------------------
    def resolve(self, flow_id: str) -> str:
        """The full id of a flow given its id or a unique prefix of it."""
        return str(self._resolved(flow_id)["flow_id"])

    def _resolved(self, flow_id: str) -> sqlite3.Row:
        """The row of the flow with this id or unique id prefix."""
        key = flow_id.strip().lower()
        if not key:
            raise FlowNotFoundError("empty flow id")
        rows = self._query(
            f"SELECT {_FLOW_COLUMNS} FROM flows WHERE flow_id >= ? AND flow_id < ? "
            "ORDER BY flow_id LIMIT 2",
            (key, key + "\uffff"),
        )
        if not rows:
            raise FlowNotFoundError(f"no flow {flow_id} in {self.path}")
        if len(rows) > 1 and rows[0]["flow_id"] != key:
            raise FlowNotFoundError(f"flow id prefix {flow_id} is ambiguous; give more characters")
        return rows[0]

    def _steps(self, flow_id: str, spans: list[SpanRecord] | None = None) -> list[Step]:
        """The flow's steps; `spans`: its other spans, if already read (to place nested steps)."""
        rows = self._query(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE flow_id = ? "
            "ORDER BY start_ns IS NULL, start_ns, rowid",
            (flow_id,),
        )
        if spans is None:
            spans = self._records(SpanRecord, "spans", "start_ns", (flow_id,))
        span_parents = {span.span_id: span.parent_span_id for span in spans}
        ids = {row["span_id"] for row in rows}
        steps: dict[str, Step] = {}
        for row in rows:
            parent = row["parent_span_id"]
            hops = 0
            while parent is not None and parent not in ids and hops < 64:
                parent, hops = span_parents.get(parent), hops + 1
            parent_step = parent if parent in ids else None
            depth = steps[parent_step].depth + 1 if parent_step in steps else 0
            attributes = _loads(row["attributes"])
            steps[row["span_id"]] = Step(
                span_id=row["span_id"],
                name=row["name"],
                service=row["service"],
                status=row["status"],
                start_ns=row["start_ns"],
                end_ns=row["end_ns"],
                duration_ms=_ms(row["start_ns"], row["end_ns"]),
                optional=bool(row["optional"]),
                error_type=row["error_type"],
                error_message=row["error_message"],
                attributes=attributes,
                parent_span_id=row["parent_span_id"],
                parent_step_id=parent_step,
                depth=depth,
                trace_id=row["trace_id"],
                **step_options(attributes),
                progress=_progress(row),
            )
        for art in self._query(
            "SELECT span_id, name, value FROM artifacts WHERE flow_id = ? ORDER BY ts_ns, name",
            (flow_id,),
        ):
            owner = steps.get(art["span_id"])
            if owner is not None:
                owner.artifacts[art["name"]] = artifact_value(art["value"])
        return list(steps.values())

    def flow(self, flow_id: str) -> FlowDetail:
        """One flow with its steps (in start order), child flows, events, logs and spans."""
        detail = self._detail(flow_id)
        full_id = detail.id
        current = detail.current
        detail.current_step = current.name if current else None
        detail.current_progress = current.progress if current else None
        detail.children = list(self.flows(parent_id=full_id, limit=None))
        detail.children.reverse()
        by_flow = (full_id,)
        detail.events = self._records(FlowEvent, "events", "ts_ns, id", by_flow)
        detail.logs = self._records(LogEntry, "logs", "ts_ns, id", by_flow)
        if detail.status in c.OPEN and detail.name is not None:
            detail.pending_steps = self._pending(detail)
        return detail

    def _detail(self, flow_id: str) -> FlowDetail:
        """The flow with its steps and spans: what `flow()` and `durations()` both need."""
        detail = FlowDetail(**vars(self._flow(self._resolved(flow_id), time.time_ns())))
        detail.spans = self._records(SpanRecord, "spans", "start_ns", (detail.id,))
        detail.steps = self._steps(detail.id, detail.spans)
        return detail

    def _records(self, cls: type[R], table: str, order: str, params: tuple[str]) -> list[R]:
        """Rows of `table` for one flow as `cls` dataclasses (columns named like the fields)."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        rows = self._query(f"SELECT * FROM {table} WHERE flow_id = ? ORDER BY {order}", params)
        return [cls(**{name: _column(row, name) for name in names}) for row in rows]

    def _pending(self, detail: FlowDetail) -> list[str]:
        rows = self._query(
            "SELECT flow_id FROM flows WHERE name = ? AND status = 'completed' AND flow_id != ? "
            "ORDER BY start_ns DESC LIMIT 1",
            (detail.name, detail.id),
        )
        if not rows:
            return []
        seen = {s.name for s in detail.steps}
        pending: list[str] = []
        for step in self._steps(rows[0]["flow_id"]):
            if step.depth == 0 and step.name not in seen and step.name not in pending:
                pending.append(step.name)
        return pending

    def durations(self, flow_id: str) -> FlowDurations:
        """The flow's duration and each step's, with each step's share of the flow."""
        return FlowDurations.of(self._detail(flow_id))

    # -- aggregates ----------------------------------------------------------------------------
    def stats(
        self, *, since: TimeArg = None, tenant: str | None = None, name: str | None = None
    ) -> Results[FlowStats]:
        """Per flow name and tenant: counts by status, failure rate, p50/p95 duration (ended
        flows). The failure rate is (failed + timed out) over flows that ended or timed out.

        Counts are exact. Percentiles are exact when at most ``EXACT_STATS_UP_TO`` flows
        match; above that they come from the store's duration bins (store/tails.py), within
        1/64 (1.6 %) of the exact value, and the query reads pre-aggregated rows instead of
        every flow of the window."""
        now = time.time_ns()
        since_ns = None if since is None else to_ns(since, now_ns=now)
        where: list[str] = ["1"]
        params: list[Any] = []
        if since_ns is not None:
            where.append("start_ns >= ?")
            params.append(since_ns)
        for column, value in (("tenant", tenant), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        cond = " AND ".join(where)
        matching = self._query(
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM flows WHERE {cond} LIMIT ?)",
            [*params, EXACT_STATS_UP_TO + 1],
        )
        if int(matching[0]["n"]) <= EXACT_STATS_UP_TO:
            return self._exact_stats(now, cond, params)
        try:
            return self._tail_stats(now, since_ns, tenant, name)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flow store {self.path}: {exc}") from None

    def _tail_stats(
        self, now: int, since_ns: int | None, tenant: str | None, name: str | None
    ) -> Results[FlowStats]:
        """`stats()` from the pre-aggregated tails (store/tails.py): exact counts, percentiles
        from duration bins (within ``tails.RELATIVE_ERROR`` of the exact ones)."""
        window = tails.read(self._conn, since_ns, name, tenant)
        counts = window.counts
        # Running flows past their deadline count as timed out (`effective_status`).
        sql = (
            "SELECT name, tenant, COUNT(*) FROM flows INDEXED BY flows_overdue "
            "WHERE status = 'running' AND deadline_ns IS NOT NULL AND deadline_ns < ?"
        )
        params: list[Any] = [now]
        for column, value in (("start_ns >=", since_ns), ("tenant =", tenant), ("name =", name)):
            if value is not None:
                sql += f" AND {column} ?"
                params.append(value)
        for name_, tenant_, overdue in self._conn.execute(sql + " GROUP BY 1, 2", params):
            group = counts.setdefault((name_, tenant_), {})
            group[c.RUNNING] = group.get(c.RUNNING, 0) - overdue
            group[c.TIMED_OUT] = group.get(c.TIMED_OUT, 0) + overdue
        kept = {
            key: {s: n for s, n in group.items() if n}
            for key, group in counts.items()
            if sum(group.values()) > 0
        }
        return aggregate_bins(kept, window.quantiles(self._conn, (0.50, 0.95)))

    def _exact_stats(self, now: int, cond: str, params: list[Any]) -> Results[FlowStats]:
        # Both reads use one covering index (no table row per flow); counts by effective status
        # (`effective_status`: a running flow past its deadline is timed out) are grouped in
        # SQL, and only ended flows' durations come back, as plain tuples, to be sorted per
        # group. (Percentile ranks picked with a window function in SQL measured slower.)
        # With a tenant or name the few flows of its index are read instead (a tenant's day
        # at 1M flows: 93 ms through the start index).
        index = "" if " = ?" in cond else f"INDEXED BY {_STATS_INDEX} "
        counts = self._query(
            "SELECT name, tenant, CASE WHEN status = 'running' AND deadline_ns < ? "
            "THEN 'timed_out' ELSE status END AS st, COUNT(*) AS n FROM flows "
            f"{index}WHERE " + cond + " GROUP BY name, tenant, st",
            [now, *params],
        )
        durations: dict[tuple[str | None, str | None], list[int]] = {}
        try:
            cursor = self._conn.cursor()
            cursor.row_factory = None  # tuples: a Row object per flow costs more than the rest
            cursor.execute(
                f"SELECT name, tenant, end_ns - start_ns FROM flows {index}"
                f"WHERE {cond} AND status != 'running' AND start_ns IS NOT NULL "
                "AND end_ns IS NOT NULL",
                params,
            )
            for name_, tenant_, took in cursor:
                key = (name_, tenant_)
                found = durations.get(key)
                if found is None:
                    durations[key] = [took]
                else:
                    found.append(took)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flow store {self.path}: {exc}") from None
        return aggregate_sql(((r["name"], r["tenant"], r["st"], r["n"]) for r in counts), durations)
