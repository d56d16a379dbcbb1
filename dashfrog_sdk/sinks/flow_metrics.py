"""The automatic flow metrics: a lifecycle sink, so recorded on the dispatcher thread.

``dashfrog.flows.started`` and ``dashfrog.flows.ended`` (by flow name, tenant, and status for
ended), histograms ``dashfrog.flow.duration`` and ``dashfrog.step.duration`` in seconds; the
instruments are `dashfrog_sdk.metrics`' own, with its tenant handling and cardinality limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk._otel.histograms import record_many
from dashfrog_sdk.lifecycle.records import Lifecycle
from dashfrog_sdk.metrics import DURATION_BUCKETS, Counter, Histogram


class FlowMetrics:
    """Events sink recording the automatic flow metrics on the events thread (off the hot path)."""

    def __init__(self) -> None:
        self.started = Counter(
            "dashfrog.flows.started",
            unit="{flow}",
            description="Flows started, by flow name and tenant",
            flow_name=False,
        )
        self.ended = Counter(
            "dashfrog.flows.ended",
            unit="{flow}",
            description="Flows ended, by flow name, tenant and final status",
            flow_name=False,
        )
        self.flow_duration = Histogram(
            "dashfrog.flow.duration",
            unit="s",
            description="Duration of ended flows, by flow name, tenant and status",
            buckets=DURATION_BUCKETS,
            flow_name=False,
        )
        self.step_duration = Histogram(
            "dashfrog.step.duration",
            unit="s",
            description="Duration of steps, by flow name, step name, tenant and status",
            buckets=DURATION_BUCKETS,
            flow_name=False,
        )

    def __call__(self, batch: Sequence[Lifecycle]) -> None:
        # A batch holds many flows of the same few names, tenants and statuses: one counter
        # add per attribute set and batch (the sums are the same), and histogram values
        # grouped per set for _otel.histograms.record_many. Keys are the attribute values in
        # the order of the attribute dicts built below.
        started: dict[tuple[Any, ...], int] = {}
        ended: dict[tuple[Any, ...], int] = {}
        flow_durations: dict[tuple[Any, ...], list[float]] = {}
        step_durations: dict[tuple[Any, ...], list[float]] = {}
        for event in batch:
            flow = event.flow
            if event.kind == c.EVENT_FLOW_START:
                key: tuple[Any, ...] = (flow.get(c.FLOW_NAME), flow.get(c.TENANT))
                started[key] = started.get(key, 0) + 1
            elif event.ends_flow:
                key = (flow.get(c.FLOW_NAME), flow.get(c.TENANT), event.status or c.COMPLETED)
                ended[key] = ended.get(key, 0) + 1
                if event.duration_ns > 0:
                    flow_durations.setdefault(key, []).append(event.duration_ns / 1e9)
            elif event.kind == c.STEP_END:
                key = (
                    flow.get(c.FLOW_NAME),
                    flow.get(c.TENANT),
                    event.step or "",
                    event.status or c.COMPLETED,
                )
                step_durations.setdefault(key, []).append(event.duration_ns / 1e9)
        for (name, tenant), n in started.items():
            self._add(self.started, n, {c.FLOW_NAME: name, c.TENANT: tenant})
        for (name, tenant, status), n in ended.items():
            self._add(self.ended, n, {c.FLOW_NAME: name, c.TENANT: tenant, c.FLOW_STATUS: status})
        for (name, tenant, status), values in flow_durations.items():
            attrs = {c.FLOW_NAME: name, c.TENANT: tenant, c.FLOW_STATUS: status}
            self._record(self.flow_duration, values, attrs)
        for (name, tenant, step, status), values in step_durations.items():
            attrs = {c.FLOW_NAME: name, c.TENANT: tenant, c.STEP_NAME: step, c.STEP_STATUS: status}
            self._record(self.step_duration, values, attrs)

    @staticmethod
    def _add(inst: Counter, value: float, attrs: dict[str, Any]) -> None:
        inst._instrument().add(value, inst._bounded(attrs))

    @staticmethod
    def _record(inst: Histogram, values: list[float], attrs: dict[str, Any]) -> None:
        record_many(inst._instrument(), values, inst._bounded(attrs))
