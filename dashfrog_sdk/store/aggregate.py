"""Per flow name and tenant aggregates: counts by status, failure rate, p50/p95 duration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dashfrog_sdk import conventions as c
from dashfrog_sdk.status import effective_status
from dashfrog_sdk.store.model import FlowStats, Results

# (name, tenant, stored status, start_ns, end_ns, deadline_ns)
StatsRow = tuple[str | None, str | None, str, int | None, int | None, int | None]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, linearly interpolated; ``None`` if empty."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass
class _Group:
    counts: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)

    def get(self, status: str) -> int:
        return self.counts.get(status, 0)


def aggregate(rows: Iterable[StatsRow], now_ns: int) -> Results[FlowStats]:
    """Group flows by (name, tenant). Durations count ended flows only; the failure rate is
    (failed + timed out) over the flows that are no longer running."""
    groups: dict[tuple[str | None, str | None], _Group] = {}
    for name, tenant, status, start, end, deadline in rows:
        group = groups.setdefault((name, tenant), _Group())
        status = effective_status(status, deadline, now_ns)
        group.counts[status] = group.get(status) + 1
        if status not in c.OPEN and start is not None and end is not None:
            group.durations.append((end - start) / 1e6)
    out: Results[FlowStats] = Results()
    for (name, tenant), g in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        count = sum(g.counts.values())
        ended = count - g.get(c.RUNNING)
        failures = g.get(c.FAILED) + g.get(c.TIMED_OUT)
        durations = sorted(g.durations)
        out.append(
            FlowStats(
                name=name,
                tenant=tenant,
                count=count,
                running=g.get(c.RUNNING),
                completed=g.get(c.COMPLETED),
                failed=g.get(c.FAILED),
                cancelled=g.get(c.CANCELLED),
                timed_out=g.get(c.TIMED_OUT),
                failure_rate=failures / ended if ended else 0.0,
                p50_ms=percentile(durations, 0.50),
                p95_ms=percentile(durations, 0.95),
            )
        )
    return out
