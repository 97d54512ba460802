"""Run a server (gunicorn, a test double) as a real process on a free loopback port.

The process is started in its own session, its output goes to a log file, readiness is an
HTTP health URL answering 200, and it is stopped by PID (SIGTERM, then SIGKILL). Every live
server is listed in `RUNNING` (and in `STOPPED` once stopped), so a failing test can show
their log tails (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

# Variables that make `requests` ignore an explicit CA (docs/design.md §3): a server under test that
# talks TLS must not inherit them.
DROPPED_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class ServerStartError(RuntimeError):
    """The server exited or never became healthy; the message carries its log tail."""


@dataclass
class ServerProcess:
    """A running server: `url` is its base URL, e.g. http://127.0.0.1:40123."""

    name: str
    argv: list[str]
    port: int
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL the process group we created; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # Our own session: its group id is our PID, so this reaches only our workers.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        with contextlib.suppress(ValueError):
            RUNNING.remove(self)
            STOPPED.append(self)
        return self.process.returncode


# Live servers, and servers stopped since the current test began (tests/conftest.py clears
# STOPPED before each test): a failing test shows the log tails of both.
RUNNING: list[ServerProcess] = []
STOPPED: list[ServerProcess] = []


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without DROPPED_ENV, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    env.update(extra or {})
    return env


def start_server(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    health_path: str = "/healthz",
    startup_timeout: float = 30.0,
    cwd: Path | None = None,
    scheme: str = "http",
) -> ServerProcess:
    """Start `argv` and wait until it is healthy. "{port}" and "{host}" in `argv` and in the
    values of `env` are replaced by the chosen port and host (nothing else is interpreted).
    With scheme "https" the health check does not verify the certificate (liveness only)."""
    port = port or free_port(host)

    def fill(text: str) -> str:
        return text.replace("{port}", str(port)).replace("{host}", host)

    final_argv = [fill(arg) for arg in argv]
    final_env = {key: fill(value) for key, value in (env or {}).items()}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            final_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=server_env(final_env), cwd=cwd, start_new_session=True)
    server = ServerProcess(name=name or Path(final_argv[0]).name, argv=final_argv, port=port,
                           url=f"{scheme}://{host}:{port}", log_path=log_path,
                           process=process)
    RUNNING.append(server)
    try:
        wait_healthy(server, health_path, startup_timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def running_server(argv: Sequence[str], **kwargs: Any) -> Iterator[ServerProcess]:
    """`start_server` (same arguments) as a context manager that always stops the process."""
    server = start_server(argv, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def wait_healthy(server: ServerProcess, health_path: str, timeout: float) -> None:
    """Poll the health URL until 200; fail early when the process has exited."""
    url = server.url + health_path
    deadline = time.monotonic() + timeout
    with requests.Session() as session, warnings.catch_warnings():
        session.trust_env = False  # loopback: no proxy, no CA bundle from the environment
        session.verify = not url.startswith("https:")  # liveness: any certificate will do
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        while time.monotonic() < deadline:
            if not server.alive():
                raise ServerStartError(
                    f"{server.name} exited with {server.process.returncode}:\n"
                    f"{server.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if session.get(url, timeout=(0.5, 2.0)).status_code == 200:
                    return
            time.sleep(0.05)
    raise ServerStartError(f"{server.name} not healthy at {url} within {timeout}s:\n"
                           f"{server.log_tail()}")


def python_module_argv(module: str, *args: str) -> list[str]:
    """argv to run `python -m module args...` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]
