"""Process and network helpers shared by the integration tests.

Everything here waits with a deadline instead of sleeping a fixed time, and every process a test
starts through :class:`ManagedProcess` is stopped (SIGTERM, then SIGKILL) and reaped, even when
the test forgets: an ``atexit`` hook kills whatever is still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

__all__ = [
    "ManagedProcess",
    "WaitTimeout",
    "free_port",
    "port_open",
    "wait_for_port",
    "wait_until",
]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised by :func:`wait_until` when the condition did not hold before the deadline."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition was not met",
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    Raises :class:`WaitTimeout` (an ``AssertionError``) after ``timeout`` seconds; ``message`` may
    be a callable so that an expensive failure description is only built on failure. Exceptions
    raised by ``predicate`` propagate at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise WaitTimeout(f"{text} (waited {timeout:.1f}s)")
        time.sleep(min(interval, remaining))


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, process: ManagedProcess | None = None
) -> None:
    """Wait until ``host:port`` accepts connections.

    With ``process`` given, fail at once (with its log) if that process exits while we wait.
    """

    def ready() -> bool:
        if process is not None and not process.running:
            raise AssertionError(
                f"{process.name} exited with code {process.returncode} before "
                f"{host}:{port} accepted connections; log:\n{process.log_text()}"
            )
        return port_open(host, port)

    def describe() -> str:
        tail = f"; log:\n{process.log_text()}" if process is not None else ""
        return f"{host}:{port} did not accept connections{tail}"

    wait_until(ready, timeout=timeout, interval=0.02, message=describe)


_LIVE: set[ManagedProcess] = set()  # strong refs: a running process is never collected unseen


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):  # only processes this module started and has not reaped yet
        with contextlib.suppress(Exception):
            proc.kill()


class Started:
    """`with thing:` starts the thing and stops it on the way out, whatever happened."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_S = TypeVar("_S", bound=Started)


class ManagedProcess(Started):
    """A subprocess with its output (stdout and stderr) in a log file, always stopped and reaped.

    ``env`` is applied on top of ``os.environ`` (unless ``inherit_env=False``); a ``None`` value
    removes that variable. The process runs in its own session, so signals reach its whole process
    group (prefork workers, reloaders). Without ``log_path`` the log goes to a temporary file that
    is deleted at stop; :meth:`log_text` keeps returning its last content afterwards.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str | None] | None = None,
        inherit_env: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        name: str | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.args = [os.fspath(a) for a in args]
        self.name = name or Path(self.args[0]).name
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.env: dict[str, str] = dict(os.environ) if inherit_env else {}
        for key, value in (env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path is not None else None
        self._log_file: IO[bytes] | None = None
        self._final_log: str | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._reaped = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ManagedProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self.log_path is None:
            fd, path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
        self._final_log = None
        self._reaped = False
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._popen = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds; always reap.

        Returns the exit code (negative signal number when killed), or None if never started.
        """
        with self._lock:
            if self._popen is None:
                return None
            if self._popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self._popen.wait(self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self._popen.wait()
            return self._reap()

    def kill(self) -> int | None:
        """SIGKILL the process group at once (simulates a crash) and reap it."""
        with self._lock:
            if self._popen is None:
                return None
            if self._popen.poll() is None:
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
            return self._reap()

    def send_signal(self, sig: int) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self._popen.wait(timeout)
        with self._lock:
            self._reap()
        return code

    def _signal_group(self, sig: int) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(sig)

    def _reap(self) -> int | None:
        assert self._popen is not None
        code = self._popen.poll()
        if self._reaped:
            return code
        self._reaped = code is not None
        if code is not None:
            # Children left in the process group outlive the leader only by mistake: end them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if self._own_log and self.log_path is not None:
                self._final_log = self._read_log()
                with contextlib.suppress(OSError):
                    self.log_path.unlink()
                self.log_path = None
        _LIVE.discard(self)
        return code

    # -- inspection --------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def _read_log(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        if self._final_log is not None and self.log_path is None:
            return self._final_log
        return self._read_log()

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` appears in the log; fail at once if the process exits first."""

        def seen() -> bool:
            if text in self.log_text():
                return True
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited with code {self.returncode} before logging {text!r}; "
                    f"log:\n{self.log_text()}"
                )
            return False

        wait_until(
            seen,
            timeout=timeout,
            message=lambda: f"{self.name} did not log {text!r}; log:\n{self.log_text()}",
        )

    def __enter__(self) -> ManagedProcess:
        return self if self.running else self.start()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.returncode})"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"
