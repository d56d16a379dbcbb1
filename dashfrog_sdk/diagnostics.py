"""How the SDK reports runtime trouble without raising into user code: one warning, a counter.

Every problem the application cannot fix at the call site (a dead collector, oversized baggage,
a forged signature, a full queue) goes through :func:`report`: the counter always moves, the
warning is logged once per key until :func:`rearm` is called for it (for example when an outage
ends), so a broken collector cannot flood the application's logs.

An unexpected exception inside the SDK (a bug, or a broken processor) must not reach user code
either: every boundary where the SDK runs inside the application's calls or threads catches it
with the one guard, :class:`capture_internal_errors` (a context manager and a decorator), or, on
the hot path, a plain ``try`` calling :func:`internal_error`. Both count it, warn once, and tell
every watcher (:func:`watch_internal_errors`): the tests' root fixture fails a test in which an
internal error was swallowed unless the test says it expects one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import ContextDecorator
from types import TracebackType

logger = logging.getLogger("dashfrog_sdk")

_counts: Counter[str] = Counter()
_warned: set[str] = set()
_lock = threading.Lock()
# The flow-log capture handler (which ignores dashfrog_sdk's own records), named here by
# dashfrog_sdk.logs when it installs one: this module imports nothing of the SDK.
_capture: logging.Handler | None = None


def set_capture_handler(handler: logging.Handler | None) -> None:
    """Name the installed flow-log capture handler (None when it is removed)."""
    global _capture
    _capture = handler


def count(name: str, n: int = 1) -> None:
    """Add `n` to the counter `name` (thread-safe)."""
    with _lock:
        _counts[name] += n


def report(
    name: str, message: str, *args: object, n: int = 1, level: int = logging.WARNING
) -> None:
    """Count `n` occurrences of `name`; log `message` the first time since the last rearm."""
    with _lock:
        _counts[name] += n
        first = name not in _warned
        _warned.add(name)
    if first and logger.isEnabledFor(level):
        if _heard():
            logger.log(level, message, *args)
        elif logging.lastResort is not None:
            # The only handler in reach is dashfrog's own flow-log capture on the root logger
            # (which ignores dashfrog_sdk records): without this, adding it would silence
            # Python's last-resort stderr output for an app that never configured logging.
            logging.lastResort.handle(
                logger.makeRecord(logger.name, level, "", 0, message, args, None)
            )


def _heard() -> bool:
    """Whether a handler other than the flow-log capture will see dashfrog_sdk's records."""
    capture = _capture
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler is not capture for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def rearm(name: str) -> None:
    """Allow the warning for `name` to be logged again (e.g. a new outage after a recovery)."""
    with _lock:
        _warned.discard(name)


def counts() -> dict[str, int]:
    """A snapshot of every counter, e.g. ``{"baggage.dropped": 2}``."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Zero all counters and re-arm all warnings (tests)."""
    with _lock:
        _counts.clear()
        _warned.clear()


_watchers: list[Callable[[str, BaseException], None]] = []


def internal_error(name: str, exc: BaseException, where: str) -> None:
    """An exception inside the SDK was swallowed at a boundary (`where`, e.g. "a span
    processor"): count it under `name`, warn once, tell the watchers."""
    for watcher in tuple(_watchers):
        watcher(name, exc)
    report(name, "dashfrog_sdk: internal error in %s, ignored: %r", where, exc)


class capture_internal_errors(ContextDecorator):
    """Swallow an `Exception` raised inside: reported through :func:`internal_error`.

    Example:
        >>> with capture_internal_errors("scope.exit_errors", "closing a flow or step"):
        ...     ...
        >>> @capture_internal_errors("shutdown.errors", "shutdown at exit")
        ... def at_exit() -> None: ...

    A decorated function whose body raised returns None. BaseExceptions that are no
    `Exception` (KeyboardInterrupt, SystemExit) pass: they are the application's.
    """

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where

    def __enter__(self) -> capture_internal_errors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, Exception):
            internal_error(self.name, exc, self.where)
            return True
        return False


def watch_internal_errors(watcher: Callable[[str, BaseException], None]) -> Callable[[], None]:
    """Call `watcher(name, exc)` for each internal error from now on; returns its remover."""
    _watchers.append(watcher)

    def remove() -> None:
        if watcher in _watchers:
            _watchers.remove(watcher)

    return remove
