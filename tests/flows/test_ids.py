"""Flow, trace and span ids do not come from the application's `random` module: a service that
seeds it still gets distinct ids in every process, and a forked child does not repeat its parent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashfrog_sdk.store import FlowStore
from tests.support import ROOT, clean_env

# Each process seeds the global random module the same way, as an application wanting
# reproducible behaviour would, then runs one flow with two steps into the shared store.
SEEDED_APP = """
import random, sys
random.seed(1234)
from dashfrog_sdk import flow, step
with flow.start("seeded", tenant=sys.argv[1]) as fid:
    with step.start("one"):
        pass
    with step.start("two"):
        pass
print(fid)
"""


def test_seeding_random_does_not_repeat_ids_across_processes(tmp_path: Path) -> None:
    store = tmp_path / "flows.db"
    env = clean_env(DASHFROG_STORE=str(store), DASHFROG_CONSOLE="off", PYTHONPATH=str(ROOT))
    ids = []
    for tenant in ("t1", "t2", "t3"):
        proc = subprocess.run(
            [sys.executable, "-c", SEEDED_APP, tenant],
            env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        ids.append(proc.stdout.strip())
    assert len(set(ids)) == 3, ids
    with FlowStore(store) as fs:
        flows = fs.flows(limit=None)
        assert sorted(f.tenant for f in flows) == ["t1", "t2", "t3"]
        details = [fs.flow(i) for i in ids]
    # Step spans are keyed by span id in the store: seeded span ids would overwrite each other.
    assert [[s.name for s in d.steps] for d in details] == [["one", "two"]] * 3
    trace_ids = {d.trace_id for d in details}
    assert len(trace_ids) == 3, trace_ids


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_repeat_parent_ids() -> None:
    from dashfrog_sdk import ids

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(ids.flow_id() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split()
    os.waitpid(pid, 0)
    parent = [ids.flow_id() for _ in range(4)]
    assert len(child) == 4 and not set(child) & set(parent)


def test_ids_ignore_the_global_random_state(dashfrog_capture: object) -> None:
    import random

    from dashfrog_sdk import flow

    random.seed(99)
    with flow.start("a", tenant="t") as first:
        pass
    random.seed(99)
    with flow.start("a", tenant="t") as second:
        pass
    assert first != second
