"""The Celery side of the tests: an app factory (the tests' producer) and a worker module.

    celery -A tests.integrations.apps.tasks worker -Q $TEST_CELERY_QUEUE ...

with ``TEST_CELERY_BROKER`` and ``TEST_CELERY_QUEUE`` in the environment. Each task records
what it saw as attributes of a step span, so the tests read it from the collector.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, Task

from dashfrog_sdk import flow, step
from dashfrog_sdk.integrations import with_celery

logger = logging.getLogger("tests.tasks")


def _seen(task: Task) -> dict[str, Any]:
    raw = getattr(task.request, "baggage", None) or ""
    return {"test.baggage_len": len(raw), "test.attempt": task.request.retries + 1}


def make_app(broker: str, queue: str) -> Celery:
    app = Celery("dashfrog_tests", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        worker_enable_remote_control=False,  # no pidbox queues shared with other test runs
        broker_connection_retry_on_startup=True,
    )

    @app.task(bind=True, name="tests.finish")
    def finish(self: Task) -> None:
        with step.start("charge", **_seen(self)):
            logger.warning("card charged")  # captured: a log record of the flow and step
        flow.end()

    @app.task(bind=True, name="tests.boom")
    def boom(self: Task) -> None:
        with step.start("charge", **_seen(self)):
            raise ValueError("card exploded")

    @app.task(bind=True, name="tests.give_up")
    def give_up(self: Task) -> None:
        with step.start("charge", **_seen(self)):
            pass
        flow.fail("card declined")

    @app.task(bind=True, name="tests.caught")
    def caught(self: Task) -> None:
        try:
            with step.start("charge", **_seen(self)):
                raise ValueError("card exploded")
        except ValueError:
            pass  # the task succeeds; the flow it carried failed here all the same

    def wait_to_be_killed(task: Task, pid_file: str) -> None:
        """First delivery: publish this pool child's pid, then wait for the test's SIGKILL.
        A redelivery finds the file and goes on."""
        with step.start("charge", **_seen(task)):
            if not os.path.exists(pid_file):
                with open(pid_file + ".tmp", "w") as out:
                    out.write(str(os.getpid()))
                os.replace(pid_file + ".tmp", pid_file)
                threading.Event().wait(120)
        flow.end()

    @app.task(bind=True, name="tests.killed")
    def killed(self: Task, pid_file: str) -> None:
        wait_to_be_killed(self, pid_file)

    @app.task(
        bind=True, name="tests.killed_redelivered", acks_late=True, reject_on_worker_lost=True
    )
    def killed_redelivered(self: Task, pid_file: str) -> None:
        wait_to_be_killed(self, pid_file)

    @app.task(bind=True, name="tests.flaky", max_retries=5)
    def flaky(self: Task, attempts: int) -> None:
        with step.start("attempt", **_seen(self)):
            if self.request.retries + 1 < attempts:
                raise self.retry(countdown=0)  # fails this attempt's step, not the flow
        flow.end()

    # Retries of a step (step.start(retries=...)) inside tasks that Celery retries too.
    @app.task(bind=True, name="tests.step_retries")
    def step_retries(self: Task, failures: int) -> None:
        calls: list[int] = []

        @step.start("fetch", retries=2, **_seen(self))
        def fetch() -> None:
            calls.append(1)
            if len(calls) <= failures:
                raise ConnectionError(f"reset #{len(calls)}")

        fetch()
        flow.end()

    @app.task(bind=True, name="tests.step_raises_retry", max_retries=3)
    def step_raises_retry(self: Task) -> None:
        @step.start("fetch", retries=3, **_seen(self))
        def fetch() -> None:
            if self.request.retries == 0:
                raise self.retry(countdown=0)  # Celery's retry: never the step's

        fetch()
        flow.end()

    @app.task(
        bind=True,
        name="tests.step_then_task_retry",
        autoretry_for=(ConnectionError,),
        max_retries=1,
        default_retry_delay=0,
    )
    def step_then_task_retry(self: Task) -> None:
        @step.start("fetch", retries=1, **_seen(self))
        def fetch() -> None:
            if self.request.retries == 0:
                raise ConnectionError("down")  # both step attempts; then Celery retries

        fetch()
        flow.end()

    return with_celery(app)


if "TEST_CELERY_BROKER" in os.environ:  # the worker process
    app = make_app(os.environ["TEST_CELERY_BROKER"], os.environ["TEST_CELERY_QUEUE"])
