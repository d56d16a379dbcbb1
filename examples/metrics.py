"""Per-tenant business metrics, and the flow metrics every flow records by itself.

    python examples/metrics.py

Metrics go to the OTLP endpoint when one is configured; here an in-memory reader stands in for
the collector so the script can print what was recorded.
"""

from __future__ import annotations

import random

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import dashfrog_sdk
from dashfrog_sdk import flow, metrics, step

reader = InMemoryMetricReader()
dashfrog_sdk.setup(
    meter_provider=MeterProvider(metric_readers=[reader]), console=False, store=False
)

orders = metrics.Counter("orders", labels=["region"], unit="{order}", description="orders placed")
basket = metrics.Histogram("basket.value", unit="EUR", buckets=[10, 50, 100, 500])
queue_depth = {"acme-corp": 3, "globex": 11}
metrics.Gauge("queue.depth", callback=lambda: queue_depth, unit="{job}")


def order(tenant: str, region: str) -> None:
    with flow.start("checkout", tenant=tenant, region=region):
        with step.start("price"):
            value = random.uniform(5, 300)
        orders.add(1, tenant=tenant, region=region)
        basket.record(value, tenant=tenant)


def main() -> None:
    for _ in range(5):
        order("acme-corp", "eu")
    order("globex", "us")
    dashfrog_sdk.flush()
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = f"count={point.count} sum={point.sum:.4g}"  # type: ignore[attr-defined]
                    attrs = ", ".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
                    print(f"{metric.name:26} {attrs:70} {value}")


if __name__ == "__main__":
    main()
