"""The viewer's only way to the data: the flow store's public query API, on one thread.

`StoreReader` is the part of that API the pages use, so any backend that offers it (the local
SQLite store, the ClickHouse rollup) serves the viewer unchanged: the viewer has no SQL.

Every store call runs on one dedicated thread: an SQLite connection is not to be used from two
threads at once, and a slow query then delays other queries but never the event loop (static
files and the waiting live-update requests go on being served).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from dashfrog_sdk.store import Flow, FlowDetail, FlowStats, FlowStore, StoreNotFoundError
from dashfrog_sdk.store.model import LabelValue
from dashfrog_sdk.timeutil import TimeArg

T = TypeVar("T")


class StoreReader(Protocol):
    def flows(
        self,
        *,
        tenant: str | None = ...,
        name: str | None = ...,
        status: str | Iterable[str] | None = ...,
        labels: Mapping[str, LabelValue] | None = ...,
        since: TimeArg = ...,
        until: TimeArg = ...,
        parent_id: str | None = ...,
        limit: int | None = ...,
    ) -> list[Flow]: ...

    def flow(self, flow_id: str) -> FlowDetail: ...

    def resolve(self, flow_id: str) -> str: ...

    def stats(
        self, *, since: TimeArg = ..., tenant: str | None = ..., name: str | None = ...
    ) -> list[FlowStats]: ...

    def changes(self, after_ns: int, limit: int = ...) -> tuple[list[Flow], int]: ...

    def close(self) -> None: ...


def open_store(spec: str) -> StoreReader:
    """The store `--store` names: a flow store file path."""
    return FlowStore(spec)


class Reader:
    """Opens the store on first use (it may not exist yet when the viewer starts) and runs
    every query on the one store thread."""

    def __init__(self, spec: str, opener: Callable[[str], StoreReader] = open_store) -> None:
        self.spec = spec
        self._opener = opener
        self._store: StoreReader | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashfrog-ui-store")
        self._lock = threading.Lock()

    def _get(self) -> StoreReader:
        with self._lock:
            if self._store is None:
                self._store = self._opener(self.spec)
            return self._store

    def call_sync(self, fn: Callable[[StoreReader], T]) -> T:
        return fn(self._get())

    async def call(self, fn: Callable[[StoreReader], T]) -> T:
        """`fn(store)` on the store thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self.call_sync, fn))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


__all__ = ["Reader", "StoreNotFoundError", "StoreReader", "open_store"]
