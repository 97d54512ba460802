"""The whole system on one machine, for end-to-end tests and benchmarks.

Real parts: the hooks under gunicorn (`python -m hooks`), one `ieapi` gunicorn process per IE
over the session's private dockerd, and the project's CompositeControllers driven by the
Metacontroller-faithful driver (testbed/metacontroller.py). Doubles only where no real
server can exist here: Metacontroller (the driver) and Orion-LD (testbed/orion.py).

Several IEs share one dockerd: each `ieapi` gets its own instance id (the managed-by label) and
container prefix, so each sees only its own containers, exactly as on separate machines.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from testbed.dockerd import remove_managed
from testbed.metacontroller import Clock, Driver
from testbed.orion import OrionDouble
from testbed.procs import ServerProcess, free_port, python_module_argv, start_server

JSON = dict[str, Any]
GROUP_VERSION = "llo.aeros-project.eu/v1alpha1"
MANAGED_LABEL = "llo.aeros-project.eu/managed-by"
NAMESPACE = "default"
# The Secret the shipped CompositeControllers' webhook.authorization names and the hooks
# Deployment mounts (metacontroller/): (namespace, name, key).
HOOK_SECRET = ("llo-docker", "llo-hook-secret", "token")

# Fast paces so tests converge in seconds; production defaults are in hooks/settings.py.
FAST_HOOKS_ENV = {
    "LLO_WORKERS": "2",
    "LLO_THREADS": "8",
    "LLO_RESYNC_CONVERGING_SECONDS": "0.5",
    "LLO_RESYNC_STEADY_SECONDS": "30",
    "LLO_RESYNC_ERROR_BASE_SECONDS": "1",
    "LLO_RESYNC_ERROR_MAX_SECONDS": "5",
    "LLO_RESYNC_PERMANENT_SECONDS": "60",
    "LLO_DIE_RESYNC_SECONDS": "5",
    "LLO_IE_CONNECT_TIMEOUT_SECONDS": "1",
    "LLO_IE_READ_TIMEOUT_SECONDS": "3",
    "LLO_BROKER_CONNECT_TIMEOUT_SECONDS": "1",
    "LLO_BROKER_READ_TIMEOUT_SECONDS": "2",
    "LLO_LOG_LEVEL": "DEBUG",
}


@dataclass
class IE:
    """One Docker IE: an `ieapi` process and what a DIE needs to point at it."""

    name: str
    ie_id: str
    token: str
    instance_id: str
    prefix: str
    port: int
    log_path: Path
    docker_host: str
    env: dict[str, str] = field(default_factory=dict)
    server: ServerProcess | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("IEAPI_TLS_CERT_FILE") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> IE:
        """Start (or restart, on the same port) the IE's API."""
        env = {
            "IEAPI_BIND": f"127.0.0.1:{self.port}",
            "IEAPI_TOKEN": self.token,
            "IEAPI_IE_ID": self.ie_id,
            "IEAPI_HOSTNAME": self.name,
            "IEAPI_INSTANCE_ID": self.instance_id,
            "IEAPI_CONTAINER_PREFIX": self.prefix,
            "IEAPI_STOP_TIMEOUT_SECONDS": "2",
            "DOCKER_HOST": self.docker_host,
            **self.env,
        }
        self.server = start_server(python_module_argv("ieapi"), env=env, port=self.port,
                                   log_path=self.log_path, name=f"ieapi-{self.name}",
                                   scheme=self.url.split(":", 1)[0])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def die(self, *, annotations: Mapping[str, str] | None = None) -> JSON:
        """The DockerInfrastructureElement manifest for this IE."""
        meta: JSON = {"name": self.name}
        if annotations:
            meta["annotations"] = dict(annotations)
        return {"apiVersion": GROUP_VERSION, "kind": "DockerInfrastructureElement",
                "metadata": meta,
                "spec": {"id": self.ie_id, "hostname": self.name, "api": {"url": self.url}}}

    def containers(self, client: docker.DockerClient) -> list[Any]:
        """Managed containers of this IE, as dockerd sees them (running or not)."""
        return list(client.containers.list(
            all=True, filters={"label": f"{MANAGED_LABEL}={self.instance_id}"}))


class Stack:
    """Hooks + IEs + Orion-LD double + driver. Use as a context manager; `close()` stops
    every process it started, by PID, and removes the containers its IEs manage."""

    def __init__(self, workdir: Path, docker_host: str, *, broker: bool = True,
                 broker_token: str | None = None, hooks_env: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        self.workdir = workdir
        self.docker_host = docker_host
        self.token_dir = workdir / "ie-tokens"
        self.token_dir.mkdir(parents=True, exist_ok=True)
        self.orion: OrionDouble | None = (
            OrionDouble(token=broker_token).start() if broker else None)
        self.hooks_port = free_port()
        self.hooks_env = dict(hooks_env or {})
        self.broker_token = broker_token
        self.hooks: ServerProcess | None = None
        self.ies: dict[str, IE] = {}
        self._clock = clock
        self.client = docker.DockerClient(base_url=docker_host, version="1.41", timeout=30)
        # Authenticated like the shipped install: the driver sends the Secret's value as
        # Metacontroller does, and the hooks read the same value from LLO_HOOK_SECRET_FILE.
        self.driver = Driver(self.hooks_url, clock=clock)
        self.hook_secret_file = workdir / "hook-secret"
        self.hook_secret_file.write_text(self.driver.secret(*HOOK_SECRET) + "\n")
        self.start_hooks()

    # ------------------------------------------------------------------ processes

    @property
    def hooks_url(self) -> str:
        return f"http://127.0.0.1:{self.hooks_port}"

    @property
    def hook_auth(self) -> dict[str, str]:
        """The header Metacontroller sends: for tests that post to the hooks themselves."""
        return {"Authorization": f"Bearer {self.driver.secret(*HOOK_SECRET)}"}

    def start_hooks(self) -> ServerProcess:
        """Start (or restart, on the same port) the gunicorn-served hooks."""
        env = {"LLO_LISTEN": f"127.0.0.1:{self.hooks_port}",
               "LLO_IE_TOKEN_DIR": str(self.token_dir),
               "LLO_HOOK_SECRET_FILE": str(self.hook_secret_file), **FAST_HOOKS_ENV}
        if self.orion is not None:
            env["LLO_BROKER_URL"] = self.orion.url
            env["LLO_BROKER_HEADERS"] = "aeriOS=true"
            if self.broker_token is not None:
                token_file = self.workdir / "broker-token"
                token_file.write_text(self.broker_token)
                env["LLO_BROKER_TOKEN_FILE"] = str(token_file)
        env.update(self.hooks_env)
        self.hooks = start_server(python_module_argv("hooks"), env=env, port=self.hooks_port,
                                  log_path=self.workdir / "hooks.log", name="hooks")
        return self.hooks

    def stop_hooks(self) -> None:
        if self.hooks is not None:
            self.hooks.stop()
            self.hooks = None

    def add_ie(self, name: str, *, ie_id: str | None = None, start: bool = True,
               env: Mapping[str, str] | None = None) -> IE:
        """A new IE with its own API process and token (written where the hooks read it)."""
        suffix = secrets.token_hex(3)
        ie = IE(name=name, ie_id=ie_id or f"urn:ngsi-ld:InfrastructureElement:{name}",
                token=secrets.token_hex(16), instance_id=f"{name}-{suffix}",
                prefix=f"t{suffix}", port=free_port(),
                log_path=self.workdir / f"ieapi-{name}.log", docker_host=self.docker_host,
                env=dict(env or {}))
        (self.token_dir / name).write_text(ie.token)
        self.ies[name] = ie
        return ie.start() if start else ie

    def add_ready_ie(self, name: str, **kwargs: Any) -> IE:
        """`add_ie` (same arguments), its DIE applied, and synced until `status.apiReady`."""
        ie = self.add_ie(name, **kwargs)
        self.driver.apply(ie.die())
        self.driver.run_until(lambda: self.die_ready(name), timeout=30)
        return ie

    def die_ready(self, name: str) -> bool:
        die = self.driver.get("DockerInfrastructureElement", name) or {}
        return (die.get("status") or {}).get("apiReady") is True

    def close(self) -> None:
        """Stop everything, every step even when an earlier one failed (e.g. dockerd refusing
        to remove a network it still lists an endpoint on): no process may outlive the stack.
        The first failure is raised at the end."""
        steps: list[Callable[[], object]] = [self.driver.close]
        for ie in self.ies.values():
            steps += [ie.stop, functools.partial(remove_managed, self.client, ie.instance_id)]
        steps.append(self.stop_hooks)
        if self.orion is not None:
            steps.append(self.orion.close)
        steps.append(self.client.close)
        failures: list[Exception] = []
        for step in steps:
            try:
                step()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ manifests and reads

    @staticmethod
    def scd(name: str, ie: IE, image: str, *, service: str = "urn_ngsi-ld_Service_1",
            component: str | None = None, annotations: Mapping[str, str] | None = None,
            **spec: Any) -> JSON:
        """A ServiceComponentDocker manifest with the HLO's labels, placed on `ie`."""
        labels = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": component or f"urn_ngsi-ld_Service_1_Component_{name}",
            "app.kubernetes.io/part-of": service,
            "app.kubernetes.io/managed-by": "aeros-project.eu",
            "app.kubernetes.io/created-by": "urn_ngsi-ld_LowLevelOrchestrator_1",
        }
        meta: JSON = {"name": name, "namespace": NAMESPACE, "labels": labels}
        if annotations:
            meta["annotations"] = dict(annotations)
        body: JSON = {"selectedIE": {"id": ie.ie_id, "hostname": ie.name}, "image": image}
        body.update(spec)
        return {"apiVersion": GROUP_VERSION, "kind": "ServiceComponentDocker",
                "metadata": meta, "spec": body}

    def get_scd(self, name: str) -> JSON | None:
        return self.driver.get("ServiceComponentDocker", name, NAMESPACE)

    def scd_status(self, name: str) -> JSON:
        obj = self.get_scd(name)
        return dict((obj or {}).get("status") or {})

    def phase(self, name: str) -> str | None:
        phase: str | None = self.scd_status(name).get("phase")
        return phase

    def condition(self, name: str, type_: str) -> JSON | None:
        for condition in self.scd_status(name).get("conditions") or []:
            if condition.get("type") == type_:
                return dict(condition)
        return None

    def all_managed(self) -> dict[str, list[Any]]:
        """Every managed container per IE name: what a no-leak assertion looks at."""
        return {name: ie.containers(self.client) for name, ie in self.ies.items()}
