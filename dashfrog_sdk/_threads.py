"""Which threads may wait for room in a full queue (backpressure, DASHFROG_QUEUE_FULL_WAIT).

A thread of dashfrog's own (the lifecycle dispatcher, the export threads, the store writer, the
flush helper, a thread inside `flush()` or `shutdown()`) never waits: it may hold a lock that
the thread making room needs (the dispatcher holds the bus's lock while it emits log records
into a logs pipeline), and a flush or a shutdown must keep to its timeout. A thread running an
asyncio event loop never waits either: one coroutine waiting would stall every other one.
Those drop at once and count the drop, as when the collector is down.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dashfrog_sdk import _fork

_own: dict[int, int] = {}  # thread ident -> nesting depth (own() may nest)
_lock = threading.Lock()


def _enter() -> None:
    me = threading.get_ident()
    with _lock:
        _own[me] = _own.get(me, 0) + 1


def _leave() -> None:
    me = threading.get_ident()
    with _lock:
        depth = _own.get(me, 0) - 1
        if depth > 0:
            _own[me] = depth
        else:
            _own.pop(me, None)


@contextmanager
def own() -> Iterator[None]:
    """The calling thread counts as dashfrog's own inside the block (flush, shutdown)."""
    _enter()
    try:
        yield
    finally:
        _leave()


def target(fn: Callable[[], object]) -> Callable[[], None]:
    """`fn` as a `threading.Thread` target that runs as one of dashfrog's own threads."""

    def run() -> None:
        _enter()
        try:
            fn()
        finally:
            _leave()

    return run


def is_own() -> bool:
    return threading.get_ident() in _own


def may_wait() -> bool:
    """May the calling thread wait for room in a full queue? (Called on the full path only.)"""
    return threading.get_ident() not in _own and asyncio._get_running_loop() is None


def _after_fork() -> None:
    # Only the forking thread survives a fork: the parent's idents mean nothing in the child.
    global _lock
    _lock = threading.Lock()
    _own.clear()


_fork.in_child(_after_fork)
