"""The automatic flow metrics: a lifecycle sink, so recorded on the dispatcher thread.

``dashfrog.flows.started`` and ``dashfrog.flows.ended`` (by flow name, tenant, and status for
ended), histograms ``dashfrog.flow.duration`` and ``dashfrog.step.duration`` in seconds; the
instruments are `dashfrog_sdk.metrics`' own, with its tenant handling and cardinality limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dashfrog_sdk import conventions as c
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
        for event in batch:
            flow = event.flow
            base = {c.FLOW_NAME: flow.get(c.FLOW_NAME), c.TENANT: flow.get(c.TENANT)}
            if event.kind == c.EVENT_FLOW_START:
                self._add(self.started, 1, base)
            elif event.ends_flow:
                attrs = {**base, c.FLOW_STATUS: event.status or c.COMPLETED}
                self._add(self.ended, 1, attrs)
                if event.duration_ns > 0:
                    self._add(self.flow_duration, event.duration_ns / 1e9, attrs)
            elif event.kind == c.STEP_END:
                attrs = {
                    **base,
                    c.STEP_NAME: event.step or "",
                    c.STEP_STATUS: event.status or c.COMPLETED,
                }
                self._add(self.step_duration, event.duration_ns / 1e9, attrs)

    @staticmethod
    def _add(inst: Counter | Histogram, value: float, attrs: dict[str, Any]) -> None:
        bounded = inst._bounded(attrs)
        otel = inst._instrument()
        if isinstance(inst, Counter):
            otel.add(value, bounded)
        else:
            otel.record(value, bounded)
