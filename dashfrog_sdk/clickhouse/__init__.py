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

# The query side is dashfrog_sdk.store.clickhouse.ClickHouseFlowStore (what FlowStore(url)
# returns); this package holds only the connection and the rollup's SQL, and imports nothing
# from dashfrog_sdk.store, so the store can open it without an import cycle.

__all__ = [
    "SCHEMA_VERSION",
    "ClickHouseError",
    "InitResult",
    "init",
    "is_clickhouse_url",
    "parse_url",
]
