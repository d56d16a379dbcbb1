"""Argument checks for the public API: wrong arguments raise at once, naming the argument and the fix."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from dashfrog_sdk import conventions as c
from dashfrog_sdk import text

MAX_NAME_LENGTH = 256
# OTel's default span attribute count limit is 128 and it evicts the *oldest* attribute first,
# which would be dashfrog.flow.id; 64 labels leave room for the flow's own and the step's.
MAX_LABELS = 64
# W3C baggage keys are RFC 7230 tokens; we accept the readable subset.
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def name(where: str, argument: str, value: object) -> str:
    """A non-empty str of at most MAX_NAME_LENGTH characters (flow/step/event names, tenants)."""
    if not isinstance(value, str) or not value or value.isspace():
        raise (TypeError if not isinstance(value, str) and value is not None else ValueError)(
            f"{where}: {argument} must be a non-empty string, got {value!r}"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{where}: {argument} must be at most {MAX_NAME_LENGTH} characters, got "
            f"{len(value)}; put long data in a label or step attribute instead"
        )
    refused = text.refusal(argument, value)
    if refused is not None:
        raise ValueError(f"{where}: {refused}")
    return _plain(value)


def _plain(value: str) -> str:
    """`value` as a plain str: a str subclass (a `(str, Enum)` member, a case-insensitive
    string type) would otherwise show its own __str__ in baggage and its data on spans."""
    return value if type(value) is str else str.__str__(value)


def key(where: str, kind: str, value: str) -> None:
    if not _KEY_RE.match(value):
        raise ValueError(
            f"{where}: {kind} name {value!r} is not a valid key: use letters, digits, '_', '-' "
            "and '.', starting with a letter, digit or '_'"
        )
    if value.startswith("dashfrog."):
        raise ValueError(f"{where}: {kind} name {value!r} may not start with 'dashfrog.'")


def label_value(where: str, label: str, value: object) -> str:
    """Labels are str/int/float/bool, recorded as strings so every service compares them equal."""
    if isinstance(value, bool):
        return c.bool_text(value)
    if isinstance(value, str):
        refused = text.refusal(f"label {label!r}", value)
        if refused is not None:
            raise ValueError(f"{where}: {refused}")
        return _plain(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: label {label!r} must be a finite number, got {value!r}")
        return str(value)
    raise TypeError(
        f"{where}: label {label!r} must be str, int, float or bool, got "
        f"{type(value).__name__} ({value!r}); convert it with str() if you need it"
    )


def labels(where: str, given: Mapping[str, object]) -> dict[str, str]:
    if len(given) > MAX_LABELS:
        raise ValueError(
            f"{where}: at most {MAX_LABELS} labels, got {len(given)}; labels are for filtering "
            "flows: put bulk data in step attributes or flow.event() instead"
        )
    out: dict[str, str] = {}
    for label, value in given.items():
        key(where, "label", label)
        out[label] = label_value(where, label, value)
    return out


def attributes(where: str, given: Mapping[str, object]) -> dict[str, Any]:
    """Step and event attributes: OTel attribute values (str/int/float/bool or a list of them).

    Returned clean (lists as tuples, as the OTel SDK stores them), so spans can take them as-is;
    strings with lone surrogates are cleaned (dashfrog_sdk.text), not refused: attribute values
    are the run's data (a file name, a payload field), not the caller's choice.
    """
    if not given:
        return {}
    if len(given) > MAX_LABELS:
        raise ValueError(
            f"{where}: at most {MAX_LABELS} attributes, got {len(given)} (OTel keeps 128 a span "
            "and would evict the flow's own first); record bulk data elsewhere"
        )
    out: dict[str, Any] = {}
    for attr, value in given.items():
        key(where, "attribute", attr)
        if isinstance(value, str):
            out[attr] = text.clean(value)
            continue
        if isinstance(value, bool | int | float):
            out[attr] = value
            continue
        if isinstance(value, list | tuple) and (
            all(isinstance(v, str) for v in value)
            or all(isinstance(v, bool) for v in value)
            or all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            out[attr] = tuple(text.clean(v) if isinstance(v, str) else v for v in value)
            continue
        raise TypeError(
            f"{where}: attribute {attr!r} must be str, int, float, bool or a list of one of them, got "
            f"{type(value).__name__}; convert it with str() if you need it"
        )
    return out


# Ten years: far beyond any flow a user waits for, and far from where start + timeout in
# nanoseconds would overflow the store's 64-bit integers (about 230 years from now).
MAX_TIMEOUT_S = 10 * 365 * 24 * 3600


def timeout(where: str, value: object) -> float | None:
    if value is None:
        return None
    # `not 0 < value <= MAX` also refuses NaN, which compares false with everything.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ValueError(
            f"{where}: timeout must be a positive, finite number of seconds of at most "
            f"{MAX_TIMEOUT_S} (10 years), got {value!r}; leave it None for no timeout"
        )
    return float(value)


def received_timeout(value: object) -> float | None:
    """A timeout that arrived at run time (baggage, a span attribute, a store row an older
    version wrote): the number if `timeout()` would have accepted it, else None (no timeout),
    so one bad value never crashes a reader."""
    try:
        seconds = float(value) if isinstance(value, int | float) else float(str(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if 0 < seconds <= MAX_TIMEOUT_S else None


def boolean(where: str, argument: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {argument} must be True or False, got {value!r}")
    return value


MAX_RETRIES = 100


def retries(where: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ValueError(
            f"{where}: retries must be a whole number of retries from 0 to {MAX_RETRIES}, "
            f"got {value!r}"
        )
    return value


def backoff(where: str, value: object) -> float:
    # `not 0 <= value <= MAX` also refuses NaN.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_TIMEOUT_S
    ):
        raise ValueError(
            f"{where}: backoff must be a finite number of seconds of at least 0 (the wait "
            f"before the second attempt; it doubles for each one after), got {value!r}"
        )
    return float(value)


def exception_types(where: str, argument: str, value: object) -> tuple[type[Exception], ...]:
    types = value if isinstance(value, tuple) else (value,)
    if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
        raise TypeError(
            f"{where}: {argument} must be an exception class or a tuple of them (subclasses of "
            f"Exception, e.g. (TimeoutError, ConnectionError)), got {value!r}"
        )
    return types


def plain(value: str) -> str:
    """`value` as a plain str (see `_plain`): for the checks outside this module."""
    return _plain(value)
