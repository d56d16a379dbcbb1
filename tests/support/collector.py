"""A real OpenTelemetry collector for tests: the ``rotel-agent`` binary from the ``rotel`` package.

:class:`RotelCollector` runs rotel in the foreground on free loopback ports, receiving OTLP over
gRPC and HTTP and exporting everything over OTLP/HTTP (protobuf, gzip) to an
:class:`~tests.support.otlp_receiver.OtlpReceiver`, where tests assert on what arrived::

    with RotelCollector() as collector:
        env = collector_env(collector, "grpc")   # OTEL_EXPORTER_OTLP_* for the code under test
        ...
        collector.receiver.wait_for_spans(lambda s: s.name == "checkout")
"""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.procs import ManagedProcess, Started, free_port, wait_for_port

__all__ = ["RotelCollector", "collector_env", "rotel_binary"]

HOST = "127.0.0.1"
Protocol = Literal["grpc", "http/protobuf"]


def rotel_binary() -> Path:
    """Path of the ``rotel-agent`` executable shipped inside the ``rotel`` wheel."""
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"rotel-agent binary not found or not executable at {path}")
    return path


class RotelCollector(Started):
    """The rotel-agent collector as a subprocess on free loopback ports.

    * ``receiver``: where rotel exports to; by default a fresh :class:`OtlpReceiver` that this
      object starts and stops. One passed in is started if needed and never stopped here.
    * ``batch_timeout``: rotel's batch timeout (e.g. ``"10ms"``); ``None`` disables batching
      so every request is exported at once (the fastest, and the default).
    * ``log_dir``: where rotel's stdout/stderr go (``rotel.log``, appended across restarts);
      by default a temp dir deleted at :meth:`stop`, after its text was kept for :meth:`log_text`.
    * ``debug_log``: rotel ``--debug-log`` signals (``"traces"``, ``"metrics"``, ``"logs"``)
      to print what it receives into its log.
    * ``request_timeout``: how long rotel waits for the receiver to answer a request before it
      sends it again (rotel retries until an answer: at-least-once, so a receiver slower than
      this gets the same request twice). 60 s by default: a test process starved of CPU on a
      loaded CI runner answered late and saw records twice; the receiver keeps every request,
      so that a real double send by the SDK shows (see OtlpReceiver).

    :meth:`kill` simulates a crash, :meth:`restart` brings it back on the same ports.
    """

    def __init__(
        self,
        receiver: OtlpReceiver | None = None,
        *,
        batch_timeout: str | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        debug_log: Sequence[str] = (),
        request_timeout: str = "60s",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 15.0,
    ) -> None:
        self._owns_receiver = receiver is None
        self.receiver = receiver if receiver is not None else OtlpReceiver()
        self.batch_timeout = batch_timeout
        self.debug_log = list(debug_log)
        self.request_timeout = request_timeout
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self._owns_log_dir = log_dir is None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._final_log: str | None = None
        self.grpc_port = 0
        self.http_port = 0
        self._proc: ManagedProcess | None = None

    # -- endpoints ------------------------------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC endpoint, e.g. ``http://127.0.0.1:43171``."""
        return f"http://{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP base endpoint (exporters append ``/v1/traces``, ``/v1/logs``, ...)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_dir / "rotel.log" if self._log_dir is not None else None

    def log_text(self) -> str:
        """rotel's stdout and stderr since the first start (kept after :meth:`stop`)."""
        path = self.log_path
        if path is not None and path.exists():
            return path.read_text(encoding="utf-8", errors="replace")
        return self._final_log or ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RotelCollector:
        """Start rotel on fresh free ports and wait until both ports accept connections."""
        if self.running:
            return self
        self._prepare()
        for attempt in range(3):
            self.grpc_port, self.http_port = free_port(HOST), free_port(HOST)
            try:
                self._launch()
                return self
            except AssertionError:
                # Another process may have taken a port between free_port() and rotel's bind.
                if attempt == 2 or not re.search(r"(?i)address.*in use", self.log_text()):
                    self.stop()
                    raise
        raise AssertionError("unreachable")

    def restart(self) -> RotelCollector:
        """Stop rotel if it runs (gracefully), then start it again on the SAME ports."""
        if not self.grpc_port:
            return self.start()
        if self._proc is not None:
            self._proc.stop()
        self._prepare()
        self._launch()
        return self

    def kill(self) -> None:
        """SIGKILL rotel (a crash: nothing is flushed) and reap it; ports and receiver stay."""
        if self._proc is not None:
            self._proc.kill()

    def stop(self) -> None:
        """SIGTERM rotel (SIGKILL after 5 s), reap it, stop an owned receiver, drop the temp log."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._owns_receiver:
            self.receiver.stop()
        if self._owns_log_dir and self._log_dir is not None:
            self._final_log = self.log_text()
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def _prepare(self) -> None:
        self.receiver.start()
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="rotel-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)

    def _args(self) -> list[str]:
        args = [
            os.fspath(rotel_binary()),
            "start",
            f"--otlp-grpc-endpoint={HOST}:{self.grpc_port}",
            f"--otlp-http-endpoint={HOST}:{self.http_port}",
            "--exporter=otlp",
            f"--otlp-exporter-endpoint={self.receiver.endpoint}",
            "--otlp-exporter-protocol=http",
            f"--otlp-exporter-request-timeout={self.request_timeout}",
            "--otlp-exporter-retry-initial-backoff=50ms",
            "--otlp-exporter-retry-max-backoff=500ms",
            "--otlp-exporter-retry-max-elapsed-time=30s",
            f"--pid-file={self._log_dir}/rotel.pid",
            f"--log-file={self._log_dir}/rotel-daemon.log",
        ]
        if self.batch_timeout is None:
            args.append("--disable-batching")
        else:
            args.append(f"--batch-timeout={self.batch_timeout}")
        args += [f"--debug-log={signal}" for signal in self.debug_log]
        return args + self.extra_args

    def _launch(self) -> None:
        assert self._log_dir is not None
        # Options are all on the command line; inherited ROTEL_* variables must not leak in.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ROTEL_")}
        env |= {"NO_COLOR": "1", "RUST_BACKTRACE": "1", **loader_env()}
        self._proc = ManagedProcess(
            self._args(),
            env=env,
            log_path=self._log_dir / "rotel.log",
            name="rotel-agent",
            stop_timeout=5.0,
        ).start()
        try:
            for port in (self.grpc_port, self.http_port):
                wait_for_port(HOST, port, timeout=self.startup_timeout, process=self._proc)
        except BaseException:
            self._proc.kill()
            raise

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RotelCollector grpc={self.grpc_port} http={self.http_port} {state}>"


def loader_env() -> dict[str, str]:
    """rotel-agent links against this interpreter's libpython: a Python whose library is not
    in the loader's default path (pyenv's 3.10, say) needs its LIBDIR on LD_LIBRARY_PATH."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir or not os.path.isdir(libdir):
        return {}
    current = os.environ.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": libdir + (os.pathsep + current if current else "")}


def collector_env(
    collector: RotelCollector, protocol: Protocol = "grpc", *, fast_export: bool = True
) -> dict[str, str]:
    """``OTEL_*`` variables that point an OTel SDK (or a subprocess) at ``collector``.

    ``protocol`` is ``"grpc"`` or ``"http/protobuf"``. With ``fast_export`` the batch span and
    log processors flush every 100 ms and metrics export every 500 ms, so tests wait little.
    """
    if protocol == "grpc":
        endpoint = collector.grpc_endpoint
    elif protocol == "http/protobuf":
        endpoint = collector.http_endpoint
    else:
        raise ValueError(f"protocol must be 'grpc' or 'http/protobuf', got {protocol!r}")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
    }
    if fast_export:
        env |= {
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
        }
    return env
