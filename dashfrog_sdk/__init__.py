"""dashfrog_sdk: business-flow tracing on OpenTelemetry.

Example:
    >>> from dashfrog_sdk import flow, step
    >>> with flow.start("order_processing", tenant="customer-123", region="eu") as flow_id:
    ...     with step.start("validate_order"):
    ...         ...
"""

from __future__ import annotations

from dashfrog_sdk import flow, metrics, step
from dashfrog_sdk._version import __version__
from dashfrog_sdk.context import FlowInfo
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
    "__version__",
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
