"""`with_celery(app)`: task spans on both sides, the flow carried by the task message.

* Producer: task messages go to our own broker and workers, so they always carry the flow
  (`TASK_QUEUE` destination), whatever `DASHFROG_PROPAGATE_TO` says about HTTP hosts.
* Worker: the task joins the flow; its span gets `dashfrog.task.attempt` (1, 2, ... on
  retries); a task that raises while the flow it joined is still open fails that flow, and so
  does one that returns after a non-optional step of it failed; an attempt that is retried
  does not (the last attempt decides). A pool child killed while running the task (kill -9,
  the OOM killer: WorkerLostError) fails the flow from the main process, unless Celery
  redelivers or retries the task.
* Prefork pool: a child flushes before it exits (`--max-tasks-per-child`, SIGTERM); the main
  process at `worker_shutdown`. Fresh exporters and threads after the fork are the SDK's own
  `os.register_at_fork` hooks' job (dashfrog_sdk.exporting, dashfrog_sdk.lifecycle): they run in
  every forked child, Celery's or not, before `worker_process_init`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from dashfrog_sdk import flow, outcome
from dashfrog_sdk.context import flow_state
from dashfrog_sdk.conventions import TASK_ATTEMPT
from dashfrog_sdk.integrations._common import (
    Process,
    already_wrapped,
    mark_wrapped,
    missing,
    tracer_provider,
    unmark_wrapped,
)
from dashfrog_sdk.logs import install_logging_capture
from dashfrog_sdk.propagation import TASK_QUEUE, clear_next_destination, set_next_destination
from dashfrog_sdk.setup import flush, installed_config, installed_providers
from dashfrog_sdk.status import forget_failure, register_retry

try:
    from celery import Celery, current_task, signals
    from celery.exceptions import Retry, WorkerLostError
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.celery import celery_getter as celery_utils_getter
    from opentelemetry.instrumentation.celery import utils as celery_utils
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise missing("celery") from exc

# A singleton, like every instrumentor.
_otel = CeleryInstrumentor()  # type: ignore[no-untyped-call]


def _before_publish(headers: Any = None, **_: Any) -> None:
    set_next_destination(TASK_QUEUE)  # consumed by OTel's inject, connected after this
    if isinstance(headers, dict) and _retry_of_current_task(headers):
        # The task is re-publishing itself (`self.retry()`, autoretry_for): the next attempt
        # decides, and may start (another thread of this worker, countdown=0) before Celery
        # sends task_retry here; forget this attempt's failure now, before it can see it.
        _retry()


def _retry_of_current_task(headers: dict[str, Any]) -> bool:
    request = getattr(current_task, "request", None)
    task_id = getattr(request, "id", None)
    if task_id is None or headers.get("id") != task_id:
        return False
    retries = headers.get("retries")
    return isinstance(retries, int) and retries > (getattr(request, "retries", 0) or 0)


def _after_publish(**_: Any) -> None:
    clear_next_destination()  # in case nothing injected


def _prerun(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    # OTel's prerun handler (connected before this one) made the task span current; where that
    # is not so (seen once with the threads pool while a retry of the same task id ran), take
    # the span it stored on the task.
    retries = getattr(getattr(task, "request", None), "retries", None) or 0
    span = trace.get_current_span()
    if not span.is_recording() and task is not None and task_id is not None:
        stored = celery_utils.retrieve_context(task, task_id)
        if stored is not None:
            span = stored[0]
    span.set_attribute(TASK_ATTEMPT, retries + 1)


def _failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    # Sent inside the task's context, before task_postrun detaches it. A task that raised (and
    # is not retried: retries send task_retry) ends the flow it carried as failed.
    if isinstance(exception, WorkerLostError) and flow_state() is None:
        _worker_lost(sender, exception)
        return
    state = flow_state()
    if state is not None and not state.end_on_exit and not state.ended:
        flow.fail(exception)


def _worker_lost(task: Any, exception: BaseException) -> None:
    # The pool child running the task died (`kill -9`, the OOM killer): the main process sends
    # task_failure with WorkerLostError, outside any task context, and only when the task is not
    # redelivered (task_reject_on_worker_lost requeues it, retry_on_worker_lost retries it: no
    # signal then). Celery pushes the task's request on the task's request stack for this
    # signal: its message headers carry the flow's baggage, verified as the child did (trust,
    # signature), and the flow ends failed with the WorkerLostError here, instead of running
    # forever.
    request = getattr(task, "request", None)
    if request is None:
        return
    token = otel_context.attach(propagate.extract(request, getter=celery_utils_getter))
    try:
        state = flow_state()
        if state is not None and not state.ended:
            flow.fail(exception)
    finally:
        otel_context.detach(token)


def _success(**_: Any) -> None:
    # Sent inside the task's context too. A task that returned after a non-optional step of it
    # failed (the exception caught) has failed the flow: record it under the flow's id, so the
    # store and backends derive `failed` whatever other processes report (dashfrog_sdk.status).
    outcome.settle()


def _retry(**_: Any) -> None:
    # A failed step fails its flow, but an attempt that Celery retries has not failed it yet:
    # forget this attempt's failure, so that the final status does not depend on whether the
    # next attempt runs in this process (which remembers it) or in another one (which does not).
    state = flow_state()
    if state is not None and not state.local and not state.ended:
        forget_failure(state)


def _after_setup_logger(**_: Any) -> None:
    # worker_hijack_root_logger (Celery's default) empties the root logger's handlers after the
    # app module, and so setup(), ran: put the capture of logs emitted inside flows back.
    cfg, providers = installed_config(), installed_providers()
    if cfg is not None and cfg.capture_logging and providers is not None:
        install_logging_capture(providers[1])


def _flush(**_: Any) -> None:
    # A recycled (--max-tasks-per-child) or terminated child exits with os._exit: no atexit,
    # and the batch processors still hold its last spans (opentelemetry-python-contrib#4916).
    flush()


_HANDLERS = (
    (signals.task_prerun, _prerun),
    (signals.task_failure, _failure),
    (signals.task_success, _success),
    (signals.task_retry, _retry),
    (signals.after_task_publish, _after_publish),
    (signals.after_setup_logger, _after_setup_logger),
    (signals.worker_process_shutdown, _flush),
    (signals.worker_shutdown, _flush),
)


# The signal receivers are process-wide: the integration's mark is on this, not on `app`.
_PROCESS = Process()


def with_celery(app: Celery) -> Celery:
    """Instrument Celery task publishing and execution in this process (idempotent)."""
    if not isinstance(app, Celery):
        raise TypeError(f"with_celery(): app must be a celery.Celery application, got {app!r}")
    if already_wrapped(_PROCESS, True, "celery"):
        return app
    provider = tracer_provider()
    # Signal receivers run in connection order: ours must come before OTel's inject (publish)
    # and after OTel's span creation (prerun); so OTel's go in again if something (such as
    # opentelemetry-instrument) connected them already.
    if _otel.is_instrumented_by_opentelemetry:
        _otel.uninstrument()
    signals.before_task_publish.connect(_before_publish, weak=False)
    _otel.instrument(tracer_provider=provider)
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False)
    register_retry(Retry)  # `raise self.retry()` fails the attempt's step, not the flow
    mark_wrapped(_PROCESS)
    return app


def unwrap_celery() -> None:
    """Undo `with_celery()`."""
    if unmark_wrapped(_PROCESS):
        _otel.uninstrument()
        signals.before_task_publish.disconnect(_before_publish)
        for signal, handler in _HANDLERS:
            signal.disconnect(handler)
