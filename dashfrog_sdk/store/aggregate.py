"""Per flow name and tenant aggregates: counts by status, failure rate, p50/p95 duration."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dashfrog_sdk import conventions as c
from dashfrog_sdk.status import effective_status
from dashfrog_sdk.store.model import FlowStats, Results

# (name, tenant, stored status, start_ns, end_ns, deadline_ns)
Key = tuple[str | None, str | None]
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
    durations = {key: sorted(g.durations) for key, g in groups.items()}
    return _results(
        {key: g.counts for key, g in groups.items()},
        lambda key, q: percentile(durations[key], q),
    )


# (name, tenant, effective status, count)
CountRow = tuple[str | None, str | None, str, int]


def aggregate_sql(
    counts: Iterable[CountRow], durations: Mapping[Key, list[int]]
) -> Results[FlowStats]:
    """`aggregate`'s result from what `FlowStore.stats` reads: the counts per effective status
    (grouped in SQL) and each group's ended durations in nanoseconds (unsorted). Sorting the
    integers orders their millisecond values the same way, and `percentile` then runs on the
    same doubles `aggregate` computes."""
    groups: dict[Key, dict[str, int]] = {}
    for name, tenant, status, n in counts:
        groups.setdefault((name, tenant), {})[status] = n
    ms: dict[Key, list[float]] = {}

    def quantile(key: Key, q: float) -> float | None:
        values = ms.get(key)
        if values is None:
            values = ms[key] = [d / 1e6 for d in sorted(durations.get(key, ()))]
        return percentile(values, q)

    return _results(groups, quantile)


def aggregate_bins(
    counts: Mapping[Key, Mapping[str, int]], quantiles: Mapping[Key, list[float | None]]
) -> Results[FlowStats]:
    """`aggregate`'s result from pre-aggregated counts per effective status and each group's
    p50 and p95 (store/tails.py, from duration bins)."""

    def quantile(key: Key, q: float) -> float | None:
        found = quantiles.get(key)
        return None if found is None else found[0 if q == 0.50 else 1]

    return _results(counts, quantile)


def _results(
    groups: Mapping[Key, Mapping[str, int]], quantile: Callable[[Key, float], float | None]
) -> Results[FlowStats]:
    out: Results[FlowStats] = Results()
    for (name, tenant), counts in sorted(
        groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))
    ):
        count = sum(counts.values())
        running = counts.get(c.RUNNING, 0)
        ended = count - running
        failures = counts.get(c.FAILED, 0) + counts.get(c.TIMED_OUT, 0)
        out.append(
            FlowStats(
                name=name,
                tenant=tenant,
                count=count,
                running=running,
                completed=counts.get(c.COMPLETED, 0),
                failed=counts.get(c.FAILED, 0),
                cancelled=counts.get(c.CANCELLED, 0),
                timed_out=counts.get(c.TIMED_OUT, 0),
                failure_rate=failures / ended if ended else 0.0,
                p50_ms=quantile((name, tenant), 0.50),
                p95_ms=quantile((name, tenant), 0.95),
            )
        )
    return out
