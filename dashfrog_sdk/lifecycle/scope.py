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

from dashfrog_sdk import diagnostics

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class UsageError(TypeError):
    """A scope used in a way it cannot be (`step.start(retries=...)` on a `with` block): raised
    to the caller as it enters, unlike the SDK's own errors there, which are reported."""


class Scope(ABC, Generic[T]):
    """Base of the flow and step scopes: subclasses implement `_enter`, `_exit` and `_copy`."""

    # Subclasses set `_active = False` in their own __init__ (no super() call on the hot path).
    __slots__ = ("_active",)
    _active: bool

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _enter(self) -> T:
        """Subclass hook."""

    @abstractmethod
    def _exit(self, exc: BaseException | None) -> bool | None:
        """Subclass hook (a true value: the exception is swallowed, where a subclass allows)."""

    @abstractmethod
    def _copy(self) -> Scope[T]:
        """Subclass hook."""

    @abstractmethod
    def _stand_in(self) -> T:
        """Subclass hook: what `with` gives when `_enter` failed inside the SDK."""

    # -- with / async with ----------------------------------------------------------------
    def __enter__(self) -> T:
        if self._active:
            raise RuntimeError(
                f"{type(self).__name__} is already active: call flow.start()/step.start() "
                "again for each `with` block instead of re-entering one object"
            )
        # The guard of diagnostics, as a plain try: this runs for every flow and step.
        try:
            value = self._enter()
        except UsageError:
            raise
        except Exception as error:  # the application's block runs on, unrecorded
            diagnostics.internal_error("scope.enter_errors", error, "starting a flow or step")
            value = self._stand_in()
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
            diagnostics.internal_error("scope.exit_errors", error, "closing a flow or step")

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
        self._check_decorates(func)
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

    def _check_decorates(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise TypeError(f"{type(self).__name__} decorates functions, got {func!r}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"cannot decorate generator function {func.__name__!r}: the flow or step would "
                "end when the generator is created; use `with flow.start(...)` / "
                "`with step.start(...)` inside it instead"
            )
