"""The README's first example: a flow with steps, seen on the console with zero configuration.

    python examples/quickstart.py

With OTEL_EXPORTER_OTLP_ENDPOINT set, the same code exports spans and events over OTLP instead.
"""

from __future__ import annotations

import random

from dashfrog_sdk import flow, step


def validate_data(rows: list[int]) -> None:
    if not rows:
        raise ValueError("no rows to import")


def process_data(rows: list[int]) -> int:
    return sum(rows)


def main() -> str:
    rows = [random.randint(1, 100) for _ in range(10)]
    with flow.start(name="data_import", tenant="acme-corp", env="production") as flow_id:
        with step.start("validate"):
            validate_data(rows)
        with step.start("process"):
            process_data(rows)
    return flow_id


if __name__ == "__main__":
    print(f"flow id: {main()}")
