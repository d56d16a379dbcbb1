"""The Celery worker: joins the flow the API started and ends it with `flow.end()`.

OTEL_SERVICE_NAME=importer-worker celery -A tasks worker --pool solo
"""

from __future__ import annotations

import os

from celery import Celery

from dashfrog_sdk import flow, step, with_celery

app = with_celery(Celery("imports", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")))
app.conf.task_default_queue = os.environ.get("IMPORT_QUEUE", "imports")


@app.task(name="imports.process")
def process_import(rows: int) -> int:
    with step.start("parse", rows=rows):
        parsed = list(range(rows))
    with step.start("load"):
        if rows < 0:
            raise ValueError("negative row count")  # the task fails: so does the flow
        loaded = len(parsed)
    flow.end()  # the flow started in the API ends here, with its true start and end
    return loaded
