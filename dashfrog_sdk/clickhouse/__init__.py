"""Flows in ClickHouse: the rollup over the collector's ``clickhouse`` exporter tables and the
flow store's query API on top of it.

```python
from dashfrog_sdk.store import FlowStore

with FlowStore("clickhouse://localhost:8123/otel") as store:     # or "chdb:///srv/flows-ch"
    store.flows(tenant="acme-corp", status="failed", since="1d").to_dataframe()
```

``dashfrog clickhouse init --url ... --database otel`` creates the rollup (see ``migrate``).
"""

from __future__ import annotations

from dashfrog_sdk.clickhouse.connection import ClickHouseError, is_clickhouse_url, parse_url
from dashfrog_sdk.clickhouse.migrate import SCHEMA_VERSION, InitResult, init
from dashfrog_sdk.clickhouse.store import ClickHouseFlowStore

__all__ = [
    "SCHEMA_VERSION",
    "ClickHouseError",
    "ClickHouseFlowStore",
    "InitResult",
    "init",
    "is_clickhouse_url",
    "parse_url",
]
