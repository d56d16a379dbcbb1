"""Where the status of a flow or a step is decided: every rule, and one precedence.

Statuses (conventions.py): ``running`` (no end yet), ``completed``, ``cancelled``, ``failed``,
and ``timed_out``: for a flow, derived by the store (a deadline passed with no end); for a step,
recorded when it ended past its ``timeout`` (below).

* **A step** ends ``completed`` when its block exits normally, ``cancelled`` when a cancelling
  exception leaves it (:data:`CANCELLING`: stopped, not broken), ``failed`` for any other
  exception. A failed step that is not optional (and not inside an optional step) fails its
  flow, even when the caller catches the exception.
* **A step's timeout** (``step.start(timeout=s)``): an async step (``async with`` or a decorated
  coroutine function) is cancelled when it runs out and ends ``timed_out`` with a
  ``TimeoutError``, which propagates; a sync step cannot be interrupted, so one whose block
  returns after its timeout ends ``timed_out`` (its result is kept, nothing is raised). An
  exception wins over an overrun: a sync block that raised ends ``failed`` or ``cancelled``.
  A timed-out step counts as a failure for its flow (:func:`step_fails_flow`).
* **Error isolation** (``raise_on_error=False``): a step that fails or times out is recorded so
  and its exception is swallowed; like ``optional=True`` it does not fail its flow, and neither
  does a step inside it. ``optional=True`` re-raises; given both, the exception is swallowed.
  Cancelling exceptions are never swallowed.
* **A step's retries** (``retries=N``, decorator form): each attempt is its own step span with
  its number; an attempt that fails with an exception of ``retry_on`` and has attempts left is
  retried (:func:`retries_attempt`): it is recorded ``failed`` and does not fail the flow; the
  last attempt's status is the step's. Cancelling exceptions and a task queue's retry
  (Celery's ``Retry``, :func:`register_retry`) are never retried by the step: the task queue
  runs the attempt again, and counting it twice would multiply the runs.
* **A flow** ends with the worst of what happened to it, by one precedence:
  ``failed`` > ``cancelled`` > ``completed`` (:func:`worst`). A step that failed before a
  cancellation arrived makes the flow failed: the failure happened first. This holds however the
  flow ends: its block exits, `flow.end()` / `flow.fail()` anywhere, or the process exits with
  the flow still open (recorded ``cancelled``, or ``failed`` if a step had failed).
* **A flow's error** is its first failure's; `flow.fail(error)` names it explicitly and so
  replaces it (:func:`fail_flow`).
* **A Celery retry** does not fail the flow: a step that `Retry` leaves is failed, its flow not
  (:func:`fails_the_flow`), and a retried attempt's other failures are forgotten
  (:func:`forget_failure`): the final status must not depend on which process or thread runs
  the next attempt, or when.

**Several records ending one flow** (a flow that crosses processes: the API's flow span, a
worker's ``dashfrog.flow.end``, a downstream service's failure, see dashfrog_sdk.outcome) arrive
in any order, so the result must not depend on which is written first. The local store, and any
backend query, derive:

* the **status**: the highest-ranked (:data:`RANK`) among the records that ended the flow (a
  flow span saying ``running`` ended nothing);
* the **end time**: the latest end among those records, whatever their status;
* the **error**: the one of a record with the winning status (the first such the store gets).

:func:`sql_rank` is the rank as a SQL expression: the SQLite writer (``store/writer.py``) uses
it, and another backend's query ranks the same way (ClickHouse: ``argMax(status, rank)`` over
a flow's ending records, as in README's "Querying a backend").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, TypeVar

from dashfrog_sdk import conventions as c
from dashfrog_sdk.conventions import FlowStatus, StepStatus

if TYPE_CHECKING:  # the store's readers (the CLI) use the status rules without OpenTelemetry
    from dashfrog_sdk.context import FlowState

# Exceptions that mean "stopped", not "broke".
CANCELLING: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

# How each status reads in the console, the CLI and the renderers.
SYMBOLS: Final = {
    c.COMPLETED: "✔",
    c.FAILED: "✘",
    c.RUNNING: "▶",
    c.CANCELLED: "■",
    c.TIMED_OUT: "⏱",
}

# The one precedence: a higher rank wins when two statuses meet.
RANK: Final = {c.RUNNING: 0, c.COMPLETED: 1, c.CANCELLED: 2, c.FAILED: 3}


_S = TypeVar("_S", bound=str)


def worst(*statuses: _S) -> _S:
    """The status that wins among `statuses` (failed > cancelled > completed > running)."""
    return max(statuses, key=lambda status: RANK.get(status, 0))


def rank(status: str | None) -> int:
    """The precedence of `status` (0: ends nothing; `None` and unknown statuses too)."""
    return RANK.get(status or c.RUNNING, 0)


def merge(first: str | None, second: str | None) -> str:
    """The final status of a flow that two records ended with `first` and `second`, in either
    order (`None`: no status yet)."""
    return worst(first or c.RUNNING, second or c.RUNNING)


def sql_rank(column: str) -> str:
    """:func:`rank` as a SQL ``CASE`` expression over `column` (a trusted column name)."""
    whens = " ".join(f"WHEN '{status}' THEN {n}" for status, n in RANK.items() if n)
    return f"(CASE {column} {whens} ELSE 0 END)"


# Exceptions that end a step failed without failing its flow: a task queue's "run this again"
# (Celery's `Retry`, registered by integrations/celery.py). The next attempt decides; marking
# the flow failed and forgetting it at task_retry raced with that next attempt when it ran in
# another thread of the same worker before the retry hook (threads pool, countdown=0).
_RETRYING: list[type[BaseException]] = []


def register_retry(exc_type: type[BaseException]) -> None:
    """`exc_type` means "this attempt will be retried": a step it leaves fails, its flow not."""
    if exc_type not in _RETRYING:
        _RETRYING.append(exc_type)


def fails_the_flow(exc: BaseException) -> bool:
    """Whether a failed step that `exc` left fails its (non-optional) flow."""
    return not (_RETRYING and isinstance(exc, tuple(_RETRYING)))


def step_fails_flow(status: StepStatus, error: BaseException | str | None, protected: bool) -> bool:
    """Whether a step that ended with `status` fails its flow: failed or timed out, not
    `protected` (optional, ``raise_on_error=False``, inside such a step, or an attempt to be
    retried), and not left by a task queue's retry."""
    if (status != c.FAILED and status != c.TIMED_OUT) or protected:
        return False
    return not isinstance(error, BaseException) or fails_the_flow(error)


def retries_attempt(
    exc: BaseException | None,
    attempt: int,
    retries: int,
    retry_on: tuple[type[BaseException], ...],
) -> bool:
    """Whether attempt number `attempt` (from 1) of a step with `retries` retries, which
    exited with `exc`, is run again."""
    return (
        exc is not None
        and attempt <= retries
        and isinstance(exc, retry_on)
        and not isinstance(exc, CANCELLING)
        and fails_the_flow(exc)
    )


def of_exit(exc: BaseException | None) -> StepStatus:
    """The status of a block (a step's, a flow's) that exited with `exc` (None: normally)."""
    if exc is None:
        return c.COMPLETED
    return c.CANCELLED if isinstance(exc, CANCELLING) else c.FAILED


def fail_flow(
    state: FlowState, error: BaseException | str | None, *, explicit: bool = False
) -> None:
    """The flow will end failed: a non-optional step failed, or `flow.fail()` (`explicit`) was
    called. The first error is kept, unless `explicit` names one."""
    if error is not None and (explicit or state.error is None):
        state.error = error
    state.failed_here = True
    if not state.failed:
        state.failed = True
        state.baggage[c.FLOW_FAILED] = c.bool_text(True)
        for bag in state.live_baggage:
            bag[c.FLOW_FAILED] = c.bool_text(True)


def forget_failure(state: FlowState) -> None:
    """A Celery retry: this attempt's failure is not the flow's (the next attempt decides)."""
    state.failed, state.failed_here, state.error = False, False, None


def end(
    state: FlowState, status: FlowStatus, error: BaseException | str | None = None
) -> FlowStatus:
    """End the flow with `status` (completed, cancelled or failed, with `error`); returns the
    status it ends with once the flow's own failures are counted."""
    if status == c.FAILED:
        fail_flow(state, error, explicit=error is not None)
    final = worst(status, c.FAILED) if state.failed else status
    state.ended, state.final_status = True, final
    return final


def block_exit(state: FlowState, exc: BaseException | None) -> tuple[FlowStatus, bool]:
    """What the flow's `with` block reports as it exits with `exc`, and whether that ends the
    flow: an exception, or ``end_on_exit``; otherwise it is ``running`` (it ends elsewhere)."""
    # worst(of_exit(exc), FAILED if state.failed else COMPLETED), inlined: this runs per flow.
    if exc is None:
        status: FlowStatus = c.FAILED if state.failed else c.COMPLETED
    elif isinstance(exc, CANCELLING):
        status = c.FAILED if state.failed else c.CANCELLED
    else:
        status = c.FAILED
    if state.ended:
        return state.final_status or status, False
    if not (state.end_on_exit or exc is not None):
        return c.RUNNING, False
    if exc is not None and state.error is None and not isinstance(exc, CANCELLING):
        state.error = exc  # the exception that escaped is the flow's first failure
    state.ended, state.final_status = True, status
    return status, True


def effective_status(status: str, deadline_ns: int | None, now_ns: int) -> str:
    """A stored status as shown: a running flow past its deadline is timed out. (The SQL
    filters of `FlowStore.flows(status=...)` say the same in store.queries._status_clause.)"""
    if status == c.RUNNING and deadline_ns is not None and deadline_ns < now_ns:
        return c.TIMED_OUT
    return status
