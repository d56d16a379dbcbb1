"""dashfrog_sdk: business-flow tracing on OpenTelemetry.

Example:
    >>> from dashfrog_sdk import flow, step
    >>> with flow.start("order_processing", tenant="customer-123", region="eu") as flow_id:
    ...     with step.start("validate_order"):
    ...         ...
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dashfrog_sdk._runtime import runtime
from dashfrog_sdk._version import __version__

if TYPE_CHECKING:
    from dashfrog_sdk import events, flow, metrics, step
    from dashfrog_sdk.context import FlowInfo
    from dashfrog_sdk.events import LifecycleEvent
    from dashfrog_sdk.exporting import stats
    from dashfrog_sdk.integrations import (
        with_celery,
        with_fastapi,
        with_flask,
        with_httpx,
        with_requests,
    )
    from dashfrog_sdk.setup import flush, setup, shutdown

__all__ = [
    "FlowInfo",
    "LifecycleEvent",
    "__version__",
    "events",
    "flow",
    "flush",
    "metrics",
    "setup",
    "shutdown",
    "stats",
    "step",
    "with_celery",
    "with_fastapi",
    "with_flask",
    "with_httpx",
    "with_requests",
]


# The public API is loaded name by name on first use (PEP 562): `dashfrog` (the CLI) and anything
# else that imports only a submodule such as `dashfrog_sdk.store` no longer pays for the
# OpenTelemetry SDK, its exporters and every integration (most of `dashfrog --version`).
_HOMES = {
    "FlowInfo": "dashfrog_sdk.context",
    "LifecycleEvent": "dashfrog_sdk.events",
    "flush": "dashfrog_sdk.setup",
    "shutdown": "dashfrog_sdk.setup",
    "stats": "dashfrog_sdk.exporting",
    "with_celery": "dashfrog_sdk.integrations",
    "with_fastapi": "dashfrog_sdk.integrations",
    "with_flask": "dashfrog_sdk.integrations",
    "with_httpx": "dashfrog_sdk.integrations",
    "with_requests": "dashfrog_sdk.integrations",
}


def __getattr__(name: str) -> Any:
    if name in ("events", "flow", "metrics", "step"):  # submodules: importing one binds it here
        module = importlib.import_module(f"dashfrog_sdk.{name}")
    elif name in _HOMES:
        module = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'dashfrog_sdk' has no attribute {name!r}")
    globals()[name] = module
    return module


class _Package(types.ModuleType):
    """This package, with `setup` always the function, as when it was imported eagerly.

    `setup` names both a function and the submodule that defines it. Importing the submodule
    binds the *module* on its package; the eager `from dashfrog_sdk.setup import setup` used
    to rebind the function at once. Loaded lazily, the submodule's import comes later, so the
    name is a property here: it reads the function, and ignores the import system's binding.
    """

    @property
    def setup(self) -> Callable[..., None]:
        from dashfrog_sdk.setup import setup

        return setup

    @setup.setter
    def setup(self, _submodule: object) -> None:
        return None


importlib.import_module(__name__).__class__ = _Package


def _setup_from_environment() -> None:
    """What the first flow runs when only a submodule (`dashfrog_sdk.flow`) was imported:
    `setup` registers itself with the runtime on import, replacing this."""
    from dashfrog_sdk.setup import setup

    setup()


runtime.register_setup(_setup_from_environment)
