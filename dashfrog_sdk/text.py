"""Text from outside the SDK that UTF-8 cannot carry: lone surrogates.

A Python ``str`` may hold code points U+D800 to U+DFFF on their own (``json.loads('"\\ud800"')``,
``os.listdir()`` and ``sys.argv`` with undecodable bytes, ``errors="surrogateescape"``). No
UTF-8 encoder takes them: SQLite refuses the whole batch a store writes, an OTLP collector the
whole request, ``requests`` the header. So:

* an argument the caller chose (flow, step and event names, tenants, label values) with one is
  refused at the call (:func:`refusal`, used by dashfrog_sdk.validation);
* text that arrives at run time (exception messages, captured log records, step and event
  attribute values) is recorded with U+FFFD in place of each one (:func:`clean`), counted as
  ``text.cleaned`` in ``stats()`` and warned about once, so one bad string loses nothing else.

Both start with ``str.isascii()``, a C-level scan that answers for almost every string.
"""

from __future__ import annotations

from dashfrog_sdk import diagnostics

REPLACEMENT = "\ufffd"


def has_lone_surrogate(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def refusal(argument: str, value: str) -> str | None:
    """Why `value` cannot be `argument` (None: it can)."""
    if not has_lone_surrogate(value):
        return None
    at = next(i for i, ch in enumerate(value) if "\ud800" <= ch <= "\udfff")
    shown = repr(value) if len(value) <= 80 else repr(value[:80]) + "..."
    return (
        f"{argument} {shown} contains a lone surrogate ({value[at]!r} at position {at}), "
        "which is not text: decode the bytes it came from with errors='replace' (or fix "
        "its source)"
    )


def clean(value: str) -> str:
    """`value` with each lone surrogate replaced by U+FFFD (a pair of surrogates written as two
    code points becomes the one character it encodes); `value` itself when it has none."""
    if not has_lone_surrogate(value):
        return value
    diagnostics.report(
        "text.cleaned",
        "dashfrog_sdk: a string with a lone surrogate (not valid Unicode text) was recorded "
        "with U+FFFD in its place; decode such input with errors='replace'",
    )
    # UTF-16 with surrogatepass joins valid pairs; its decoder replaces what stays lone.
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
