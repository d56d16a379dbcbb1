"""Recording many values of one attribute set into an SDK histogram cheaply (ARCHITECTURE.md, "Hot path").

The flow metrics record four histogram values a flow (three step durations and the flow's) on
the lifecycle dispatcher, which shares the GIL with the application. Through the public
`Histogram.record`, each value pays for re-cleaning its attributes, hashing them to find the
attribute set's aggregation, and asking the exemplar filter: about 20 µs, more than a bare
span. A dispatcher batch holds many values of the same few attribute sets, so per set the
first value takes the public path (which also creates the set's aggregation), and the others
go straight into the same aggregations with `aggregate()`, as the SDK itself would after those
steps. Anything this module does not recognise - another SDK, a view that filters attribute
keys, an exemplar filter that would sample these values - takes the public path for every
value. `tests/flows/test_spans.py::test_histogram_shortcut_equals_the_public_path` checks both
paths give the same points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry.context import get_current

from dashfrog_sdk._otel import PUBLIC_ONLY


def record_many(histogram: Any, values: Sequence[float], attributes: Mapping[str, Any]) -> None:
    """`histogram.record(v, attributes)` for each of `values`."""
    if not values:
        return
    histogram.record(values[0], attributes)  # the public path; creates the set's aggregation
    rest = values[1:]
    if not rest:
        return
    aggregations = _aggregations(histogram, attributes, rest[0])
    if aggregations is None:
        for value in rest:
            histogram.record(value, attributes)
        return
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    now, context = time_ns(), get_current()
    for aggregation in aggregations:
        for value in rest:
            # attributes=None: the aggregation is already the set's, and they would only be
            # read for an exemplar, which the filter declined (see _aggregations).
            aggregation.aggregate(Measurement(value, now, histogram, context, None), False)


def _aggregations(histogram: Any, attributes: Mapping[str, Any], value: float) -> list[Any] | None:
    """The aggregations `histogram.record(value, attributes)` would update, or None."""
    if PUBLIC_ONLY:
        return None
    try:
        from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
        from opentelemetry.sdk.metrics._internal.exemplar import (
            AlwaysOffExemplarFilter,
            TraceBasedExemplarFilter,
        )
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram

        if type(histogram) is not _Histogram:
            return None
        consumer: Any = histogram._measurement_consumer
        exemplars = consumer._sdk_config.exemplar_filter
        if type(exemplars) not in (TraceBasedExemplarFilter, AlwaysOffExemplarFilter):
            return None
        if exemplars.should_sample(value, time_ns(), attributes, get_current()):
            return None  # (a sampled span is current: the public path keeps exemplars)
        key = _hash_attributes(dict(attributes))
        found = []
        for storage in consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(histogram):
                if match._view._attribute_keys is not None:
                    return None
                aggregation = match._attributes_aggregation.get(key)
                if aggregation is None:
                    return None
                found.append(aggregation)
        return found
    except (ImportError, AttributeError, TypeError):  # not the SDK we know: the public way
        return None
