"""A ClickHouse-compatible HTTP endpoint that executes every query in chDB (the real engine).

    python tests/support/chdb_http.py --path DIR --port PORT [--host 127.0.0.1]

Enough of ClickHouse's HTTP interface for ``clickhouse-connect`` (and curl): ``GET /ping``, a
query in the ``query`` URL parameter and/or the POST body (the body is appended, as ClickHouse
does), ``database``, ``default_format`` and ``param_<name>`` parameters, the response headers
the client reads (``X-ClickHouse-Format``, ``-Timezone``, ``-Query-Id``, ``-Summary``) and
errors as HTTP 500 with ClickHouse's ``Code: N. DB::Exception: ...`` text. Other settings in the
URL are accepted and ignored. chDB runs one engine per process, so this runs in its own
process and serialises queries.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chdb import session as chdb_session

_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")
_LOCK = threading.Lock()
_SESSION: Any = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and not url.query and not body):
            self._reply(200, b"Ok.\n", "text/plain")
            return
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        query = params.get("query", "")
        if body:
            query = (query + "\n" if query else "") + body.decode("utf-8")
        fmt_match = _FORMAT.search(query)
        fmt = fmt_match.group(1) if fmt_match else params.get("default_format", "TabSeparated")
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        database = params.get("database") or "default"
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            with _LOCK:
                _SESSION.query(f"USE `{database}`", "CSV")
                result = _SESSION.query(query, fmt, params=bind or None)
                data = result.bytes() if result is not None else b""
        except Exception as exc:
            text = str(exc)
            code = _CODE.search(text)
            self._reply(
                500,
                (
                    text if text.startswith("Code:") else f"Code: 1000. DB::Exception: {text}"
                ).encode(),
                "text/plain",
                {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"},
                query_id,
            )
            return
        self._reply(200, data, "application/octet-stream", {"X-ClickHouse-Format": fmt}, query_id)

    def _reply(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        query_id: str = "",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("X-ClickHouse-Timezone", "UTC")
        if query_id:
            self.send_header("X-ClickHouse-Query-Id", query_id)
        summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0"}
        self.send_header("X-ClickHouse-Summary", json.dumps(summary))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    global _SESSION
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    _SESSION = chdb_session.Session(args.path)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    try:
        server.serve_forever()
    finally:
        _SESSION.close()


if __name__ == "__main__":
    main()
