"""The servers under test as real processes (gunicorn), and what psutil says about them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.bodies import ie_name
from bench.fakes import Fakes, start_fakes
from testbed.procs import ServerProcess, free_port, python_module_argv, start_server


def write_tokens(token_dir: Path, count: int) -> None:
    token_dir.mkdir(parents=True, exist_ok=True)
    for j in range(count):
        (token_dir / ie_name(j)).write_text(f"token-{j:03d}\n")


def hooks_env(token_dir: Path, broker_url: str,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Production settings (gunicorn workers/threads and timeouts are the defaults), with the
    IE tokens and the broker the benchmark provides. Only the listen address is ours."""
    env = {"LLO_LISTEN": "127.0.0.1:{port}", "LLO_IE_TOKEN_DIR": str(token_dir),
           "LLO_BROKER_URL": broker_url, "LLO_LOG_LEVEL": "WARNING"}
    env.update(extra or {})
    return env


def start_hooks(workdir: Path, env: Mapping[str, str], name: str = "hooks") -> ServerProcess:
    return start_server(python_module_argv("hooks"), env=env, port=free_port(),
                        log_path=workdir / f"{name}.log", name=name)


def start_floor(workdir: Path, env: Mapping[str, str]) -> ServerProcess:
    return start_server(python_module_argv("bench.floor"), env=env, port=free_port(),
                        log_path=workdir / "floor.log", name="floor")


def _tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its children (gunicorn master + workers)."""
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def worker_rss(pid: int) -> list[int]:
    """RSS in bytes of each worker (children) of a gunicorn master."""
    out = []
    for proc in psutil.Process(pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(proc.memory_info().rss)
    return out


def own_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


@dataclass
class Upstreams:
    fakes: Fakes
    token_dir: Path

    @property
    def ie_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.fakes.ie_ports]


@contextlib.contextmanager
def upstreams(workdir: Path, ies: int, blackholes: int = 0) -> Iterator[Upstreams]:
    token_dir = workdir / "ie-tokens"
    write_tokens(token_dir, ies + blackholes + 2)
    fakes = start_fakes(ies, blackholes)
    try:
        yield Upstreams(fakes, token_dir)
    finally:
        fakes.stop()


@contextlib.contextmanager
def serving(workdir: Path, env: Mapping[str, str], *, floor: bool = False,
            name: str = "hooks") -> Iterator[ServerProcess]:
    server = (start_floor if floor else lambda w, e: start_hooks(w, e, name))(workdir, env)
    try:
        yield server
    finally:
        server.stop()
