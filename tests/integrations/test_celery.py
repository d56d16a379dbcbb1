"""Flows across Celery: real `celery worker` processes on Redis and RabbitMQ, prefork and
solo/threads pools; the test process is the API that starts the flow and enqueues the tasks.

Each worker consumes its own queue (a unique name), so tests never see another run's messages.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery
from opentelemetry import trace

from dashfrog_sdk import conventions as c
from dashfrog_sdk import flow, step
from dashfrog_sdk.integrations.celery import TASK_ATTEMPT
from tests.integrations.apps.tasks import make_app
from tests.integrations.conftest import (
    AMQP,
    KEY,
    LABELS,
    PYTHON,
    REDIS,
    ROOT,
    TENANT,
    assert_flow_identity,
    flow_end,
    flow_spans,
    service_env,
    unique,
)
from tests.support.collector import RotelCollector
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import ManagedProcess, wait_until

# The test process makes one producer app per worker, each registering the same task names.
pytestmark = [
    pytest.mark.broker,
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]
BROKERS = {"redis": REDIS, "amqp": AMQP}
CELERY = (PYTHON, "-m", "celery", "-A", "tests.integrations.apps.tasks", "worker", "-c", "2")
CELERY += ("-l", "info", "--without-gossip", "--without-mingle")  # no chatter with other workers
SLOW_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BLRP_SCHEDULE_DELAY": "60000"}


@dataclass
class Worker:
    service: str
    queue: str
    proc: ManagedProcess
    app: Celery  # the producer side, in the test process, sending to `queue`

    def send(self, task: str, *args: object, **options: object) -> None:
        self.app.tasks[f"tests.{task}"].apply_async(args, **options)

    def close(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL), delete its queue, close the producer."""
        self.proc.stop()
        try:
            with self.app.connection_for_write() as conn:
                conn.default_channel.queue_delete(self.queue)
                conn.default_channel.exchange_delete(self.queue)
        finally:
            self.app.close()


StartWorker = Callable[..., Worker]


@pytest.fixture(scope="module")
def start_worker(collector: RotelCollector, service_a: str) -> Iterator[StartWorker]:
    """Start `celery worker` processes; each stopped (and its queue deleted) at the end."""
    started: list[Worker] = []

    def start(broker: str, pool: str, *args: str, **env: str) -> Worker:
        service, queue = unique("worker"), unique("dashfrog-test")
        broker_url = BROKERS[broker]
        proc = ManagedProcess(
            [*CELERY, "-Q", queue, "-P", pool, "-n", f"{service}@%h", *args],
            env=service_env(
                collector, service, TEST_CELERY_BROKER=broker_url, TEST_CELERY_QUEUE=queue, **env
            ),
            cwd=ROOT,
            name=service,
        ).start()
        worker = Worker(service, queue, proc, make_app(broker_url, queue))
        started.append(worker)
        proc.wait_for_log("ready.", timeout=60)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture(
    scope="module", params=["redis-prefork", "amqp-prefork", "redis-solo", "amqp-threads"]
)
def worker(request: pytest.FixtureRequest, start_worker: StartWorker) -> Iterator[Worker]:
    """A worker that shares the API's DASHFROG_PROPAGATION_KEY: it verifies what it gets."""
    broker, pool = request.param.split("-")
    started = start_worker(broker, pool, DASHFROG_PROPAGATION_KEY=KEY)
    yield started
    started.proc.stop()  # now, not at the end of the module: the next one needs the CPU


def trace_id_here() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


def test_async_task_pattern(worker: Worker, service_a: str, receiver: OtlpReceiver) -> None:
    """API: flow with end_on_exit=False, a step, enqueue, return. Worker: steps, flow.end()."""
    flows: dict[str, tuple[str, dict[str, object]]] = {}
    for how, options in {"apply_async": {}, "delay": {}, "countdown": {"countdown": 1}}.items():
        with flow.start("order_processing", tenant=TENANT, end_on_exit=False, **LABELS) as flow_id:
            with step.start("validate_order"):
                pass
            if how == "delay":
                worker.app.tasks["tests.finish"].delay()
            else:
                worker.send("finish", **options)
            flows[flow_id] = (trace_id_here(), options)

    for flow_id, (trace_id, options) in flows.items():
        end = flow_end(receiver, flow_id, worker.service)
        api_flow = flow_spans(receiver, flow_id, service_a, name="flow order_processing")[0]
        producer = flow_spans(receiver, flow_id, service_a, kind="PRODUCER")[0]
        task = flow_spans(receiver, flow_id, worker.service, kind="CONSUMER")[0]
        charge = flow_spans(receiver, flow_id, worker.service, name="step charge")[0]
        # The end record: final status, the true start (from the API), the end in the worker.
        assert_flow_identity(end.attributes, flow_id, "order_processing")
        assert end.attributes[c.FLOW_STATUS] == c.COMPLETED
        assert api_flow.attributes[c.FLOW_STATUS] == c.RUNNING
        start_ns, end_ns = end.attributes[c.FLOW_START_TIME], end.attributes[c.FLOW_END_TIME]
        assert start_ns == api_flow.start_ns
        assert end_ns >= charge.end_ns > charge.start_ns > start_ns
        assert end.attributes[c.FLOW_DURATION_MS] == pytest.approx((end_ns - start_ns) / 1e6)
        assert end.attributes[c.FLOW_SPAN_ID] == api_flow.span_id
        if options:
            assert end_ns - start_ns >= 1e9  # the countdown
        # The worker's spans are in the API's trace, under the publish, with the flow.
        assert {end.trace_id, api_flow.trace_id, task.trace_id, charge.trace_id} == {trace_id}
        assert task.parent_span_id == producer.span_id and charge.parent_span_id == task.span_id
        assert_flow_identity(task.attributes, flow_id, "order_processing")
        assert_flow_identity(charge.attributes, flow_id, "order_processing")
        assert task.attributes[TASK_ATTEMPT] == 1
        # The task's logging, captured as a log record of the flow and the step.
        log = receiver.wait_for_logs(
            lambda r, f=flow_id: r.body == "card charged" and r.attributes.get(c.FLOW_ID) == f
        )[0]
        assert (log.trace_id, log.span_id) == (charge.trace_id, charge.span_id)
        assert_flow_identity(log.attributes, flow_id, "order_processing")


def test_task_that_raises_fails_the_flow(worker: Worker, receiver: OtlpReceiver) -> None:
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False, **LABELS) as flow_id:
        worker.send("boom")
    end = flow_end(receiver, flow_id, worker.service)
    assert end.attributes[c.FLOW_STATUS] == c.FAILED
    assert end.attributes[c.ERROR_TYPE] == "ValueError"
    assert end.attributes[c.ERROR_MESSAGE] == "card exploded"
    task = flow_spans(receiver, flow_id, worker.service, kind="CONSUMER")[0]
    assert task.status_code == "ERROR"


def test_flow_fail_in_a_task(worker: Worker, receiver: OtlpReceiver) -> None:
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False, **LABELS) as flow_id:
        worker.send("give_up")
    end = flow_end(receiver, flow_id, worker.service)
    assert end.attributes[c.FLOW_STATUS] == c.FAILED
    assert end.attributes[c.ERROR_MESSAGE] == "card declined"


@pytest.mark.parametrize("end_on_exit", [True, False])
def test_caught_step_failure_in_a_task_fails_the_flow(
    end_on_exit: bool, worker: Worker, service_a: str, receiver: OtlpReceiver
) -> None:
    """The task catches its failed step and returns: the flow failed all the same, recorded
    under its id by the worker (the API's own span, ended before the task ran, cannot say it).
    """
    with flow.start("order_processing", tenant=TENANT, end_on_exit=end_on_exit) as flow_id:
        worker.send("caught")
    end = flow_end(receiver, flow_id, worker.service)
    assert end.attributes[c.FLOW_STATUS] == c.FAILED
    assert (end.attributes[c.ERROR_TYPE], end.attributes[c.ERROR_MESSAGE]) == (
        "ValueError",
        "card exploded",
    )
    task = flow_spans(receiver, flow_id, worker.service, kind="CONSUMER")[0]
    assert task.status_code != "ERROR"  # the task itself succeeded


def test_retries_keep_the_flow(worker: Worker, receiver: OtlpReceiver) -> None:
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False, **LABELS) as flow_id:
        worker.send("flaky", 3)
    end = flow_end(receiver, flow_id, worker.service)
    assert end.attributes[c.FLOW_STATUS] == c.COMPLETED
    tasks = flow_spans(receiver, flow_id, worker.service, 3, kind="CONSUMER")
    steps = flow_spans(receiver, flow_id, worker.service, 3, name="step attempt")
    assert sorted(t.attributes[TASK_ATTEMPT] for t in tasks) == [1, 2, 3]
    # Attempts 1 and 2 failed their step (the retry was raised inside it); the flow completed.
    assert sorted((s.attributes["test.attempt"], s.attributes[c.STEP_STATUS]) for s in steps) == [
        (1, c.FAILED),
        (2, c.FAILED),
        (3, c.COMPLETED),
    ]
    # Each attempt received the same (signed) baggage: nothing piles up across re-publishes.
    assert len({s.attributes["test.baggage_len"] for s in steps}) == 1
    assert steps[0].attributes["test.baggage_len"] > 0
    for span in (*tasks, *steps):
        assert_flow_identity(span.attributes, flow_id, "order_processing")
    assert len({s.trace_id for s in (*tasks, *steps)}) == 1


def test_step_retries_inside_celery_retries_do_not_double_count(
    worker: Worker, receiver: OtlpReceiver
) -> None:
    """A step's own retries (step.start(retries=...)) run inside one task attempt; Celery's
    retry (`self.retry()`, autoretry_for) is never retried by the step, and each task attempt
    numbers its step attempts from 1: attempts multiply nowhere, and the last one decides."""
    sent = {}
    for task, args in (
        ("step_retries", (2,)),
        ("step_raises_retry", ()),
        ("step_then_task_retry", ()),
    ):
        with flow.start("pricing", tenant=TENANT, end_on_exit=False) as flow_id:
            worker.send(task, *args)
        sent[task] = flow_id

    def attempts(flow_id: str, n: int) -> list[tuple[object, ...]]:
        steps = flow_spans(receiver, flow_id, worker.service, n, name="step fetch")
        return sorted(
            (
                s.attributes["test.attempt"],  # the task's attempt (Celery's)
                s.attributes[c.STEP_ATTEMPT],  # the step's attempt within it
                s.attributes[c.STEP_STATUS],
                s.attributes.get(c.STEP_RETRIED, False),
            )
            for s in steps
        )

    def task_attempts(flow_id: str, n: int) -> list[object]:
        tasks = flow_spans(receiver, flow_id, worker.service, n, kind="CONSUMER")
        return sorted(t.attributes[TASK_ATTEMPT] for t in tasks)

    ends = {task: flow_end(receiver, flow_id, worker.service) for task, flow_id in sent.items()}
    assert {task: end.attributes[c.FLOW_STATUS] for task, end in ends.items()} == dict.fromkeys(
        sent, c.COMPLETED
    ), {task: end.attributes.get(c.ERROR_MESSAGE) for task, end in ends.items()}
    # The step retried twice inside one task run.
    assert task_attempts(sent["step_retries"], 1) == [1]
    assert attempts(sent["step_retries"], 3) == [
        (1, 1, c.FAILED, True),
        (1, 2, c.FAILED, True),
        (1, 3, c.COMPLETED, False),
    ]
    # Celery's Retry left the step: the step did not run it again, Celery did, once.
    assert task_attempts(sent["step_raises_retry"], 2) == [1, 2]
    assert attempts(sent["step_raises_retry"], 2) == [
        (1, 1, c.FAILED, False),
        (2, 1, c.COMPLETED, False),
    ]
    # The step's attempts ran out, Celery retried the task: its step starts again at 1.
    assert task_attempts(sent["step_then_task_retry"], 2) == [1, 2]
    assert attempts(sent["step_then_task_retry"], 3) == [
        (1, 1, c.FAILED, True),
        (1, 2, c.FAILED, False),
        (2, 1, c.COMPLETED, False),
    ]


# -- prefork children and shutdown: nothing lost ---------------------------------------------------


def _send_flows(worker: Worker, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        with flow.start("order_processing", tenant=TENANT, end_on_exit=False) as flow_id:
            worker.send("finish")
        ids.append(flow_id)
    return ids


def test_recycled_children_flush(start_worker: StartWorker, receiver: OtlpReceiver) -> None:
    """--max-tasks-per-child=1: each child exits after one task; its data must not die with it.

    The batch delay is 60 s, so only the flush at `worker_process_shutdown` can deliver in time.
    """
    worker = start_worker("redis", "prefork", "--max-tasks-per-child=1", **SLOW_EXPORT)
    started = time.monotonic()
    for flow_id in _send_flows(worker, 3):
        assert flow_end(receiver, flow_id, worker.service).attributes[c.FLOW_STATUS] == "completed"
        flow_spans(receiver, flow_id, worker.service, kind="CONSUMER")
    assert time.monotonic() - started < 30
    worker.proc.stop()


@pytest.mark.parametrize("broker_pool", ["amqp-prefork", "redis-solo"])
def test_sigterm_flushes(
    broker_pool: str, start_worker: StartWorker, receiver: OtlpReceiver
) -> None:
    """SIGTERM to the worker (as `docker stop` sends it): warm shutdown, everything delivered."""
    broker, pool = broker_pool.split("-")
    worker = start_worker(broker, pool, **SLOW_EXPORT)
    ids = _send_flows(worker, 2)
    wait_until(lambda: worker.proc.log_text().count("succeeded") >= 2, timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0, worker.proc.log_text()
    for flow_id in ids:
        assert flow_end(receiver, flow_id, worker.service).attributes[c.FLOW_STATUS] == "completed"
        flow_spans(receiver, flow_id, worker.service, 2)  # the task span and the step


def test_signature_age_is_checked_when_the_task_runs(
    start_worker: StartWorker, receiver: OtlpReceiver
) -> None:
    """A task checks its flow's signature when it runs, after its countdown: the reason the
    default DASHFROG_PROPAGATION_MAX_AGE is 7 days. With 2 s, a 4 s countdown is refused."""
    worker = start_worker(
        "redis", "solo", DASHFROG_PROPAGATION_KEY=KEY, DASHFROG_PROPAGATION_MAX_AGE="2s"
    )
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False):
        worker.send("finish", countdown=4)
        late_trace = trace_id_here()
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False) as now_id:
        worker.send("finish")
    assert flow_end(receiver, now_id, worker.service).attributes[c.FLOW_STATUS] == c.COMPLETED
    late = receiver.wait_for_spans(
        lambda s: s.trace_id == late_trace and s.kind == "CONSUMER", timeout=30
    )[0]
    assert c.FLOW_ID not in late.attributes  # the task ran, outside the flow
    worker.proc.stop()
    assert "older than DASHFROG_PROPAGATION_MAX_AGE" in worker.proc.log_text()


# -- a pool child killed with -9 ------------------------------------------------------------------


def _kill_child(pid_file: Path) -> None:
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=60))
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_killed_child_fails_the_flow(
    broker: str, start_worker: StartWorker, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """kill -9 of the prefork child running the task: Celery reports WorkerLostError in the main
    process, which ends the flow failed with it (it used to stay `running` forever)."""
    worker = start_worker(broker, "prefork")
    pid_file = tmp_path / "child.pid"
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False, **LABELS) as flow_id:
        worker.send("killed", str(pid_file))
    _kill_child(pid_file)
    end = flow_end(receiver, flow_id, worker.service)
    assert end.attributes[c.FLOW_STATUS] == c.FAILED
    assert end.attributes[c.ERROR_TYPE] == "WorkerLostError"
    assert "signal 9" in end.attributes[c.ERROR_MESSAGE]
    assert_flow_identity(end.attributes, flow_id, "order_processing")
    worker.proc.stop()


def test_killed_child_of_a_redelivered_task_does_not(
    start_worker: StartWorker, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """acks_late + reject_on_worker_lost: the task is redelivered and the next attempt ends the
    flow; the lost attempt is no failure of it."""
    worker = start_worker("redis", "prefork")
    pid_file = tmp_path / "child.pid"
    with flow.start("order_processing", tenant=TENANT, end_on_exit=False) as flow_id:
        worker.send("killed_redelivered", str(pid_file))
    _kill_child(pid_file)
    end = flow_end(receiver, flow_id, worker.service)  # exactly one end record
    assert end.attributes[c.FLOW_STATUS] == c.COMPLETED
    worker.proc.stop()
    assert "WorkerLostError" in worker.proc.log_text()  # the child was lost, indeed
