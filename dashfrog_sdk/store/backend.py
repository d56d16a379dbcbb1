"""The query API every flow store backend offers, and the choice of backend by location.

``FlowStore(path)`` is the SQLite store; ``FlowStore("clickhouse://host:8123/db")`` and
``FlowStore("chdb:///dir")`` return a :class:`dashfrog_sdk.clickhouse.ClickHouseFlowStore`.
Both satisfy :class:`FlowBackend`, which is what the CLI, the renders and the UI rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from dashfrog_sdk.config import READ_STORE_ENV
from dashfrog_sdk.store.model import (
    Flow,
    FlowDetail,
    FlowDurations,
    FlowStats,
    LabelValue,
    Results,
)
from dashfrog_sdk.timeutil import TimeArg

READ_ENV = READ_STORE_ENV
"""Where the CLI reads flows by default (a SQLite path or a ClickHouse/chDB URL). Unset, it
reads ``DASHFROG_STORE`` (the SDK's write location), then ``.dashfrog/flows.db``."""


@runtime_checkable
class FlowBackend(Protocol):
    path: str

    def flows(
        self,
        *,
        tenant: str | None = None,
        name: str | None = None,
        status: str | Iterable[str] | None = None,
        labels: Mapping[str, LabelValue] | None = None,
        since: TimeArg = None,
        until: TimeArg = None,
        running_longer_than: timedelta | float | str | None = None,
        parent_id: str | None = None,
        limit: int | None = 100,
    ) -> Results[Flow]: ...

    def flow(self, flow_id: str) -> FlowDetail: ...
    def durations(self, flow_id: str) -> FlowDurations: ...
    def resolve(self, flow_id: str) -> str: ...
    def stats(
        self, *, since: TimeArg = None, tenant: str | None = None, name: str | None = None
    ) -> Results[FlowStats]: ...
    def changes(self, after_ns: int, limit: int = 1000) -> tuple[list[Flow], int]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


def is_remote(target: object) -> bool:
    """True when ``target`` names a ClickHouse or chDB store rather than a SQLite file."""
    if not isinstance(target, str) or "://" not in target:
        return False  # a SQLite path: the CLI need not load the ClickHouse package to know
    from dashfrog_sdk.clickhouse.connection import is_clickhouse_url

    return is_clickhouse_url(target)
