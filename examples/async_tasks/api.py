"""The API: starts an import flow, hands it to Celery, answers at once with the flow id.

OTEL_SERVICE_NAME=importer-api uvicorn api:app --port 8000
"""

from __future__ import annotations

from fastapi import FastAPI
from tasks import process_import

from dashfrog_sdk import flow, step, with_fastapi

app = with_fastapi(FastAPI(title="imports"))


@app.post("/imports")
def start_import(tenant: str, rows: int = 100) -> dict[str, str]:
    # end_on_exit=False: the flow goes on in the worker, which calls flow.end().
    with flow.start("data_import", tenant=tenant, end_on_exit=False, source="api") as flow_id:
        with step.start("accept", rows=rows):
            process_import.apply_async(args=[rows])
    return {"flow_id": flow_id}
