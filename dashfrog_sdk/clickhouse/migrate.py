"""``dashfrog clickhouse init``: the exporter's tables if missing, then the flow rollup.

Migrations are the numbered files ``sql/NNN_*.sql`` (also under ``integrations/clickhouse/`` in
the repository). ``dashfrog_schema_version`` records each one applied, and ``init`` applies only
the ones a database lacks, so running it again changes nothing. Every statement creates only
what is missing, except a migration's backfill (``INSERT ... SELECT`` into a table it created,
after that table's view): two ``init`` runs at once may write some rows twice, which those
tables are built to tolerate (see ``sql/002_flow_indexes.sql``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from dashfrog_sdk.clickhouse.connection import (
    ClickHouseError,
    Target,
    Transport,
    connect,
    literal,
    render,
)

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.dashfrog_schema_version (
    version UInt32,
    name    String,
    applied DateTime64(9) DEFAULT now64(9)
) ENGINE = ReplacingMergeTree ORDER BY version
"""


def _sql_files() -> dict[str, str]:
    folder = resources.files("dashfrog_sdk.clickhouse") / "sql"
    return {
        p.name: p.read_text(encoding="utf-8") for p in folder.iterdir() if p.name.endswith(".sql")
    }


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every shipped migration, in order."""
    found = []
    for name, text in _sql_files().items():
        match = _MIGRATION.match(name)
        if match:
            found.append((int(match.group(1)), name, text))
    return sorted(found)


SCHEMA_VERSION = max(v for v, _, _ in migrations())


def otel_tables_sql() -> str:
    """The exporter's otel_traces / otel_logs DDL (``{db}`` placeholder)."""
    return _sql_files()["otel_tables.sql"]


def statements(sql: str) -> list[str]:
    """The statements of a migration file: split on ``;`` at line ends, comments dropped."""
    out: list[str] = []
    for chunk in re.split(r";\s*$", sql, flags=re.MULTILINE):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if body.strip():
            out.append(body.strip())
    return out


@dataclass
class InitResult:
    database: str
    applied: list[str] = field(default_factory=list)  # migration files applied now
    version: int = 0
    created_otel_tables: bool = False


def current_version(transport: Transport, database: str) -> int:
    rows = transport.rows(
        render(
            "SELECT count() AS n FROM system.tables WHERE database = {d} "
            "AND name = 'dashfrog_schema_version'",
            {"d": database},
            database=database,
        )
    )
    if not rows or not int(rows[0]["n"]):
        return 0
    rows = transport.rows(
        render("SELECT max(version) AS v FROM {db}.dashfrog_schema_version", database=database)
    )
    return int(rows[0]["v"] or 0) if rows else 0


def _columns(transport: Transport, database: str, table: str) -> set[str] | None:
    rows = transport.rows(
        render(
            "SELECT name FROM system.columns WHERE database = {d} AND table = {t}",
            {"d": database, "t": table},
            database=database,
        )
    )
    return {str(r["name"]) for r in rows} or None


def init(target: Target, *, create_otel_tables: bool = True) -> InitResult:
    """Apply the rollup to ``target`` (idempotent)."""
    transport = connect(target)
    try:
        return apply(transport, target.database, create_otel_tables=create_otel_tables)
    finally:
        transport.close()


def apply(transport: Transport, database: str, *, create_otel_tables: bool = True) -> InitResult:
    result = InitResult(database)
    transport.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    traces = _columns(transport, database, "otel_traces")
    logs = _columns(transport, database, "otel_logs")
    if traces is None or logs is None:
        if not create_otel_tables:
            missing = "otel_traces" if traces is None else "otel_logs"
            raise ClickHouseError(
                f"{database}.{missing} does not exist: start the collector's clickhouse exporter "
                "first, or let init create the exporter's tables"
            )
        for statement in statements(otel_tables_sql()):
            transport.command(render(statement, database=database))
        result.created_otel_tables = True
        logs = _columns(transport, database, "otel_logs")
    if logs is not None and "EventName" not in logs:
        raise ClickHouseError(
            f"{database}.otel_logs has no EventName column (written by an older clickhouse "
            "exporter): dashfrog's lifecycle events are told apart by it. Upgrade the collector, "
            f"or: ALTER TABLE {database}.otel_logs ADD COLUMN EventName String CODEC(ZSTD(1))"
        )
    transport.command(render(VERSION_TABLE, database=database))
    version = current_version(transport, database)
    for number, name, sql in migrations():
        if number <= version:
            continue
        for statement in statements(sql):
            transport.command(render(statement, database=database))
        transport.command(
            render(
                "INSERT INTO {db}.dashfrog_schema_version (version, name) VALUES ({v}, {n})",
                {"v": number, "n": name},
                database=database,
            )
        )
        result.applied.append(name)
        version = number
    result.version = version
    return result


__all__ = ["SCHEMA_VERSION", "InitResult", "init", "literal", "migrations", "statements"]
