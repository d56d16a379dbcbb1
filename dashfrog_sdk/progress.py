"""A step's progress and artifacts: their argument checks, their limits and how progress reads.

`StepScope.progress(done, total, message)` and `StepScope.artifact(name, value)` (step.py) check
their arguments here; the console, the CLI, the renderers and the UI format progress with
:func:`text`, so "import_rows 40% (400/1000)" reads the same everywhere. A leaf module: it
imports nothing of the SDK but the wire names and the argument checks.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from dashfrog_sdk import text as text_rules
from dashfrog_sdk import validation

# At most one progress record per step this often (the latest value is kept on the step and
# always recorded at its end): a tight loop calling progress() costs one comparison per call.
INTERVAL_NS: Final = 250_000_000
MAX_MESSAGE_LENGTH: Final = 256
MAX_ARTIFACT_BYTES: Final = 64 * 1024  # of the value's compact JSON, UTF-8 encoded
MAX_ARTIFACTS: Final = 32  # distinct names per step


def check(where: str, done: object, total: object, message: object) -> tuple[Any, Any, Any]:
    """(done, total, message) as recorded, or a ValueError/TypeError naming the argument."""
    if isinstance(done, bool) or not isinstance(done, int | float):
        raise TypeError(
            f"{where}: done must be a number (int or float), got {type(done).__name__} ({done!r})"
        )
    if not (isinstance(done, int) or math.isfinite(done)) or done < 0:
        raise ValueError(f"{where}: done must be a finite number >= 0, got {done!r}")
    if total is not None:
        if isinstance(total, bool) or not isinstance(total, int | float):
            raise TypeError(
                f"{where}: total must be a number (int or float) or None, got "
                f"{type(total).__name__} ({total!r})"
            )
        if not (isinstance(total, int) or math.isfinite(total)) or total <= 0:
            raise ValueError(
                f"{where}: total must be a finite number > 0, got {total!r}; pass "
                "total=None when it is not known"
            )
        if done > total:
            raise ValueError(
                f"{where}: done ({done!r}) is more than total ({total!r}); pass total=None "
                "when the total is only an estimate"
            )
    if message is not None:
        if not isinstance(message, str):
            raise TypeError(
                f"{where}: message must be a string or None, got {type(message).__name__}"
            )
        if len(message) > MAX_MESSAGE_LENGTH:
            raise ValueError(
                f"{where}: message must be at most {MAX_MESSAGE_LENGTH} characters, got "
                f"{len(message)}; record bulk data with s.artifact() instead"
            )
        _refuse_lone_surrogates(where, "message", message)
        message = validation.plain(message) or None
    # Numbers as plain int / float (an IntEnum or numpy-like subclass would carry its type).
    done = int(done) if isinstance(done, int) else float(done)
    if total is not None:
        total = int(total) if isinstance(total, int) else float(total)
    return done, total, message


def encode_artifact(where: str, name: object, value: object) -> tuple[str, str]:
    """(name, the value's JSON text), or a ValueError/TypeError naming the argument."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}: name must be a non-empty string, got {name!r}")
    if len(name) > validation.MAX_NAME_LENGTH:
        raise ValueError(
            f"{where}: name must be at most {validation.MAX_NAME_LENGTH} characters, got "
            f"{len(name)}"
        )
    validation.key(where, "artifact", name)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"{where}: value of artifact {name!r} must be JSON-serialisable (dict, list, str, "
            f"int, float, bool, None; finite numbers, string keys): {exc}"
        ) from None
    _refuse_lone_surrogates(where, f"value of artifact {name!r}", text)
    size = len(text.encode("utf-8"))
    if size > MAX_ARTIFACT_BYTES:
        raise ValueError(
            f"{where}: value of artifact {name!r} is {size} bytes as JSON, more than the "
            f"{MAX_ARTIFACT_BYTES} bytes an artifact may hold; store big data elsewhere and "
            "record where it is (a path, a URL, an id)"
        )
    return validation.plain(name), text


def _refuse_lone_surrogates(where: str, what: str, value: str) -> None:
    """A lone surrogate is no text (dashfrog_sdk.text): the call refuses it."""
    refused = text_rules.refusal(what, value)
    if refused is not None:
        raise ValueError(f"{where}: {refused}")


def number(value: float) -> str:
    """``400``, ``0.5``, ``12.25``: a progress number without a float's noise."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}".rstrip("0").rstrip(".")


def text(
    name: str | None, done: float, total: float | None = None, message: str | None = None
) -> str:
    """``import_rows 40% (400/1000) loading eu``; ``import_rows 400`` with no total."""
    head = f"{name} " if name else ""
    if total:
        percent = math.floor(100 * done / total) if done < total else 100
        body = f"{percent}% ({number(done)}/{number(total)})"
    else:
        body = number(done)
    return f"{head}{body} {message}" if message else f"{head}{body}"
