"""Which status a flow ends with when several records end it: one precedence, everywhere.

A flow that crosses processes is ended by more than one record: the API's flow span, a worker's
`dashfrog.flow.end` event, a downstream service's failure record. They arrive in any order
(each process exports on its own schedule), so the final status must not depend on which one
is written first. The rule, for the local store and for any backend:

    failed  >  cancelled  >  completed  >  running

* the **status** is the highest-ranked status among the records that ended the flow (a record
  saying ``running`` ended nothing: a flow span closed with ``end_on_exit=False``);
* the **end time** is the latest end among those records (the flow is over when its last part
  is), whatever their status;
* the **error** (``dashfrog.error.type`` / ``message``) is the one of a record with the winning
  status: the first such record the store receives.

`merge` is the rule in Python; `sql_rank` the same rank as a SQL expression, used by the
SQLite writer (``store/writer.py``) and meant for any other backend's queries (a ClickHouse
``argMax(status, rank)`` over a flow's ending records derives the same status).
"""

from __future__ import annotations

from typing import Final

from dashfrog_sdk import conventions as c

# Higher wins. Anything unknown ranks like `running`: it ends nothing.
RANK: Final = {c.RUNNING: 0, c.COMPLETED: 1, c.CANCELLED: 2, c.FAILED: 3}


def rank(status: str | None) -> int:
    """The precedence of `status` (0: ends nothing)."""
    return RANK.get(status or c.RUNNING, 0)


def merge(first: str | None, second: str | None) -> str:
    """The final status of a flow two records ended with `first` and `second`, in any order."""
    a, b = first or c.RUNNING, second or c.RUNNING
    return b if rank(b) > rank(a) else a


def sql_rank(column: str) -> str:
    """`rank` as a SQL ``CASE`` expression over `column` (a trusted column name)."""
    whens = " ".join(f"WHEN '{status}' THEN {n}" for status, n in RANK.items() if n)
    return f"(CASE {column} {whens} ELSE 0 END)"
