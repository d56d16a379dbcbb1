"""The ClickHouse backend's own surface: `dashfrog clickhouse init`, the clickhouse-connect path
against a ClickHouse HTTP endpoint on loopback (executing in chDB, in its own process), the CLI
reading ClickHouse, URL handling and the rollup SQL's wire names."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dashfrog_sdk import conventions as c
from dashfrog_sdk.clickhouse import migrate
from dashfrog_sdk.clickhouse.connection import (
    ClickHouseError,
    HttpTransport,
    literal,
    parse_url,
    redact,
    render,
)
from dashfrog_sdk.store import FlowStore, StoreError
from dashfrog_sdk.store.backend import FlowBackend
from tests.store.conftest import run_cli
from tests.store.test_backends import ChPipe, _order, chdb_dir  # noqa: F401 - the session's chDB
from tests.support import ROOT
from tests.support.clickhouse import ChDatabase, endpoint, new_database, wait_ready

SQL_DIR = ROOT / "dashfrog_sdk" / "clickhouse" / "sql"


def _ok(*args: str, env: dict[str, str] | None = None) -> str:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- init ---------------------------------------------------------------------------------------


def test_init_creates_the_rollup_once(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'ch'}"
    first = _ok("clickhouse", "init", "--url", url, "--database", "otel")
    assert "created otel.otel_traces and otel.otel_logs" in first
    assert "applied 001_flow_rollup.sql" in first
    again = _ok("clickhouse", "init", "--url", url, "--database", "otel")
    assert "applied" not in again and "up to date" in again
    assert f"version {migrate.SCHEMA_VERSION}" in again
    listed = _ok("flows", "--store", f"{url}?database=otel")
    assert listed.strip() == "no flows match"


def test_init_refuses_logs_without_event_name(chdb_dir: str) -> None:  # noqa: F811
    db = new_database(chdb_dir, rollup=False)
    db.transport.command(f"ALTER TABLE `{db.database}`.otel_logs DROP COLUMN EventName")
    with pytest.raises(ClickHouseError, match="no EventName column.*ADD COLUMN EventName"):
        migrate.apply(db.transport, db.database)


def test_init_without_the_exporter_tables_when_asked_not_to_create_them(
    chdb_dir: str,  # noqa: F811
) -> None:
    with pytest.raises(ClickHouseError, match="otel_traces does not exist"):
        migrate.apply(new_database_empty(chdb_dir), "nothing_here", create_otel_tables=False)


def new_database_empty(path: str) -> object:
    db = new_database(path, rollup=False)
    return db.transport


def test_store_without_rollup_says_how_to_create_it(chdb_dir: str) -> None:  # noqa: F811
    db = new_database(chdb_dir, rollup=False)
    with pytest.raises(StoreError, match="no dashfrog flow rollup.*dashfrog clickhouse init"):
        FlowStore(db.url)


def test_migrations_are_numbered_and_idempotent_statements() -> None:
    """Every statement creates only what is missing, except a backfill: an INSERT ... SELECT
    into a table its own migration created, after that table's view (a row the two both
    write is seen twice, which those tables are built to tolerate)."""
    found = migrate.migrations()
    assert [v for v, _, _ in found] == list(range(1, len(found) + 1))
    for _, _, sql in found:
        created: list[str] = []
        for statement in migrate.statements(sql):
            backfill = re.match(r"INSERT INTO \{db\}\.(\w+)\s+SELECT ", statement)
            if backfill:
                table = backfill.group(1)
                assert table in created, statement[:80]
                assert f"TO {{db}}.{table} AS" in sql.split(statement)[0], statement[:80]
                continue
            assert "IF NOT EXISTS" in statement.split("(")[0].split(" AS")[0], statement[:80]
            made = re.match(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)", statement)
            if made:
                created.append(made.group(1))


def test_rollup_sql_spells_only_conventions_names() -> None:
    names = {v for k, v in vars(c).items() if k.isupper() and isinstance(v, str)}
    for path in SQL_DIR.glob("*.sql"):
        for found in set(re.findall(r"'(dashfrog\.[a-z_.]+)'", path.read_text())):
            assert found in names or found == c.LABEL_PREFIX, f"{path.name}: {found}"


def test_integrations_folder_ships_the_same_sql() -> None:
    shipped = ROOT / "integrations" / "clickhouse"
    assert sorted(p.name for p in shipped.glob("*.sql")) == sorted(
        p.name for p in SQL_DIR.glob("*.sql")
    )
    for path in shipped.glob("*.sql"):
        assert path.read_text() == (SQL_DIR / path.name).read_text()


# -- URLs and literals ------------------------------------------------------------------------


def test_urls() -> None:
    t = parse_url("clickhouse://bob:s3cret@ch.internal:9000/otel")
    assert (t.scheme, t.host, t.port, t.database, t.username, t.password) == (
        "http",
        "ch.internal",
        9000,
        "otel",
        "bob",
        "s3cret",
    )
    assert (
        parse_url("clickhouses://ch/x").port == 8443 and parse_url("https://ch/x").scheme == "https"
    )
    assert parse_url("http://localhost:8123").database == "default"
    assert parse_url("http://localhost:8123", "otel").database == "otel"
    assert parse_url("chdb:///srv/flows-ch?database=otel").path == "/srv/flows-ch"
    assert redact("clickhouse://bob:s3cret@ch:8123/otel") == "clickhouse://bob:***@ch:8123/otel"
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        parse_url("clickhouse://ch/otel;DROP")
    with pytest.raises(ValueError, match="chdb:///path/to/dir"):
        FlowStore("chdb://")


def test_literals_quote_everything() -> None:
    assert literal("a'b\\c") == "'a\\'b\\\\c'"
    assert literal(["x", 2, None, True]) == "['x', 2, NULL, 1]"
    with pytest.raises(TypeError):
        literal(object())


# -- clickhouse-connect against a ClickHouse HTTP endpoint ---------------------------------------


@pytest.fixture(scope="module")
def http_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ChDatabase, int, dict[str, str]]]:
    """A database behind the chDB HTTP endpoint, initialised by the CLI over HTTP, with flows
    written through clickhouse-connect as the exporter would write them."""
    proc, port = endpoint(str(tmp_path_factory.mktemp("chdb-http")))
    with proc:
        wait_ready(proc, port)
        _ok("clickhouse", "init", "--url", f"http://127.0.0.1:{port}", "--database", "otel")
        transport = HttpTransport(parse_url(f"http://127.0.0.1:{port}/otel"))
        db = ChDatabase("", "otel", transport)
        pipe = ChPipe(db, "api")
        ids: dict[str, str] = {}
        try:
            with pipe.flow("order_processing", "acme-corp", region="eu") as fh:
                with pipe.step(fh, "validate"):
                    pass
                with pipe.step(fh, "charge"):
                    pass
            ids["completed"] = fh.id
            try:
                with pipe.flow("order_processing", "acme-corp", region="us") as fh:
                    with pipe.step(fh, "charge"):
                        raise ValueError("card declined")
            except ValueError:
                pass
            ids["failed"] = fh.id
            pipe.flush()
        finally:
            pipe.close()
        yield db, port, ids
        transport.close()


def test_clickhouse_connect_reads_the_rollup(
    http_db: tuple[ChDatabase, int, dict[str, str]],
) -> None:
    _, port, ids = http_db
    with FlowStore(f"clickhouse://127.0.0.1:{port}/otel") as store:
        assert isinstance(store, FlowBackend)
        failed = store.flows(tenant="acme-corp", status="failed", since="1d")
        detail = store.flow(ids["completed"][:8])
        stats = store.stats(since="1d")
    assert [f.id for f in failed] == [ids["failed"]]
    assert failed[0].error_type == "ValueError"
    assert [s.name for s in detail.steps] == ["validate", "charge"]
    assert [(s.count, s.failed) for s in stats] == [(2, 1)]


def test_cli_reads_clickhouse(http_db: tuple[ChDatabase, int, dict[str, str]]) -> None:
    _, port, ids = http_db
    url = f"clickhouse://127.0.0.1:{port}/otel"
    table = _ok(
        "flows", "--store", url, "--tenant", "acme-corp", "--status", "failed", "--since", "1d"
    )
    assert ids["failed"] in table and ids["completed"] not in table
    listed = json.loads(
        _ok("flows", "--json", env={"DASHFROG_READ_STORE": url, "DASHFROG_STORE": "off"})
    )
    assert {f["id"] for f in listed} == set(ids.values())
    mermaid = _ok("flow", ids["failed"][:8], "--store", url, "--mermaid")
    assert mermaid.startswith("sequenceDiagram") and "charge" in mermaid
    assert "failed" in _ok("tail", "--once", "--since", "1h", "--store", url)
    stats = json.loads(_ok("stats", "--json", "--store", url))
    assert [(r["tenant"], r["count"], r["failed"]) for r in stats] == [("acme-corp", 2, 1)]
    assert "charge" in _ok("durations", ids["completed"], "--store", url)


def test_cli_error_for_an_unreachable_server() -> None:
    proc = run_cli("flows", "--store", "clickhouse://127.0.0.1:1/otel")
    assert proc.returncode == 1
    assert proc.stderr.startswith("dashfrog: error: ") and "Traceback" not in proc.stderr


def test_sqlite_store_is_a_flow_backend(tmp_path: Path) -> None:
    from tests.store.conftest import Pipe

    pipe = Pipe(tmp_path / "f.db")
    with pipe.flow("x", "acme"):
        pass
    pipe.flush()
    pipe.close()
    with FlowStore(tmp_path / "f.db") as store:
        assert isinstance(store, FlowBackend)


# -- the README's SQL, as written there ---------------------------------------------------------


def _readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Flows in ClickHouse", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def test_readme_sql_counts_flows_not_spans(chdb_dir: str) -> None:  # noqa: F811
    import time as _time

    db = new_database(chdb_dir)
    pipe = ChPipe(db)
    try:
        with pipe.flow("order", "acme") as fh, pipe.step(fh, "validate"):
            pass
        with pytest.raises(KeyError), pipe.flow("order", "acme") as nested:
            with pipe.step(nested, "load"), pipe.step(nested, "parse"):
                raise KeyError("row 7")
        with pipe.flow("order", "acme") as optional:
            try:
                with pipe.step(optional, "enrich", optional=True):
                    raise TimeoutError("geo")
            except TimeoutError:
                pass
        with pytest.raises(ValueError), pipe.flow("order", "globex") as gf:
            with pipe.step(gf, "charge"):
                raise ValueError("card declined")
        # A failed flow from two days ago: outside every query's one-day bound.
        two_days_ago = _time.time_ns() - 2 * 86400 * 10**9
        old = {c.FLOW_ID: "0" * 32, c.FLOW_NAME: "order", c.TENANT: "acme", c.FLOW_STATUS: "failed"}
        span = pipe.tracer.start_span("flow order", attributes=old, start_time=two_days_ago)
        span.end(end_time=two_days_ago + 10**9)
        with pipe.flow("job", "initech") as waiting:
            with pipe.flow("job", "initech") as busy, pipe.step(busy, "crunch"):
                pipe.flush()
                rates, where, running = (
                    db.rows(q.replace("otel.", "{db}.")) for q in _readme_queries()
                )
    finally:
        pipe.close()
    assert [(r["tenant"], int(r["flows"]), int(r["failed"])) for r in rates] == [
        ("acme", 3, 1),
        ("globex", 1, 1),
        ("initech", 2, 0),
    ]
    assert [(r["tenant"], r["step"], int(r["failed_flows"])) for r in where] == [
        ("acme", "parse", 1),
        ("globex", "charge", 1),
    ]
    assert sorted((r["flow_id"], r["current_step"]) for r in running) == sorted(
        [(waiting.id, ""), (busy.id, "crunch")]
    )
    assert nested.id and optional.id


def test_rollup_ranks_statuses_by_the_one_precedence() -> None:
    from dashfrog_sdk.status import RANK
    from dashfrog_sdk.store.clickhouse import RANKED_STATUSES

    assert list(RANKED_STATUSES) == sorted(RANK, key=RANK.__getitem__)
    rollup = (SQL_DIR / "001_flow_rollup.sql").read_text()
    listed = "[" + ", ".join(f"'{s}'" for s in RANKED_STATUSES) + "]"
    assert rollup.count(f"indexOf({listed}") == 2  # the flow span's and the events' view
    store_sql = (ROOT / "dashfrog_sdk" / "store" / "clickhouse.py").read_text()
    assert "f_outcome.1 = 4, 'failed', f_outcome.1 = 3, 'cancelled'" in store_sql


# -- migration 2: the list indexes, on a new database and on one upgraded from version 1 --------


def _at_version_1(path: str) -> ChDatabase:
    """A database as `dashfrog clickhouse init` left it before migration 2 existed."""
    db = new_database(path, rollup=False)
    version, name, sql = migrate.migrations()[0]
    assert (version, name) == (1, "001_flow_rollup.sql")
    db.transport.command(render(migrate.VERSION_TABLE, database=db.database))
    for statement in migrate.statements(sql):
        db.transport.command(render(statement, database=db.database))
    db.transport.command(
        render(
            "INSERT INTO {db}.dashfrog_schema_version (version, name) VALUES (1, {n})",
            {"n": name},
            database=db.database,
        )
    )
    return db


def _mixed_flows(pipe: ChPipe) -> dict[str, str]:
    ids = {"done": _order(pipe, "acme", plan="pro"), "failed": _order(pipe, "acme", fail=True)}
    with pipe.flow("checkout", "globex", plan="pro") as late_fail:
        pass
    pipe.flush()
    pipe.end(late_fail, "failed", error=("RuntimeError", "worker lost"))
    ids["late_fail"] = late_fail.id
    pipe.flush()
    return ids


def _answers(store: FlowBackend) -> dict[str, object]:
    return {
        "failed": [f.id for f in store.flows(status="failed")],
        "completed": [f.id for f in store.flows(status="completed")],
        "pro": [f.id for f in store.flows(labels={"plan": "pro"})],
        "pro_failed": [f.id for f in store.flows(labels={"plan": "pro"}, status="failed")],
        "acme_failed": [f.id for f in store.flows(tenant="acme", status="failed", since="1d")],
        "stats": [(s.name, s.tenant, s.count, s.failed, s.completed) for s in store.stats()],
    }


def test_init_upgrades_a_database_at_version_1(chdb_dir: str) -> None:  # noqa: F811
    old = _at_version_1(chdb_dir)
    ids = _mixed_flows(ChPipe(old))  # written while only migration 1's views existed
    with pytest.raises(StoreError, match="version 1.*dashfrog clickhouse init"):
        FlowStore(old.url)
    upgraded = migrate.apply(old.transport, old.database)
    later = [name for number, name, _ in migrate.migrations() if number > 1]
    assert (upgraded.applied, upgraded.version) == (later, len(later) + 1)
    assert migrate.apply(old.transport, old.database).applied == []  # idempotent
    with pipe_and_store(old) as (pipe, store):
        before = _answers(store)
        with pipe.flow("long_job", "acme", plan="pro") as busy:  # after the upgrade
            with pipe.step(busy, "crunch"):
                pipe.flush()
                running = store.flows(status="running", labels={"plan": "pro"})
    assert before == {
        "failed": [ids["late_fail"], ids["failed"]],
        "completed": [ids["done"]],
        "pro": [ids["late_fail"], ids["done"]],
        "pro_failed": [ids["late_fail"]],
        "acme_failed": [ids["failed"]],
        "stats": [("checkout", "globex", 1, 1, 0), ("order_processing", "acme", 2, 1, 1)],
    }
    assert [(f.id, f.current_step) for f in running] == [(busy.id, "crunch")]
    fresh = new_database(chdb_dir)  # the same records into a database created at version 2
    fresh_ids = _mixed_flows(ChPipe(fresh))
    with FlowStore(fresh.url) as store:
        again = _answers(store)
    rename = {new: ids[key] for key, new in fresh_ids.items()}
    assert {
        k: [rename.get(x, x) for x in v] if k != "stats" else v for k, v in again.items()
    } == before


def test_flows_by_hour_answer_the_same_after_merges(chdb_dir: str) -> None:  # noqa: F811
    """Migration 5's table merges a flow's rows with its own functions (tenant, name and labels
    are no key there): the lists and stats without a tenant, which read it, give the answers
    of the tenant queries and the same answers once ClickHouse has merged every part."""
    db = new_database(chdb_dir)
    pipe = ChPipe(db)
    ids = _mixed_flows(pipe)  # a late failure from another process: two records of one flow
    with FlowStore(db.url) as store:
        before = _answers(store)
        by_tenant = {
            t: [f.id for f in store.flows(tenant=t, status="failed")] for t in ("acme", "globex")
        }
        for table in ("dashfrog_flows", "dashfrog_flows_by_hour"):
            db.transport.command(f"OPTIMIZE TABLE `{db.database}`.{table} FINAL")
        merged = db.transport.rows(
            f"SELECT count() AS n FROM `{db.database}`.dashfrog_flows_by_hour"
        )
        after = _answers(store)
        late = store.flows(labels={"plan": "pro"}, status="failed")[0]
    pipe.close()
    assert int(merged[0]["n"]) == 3  # one row a flow
    assert before == after
    assert before["failed"] == [ids["late_fail"], ids["failed"]]
    assert sorted(before["failed"]) == sorted(by_tenant["acme"] + by_tenant["globex"])
    assert (late.id, late.tenant, late.name, late.labels) == (
        ids["late_fail"],
        "globex",
        "checkout",
        {"plan": "pro"},
    )
    assert late.error_message == "worker lost"


@contextmanager
def pipe_and_store(db: ChDatabase) -> Iterator[tuple[ChPipe, FlowBackend]]:
    pipe, store = ChPipe(db), FlowStore(db.url)
    try:
        yield pipe, store
    finally:
        store.close()
        pipe.close()


def test_newest_by_status_looks_past_candidates_a_later_record_changed(
    chdb_dir: str,  # noqa: F811
) -> None:
    """status=completed reads the newest flows with a completed record; a newer flow whose
    later end event failed it is such a candidate but not an answer, so the candidates grow
    until `limit` answers are found, in start order."""
    db = new_database(chdb_dir)
    pipe = ChPipe(db)
    now = time.time_ns()
    flows = []
    for age_s in range(12, 0, -1):  # oldest first
        attrs = {
            c.FLOW_ID: f"{age_s:032x}",
            c.FLOW_NAME: "batch",
            c.TENANT: "acme",
            c.FLOW_STATUS: c.COMPLETED,
            c.label_key("plan"): "pro",
        }
        start = now - age_s * 1_000_000_000
        span = pipe.tracer.start_span("flow batch", attributes=attrs, start_time=start)
        span.end(end_time=start + 1_000_000)
        flows.append(FlowHandleLike(attrs, span, start))
    pipe.flush()
    for fh in flows[-5:]:  # the five newest fail afterwards, in another process
        pipe.end(fh, "failed")  # type: ignore[arg-type]
    pipe.flush()
    with FlowStore(db.url) as store:
        completed = [f.id for f in store.flows(status="completed", limit=3)]
        failed = [f.id for f in store.flows(status="failed", limit=2)]
        with_label = [
            f.id for f in store.flows(status="completed", labels={"plan": "pro"}, limit=2)
        ]
        every = [f.id for f in store.flows(status="completed", limit=None)]
    ids = [f.attrs[c.FLOW_ID] for f in flows]
    assert completed == [ids[6], ids[5], ids[4]]
    assert failed == [ids[11], ids[10]]
    assert with_label == [ids[6], ids[5]]
    assert every == ids[6::-1]
    pipe.close()


class FlowHandleLike:
    """What Pipe.end reads from a flow handle."""

    def __init__(self, attrs: dict[str, object], span: object, start_ns: int) -> None:
        self.attrs, self.span, self.start_ns = attrs, span, start_ns
        self.id = str(attrs[c.FLOW_ID])


def _flow_record(
    pipe: ChPipe,
    flow_id: str,
    start: int,
    status: str,
    *,
    tenant: str = "acme",
    timeout: float | None = None,
    span: bool = True,
) -> FlowHandleLike:
    """A flow as the SDK records it: its dashfrog.flow.start event and (unless `span=False`,
    flushed later by the caller's `span.end`) its span with `status` (running: ended elsewhere
    or not yet)."""
    attrs: dict[str, object] = {c.FLOW_ID: flow_id, c.FLOW_NAME: "batch", c.TENANT: tenant}
    span_attrs: dict[str, object] = {**attrs, c.FLOW_STATUS: status}
    if status == c.RUNNING:
        span_attrs[c.FLOW_END_ON_EXIT] = False
    if timeout is not None:
        span_attrs[c.FLOW_TIMEOUT] = timeout
    s = pipe.tracer.start_span("flow batch", attributes=span_attrs, start_time=start)
    pipe.emit(c.EVENT_FLOW_START, dict(span_attrs), s, ts=start)  # type: ignore[arg-type]
    if span:
        s.end(end_time=start + 1_000_000)
    return FlowHandleLike(attrs, s, start)


def test_running_without_tenant_is_the_merged_status(chdb_dir: str) -> None:  # noqa: F811
    """status=running without a tenant picks its candidates from the rank alone (flows whose
    highest record is running) and reads them by key: the answers equal the full merge's
    (every flow, then the status), with a flow ended later in another process, a flow whose end
    arrived before its start, a timed-out one, one older than the last hour (the window widens),
    limits, a cursor (`until`), and after ClickHouse merged every part."""
    db = new_database(chdb_dir)
    pipe = ChPipe(db)
    now = time.time_ns()
    s = 1_000_000_000
    # The end of `end_first` (failed, from another process) reaches ClickHouse before its start.
    early = FlowHandleLike(
        {c.FLOW_ID: "e" * 32, c.FLOW_NAME: "batch", c.TENANT: "acme"},
        pipe.tracer.start_span("flow batch", start_time=now - 30 * s),
        now - 30 * s,
    )
    pipe.end(early, c.FAILED, error=("RuntimeError", "lost"))  # type: ignore[arg-type]
    pipe.flush()
    _flow_record(pipe, "e" * 32, now - 30 * s, c.RUNNING)
    running = [
        _flow_record(pipe, f"{i:032x}", now - i * s, c.RUNNING, tenant=("acme", "globex")[i % 2])
        for i in range(1, 6)
    ]
    old = _flow_record(pipe, "a" * 32, now - 7200 * s, c.RUNNING)  # before the last hour
    timed = _flow_record(pipe, "b" * 32, now - 20 * s, c.RUNNING, timeout=1.0)
    done = [_flow_record(pipe, f"d{i:031x}", now - i * s - s // 2, c.COMPLETED) for i in range(6)]
    ended_later = _flow_record(pipe, "c" * 32, now - 3 * s - s // 4, c.RUNNING)
    pipe.flush()
    pipe.end(ended_later, c.COMPLETED)  # type: ignore[arg-type]
    pipe.flush()
    open_ids = [f.id for f in running] + [old.id]  # newest first

    def answers(store: FlowBackend) -> dict[str, list[str]]:
        every = store.flows(limit=None)
        return {
            "reference": [f.id for f in every if f.status == c.RUNNING],
            "running": [f.id for f in store.flows(status="running", limit=None)],
            "running, 2": [f.id for f in store.flows(status="running", limit=2)],
            "running, 6": [f.id for f in store.flows(status="running", limit=6)],
            "open": [f.id for f in store.flows(status=list(c.OPEN), limit=7)],
            "timed_out": [f.id for f in store.flows(status="timed_out", limit=1)],
            "below a cursor": [
                f.id
                for f in store.flows(status="running", until=(now - 2 * s - s // 2) / 1e9, limit=2)
            ],
            "acme": [f.id for f in store.flows(tenant="acme", status="running")],
        }

    with FlowStore(db.url) as store:
        before = answers(store)
        for table in ("dashfrog_flows", "dashfrog_flows_by_hour"):
            db.transport.command(f"OPTIMIZE TABLE `{db.database}`.{table} FINAL")
        after = answers(store)
        shown = store.flows(status="running", limit=1)[0]
    pipe.close()
    assert before == after
    assert before["reference"] == before["running"] == open_ids
    assert before["running, 2"] == open_ids[:2]
    assert before["running, 6"] == open_ids  # the old one is found past the last hour
    assert before["open"] == [*open_ids[:5], timed.id, old.id]
    assert before["timed_out"] == [timed.id]
    assert before["below a cursor"] == open_ids[2:4]
    assert before["acme"] == [f.id for f in running if f.attrs[c.TENANT] == "acme"] + [old.id]
    assert "e" * 32 not in before["running"] and ended_later.id not in before["running"]
    assert all(d.id not in before["running"] for d in done)
    # Read by key in full, as every list reads a flow: tenant, name and current state.
    assert (shown.id, shown.tenant, shown.name, shown.status) == (
        running[0].id,
        "globex",
        "batch",
        c.RUNNING,
    )
