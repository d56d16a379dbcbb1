"""TLS: OTEL_EXPORTER_OTLP_CERTIFICATE trusts a private CA, over gRPC and HTTP.

rotel's receivers speak plain text, so a small TLS-terminating proxy (a self-signed certificate
made with the openssl CLI) sits in front of each of its ports.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.export.conftest import App, app_env
from tests.support.collector import RotelCollector

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


class TlsProxy:
    """Accept TLS on a free loopback port and pipe the plain bytes to `target_port`."""

    def __init__(self, cert: Path, key: Path, target_port: int, alpn: list[str]) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(alpn)
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            tls = self.ctx.wrap_socket(raw, server_side=True)
            with tls, socket.create_connection(("127.0.0.1", self.target_port)) as plain:
                while not self.stopped:
                    ready, _, _ = select.select([tls, plain], [], [], 0.2)
                    for src in ready:
                        dst = plain if src is tls else tls
                        data = src.recv(65536)
                        if not data:
                            return
                        dst.sendall(data)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_endpoints(
    collector: RotelCollector, certificate: tuple[Path, Path]
) -> Iterator[dict[str, Any]]:
    cert, key = certificate
    grpc = TlsProxy(cert, key, collector.grpc_port, ["h2"])
    http = TlsProxy(cert, key, collector.http_port, ["http/1.1"])
    yield {
        "grpc": f"https://localhost:{grpc.port}",
        "http/protobuf": f"https://localhost:{http.port}",
    }
    grpc.close()
    http.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_certificate_variable_trusts_a_private_ca(
    collector: RotelCollector,
    tls_endpoints: dict[str, Any],
    certificate: tuple[Path, Path],
    start_app: Callable[..., App],
    protocol: str,
) -> None:
    base = app_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=tls_endpoints[protocol],
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    # Without the CA the collector's certificate is refused: nothing arrives, the app runs on.
    untrusted = start_app(
        base | {"DASHFROG_SHUTDOWN_TIMEOUT": "1"}, 'run_flows(1, name="untrusted")'
    )
    assert untrusted.wait() == 0, untrusted.stderr
    trusted_env = base | {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certificate[0])}
    trusted = start_app(trusted_env, 'run_flows(1, name="trusted")')
    assert trusted.wait() == 0, trusted.stderr
    spans = collector.receiver.wait_for_spans(lambda s: s.name == "flow trusted")
    assert spans[0].resource["service.name"] == trusted_env["OTEL_SERVICE_NAME"]
    assert not [s for s in collector.receiver.spans if s.name == "flow untrusted"]
