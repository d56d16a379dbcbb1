"""The local SQLite flow store: what the embedded default writes, and the API to query it
(``FlowStore("clickhouse://host:8123/db")`` or ``FlowStore("chdb:///dir")``: the same API over
ClickHouse, see ``dashfrog_sdk.store.clickhouse``).

```python
from dashfrog_sdk.store import FlowStore

with FlowStore(".dashfrog/flows.db") as store:
    for f in store.flows(tenant="acme-corp", status="failed", since=timedelta(hours=1)):
        print(f.id, f.name, f.error_type)
    detail = store.flow(flow_id)          # steps, current step, child flows, events, logs
    store.stats(since=timedelta(days=1)).to_dataframe()   # with pandas installed
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dashfrog_sdk.config import DEFAULT_STORE
from dashfrog_sdk.store.backend import FlowBackend
from dashfrog_sdk.store.errors import FlowNotFoundError, StoreError, StoreNotFoundError
from dashfrog_sdk.store.model import (
    Flow,
    FlowDetail,
    FlowDurations,
    FlowEvent,
    FlowStats,
    LogEntry,
    Results,
    SpanRecord,
    Step,
    StepDuration,
)
from dashfrog_sdk.store.queries import FlowStore
from dashfrog_sdk.store.schema import SCHEMA_VERSION
from dashfrog_sdk.timeutil import parse_duration

if TYPE_CHECKING:
    from dashfrog_sdk.store.exporter import (
        FlowStoreLogExporter,
        FlowStoreSpanExporter,
        build_exporters,
        build_processors,
    )
    from dashfrog_sdk.store.writer import StoreWriter

_WRITING = frozenset(
    {"FlowStoreLogExporter", "FlowStoreSpanExporter", "StoreWriter", "build_exporters"}
    | {"build_processors"}
)


def __getattr__(name: str) -> Any:
    """The writing side (OpenTelemetry SDK processors and exporters), loaded on first use:
    the CLI and other readers of a store never need it (PEP 562)."""
    if name not in _WRITING:
        raise AttributeError(f"module 'dashfrog_sdk.store' has no attribute {name!r}")
    from dashfrog_sdk.store import exporter, writer

    return getattr(writer if name == "StoreWriter" else exporter, name)


DEFAULT_PATH = DEFAULT_STORE  # where setup() writes when nothing says otherwise

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "Flow",
    "FlowBackend",
    "FlowDetail",
    "FlowDurations",
    "FlowEvent",
    "FlowNotFoundError",
    "FlowStats",
    "FlowStore",
    "FlowStoreLogExporter",
    "FlowStoreSpanExporter",
    "LogEntry",
    "Results",
    "SpanRecord",
    "Step",
    "StepDuration",
    "StoreError",
    "StoreNotFoundError",
    "StoreWriter",
    "build_exporters",
    "build_processors",
    "parse_duration",
]
