"""What the tests share: the repository root, a clean environment, real processes
(`procs`), a real collector (`collector`) and an OTLP receiver (`otlp_receiver`)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(drop: tuple[str, ...] = ("OTEL_", "DASHFROG_"), **extra: str) -> dict[str, str]:
    """This process's environment without the variables dashfrog and OTel read (a test sets
    the ones it means), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env
