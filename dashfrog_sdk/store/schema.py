"""SQLite schema of the local flow store, its version table and its migrations.

The store holds one row per flow (``flows``, kept up to date as spans and events arrive, so a
query never has to rebuild a flow from raw records), the flow's labels (``flow_labels``, one row
per label, indexed for ``labels={k: v}`` filters), its steps, its other spans, its custom events
and its captured log records.

Migrations are applied in order; ``schema_version`` holds one row per applied migration. A store
written by a newer dashfrog (a version above ``SCHEMA_VERSION``) is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 16_384
WAL_LIMIT_BYTES = 64 << 20
VACUUM_PAGES = 4_096  # pages (4 KiB each) given back per call: a bounded, short lock

# -- migrations -------------------------------------------------------------------------------
# Each entry upgrades the store from version index to index + 1. Never edit a released one:
# append a new one.

_V1 = """
CREATE TABLE flows (
    flow_id       TEXT PRIMARY KEY,
    name          TEXT,
    tenant        TEXT,
    parent_id     TEXT,
    status        TEXT NOT NULL DEFAULT 'running',
    start_ns      INTEGER,
    end_ns        INTEGER,
    timeout_s     REAL,
    deadline_ns   INTEGER,
    end_on_exit   INTEGER,
    trace_id      TEXT,
    span_id       TEXT,
    service       TEXT,
    error_type    TEXT,
    error_message TEXT,
    labels        TEXT NOT NULL DEFAULT '{}',
    seen_ns       INTEGER NOT NULL
);
CREATE TABLE flow_labels (
    flow_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (flow_id, key)
) WITHOUT ROWID;
CREATE TABLE steps (
    span_id        TEXT PRIMARY KEY,
    flow_id        TEXT NOT NULL,
    trace_id       TEXT,
    parent_span_id TEXT,
    name           TEXT NOT NULL,
    service        TEXT,
    status         TEXT NOT NULL DEFAULT 'running',
    optional       INTEGER NOT NULL DEFAULT 0,
    start_ns       INTEGER,
    end_ns         INTEGER,
    error_type     TEXT,
    error_message  TEXT,
    attributes     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE spans (
    span_id        TEXT PRIMARY KEY,
    flow_id        TEXT NOT NULL,
    trace_id       TEXT,
    parent_span_id TEXT,
    name           TEXT NOT NULL,
    kind           TEXT,
    service        TEXT,
    start_ns       INTEGER,
    end_ns         INTEGER,
    error          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    flow_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    ts_ns      INTEGER,
    service    TEXT,
    trace_id   TEXT,
    span_id    TEXT,
    step_name  TEXT,
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX flows_seen ON flows (seen_ns);
CREATE INDEX steps_flow ON steps (flow_id, start_ns);
CREATE INDEX spans_flow ON spans (flow_id);
CREATE INDEX events_flow ON events (flow_id, ts_ns);
"""

# v2: captured Python log records, and the indexes the query API leans on (tenant + status,
# name + status, time ranges, child flows, label look-ups).
_V2 = """
CREATE TABLE logs (
    id         INTEGER PRIMARY KEY,
    flow_id    TEXT NOT NULL,
    ts_ns      INTEGER,
    severity   TEXT,
    body       TEXT,
    logger     TEXT,
    step_name  TEXT,
    service    TEXT,
    trace_id   TEXT,
    span_id    TEXT,
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX logs_flow ON logs (flow_id, ts_ns);
CREATE INDEX flows_tenant_status ON flows (tenant, status, start_ns);
CREATE INDEX flows_name_status ON flows (name, status, start_ns);
CREATE INDEX flows_status_start ON flows (status, start_ns);
CREATE INDEX flows_start ON flows (start_ns);
CREATE INDEX flows_parent ON flows (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX flow_labels_kv ON flow_labels (key, value, flow_id);
"""


# v3: stats() reads only this index (no table row per flow, which at 1M flows was most of its
# time); it also serves every filter and order on start_ns that flows_start served.
_V3 = """
CREATE INDEX flows_start_stats ON flows (start_ns, name, tenant, status, end_ns, deadline_ns);
DROP INDEX flows_start;
"""

# v4: a step's progress (its latest s.progress(), kept on its row) and its artifacts (one row per
# step and name: a name given again replaces its value).
_V4 = """
ALTER TABLE steps ADD COLUMN progress_done REAL;
ALTER TABLE steps ADD COLUMN progress_total REAL;
ALTER TABLE steps ADD COLUMN progress_message TEXT;
ALTER TABLE steps ADD COLUMN progress_ns INTEGER;
CREATE TABLE artifacts (
    span_id   TEXT NOT NULL,
    name      TEXT NOT NULL,
    flow_id   TEXT NOT NULL,
    step_name TEXT,
    service   TEXT,
    ts_ns     INTEGER NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (span_id, name)
) WITHOUT ROWID;
CREATE INDEX artifacts_flow ON artifacts (flow_id);
"""


# v5, labels: each label row carries its flow's start (`started`, kept by two triggers), so
# `flows(labels=...)` walks the label's flows newest first in one index range and stops at
# its LIMIT, however many flows carry the label (queries.FlowStore._label_plan).
_V5_LABELS = (
    "ALTER TABLE flow_labels ADD COLUMN started INTEGER",
    "CREATE TRIGGER flow_labels_started AFTER INSERT ON flow_labels WHEN NEW.started IS NULL "
    "BEGIN UPDATE flow_labels SET started = (SELECT start_ns FROM flows "
    "WHERE flows.flow_id = NEW.flow_id) WHERE flow_id = NEW.flow_id AND key = NEW.key; END",
    "CREATE TRIGGER flows_start_labels AFTER UPDATE OF start_ns ON flows "
    "WHEN OLD.start_ns IS NOT NEW.start_ns "
    "BEGIN UPDATE flow_labels SET started = NEW.start_ns WHERE flow_id = NEW.flow_id; END",
)
_LABELS_STARTED = (
    "UPDATE flow_labels SET started = (SELECT start_ns FROM flows "
    "WHERE flows.flow_id = flow_labels.flow_id)"
)


def _v5(conn: sqlite3.Connection) -> None:
    """v5: labels ordered by start (above), and the stats pre-aggregates with their triggers
    (store/tails.py), both filled from the flows already stored (about a minute at 1M flows
    on a loaded machine, once)."""
    from dashfrog_sdk.store import tails

    for statement in _V5_LABELS:
        conn.execute(statement)
    conn.execute(_LABELS_STARTED)
    conn.execute("CREATE INDEX flow_labels_kv_started ON flow_labels (key, value, started)")
    conn.execute("DROP INDEX flow_labels_kv")  # the new one serves its look-ups too
    # A tenant's flows newest first with their ids, for a label filter within a tenant: the
    # labels are checked by primary key in start order, and the walk stops at the LIMIT.
    conn.execute("CREATE INDEX flows_tenant_start ON flows (tenant, start_ns, flow_id)")
    tails.install(conn)


# v6: the running steps of the flows on a page, for their current step (`_fill_current_steps`,
# asked by every flows list, every live page of the viewer and every `changes()` read). Through
# `steps_flow` it read every step of each flow to find the running one (0.9 ms for a page of 50
# live flows of about 8 steps; 0.25 ms with this index). Partial: a step is in it only while it
# runs, and a step that ended before it was stored is never in it.
_V6 = "CREATE INDEX steps_running ON steps (flow_id, start_ns) WHERE status = 'running'"


def _v7(conn: sqlite3.Connection) -> None:
    """v7: the stats tails' triggers log each change to ``flow_tail_changes`` and the writer
    folds them into the tails once per transaction (store/tails.py, "Folded per transaction"),
    instead of three tail upserts per flow written. The tails themselves are unchanged: a v6
    store's are carried over as they are (no change is pending in a committed v6 store)."""
    from dashfrog_sdk.store import tails

    for statement in tails.CHANGES_DDL:
        conn.execute(statement)


# v8: a process still running pre-v7 code (opened before another process migrated the file)
# does not fold, and its `advance` moves the edges and takes out the flows that crossed them
# while their logged changes are still pending: the later fold, against the moved edges, never
# adds them back, so a tail is left short for good (tests/store/test_tail_changes.py,
# test_old_advance_with_pending_changes_is_refused). v7's `advance` folds first, so the log is
# empty when it moves an edge; an older one's UPDATE is refused (its writer warns and retries).
_V8 = (
    "CREATE TRIGGER flow_tail_edges_fold_first BEFORE UPDATE OF edge_ns ON flow_tail_edges "
    "WHEN EXISTS (SELECT 1 FROM flow_tail_changes) "
    "BEGIN SELECT RAISE(ABORT, 'fold flow_tail_changes before moving the tails edges'); END"
)


def _v8(conn: sqlite3.Connection) -> None:
    conn.execute(_V8)  # not `_script`: it splits at the `;` inside BEGIN ... END


def rebuild(conn: sqlite3.Connection) -> None:
    """Refill what triggers keep (labels' start, the stats tails) from ``flows``: after a
    bulk load that dropped the triggers (benchmarks/store.py)."""
    from dashfrog_sdk.store import tails

    conn.execute(_LABELS_STARTED + " WHERE started IS NULL")
    tails.rebuild(conn)


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _script(_V1),
    _script(_V2),
    _script(_V3),
    _script(_V4),
    _v5,
    _script(_V6),
    _v7,
    _v8,
]
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_ns INTEGER NOT NULL
)
"""


class SchemaError(Exception):
    """The store's schema cannot be used by this version of dashfrog."""


def connect(path: str, *, create: bool) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL and a busy timeout.

    With ``create=False`` a missing file raises ``sqlite3.OperationalError`` instead of being
    created. The connection may be shared between threads; callers serialise its use.
    """
    mode = "rwc" if create else "rw"
    uri = "file:" + _quote_path(path) + "?mode=" + mode
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if create:
            # Only takes effect on a new, empty file (an existing store keeps its setting):
            # lets retention hand freed pages back to the filesystem (`give_back_space`).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _use_wal(conn)
        # Without a limit the WAL file stays as big as the largest write burst ever was.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Flow, step and label ids are random: a bigger page cache keeps index inserts in memory.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new store to WAL (a persistent property of the file: one switch per store).

    The switch needs the file to itself, and SQLite does not run the busy handler for it: two
    processes creating one store at once got "database is locked" at once, busy timeout or not
    (the same bug as russellromney/honker#102). So wait for it here, within the busy timeout,
    and accept that another process made the switch meanwhile.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        row = conn.execute("PRAGMA journal_mode").fetchone()
        if row is not None and str(row[0]).lower() == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _quote_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of an open store (0 for an empty database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(
    conn: sqlite3.Connection, target: int = SCHEMA_VERSION, *, known: int | None = None
) -> int:
    """Apply the missing migrations up to ``target``; return the version reached.

    Safe when several processes open the same new store at once: the check and the upgrade
    happen inside one ``BEGIN IMMEDIATE`` transaction, so only one process applies each step.
    `known`: the version the caller just read, if it did.
    """
    version = current_version(conn) if known is None else known
    if version >= target:
        return _check_known(version)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_VERSION_TABLE)
        version = current_version(conn)
        while version < target:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(
                "INSERT INTO schema_version (version, applied_ns) VALUES (?, ?)",
                (version, time.time_ns()),
            )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return _check_known(version)


def give_back_space(conn: sqlite3.Connection, pages: int = VACUUM_PAGES) -> None:
    """Return up to `pages` free pages to the filesystem (stores created with incremental
    auto-vacuum; a no-op on older ones, which reuse their free pages instead).

    ``executescript``, not ``execute``: the pragma frees one page per step of its statement,
    and ``execute`` of a statement that returns no rows steps it once.
    """
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk):
    a failing ROLLBACK must never replace the error that caused it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _check_known(version: int) -> int:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"store schema version {version} is newer than this dashfrog_sdk supports "
            f"({SCHEMA_VERSION}); upgrade dashfrog_sdk"
        )
    return version
