"""How an error reads wherever the SDK writes one: span statuses, events, the console.

An error is an exception or a message (`flow.fail("card expired")`). Its text is taken with
:func:`safe_str`, so an exception whose ``__str__`` raises is still recorded, and the SDK never
replaces the application's error with one of its own; lone surrogates in it (an undecodable file
name in an ``OSError``) are cleaned (dashfrog_sdk.text), so every exporter can encode it.
"""

from __future__ import annotations

from dashfrog_sdk import conventions as c
from dashfrog_sdk.text import clean


def raw_str(value: object) -> str:
    """str(value), or a stand-in when its __str__ raises: an SDK must not replace the error."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}: str() failed>"


def safe_str(value: object) -> str:
    """:func:`raw_str`, with lone surrogates cleaned (dashfrog_sdk.text)."""
    return clean(raw_str(value))


def describe(error: BaseException | str | None) -> str:
    """``"ValueError: message"`` for span statuses and the console."""
    if error is None:
        return "a step failed"
    if isinstance(error, BaseException):
        return f"{_type_name(error, type(error).__name__)}: {safe_str(error)}"
    return clean(error)


def error_attributes(error: BaseException | str) -> dict[str, str]:
    """The ``dashfrog.error.type`` / ``dashfrog.error.message`` attributes of `error`."""
    if isinstance(error, BaseException):
        return {
            c.ERROR_TYPE: _type_name(error, type(error).__qualname__),
            c.ERROR_MESSAGE: safe_str(error),
        }
    return {c.ERROR_MESSAGE: clean(error)}  # flow.fail("message"): a message, no exception type


def _type_name(error: BaseException, default: str) -> str:
    # A failure reported by a downstream service (outcome.DownstreamFailure) shows the
    # downstream error's type, so the caller's span names what actually broke.
    reported = getattr(error, "_dashfrog_error_type", None)
    return reported if isinstance(reported, str) else default
