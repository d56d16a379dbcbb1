"""A lone surrogate in run-time text (an exception message, a log line, an attribute) reaches a
real collector cleaned, and the flows exported with it are not lost (dashfrog_sdk.text).

Before, the OTLP encoder raised on the whole batch: 0 of its spans reached the collector."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from tests.export.conftest import App, app_env
from tests.support.collector import RotelCollector
from tests.support.procs import wait_until

SCRIPT = textwrap.dedent(
    """
    import logging
    import dashfrog_sdk
    from dashfrog_sdk import flow, step
    dashfrog_sdk.setup()
    logging.getLogger().setLevel(logging.INFO)
    bad = "bad \\ud800 text"
    ids = []
    for i in range(20):
        try:
            with flow.start("order", tenant="acme") as flow_id:
                ids.append(flow_id)
                logging.getLogger("app").info("log %s", bad)
                try:
                    raise OSError(bad)
                except OSError:
                    logging.getLogger("app").exception("caught")
                flow.event("noted", note=bad)
                with step.start("charge", card=bad):
                    raise ValueError(bad)
        except ValueError:
            pass
    with flow.start("clean", tenant="acme") as flow_id:
        ids.append(flow_id)
    assert dashfrog_sdk.flush(30)
    print(",".join(ids), flush=True)
    """
)


def test_surrogates_reach_the_collector_cleaned(
    collector: RotelCollector, start_app: Callable[..., App]
) -> None:
    env = app_env(collector, "grpc")
    service = env["OTEL_SERVICE_NAME"]
    app = start_app(env, SCRIPT)
    assert app.wait(90) == 0, app.stderr
    ids = set(app._line(5).strip().split(","))
    assert len(ids) == 21
    receiver = collector.receiver

    def flow_ids() -> set[str]:
        return {
            s.attributes["dashfrog.flow.id"]
            for s in receiver.spans
            if s.resource.get("service.name") == service and s.name.startswith("flow ")
        }

    wait_until(lambda: ids <= flow_ids(), timeout=40, message=lambda: ids - flow_ids())
    charge = next(
        s
        for s in receiver.spans
        if s.resource.get("service.name") == service and s.name == "step charge"
    )
    assert charge.attributes["dashfrog.error.message"] == "bad \ufffd text"
    assert charge.attributes["card"] == "bad \ufffd text"
    logs = receiver.wait_for_logs(
        lambda r: r.resource.get("service.name") == service and "caught" in str(r.body),
        count=20,
        timeout=40,
    )
    assert logs[0].attributes["exception.message"] == "bad \ufffd text"
    receiver.wait_for_logs(
        lambda r: r.resource.get("service.name") == service and r.body == "log bad \ufffd text",
        count=20,
        timeout=40,
    )
    assert app.stderr.count("lone surrogate") == 1, app.stderr
