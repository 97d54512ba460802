"""Every docker SDK call of the IE API: ensure, get, list, delete, info.

Ensure is idempotent and safe under concurrency:
- one lock per container name in this process, so two PUTs of one name end with one container;
- across processes, Docker's 409 on a taken name (or a network that vanished) makes the ensure
  re-read and decide again;
- one lock per service network, so a delete that removes the last container of a network
  cannot remove it under a create that is about to join it.

It never touches a container without our managed-by label: such a container is invisible to
get/list, untouched by delete, and an ensure of its name is a 409.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import docker
import docker.errors
import docker.tls

from ieapi import metrics, observe, tail
from ieapi.contract import (
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_OVERLAY_ADDRESS,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    IEInfo,
    LastOutput,
    PullProgress,
)
from ieapi.desired import DesiredContainer, desired_container
from ieapi.errors import (
    ConflictError,
    DockerError,
    NotFoundError,
    docker_errors,
    from_api_error,
)
from ieapi.overlay import Overlays, StartWatcher
from ieapi.overlayspec import Mode
from ieapi.pulls import PullManager, PullPhase, PullView, pull_key
from ieapi.settings import Settings

log = logging.getLogger(__name__)

_ATTEMPTS = 5
_RETRY_PAUSE_SECONDS = 0.05


class EnsureOutcome(StrEnum):
    """How an ensure ended."""

    UNCHANGED = "unchanged"
    CREATED = "created"
    PULLING = "pulling"
    PULL_FAILED = "pullFailed"

    @property
    def http_status(self) -> int:
        """201 created/replaced, 202 image pulling, else 200 (a failed pull is a reported
        state of the ensure, not an error of the request: retried after the failure TTL)."""
        return {EnsureOutcome.CREATED: 201, EnsureOutcome.PULLING: 202}.get(self, 200)


@dataclass(frozen=True)
class Ensured:
    status: ContainerStatus
    outcome: EnsureOutcome


@dataclass(frozen=True, kw_only=True)
class _Pending:
    """A name whose ensure waits for an image: GET reports it, DELETE forgets it."""

    image: str
    spec_hash: str
    auth_key: str
    is_job: bool
    warnings: tuple[str, ...]
    auth: dict[str, str] | None


class _DecideAgainError(Exception):
    """The world changed under an ensure (another process raced us): decide again."""


def _created_key(created: object) -> tuple[str, str]:
    """Docker's RFC 3339 timestamp as a sortable key (its fraction has a variable length)."""
    text = str(created or "")
    whole, _, fraction = text.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


class DockerLog:
    """Docker's log stream of one container (see ieapi.logstream.Source): iterated by one
    thread, `close()` from any thread unblocks it, `release()` frees the connection."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream  # the docker SDK's CancellableStream

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        self._stream.close()  # shuts the socket down: a blocked read returns at once

    def release(self) -> None:
        # The SDK's close() leaves the response's file open (it holds the descriptor).
        response = getattr(self._stream, "_response", None)
        if response is not None:
            response.close()


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds a reference."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary())

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._locks[key] = lock
        with lock:
            yield


def make_client(settings: Settings) -> docker.DockerClient:
    """A docker SDK client for the configured engine, immune to proxy/CA environment."""
    tls: docker.tls.TLSConfig | bool = False
    if settings.docker_tls_verify or settings.docker_cert_path is not None:
        cert_dir = settings.docker_cert_path
        tls = docker.tls.TLSConfig(
            client_cert=(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
            if cert_dir else None,
            ca_cert=str(cert_dir / "ca.pem") if cert_dir and settings.docker_tls_verify else None,
            verify=settings.docker_tls_verify)
    with docker_errors():
        client = docker.DockerClient(
            base_url=settings.docker_host, version=settings.docker_api_version,
            timeout=settings.docker_timeout_seconds, tls=tls)
    # Otherwise REQUESTS_CA_BUNDLE would override the engine's CA, and HTTP(S)_PROXY apply.
    client.api.trust_env = False
    client.api.hooks["response"].append(metrics.on_docker_response)  # operation latency
    return client


class Engine:
    """The IE's containers as the IE API sees them."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None,
                 pulls: PullManager | None = None, overlays: Overlays | None = None) -> None:
        self._settings = settings
        self._client = client or make_client(settings)
        self._api: docker.APIClient = self._client.api
        self._prefix = settings.container_prefix
        self._managed_filter = {"label": f"{LABEL_MANAGED}={settings.managed_by}"}
        self.pulls = pulls or PullManager(
            self._api, failure_ttl=settings.pull_failure_ttl_seconds)
        self._pending: dict[str, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._name_locks = KeyedLocks()
        self._network_locks = KeyedLocks()
        self.overlays = overlays or Overlays(settings)
        self._watcher: StartWatcher | None = None
        if self.overlays.mode is not Mode.NONE:
            self._watcher = StartWatcher(
                self._api.events, self._managed_filter, self._restore_overlay).start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._client.close()

    # ----------------------------------------------------------------------- queries

    def info(self) -> IEInfo:
        with docker_errors():
            info = self._api.info()
            version = self._api.version()
            managed = len(self._api.containers(all=True, filters=self._managed_filter))
        return IEInfo(
            ie_id=self._settings.ie_id,
            hostname=self._settings.hostname,
            docker_version=str(version.get("Version", "")),
            docker_api_version=str(version.get("ApiVersion", "")),
            os=str(info.get("OperatingSystem") or info.get("OSType") or ""),
            architecture=str(info.get("Architecture", "")),
            cpus=int(info.get("NCPU", 0)),
            memory_bytes=int(info.get("MemTotal", 0)),
            managed_containers=managed,
            allow_privileged=self._settings.allow_privileged,
            wireguard=self.overlays.mode.value,
        )

    def get(self, name: str) -> ContainerStatus | None:
        """The status of `name`, None when there is neither a managed container nor a pull."""
        with docker_errors():
            attrs = self._inspect_managed(self._container_name(name))
        pending = self._pending_of(name)
        if pending is not None:
            return self._pending_status(name, pending, attrs)
        if attrs is None:
            return None
        return self._with_overlay(
            self._with_last_output(observe.status_from_inspect(attrs, self._prefix)), attrs)

    def list_containers(self) -> list[ContainerStatus]:
        """Every managed container, plus names waiting for an image."""
        statuses: dict[str, ContainerStatus] = {}
        with docker_errors():
            for summary in self._api.containers(all=True, filters=self._managed_filter):
                try:
                    attrs = self._api.inspect_container(summary["Id"])
                except docker.errors.NotFound:
                    continue  # removed between list and inspect
                status = self._with_overlay(
                    observe.status_from_inspect(attrs, self._prefix), attrs)
                statuses[status.name] = status
        with self._pending_lock:
            pending = dict(self._pending)
        for name, entry in pending.items():
            statuses[name] = self._pending_status(name, entry, None)
        return [statuses[name] for name in sorted(statuses)]

    def logs(self, name: str, *, tail_lines: int, since: float | None, timestamps: bool,
             follow: bool) -> DockerLog:
        """Docker's log stream of the managed container `name` (NotFoundError otherwise)."""
        with docker_errors():
            attrs = self._inspect_managed(self._container_name(name))
            if attrs is None:
                raise NotFoundError(f"no managed container {name!r}", field="name")
            stream = self._api.logs(attrs["Id"], stdout=True, stderr=True, stream=True,
                                    follow=follow, tail=tail_lines, since=since,
                                    timestamps=timestamps)
        return DockerLog(stream)

    def _with_last_output(self, status: ContainerStatus) -> ContainerStatus:
        """`status` with the tail of its output when it failed (observe.is_failure). A log
        that cannot be read leaves the status as it is: it is a help, not the state."""
        if status.id is None or not observe.is_failure(status):
            return status
        try:
            stream = self._api.logs(status.id, stdout=True, stderr=True, stream=True,
                                    follow=False, tail=tail.MAX_LINES + 1)
        except docker.errors.APIError as exc:
            log.debug("no log of %s: %s", status.name, exc)
            return status
        log_stream = DockerLog(stream)
        try:
            found = tail.TailCollector().feed(log_stream).result()
        except docker.errors.DockerException as exc:
            log.debug("log of %s unreadable: %s", status.name, exc)
            return status
        finally:
            log_stream.release()
        return status.model_copy(update={
            "last_output": LastOutput(text=found.text, truncated=found.truncated)})

    # ----------------------------------------------------------------------- ensure

    def ensure(self, name: str, spec: ContainerSpec) -> Ensured:
        """Make the container `name` match `spec` (see the module docstring)."""
        desired = desired_container(name, spec, self._settings)
        with self._name_locks.hold(name), docker_errors():
            for attempt in range(_ATTEMPTS):
                try:
                    ensured = self._ensure_once(desired)
                    ensured = Ensured(self._with_last_output(ensured.status),
                                      ensured.outcome)
                    return self._ensure_overlay(desired, ensured)
                except _DecideAgainError as retry:
                    log.info("ensure %s: %s; deciding again", name, retry)
                    # Docker reserves a name before the container can be inspected: give the
                    # other creator a moment to finish.
                    time.sleep(_RETRY_PAUSE_SECONDS * 2**attempt)
        # Temporary (5xx): the race settles by itself; the next ensure will find it settled.
        raise DockerError(f"container {desired.container_name} kept changing during the ensure")

    def _ensure_once(self, desired: DesiredContainer) -> Ensured:
        current = self._inspect(desired.container_name)
        if current is not None and not observe.is_managed(current, self._settings.managed_by):
            raise ConflictError(f"a container named {desired.container_name} exists and is not "
                                "managed by this IE API; it is left alone", field="name")
        if (current is not None and self._same_spec(current, desired)
                and observe.state_of(current) is not ContainerState.DEAD):
            self._forget_pending(desired.name)
            return Ensured(self._keep(current, desired), EnsureOutcome.UNCHANGED)
        pull = self._missing_image(desired)
        if pull is not None:
            pending = self._pending_of(desired.name)
            outcome = EnsureOutcome.PULL_FAILED if pull.phase is PullPhase.FAILED \
                else EnsureOutcome.PULLING
            assert pending is not None
            return Ensured(self._pending_status(desired.name, pending, current, pull), outcome)
        if current is not None:
            self._remove(current, keep_network=desired.network)
        container_id = self._create_and_start(desired)
        self._forget_pending(desired.name)
        attrs = self._api.inspect_container(container_id)
        return Ensured(observe.status_from_inspect(attrs, self._prefix, desired.warnings),
                       EnsureOutcome.CREATED)

    def _ensure_overlay(self, desired: DesiredContainer, ensured: Ensured) -> Ensured:
        """Set the overlay up (or check it) once the container runs: before the answer, so a
        caller never sees a running container without its overlay reported."""
        if desired.overlay is None:
            self.overlays.forget(desired.name)
            return ensured
        if ensured.outcome in (EnsureOutcome.PULLING, EnsureOutcome.PULL_FAILED):
            return ensured
        attrs = self._inspect_managed(desired.container_name)
        if attrs is None:
            raise _DecideAgainError("container vanished before its overlay was set up")
        overlay = self.overlays.ensure(desired.name, attrs, desired.overlay)
        return Ensured(ensured.status.model_copy(update={"overlay": overlay}), ensured.outcome)

    def _with_overlay(self, status: ContainerStatus, attrs: dict[str, Any]) -> ContainerStatus:
        address = observe.labels_of(attrs).get(LABEL_OVERLAY_ADDRESS)
        if not address:
            return status
        return status.model_copy(update={"overlay": self.overlays.observe(attrs, address)})

    def _restore_overlay(self, container_id: str) -> None:
        """A managed container started (restart policy, daemon restart): its namespace is
        new, so set its overlay up again from what the last ensure asked for."""
        with docker_errors():
            try:
                attrs = self._api.inspect_container(container_id)
            except docker.errors.NotFound:
                return
            name = observe.labels_of(attrs).get(LABEL_NAME)
            config = self.overlays.wanted(name) if name else None
            if name is None or config is None:
                return
            with self._name_locks.hold(name):
                current = self._inspect_managed(self._container_name(name))
                if current is None or current["Id"] != container_id:
                    return
                status = self.overlays.ensure(name, current, config)
        log.info("overlay of %s restored after a start: %s", name, status.reason.value)

    @staticmethod
    def _same_spec(attrs: dict[str, Any], desired: DesiredContainer) -> bool:
        return observe.labels_of(attrs).get(LABEL_SPEC_HASH) == desired.spec_hash

    def _keep(self, attrs: dict[str, Any], desired: DesiredContainer) -> ContainerStatus:
        """The existing container, started again when it should run but does not."""
        state = observe.state_of(attrs)
        should_start = state is ContainerState.CREATED or (
            state is ContainerState.EXITED and not desired.is_job)
        if should_start:
            self._api.start(attrs["Id"])  # a port taken meanwhile → PortInUseError; container kept
            attrs = self._api.inspect_container(attrs["Id"])
        return observe.status_from_inspect(attrs, self._prefix, desired.warnings)

    def _missing_image(self, desired: DesiredContainer) -> PullView | None:
        """None when the image is here; else the state of its background pull."""
        try:
            self._api.inspect_image(desired.image)
            return None
        except docker.errors.ImageNotFound:
            pass
        auth_key = pull_key(desired.image, desired.auth)[1]
        previous = self._pending_of(desired.name)
        # Same spec and credentials as the failure we reported: wait out the failure TTL.
        retry = previous is None or (previous.spec_hash, previous.auth_key, previous.image) != (
            desired.spec_hash, auth_key, desired.image)
        view = self.pulls.request(desired.image, desired.auth, retry_failed=retry)
        with self._pending_lock:
            self._pending[desired.name] = _Pending(
                image=desired.image, spec_hash=desired.spec_hash, auth_key=auth_key,
                is_job=desired.is_job, warnings=tuple(desired.warnings), auth=desired.auth)
        if view.phase is PullPhase.DONE:
            raise _DecideAgainError("image pull just finished")
        return view

    def _create_and_start(self, desired: DesiredContainer) -> str:
        network = desired.network
        # The network lock covers finding (or making) the network and creating the container:
        # from then on the created container counts as a user of the network (see
        # _drop_network_if_unused), so the start, the slow part, runs unlocked and the
        # containers of one service start in parallel instead of one after the other.
        with self._network_locks.hold(network) if network else contextlib.nullcontext():
            network_ref = None
            if network:
                network_ref = self._ensure_network(network, desired.labels.get(LABEL_SERVICE, ""))
            container_id = self._create(desired, network_ref)
        try:
            self._api.start(container_id)
        except docker.errors.APIError as exc:
            # Leave nothing half-made: a container that cannot start is removed.
            with contextlib.suppress(docker.errors.APIError):
                self._api.remove_container(container_id, force=True, v=True)
            raise from_api_error(exc) from exc
        log.info("created %s (%s) from %s", desired.container_name, container_id[:12],
                 desired.image)
        return container_id

    def _create(self, desired: DesiredContainer, network_ref: str | None) -> str:
        """Create (not start) the container; `network_ref` names or identifies its network."""
        api = self._api
        host_config = api.create_host_config(
            port_bindings=desired.port_bindings or None,
            restart_policy=desired.restart_policy,
            privileged=desired.privileged,
            init=desired.init or None,
            network_mode=network_ref,
            dns=desired.dns or None,
        )
        networking_config = None
        if network_ref:
            networking_config = api.create_networking_config({
                network_ref: api.create_endpoint_config(aliases=desired.aliases or None)})
        exposed = [tuple(key.split("/")) for key in desired.port_bindings] or None
        try:
            created = api.create_container(
                image=desired.image, command=desired.command, name=desired.container_name,
                environment=desired.environment, labels=desired.labels, ports=exposed,
                host_config=host_config, networking_config=networking_config,
                detach=True, use_config_proxy=False)
        except docker.errors.ImageNotFound as exc:
            raise _DecideAgainError("image vanished before the create") from exc
        except docker.errors.NotFound as exc:
            raise _DecideAgainError(f"network vanished: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise _DecideAgainError("another process created the same name") from exc
            raise
        return str(created["Id"])

    def _ensure_network(self, network: str, service: str) -> str:
        """The service network, created on demand; returns what a container should join.

        Docker's duplicate-name check is best effort, so two processes racing may both create
        it. Everyone then agrees on the oldest one and the loser removes its own, still empty,
        network. The answer is always an ID: a name may be ambiguous for a moment."""
        existing = self._find_networks(network, managed_only=False)
        if not existing:
            try:
                self._api.create_network(
                    network, driver="bridge", check_duplicate=True,
                    labels={LABEL_MANAGED: self._settings.managed_by, LABEL_SERVICE: service})
                log.info("created network %s", network)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another process made it just now
                    raise
            existing = self._find_networks(network, managed_only=False)
        if not existing:
            raise _DecideAgainError(f"network {network} vanished right after its creation")
        winner = min(existing, key=lambda net: (_created_key(net.get("Created")), net["Id"]))
        for net in existing:
            ours = (net.get("Labels") or {}).get(LABEL_MANAGED) == self._settings.managed_by
            if net is not winner and ours:
                with contextlib.suppress(docker.errors.APIError):
                    self._api.remove_network(net["Id"])
        return str(winner["Id"])

    # ----------------------------------------------------------------------- delete

    def delete(self, name: str) -> bool:
        """Remove `name`; False when there was nothing of ours to remove (still a success)."""
        with self._name_locks.hold(name), docker_errors():
            forgotten = self._forget_pending(name)
            self.overlays.forget(name)
            attrs = self._inspect_managed(self._container_name(name))
            if attrs is None:
                return forgotten
            self._remove(attrs)
            return True

    def _remove(self, attrs: dict[str, Any], keep_network: str | None = None) -> None:
        """Stop gracefully, remove, and drop its service network if it was the last user."""
        network = observe.network_of(attrs)
        managed_network = network if network and network.startswith(
            f"{self._prefix}-net-") else None
        try:
            self._api.stop(attrs["Id"], timeout=self._settings.stop_timeout_seconds)
            self._api.remove_container(attrs["Id"], force=True, v=True)
        except docker.errors.NotFound:
            pass  # already gone: the goal is reached
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress elsewhere
                raise
        log.info("removed %s (%s)", attrs.get("Name", "").lstrip("/"), attrs["Id"][:12])
        self.overlays.released(attrs["Id"])
        if managed_network and managed_network != keep_network:
            # Only the check-and-remove of the network needs its lock (a create holds it until
            # its container exists): the containers of one service stop in parallel.
            with self._network_locks.hold(managed_network):
                self._drop_network_if_unused(managed_network)

    def _drop_network_if_unused(self, network: str) -> None:
        for net in self._find_networks(network, managed_only=True):
            # By ID Docker lists only containers with an endpoint (started once); a container
            # created but not yet started is listed by the network's name only, and Docker
            # would remove the network under it.
            users = self._api.containers(all=True, filters={"network": net["Id"]}) or \
                self._api.containers(all=True, filters={"network": network})
            if users:
                continue
            try:
                self._api.remove_network(net["Id"])
                log.info("removed network %s", network)
            except docker.errors.APIError as exc:
                # Gone already, or joined meanwhile by a container of another process.
                log.info("network %s kept: %s", network, exc.explanation)

    # ----------------------------------------------------------------------- helpers

    def _container_name(self, name: str) -> str:
        return f"{self._prefix}-{name}"

    def _inspect(self, container_name: str) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self._api.inspect_container(container_name)
        except docker.errors.NotFound:
            return None
        # Docker also resolves IDs and ID prefixes: only an exact name is this container.
        if str(attrs.get("Name", "")).lstrip("/") != container_name:
            return None
        return attrs

    def _inspect_managed(self, container_name: str) -> dict[str, Any] | None:
        attrs = self._inspect(container_name)
        if attrs is None or not observe.is_managed(attrs, self._settings.managed_by):
            return None
        return attrs

    def _find_networks(self, network: str, *, managed_only: bool) -> list[dict[str, Any]]:
        filters = self._managed_filter if managed_only else None
        nets: list[dict[str, Any]] = self._api.networks(names=[network], filters=filters)
        return [net for net in nets if net.get("Name") == network]  # `names` matches substrings

    def _pending_of(self, name: str) -> _Pending | None:
        with self._pending_lock:
            return self._pending.get(name)

    def _forget_pending(self, name: str) -> bool:
        with self._pending_lock:
            return self._pending.pop(name, None) is not None

    def _pending_status(self, name: str, pending: _Pending, attrs: dict[str, Any] | None,
                        view: PullView | None = None) -> ContainerStatus:
        view = view or self.pulls.view(pending.image, pending.auth)
        warnings = list(pending.warnings)
        if attrs is not None:
            warnings.append(f"container {attrs['Id'][:12]} of the previous spec keeps running "
                            "until the new image is here")
        if view is None:
            progress = PullProgress(message="no pull running: the next ensure creates the "
                                            "container or pulls again")
            state, error = ContainerState.PULLING, None
        else:
            progress = view.progress
            failed = view.phase is PullPhase.FAILED
            state = ContainerState.PULL_FAILED if failed else ContainerState.PULLING
            error = view.error if failed else None
        return ContainerStatus(
            name=name, state=state, image=pending.image, spec_hash=pending.spec_hash,
            error=error, pull=progress, warnings=warnings, is_job=pending.is_job,
            id=attrs["Id"] if attrs is not None else None)

