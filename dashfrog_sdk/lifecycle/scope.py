"""One object that works as `with`, `async with` and as a decorator of sync and async functions.

`flow.start(...)` and `step.start(...)` return subclasses of :class:`Scope`. The decorator form
makes a fresh scope per call, so one decorated function can run concurrently in many threads
and tasks without the calls seeing each other.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from opentelemetry import context as otel_context

from dashfrog_sdk import diagnostics

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

try:  # detach without OTel's error log when a generator is finalised in another context
    from opentelemetry.context import _RUNTIME_CONTEXT as _runtime_context

    def detach(token: object) -> None:
        # A token from another context (a generator closed elsewhere) cannot be reset; the
        # context it belonged to is not ours to touch, so there is nothing else to do.
        # (try/except rather than contextlib.suppress: this runs for every flow and step.)
        try:  # noqa: SIM105
            _runtime_context.detach(token)  # type: ignore[arg-type]
        except Exception:
            pass

except ImportError:  # pragma: no cover - older/newer OTel without the private name
    detach = otel_context.detach  # type: ignore[assignment]


class Scope(ABC, Generic[T]):
    """Base of the flow and step scopes: subclasses implement `_enter`, `_exit` and `_copy`."""

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active = False

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _enter(self) -> T:
        """Subclass hook."""

    @abstractmethod
    def _exit(self, exc: BaseException | None) -> None:
        """Subclass hook."""

    @abstractmethod
    def _copy(self) -> Scope[T]:
        """Subclass hook."""

    # -- with / async with ----------------------------------------------------------------
    def __enter__(self) -> T:
        if self._active:
            raise RuntimeError(
                f"{type(self).__name__} is already active: call flow.start()/step.start() "
                "again for each `with` block instead of re-entering one object"
            )
        value = self._enter()
        self._active = True
        return value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        try:
            self._exit(exc)
        except Exception as error:  # the SDK must never replace or add to the caller's exception
            diagnostics.report(
                "scope.exit_errors", "dashfrog_sdk: error while closing a flow or step: %r", error
            )

    async def __aenter__(self) -> T:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"{type(self).__name__} decorates functions, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"cannot decorate generator function {func.__name__!r}: the flow or step would "
                "end when the generator is created; use `with flow.start(...)` / "
                "`with step.start(...)` inside it instead"
            )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._copy():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return cast(F, wrapper)
