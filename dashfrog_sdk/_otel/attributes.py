"""Reading the attributes of ended SDK spans and log records cheaply (the store's converter).

``BoundedAttributes`` is a ``MutableMapping`` whose ``get`` and iteration run as Python code
from ``collections.abc``, and ``ReadableSpan.attributes`` wraps it in a new read-only proxy on
every access: a third of the store's conversion time went there. Once a span or record has
ended nothing writes its attributes any more, so the converter reads the dict behind them.
``tests/store/test_load.py::test_plain_attributes_equal_the_public_mapping`` checks that both
views hold the same items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dashfrog_sdk._otel import PUBLIC_ONLY

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan


def plain(attrs: Any) -> Mapping[str, Any]:
    """The dict behind an OTel attribute mapping when there is one; else the mapping itself."""
    inner = None if PUBLIC_ONLY else getattr(attrs, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return attrs if attrs is not None else {}


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """An ended span's attributes, without the per-access proxy (public fallback: the proxy)."""
    return plain((None if PUBLIC_ONLY else getattr(span, "_attributes", None)) or span.attributes)
