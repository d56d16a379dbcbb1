"""What the pages show, computed from the store's query API: no HTML here, no SQL either.

Every function taking a `StoreReader` runs on the store thread (see reader.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.store import Flow, FlowDetail, FlowStats, Step
from dashfrog_sdk.store.convert import label_text
from dashfrog_sdk.store.model import ns_to_datetime, times
from dashfrog_sdk.timeutil import parse_duration, parse_instant, to_ns
from dashfrog_sdk.ui.reader import StoreReader

STATUSES = (c.RUNNING, c.COMPLETED, c.FAILED, c.CANCELLED, c.TIMED_OUT)
FAILURES = (c.FAILED, c.TIMED_OUT)
WINDOWS = ("15m", "1h", "1d", "7d", "all", "custom")
MAX_SCAN = 5000  # flows read to fill one page when the minimum-duration filter drops most
MAX_PAGE = 500
MAX_HEATMAP_DAYS = 31
BIG_DIAGRAM = 300  # steps: above this the sequence diagram is drawn on request only


class BadQuery(ValueError):
    """A query parameter with a bad value; the message names it."""


# -- time windows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    name: str  # one of WINDOWS
    since: str = ""  # custom: a duration ago or an ISO date/time, as typed
    until: str = ""

    @classmethod
    def parse(cls, params: Mapping[str, str], default: str) -> Window:
        name = params.get("window") or default
        if name not in WINDOWS:
            raise BadQuery(f"window must be one of {', '.join(WINDOWS)}, got {name!r}")
        since, until = params.get("since", "").strip(), params.get("until", "").strip()
        if name != "custom":
            return cls(name)
        for label, value in (("since", since), ("until", until)):
            if value:
                try:
                    parse_instant(value)
                except ValueError as exc:
                    raise BadQuery(f"{label}: {exc}") from None
        return cls(name, since, until)

    def bounds(self, now_ns: int) -> tuple[int | None, int | None]:
        """(since, until) as unix ns; None where open."""
        if self.name == "all":
            return None, None
        if self.name != "custom":
            return now_ns - int(parse_duration(self.name) * 1e9), None
        return (
            to_ns(parse_instant(self.since), now_ns=now_ns) if self.since else None,
            to_ns(parse_instant(self.until), now_ns=now_ns) if self.until else None,
        )

    def params(self) -> dict[str, str]:
        out = {"window": self.name}
        if self.name == "custom":
            out.update({k: v for k, v in (("since", self.since), ("until", self.until)) if v})
        return out


# The query API takes bounds as datetimes (microseconds, through a float): widen a bound given
# in ns by a few microseconds so that it never excludes the flow it was taken from; callers drop
# what lies past the exact bound.
_SLACK_NS = 3000


def _up(ns: int | None) -> datetime | None:
    return None if ns is None else ns_to_datetime(ns + _SLACK_NS)


def _down(ns: int | None) -> datetime | None:
    return None if ns is None else ns_to_datetime(ns - _SLACK_NS)


# -- the flows list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowQuery:
    tenant: str | None = None
    name: str | None = None
    statuses: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    window: Window = Window("all")
    min_duration: str = ""  # as typed: 500ms, 2s, 1m
    before: str = ""  # page cursor: "<start_ns>:<flow id>" of the last flow of the page before
    limit: int = 50

    @classmethod
    def parse(cls, params: Any, *, page_size: int, tenant: str | None = None) -> FlowQuery:
        """From a request's query parameters (a Starlette `QueryParams`, or a mapping whose
        `getlist` gives repeated keys). `tenant` forces the tenant (the signed status page)."""
        statuses = tuple(s for s in params.getlist("status") if s)
        for s in statuses:
            if s not in STATUSES:
                raise BadQuery(f"status must be one of {', '.join(STATUSES)}, got {s!r}")
        labels: list[tuple[str, str]] = []
        for item in params.getlist("label"):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BadQuery(f"label must be KEY=VALUE, got {item!r}")
            labels.append((key, value))
        min_duration = params.get("min_duration", "").strip()
        if min_duration:
            try:
                parse_duration(min_duration)
            except ValueError as exc:
                raise BadQuery(f"min_duration: {exc}") from None
        before = params.get("before", "")
        if before and not _cursor(before):
            raise BadQuery(f"before must be a page cursor from a link, got {before!r}")
        try:
            limit = int(params.get("limit") or page_size)
        except ValueError:
            raise BadQuery(f"limit must be a number, got {params.get('limit')!r}") from None
        if not 1 <= limit <= MAX_PAGE:
            raise BadQuery(f"limit must be 1-{MAX_PAGE}, got {limit}")
        return cls(
            tenant=tenant if tenant is not None else (params.get("tenant") or None),
            name=params.get("name") or None,
            statuses=statuses,
            labels=tuple(labels),
            window=Window.parse(params, "all"),
            min_duration=min_duration,
            before=before,
            limit=limit,
        )

    def params(
        self, changes: Mapping[str, str] | None = None, *, tenant: bool = True
    ) -> list[tuple[str, str]]:
        """The query as URL parameters (what the page's links and live updates carry)."""
        out: list[tuple[str, str]] = []
        if tenant and self.tenant:
            out.append(("tenant", self.tenant))
        if self.name:
            out.append(("name", self.name))
        out.extend(("status", s) for s in self.statuses)
        out.extend(("label", f"{k}={v}") for k, v in self.labels)
        if self.window.name != "all":
            out.extend(self.window.params().items())
        if self.min_duration:
            out.append(("min_duration", self.min_duration))
        if self.limit != 50:
            out.append(("limit", str(self.limit)))
        if self.before:
            out.append(("before", self.before))
        changes = changes or {}
        out = [(k, v) for k, v in out if k not in changes]
        out.extend((k, v) for k, v in changes.items() if v)
        return out

    def url(
        self, path: str, changes: Mapping[str, str] | None = None, *, tenant: bool = True
    ) -> str:
        """`path` with the query (and `changes`: parameters replaced, "" to drop one)."""
        query = urlencode(self.params(changes, tenant=tenant))
        return f"{path}?{query}" if query else path


def _cursor(text: str) -> tuple[int, str] | None:
    ns, sep, flow_id = text.partition(":")
    if not sep or not ns.isdigit() or not flow_id or len(flow_id) > 64:
        return None
    return int(ns), flow_id


@dataclass
class FlowPage:
    flows: list[Flow]
    next_before: str  # cursor of the next (older) page, "" when this is the last
    scanned: int  # flows read (more than shown when the minimum-duration filter dropped some)
    truncated: bool  # the scan stopped at MAX_SCAN before filling the page
    cursor_ns: int  # store clock when read: live updates ask for changes after it
    next_deadline_ns: int | None  # the earliest deadline of a running flow shown
    where: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id: (step, service)


class StepCache:
    """The step each listed failed (or timed-out) flow stopped at, with its service.

    The list query names a running flow's current step but not the step a failed flow failed
    at, so this reads each such flow once (`store.flow()`) and keeps the answer: an ended
    flow's failed step does not change. Running flows show the current step the list query
    gives, with no read per row: live pages re-render them every few seconds."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._known: dict[tuple[str, str], tuple[str, str | None] | None] = {}

    def fill(self, store: StoreReader, page: FlowPage) -> None:
        for f in page.flows:
            if f.status not in FAILURES:
                continue
            key = (f.id, f.status)
            if key not in self._known:
                if len(self._known) >= self.size:
                    self._known.clear()
                self._known[key] = where(store.flow(f.id))
            found = self._known[key]
            if found is not None:
                page.where[f.id] = found


def where(detail: FlowDetail) -> tuple[str, str | None] | None:
    """(step, service) a flow is at: the current step, or the innermost failed step."""
    current = detail.current
    if current is not None:
        return current.name, current.service
    failed = [s for s in detail.steps if s.failed_flow]
    if not failed:
        return None
    step = max(failed, key=lambda s: (s.depth, -(s.start_ns or 0)))
    return step.name, step.service


def list_flows(store: StoreReader, q: FlowQuery, cache: StepCache | None = None) -> FlowPage:
    """One page of flows, newest first, through `store.flows()`.

    Pages are keyset pages (each one starts below the last flow of the one before), so a page
    is one indexed query however deep it is. The minimum duration is applied here, on batches,
    because the query API has no duration filter; at most MAX_SCAN flows are read per page."""
    cursor_ns = time.time_ns()
    since, until = q.window.bounds(cursor_ns)
    last = _cursor(q.before) if q.before else None
    if last is not None:
        until = last[0] if until is None else min(until, last[0])
    min_ms = parse_duration(q.min_duration) * 1000 if q.min_duration else None
    shown: list[Flow] = []
    scanned = 0
    batch = q.limit + 1 if min_ms is None else max(200, q.limit + 1)
    exhausted = False
    while len(shown) <= q.limit and scanned < MAX_SCAN:
        rows = store.flows(
            tenant=q.tenant,
            name=q.name,
            status=q.statuses or None,
            labels=dict(q.labels) or None,
            since=_down(since),
            until=_up(until),
            limit=batch + 2,  # the bound is rounded up: a couple of rows may be dropped
        )
        fresh = [f for f in rows if _before(f, until, last)]
        scanned += len(fresh)
        for f in fresh:
            if min_ms is None or (f.duration_ms is not None and f.duration_ms >= min_ms):
                shown.append(f)
        if len(rows) < batch + 2 or not fresh:
            exhausted = True
            break
        tail = fresh[-1]
        until, last = tail.start_ns, (tail.start_ns or 0, tail.id)
    more = len(shown) > q.limit
    shown = shown[: q.limit]
    truncated = not exhausted and not more and scanned >= MAX_SCAN
    next_before = ""
    if (more or truncated) and shown:
        tail = shown[-1] if more else fresh[-1]
        next_before = f"{tail.start_ns or 0}:{tail.id}"
    deadlines = [
        f.start_ns + int(f.timeout_s * 1e9)
        for f in shown
        if f.status == c.RUNNING and f.timeout_s is not None and f.start_ns is not None
    ]
    page = FlowPage(shown, next_before, scanned, truncated, cursor_ns, min(deadlines, default=None))
    (cache or StepCache()).fill(store, page)
    return page


def _before(f: Flow, until: int | None, last: tuple[int, str] | None) -> bool:
    """Whether `f` belongs below the page cursor (the query bound is rounded up)."""
    start = f.start_ns or 0
    if until is not None and start > until:
        return False
    # Flows that started in the very same nanosecond as the cursor's may show again on the
    # next page (the API orders by start only); none is ever skipped.
    return not (last is not None and start == last[0] and f.id == last[1])


LOOK_BACK_NS = 2_000_000_000  # another process may commit a row stamped this much earlier


def changed_since(store: StoreReader, cursor_ns: int) -> bool:
    """Whether any flow was written after `cursor_ns` (store clock). Another process may
    commit a row stamped up to a moment earlier, so the last 2 s are looked at again."""
    flows, _ = store.changes(cursor_ns - LOOK_BACK_NS, limit=1)
    return bool(flows)


class ChangeFeed:
    """The store's recent changes, read once per `every_s` for every open page.

    Each live page used to ask the store on each poll (`changed_since`, then the whole page
    or flow again when anything at all had changed). Now one `store.changes()` read serves
    every poll in the same interval, and a page is answered "unchanged" (204) without a store
    read when none of the flows changed since it was drawn could be on it: every record the
    store writes stamps its flow (`FlowStore.changes`), so a flow page whose flow and child
    flows were not stamped shows what it showed. Conservative: a page whose stamp is older
    than what the feed keeps is "changed". Used on the store thread only."""

    PAGE = 1000
    MAX_PAGES = 20  # changes read per refresh at most; beyond, the feed starts over

    VERIFY_S = 10.0  # a flow page is read in full at least this often, changes or not

    def __init__(self, every_s: float, keep_s: float = 120.0) -> None:
        self.every_s = every_s
        # flow id -> when its page was last read in full: a safety net for what a backend's
        # changes() may not stamp (the ClickHouse rollup's events and logs).
        self._verified: dict[str, float] = {}
        self.keep_ns = int(keep_s * 1e9)
        self._cursor: int | None = None  # store stamp read up to
        self._start = 0  # every change stamped after this is in the batches
        self._read_at = float("-inf")
        self._batches: deque[tuple[int, list[Flow]]] = deque()  # (cursor after, flows)
        self._latest: dict[str, int] = {}  # flow id (or parent id) -> cursor it was seen at

    def refresh(self, store: StoreReader) -> None:
        now = time.monotonic()
        if now - self._read_at < self.every_s:
            return
        self._read_at = now
        if self._cursor is None:
            self._cursor = self._start = time.time_ns() - 2 * LOOK_BACK_NS
        for _ in range(self.MAX_PAGES):
            flows, cursor = store.changes(self._cursor, limit=self.PAGE)
            self._cursor = max(self._cursor, cursor)
            if flows:
                self._batches.append((cursor, flows))
                for f in flows:
                    self._latest[f.id] = cursor
                    if f.parent_id is not None:
                        self._latest["^" + f.parent_id] = cursor
            if len(flows) < self.PAGE:
                break
        else:  # more changes than a page would ever look through: start over from here
            self._batches.clear()
            self._latest.clear()
            self._start = self._cursor
        while self._batches and self._batches[0][0] < self._cursor - self.keep_ns:
            self._start = self._batches.popleft()[0]
        if len(self._latest) > 20 * self.PAGE * self.MAX_PAGES:
            self._latest = {k: v for k, v in self._latest.items() if v > self._start}

    def _known(self, stamp: int) -> bool:
        return self._cursor is not None and stamp - LOOK_BACK_NS >= self._start

    def read_flow(self, store: StoreReader, flow_id: str) -> FlowDetail:
        """`store.flow(flow_id)`, noting that its page was read in full now."""
        detail = store.flow(flow_id)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[flow_id] = time.monotonic()
        return detail

    def flow_unchanged(self, store: StoreReader, flow_id: str, stamp: int) -> bool:
        """Whether flow `flow_id` and its child flows were not written after `stamp` (and
        its page was read in full within ``VERIFY_S``)."""
        self.refresh(store)
        verified = self._verified.get(flow_id)
        if not self._known(stamp) or verified is None:
            return False
        if time.monotonic() - verified > self.VERIFY_S:
            return False
        after = stamp - LOOK_BACK_NS
        return self._latest.get(flow_id, 0) <= after and self._latest.get("^" + flow_id, 0) <= after

    def page_unchanged(self, store: StoreReader, q: FlowQuery, stamp: int, floor_ns: int) -> bool:
        """Whether no flow written after `stamp` can be on the page of `q` whose last row
        started at `floor_ns` (0: the page was not full). Status, window and minimum duration
        are not looked at: a flow that leaves the page's status must leave the page."""
        self.refresh(store)
        if not self._known(stamp):
            return False
        after = stamp - LOOK_BACK_NS
        for cursor, flows in reversed(self._batches):
            if cursor <= after:
                break
            if any(_may_show(q, floor_ns, f) for f in flows):
                return False
        return True


def _may_show(q: FlowQuery, floor_ns: int, f: Flow) -> bool:
    if q.tenant is not None and f.tenant != q.tenant:
        return False
    if q.name is not None and f.name != q.name:
        return False
    for key, value in q.labels:
        if key not in f.labels or label_text(f.labels[key]) != value:
            return False
    return f.start_ns is None or f.start_ns >= floor_ns


# -- tenants (home) ------------------------------------------------------------------------------


@dataclass
class TenantRow:
    tenant: str | None
    count: int = 0
    running: int = 0
    failures: int = 0
    ended: int = 0
    names: int = 0
    last_failure: Flow | None = None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.ended if self.ended else 0.0


def _subtract(a: FlowStats, b: FlowStats | None) -> FlowStats:
    if b is None:
        return a
    fields = ("count", "running", "completed", "failed", "cancelled", "timed_out")
    out = dataclasses.replace(a, **{f: getattr(a, f) - getattr(b, f) for f in fields})
    ended = out.count - out.running
    out.failure_rate = (out.failed + out.timed_out) / ended if ended else 0.0
    return out


def stats_between(
    store: StoreReader,
    since: int | None,
    until: int | None,
    *,
    tenant: str | None = None,
) -> list[FlowStats]:
    """Counts per name and tenant for flows started in [since, until]. The query API bounds
    stats by `since` only, so a closed window is the difference of two calls (counts only:
    percentiles are those of everything since `since`)."""
    rows = store.stats(since=_down(since), tenant=tenant)
    if until is None:
        return list(rows)
    later = {(r.name, r.tenant): r for r in store.stats(since=_up(until), tenant=tenant)}
    return [_subtract(r, later.get((r.name, r.tenant))) for r in rows]


@dataclass
class TenantPage:
    rows: list[TenantRow]  # this page's tenants, worst failure rate first
    total: int  # tenants with flows in the window (matching the search)
    number: int  # this page, from 1
    pages: int


def tenants(
    store: StoreReader, window: Window, search: str = "", page: int = 1, size: int = 50
) -> TenantPage:
    """Each tenant with flows in the window: counts, failure rate, running now, last failure;
    a page of `size` at a time, worst failure rate first.

    One `stats()` over the window gives every tenant's counts; the last failure is one
    `flows()` query per tenant, so only the tenants shown are asked (on ClickHouse a query
    costs tens of milliseconds: the home page of a store with 1,000 tenants took 69 s when
    every tenant was asked; ``benchmarks/ui.py --chdb``)."""
    since, until = window.bounds(time.time_ns())
    by_tenant: dict[str | None, TenantRow] = {}
    for s in stats_between(store, since, until):
        row = by_tenant.setdefault(s.tenant, TenantRow(s.tenant))
        row.count += s.count
        row.running += s.running
        row.failures += s.failed + s.timed_out
        row.ended += s.count - s.running
        row.names += 1
    needle = search.strip().lower()
    rows = [
        r
        for r in by_tenant.values()
        if r.count and (not needle or needle in (r.tenant or "").lower())
    ]
    rows.sort(key=lambda r: (-r.failure_rate, -r.count, r.tenant or ""))
    pages = max(1, -(-len(rows) // size))
    number = min(page, pages)
    shown = rows[(number - 1) * size : number * size]
    for row in shown:
        if row.tenant is not None:
            found = store.flows(tenant=row.tenant, status=FAILURES, limit=1)
            row.last_failure = found[0] if found else None
    return TenantPage(shown, len(rows), number, pages)


def page_number(params: Mapping[str, str]) -> int:
    """The ``page`` parameter: a page number from 1 (1 when absent)."""
    text = params.get("page") or "1"
    if not text.isdigit() or int(text) < 1:
        raise BadQuery(f"page={text!r}: give a page number, 1 or more")
    return int(text)


# -- stats ---------------------------------------------------------------------------------------


@dataclass
class StatsRow:
    stats: FlowStats
    days: list[tuple[str, str, str]] = field(default_factory=list)  # (day, css class, title)


def day_starts(now_ns: int, days: int) -> list[int]:
    """UTC midnights, oldest first: the last `days` days, today included."""
    today = datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return [int((today - timedelta(days=i)).timestamp() * 1e9) for i in range(days - 1, -1, -1)]


def heat_class(s: FlowStats | None) -> tuple[str, str]:
    """Green: every ended flow completed; red: all failed; amber: mixed; grey: none."""
    if s is None or s.count == 0:
        return "heat-none", "no flows"
    failures = s.failed + s.timed_out
    ended = s.count - s.running
    title = f"{s.count} flows: {s.completed} completed, {failures} failed"
    if s.cancelled:
        title += f", {s.cancelled} cancelled"
    if s.running:
        title += f", {s.running} running"
    if ended == 0:
        return "heat-running", title
    if failures == 0 and s.cancelled == 0:
        return "heat-ok", title
    if failures == ended:
        return "heat-bad", title
    return "heat-mixed", title


def stats_rows(
    store: StoreReader, window: Window, *, tenant: str | None = None
) -> tuple[list[StatsRow], list[str]]:
    """Per flow name and tenant in the window, with one heatmap cell per UTC day."""
    now = time.time_ns()
    since, _ = window.bounds(now)
    span_days = MAX_HEATMAP_DAYS if since is None else int((now - since) / 86_400e9) + 1
    starts = day_starts(now, max(1, min(MAX_HEATMAP_DAYS, span_days)))
    rows = [StatsRow(s) for s in store.stats(since=_down(since), tenant=tenant)]
    # Day d's counts are stats(since=d) minus stats(since=d+1): one aggregate query per day.
    cumulative = [
        {(s.name, s.tenant): s for s in store.stats(since=_down(start), tenant=tenant)}
        for start in starts
    ]
    labels = [
        datetime.fromtimestamp(start / 1e9, tz=timezone.utc).strftime("%m-%d") for start in starts
    ]
    for row in rows:
        key = (row.stats.name, row.stats.tenant)
        for i, label in enumerate(labels):
            here = cumulative[i].get(key)
            later = cumulative[i + 1].get(key) if i + 1 < len(cumulative) else None
            css, title = heat_class(_subtract(here, later) if here else None)
            row.days.append((label, css, f"{label}: {title}"))
    return rows, labels


# -- one flow ------------------------------------------------------------------------------------


@dataclass
class Bar:
    step: Step
    status: str
    depth: int
    x: float  # 0..1000 across the flow's time
    width: float
    offset: str
    is_current: bool


def waterfall(detail: FlowDetail, now_ns: int | None = None) -> list[Bar]:
    """Steps depth-first with their bar across the flow's time (a 1000-unit axis)."""
    now = time.time_ns() if now_ns is None else now_ns
    origin = detail.start_ns
    steps = _fmt.walk(detail)
    if origin is None:
        origin = min((s.start_ns for s in steps if s.start_ns is not None), default=now)
    ends = [detail.end_ns or now] + [s.end_ns or now for s in steps]
    total = max(max(ends) - origin, 1)
    current = detail.current
    bars = []
    for s in steps:
        start = s.start_ns if s.start_ns is not None else origin
        end = s.end_ns if s.end_ns is not None else (now if detail.status in c.OPEN else start)
        x = max(0.0, min(1000.0, (start - origin) * 1000 / total))
        width = max(4.0, min(1000.0 - x, (end - start) * 1000 / total))  # always visible
        bars.append(
            Bar(
                step=s,
                status=_fmt.step_status(detail, s),
                depth=min(s.depth, 8),
                x=round(x, 1),
                width=round(width, 1),
                offset=_fmt.offset(s.start_ns, detail.start_ns),
                is_current=current is not None and s.span_id == current.span_id,
            )
        )
    return bars


def artifacts(detail: FlowDetail) -> list[tuple[Step, str, Any]]:
    """(step, name, value) of every artifact, steps depth-first, each step's in order."""
    return [(s, name, value) for s in _fmt.walk(detail) for name, value in s.artifacts.items()]


def fingerprint(detail: FlowDetail) -> str:
    """Changes whenever what the flow page shows changes (but not with the clock)."""
    parts: list[Any] = [detail.status, detail.end_ns, detail.error_message, detail.current_step]
    parts.extend(
        (s.span_id, s.status, s.end_ns, s.progress, len(s.artifacts)) for s in detail.steps
    )
    parts.extend((len(detail.events), len(detail.logs), len(detail.children)))
    parts.extend((k.id, k.status) for k in detail.children)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def page_fingerprint(flows: Sequence[Flow]) -> str:
    parts = [(f.id, f.status, f.current_step, f.current_progress, f.end_ns) for f in flows]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _encode(obj: Any) -> Any:
    """`json.dumps` default: a store record as its fields, with ISO start/end times."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Shallow on purpose: dataclasses.asdict deep-copies every value first, which costs
        # most of a 1,000-step flow page; json.dumps walks the nested records itself.
        row = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        for key, moment in times(obj).items():
            row[key] = moment.isoformat() if moment else None
        return row
    return str(obj)


def to_json(obj: Any, *, indent: int | None = None) -> str:
    """A store record as JSON (the fields of `dashfrog flow --json`)."""
    return json.dumps(obj, default=_encode, indent=indent, ensure_ascii=False)
