"""OTel metric SDK internals (see the table in the package docstring)."""

from __future__ import annotations

from typing import Any

from dashfrog_sdk._otel import private


def preferences(exporter: object) -> tuple[Any, Any]:
    """The (temporality, aggregation) preferences `exporter` was built with, or (None, None)."""
    return (
        private(exporter, "_preferred_temporality"),
        private(exporter, "_preferred_aggregation"),
    )


def fresh_storage(provider: object, reader: object) -> bool:
    """Give `reader` empty aggregations in `provider` (the SDK has no public reset). Whether it
    could."""
    consumer = private(provider, "_measurement_consumer")
    if consumer is None or not hasattr(consumer, "add_metric_reader"):
        return False
    consumer.add_metric_reader(reader)
    return True
