"""Where the ClickHouse flow data is, and the two ways of talking to it.

``clickhouse://host:8123/db`` (also ``http://``; ``clickhouses://`` and ``https://`` for TLS):
a ClickHouse server over HTTP through ``clickhouse-connect`` (``pip install
'dashfrog-sdk[clickhouse]'``). ``chdb:///path/to/dir`` (``?database=otel``): ClickHouse
in-process through chDB (``pip install 'dashfrog-sdk[chdb]'``), for notebooks over a local copy
and for tests. Both run the same SQL and return rows the same way (JSONEachRow), so everything
above this module is one code path.

Values are sent as SQL literals quoted here (:func:`literal`), never pasted in: a tenant or
label value is data, whatever characters it holds.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE = "default"  # the exporter's default database
SCHEMES = ("clickhouse", "clickhouses", "http", "https", "chdb")


class ClickHouseError(Exception):
    """The ClickHouse server or chDB refused a statement, or cannot be reached."""


def is_clickhouse_url(target: object) -> bool:
    """True for a ``clickhouse://``, ``clickhouses://``, ``http(s)://`` or ``chdb://`` URL."""
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].lower() in SCHEMES


@dataclass(frozen=True)
class Target:
    scheme: str  # "http", "https" or "chdb"
    database: str
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = ""
    path: str = ""  # chdb: the data directory

    def describe(self) -> str:
        """The target without its password, for messages."""
        if self.scheme == "chdb":
            return f"chdb://{self.path} (database {self.database})"
        return f"{self.scheme}://{self.host}:{self.port}/{self.database}"


def parse_url(url: str, database: str | None = None) -> Target:
    """Parse a store URL; ``database`` (e.g. from ``--database``) overrides the URL's."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"not a ClickHouse URL: {url!r} (use clickhouse://host:8123/database or "
            "chdb:///path/to/dir)"
        )
    query = parse_qs(parts.query)
    if scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError(f"chdb URL without a directory: {url!r} (use chdb:///path/to/dir)")
        db = database or (query.get("database") or [DEFAULT_DATABASE])[0]
        return Target("chdb", _identifier(db), path=os.path.abspath(path))
    if not parts.hostname:
        raise ValueError(f"ClickHouse URL without a host: {url!r}")
    db = database or unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    secure = scheme in ("https", "clickhouses")
    return Target(
        "https" if secure else "http",
        _identifier(db),
        host=parts.hostname,
        port=parts.port or (8443 if secure else 8123),
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
    )


def redact(url: str) -> str:
    """The URL without its password (for messages and ``store.path``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _identifier(name: str) -> str:
    if not name or not all(ch.isalnum() or ch == "_" for ch in name):
        raise ValueError(f"database name {name!r}: use letters, digits and underscores only")
    return name


# -- literals -------------------------------------------------------------------------------


def literal(value: Any) -> str:
    """A Python value as a ClickHouse SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Sequence):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def render(sql: str, params: Mapping[str, Any] | None = None, *, database: str) -> str:
    """``sql`` with ``{db}`` and ``{name}`` placeholders filled (values quoted)."""
    values = {k: literal(v) for k, v in (params or {}).items()}
    return sql.format(db=f"`{database}`", **values)


# -- transports ------------------------------------------------------------------------------


class Transport(Protocol):
    def rows(self, sql: str) -> list[dict[str, Any]]: ...
    def command(self, sql: str) -> None: ...
    def close(self) -> None: ...


def _parse(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _module(name: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClickHouseError(
            f"this store needs the {name.split('.')[0]} package: pip install 'dashfrog-sdk[{extra}]'"
        ) from None


class HttpTransport:
    """A ClickHouse server through clickhouse-connect (HTTP)."""

    def __init__(self, target: Target) -> None:
        cc = _module("clickhouse_connect", "clickhouse")
        # Its driver logs each failed request before raising; the error reaches the caller as
        # one ClickHouseError, so keep the log from printing through logging's last resort.
        logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
        try:
            self._client = cc.get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                secure=target.scheme == "https",
                compress=False,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise ClickHouseError(f"cannot connect to {target.describe()}: {exc}") from None

    def rows(self, sql: str) -> list[dict[str, Any]]:
        try:
            return _parse(self._client.raw_query(sql, fmt="JSONEachRow"))
        except Exception as exc:
            raise ClickHouseError(str(exc)) from None

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise ClickHouseError(str(exc)) from None

    def close(self) -> None:
        self._client.close()


class ChdbTransport:
    """ClickHouse in this process through chDB, over one data directory.

    chDB runs one engine per process: a session is opened per store and closed with it, and
    statements are serialised (the engine's session is not safe for concurrent use)."""

    _lock = threading.Lock()

    def __init__(self, target: Target) -> None:
        session = _module("chdb.session", "chdb")
        os.makedirs(target.path, exist_ok=True)
        try:
            self._session = session.Session(target.path)
        except Exception as exc:
            raise ClickHouseError(f"cannot open {target.describe()}: {exc}") from None

    def rows(self, sql: str) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._session.query(sql, "JSONEachRow")
            except Exception as exc:
                raise ClickHouseError(str(exc)) from None
        return _parse(result.bytes())

    def command(self, sql: str) -> None:
        with self._lock:
            try:
                self._session.query(sql, "CSV")
            except Exception as exc:
                raise ClickHouseError(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._session.close()


def connect(target: Target) -> Transport:
    if target.scheme == "chdb":
        return ChdbTransport(target)
    return HttpTransport(target)
