"""Hooks run in a forked child (Celery prefork, gunicorn): the parent's threads and queues stay
the parent's, so each component that owns some starts afresh in the child."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def in_child(fn: Callable[[], object]) -> None:
    """Run `fn` in every child this process forks from now on (nothing where there is no fork)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=fn)


def method_in_child(method: Callable[[], object]) -> None:
    """`in_child` for a bound method, without keeping its object alive for the hook's sake."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    in_child(call)
