"""The local SQLite flow store: what the embedded default writes, and the API to query it.

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

from dashfrog_sdk.store.exporter import (
    FlowStoreLogExporter,
    FlowStoreSpanExporter,
    build_exporters,
    build_processors,
)
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
from dashfrog_sdk.store.queries import (
    FlowNotFoundError,
    FlowStore,
    StoreError,
    StoreNotFoundError,
)
from dashfrog_sdk.store.schema import SCHEMA_VERSION
from dashfrog_sdk.store.writer import StoreWriter
from dashfrog_sdk.timeutil import parse_duration

DEFAULT_PATH = ".dashfrog/flows.db"

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "Flow",
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
