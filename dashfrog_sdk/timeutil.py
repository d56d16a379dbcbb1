"""Durations and instants as the query API and the CLI accept them."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

TimeArg = datetime | timedelta | float | int | str | None
"""An instant: a ``datetime`` (naive = local time), a ``timedelta`` (that long ago) or unix
seconds."""

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)?\s*$")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"1w"``, ``"250ms"`` or bare seconds -> seconds.

    Raises ``ValueError`` naming the accepted forms.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"not a duration: {text!r} (use a number with a unit: 250ms, 30s, 15m, 12h, 7d, 1w)"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_instant(text: str) -> datetime | timedelta:
    """A CLI time: a duration meaning "that long ago" (``1h``) or an ISO 8601 date/time."""
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use a duration ago like 1h or 2d, or an ISO date 2024-05-01)"
        ) from None


def to_ns(value: TimeArg, *, now_ns: int | None = None) -> int | None:
    """An instant as unix nanoseconds."""
    if value is None:
        return None
    if isinstance(value, str):  # "1h" (that long ago) or an ISO date, as on the command line
        value = parse_instant(value)
    if isinstance(value, timedelta):
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(value.total_seconds() * 1e9)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return int(value.astimezone(timezone.utc).timestamp() * 1e9)
    return int(float(value) * 1e9)


def seconds(value: timedelta | float | int | str) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
