"""Background image pulls: one per (image, credentials), with aggregated progress.

A pull can take minutes, far longer than a hook may wait, so an ensure that misses an image
starts a pull here and answers at once with the progress. Nothing is ever *created* from this
module: the container is made by a later ensure that finds the image present, so a DELETE
while pulling simply means no later ensure comes.

A failed pull is remembered for `failure_ttl` seconds, so a hook resyncing every few seconds
does not hammer a registry; the caller may ask for an early retry (changed spec/credentials).
A pull that died because the daemon went away is forgotten, not remembered as a failure: that
is temporary and the next ensure reports the daemon's state itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import docker.errors
import requests
from docker.utils import parse_repository_tag

from ieapi.contract import PullProgress
from ieapi.metrics import pull_finished

log = logging.getLogger(__name__)


class PullPhase(StrEnum):
    PULLING = "pulling"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class PullView:
    """A snapshot of one pull, safe to hand to another thread."""

    phase: PullPhase
    progress: PullProgress
    error: str | None = None


PullKey = tuple[str, str]


def pull_key(image: str, auth: Mapping[str, str] | None) -> PullKey:
    """Identity of a pull: the image and a fingerprint of the credentials (never stored)."""
    digest = hashlib.sha256(json.dumps(dict(auth or {}), sort_keys=True).encode()).hexdigest()
    return image, digest[:16]


class PullingAPI(Protocol):
    """The slice of docker.APIClient this module needs (a fake may stand in)."""

    def pull(self, repository: str, tag: str | None = ..., stream: bool = ...,
             auth_config: dict[str, str] | None = ..., decode: bool = ...) -> Iterable[Any]: ...


@dataclass
class _LayerProgress:
    total: int = 0
    current: int = 0
    done: bool = False


# Statuses of per-layer events that mean "this layer is here".
_LAYER_DONE = {"pull complete", "already exists"}
_LAYER_STATUSES = _LAYER_DONE | {
    "pulling fs layer", "waiting", "downloading", "verifying checksum", "download complete",
    "extracting", "retrying"}


@dataclass
class _Pull:
    phase: PullPhase = PullPhase.PULLING
    layers: dict[str, _LayerProgress] = field(default_factory=dict)
    message: str = ""
    error: str | None = None
    failed_at: float | None = None

    def record(self, event: Mapping[str, Any]) -> None:
        """Fold one event of Docker's pull stream into the progress."""
        status = str(event.get("status", ""))
        layer_id = event.get("id")
        if status:
            self.message = f"{layer_id}: {status}" if layer_id else status
        if not layer_id or status.lower().split(" in ")[0] not in _LAYER_STATUSES:
            return
        layer = self.layers.setdefault(str(layer_id), _LayerProgress())
        detail = event.get("progressDetail") or {}
        lowered = status.lower()
        if lowered == "downloading":
            layer.total = int(detail.get("total") or layer.total)
            layer.current = int(detail.get("current") or layer.current)
        elif lowered == "download complete":
            layer.current = layer.total
        elif lowered in _LAYER_DONE:
            layer.done = True
            layer.current = layer.total

    def view(self) -> PullView:
        layers = list(self.layers.values())
        progress = PullProgress(
            layers_total=len(layers),
            layers_done=sum(1 for layer in layers if layer.done),
            bytes_total=sum(layer.total for layer in layers),
            bytes_done=sum(layer.current for layer in layers),
            message=self.message,
        )
        return PullView(phase=self.phase, progress=progress, error=self.error)


class PullManager:
    """Starts, deduplicates and remembers background pulls."""

    def __init__(self, api: PullingAPI, *, failure_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._failure_ttl = failure_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._pulls: dict[PullKey, _Pull] = {}
        self._threads: dict[PullKey, threading.Thread] = {}

    def request(self, image: str, auth: Mapping[str, str] | None, *,
                retry_failed: bool = False) -> PullView:
        """The pull of `image`, started now unless one is running or failed recently."""
        key = pull_key(image, auth)
        with self._lock:
            self._forget_expired()
            pull = self._pulls.get(key)
            if pull is not None and pull.phase is PullPhase.FAILED and retry_failed:
                pull = None
            if pull is None:
                pull = _Pull(message="pull requested")
                self._pulls[key] = pull
                thread = threading.Thread(
                    target=self._run, args=(key, pull, dict(auth) if auth else None),
                    name=f"pull {image}", daemon=True)
                self._threads[key] = thread
                thread.start()
            return pull.view()

    def view(self, image: str, auth: Mapping[str, str] | None) -> PullView | None:
        """The pull's state without starting anything (None: no pull known)."""
        with self._lock:
            pull = self._pulls.get(pull_key(image, auth))
            return pull.view() if pull is not None else None

    def running(self) -> list[PullProgress]:
        """Progress of every pull in progress (for /metrics)."""
        with self._lock:
            return [p.view().progress for p in self._pulls.values()
                    if p.phase is PullPhase.PULLING]

    def wait(self, timeout: float) -> bool:
        """Wait for the running pulls to end (tests and shutdown); True when all ended."""
        deadline = self._clock() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - self._clock()))
        return not any(thread.is_alive() for thread in threads)

    def _forget_expired(self) -> None:
        now = self._clock()
        for key, pull in list(self._pulls.items()):
            if pull.failed_at is not None and now - pull.failed_at >= self._failure_ttl:
                del self._pulls[key]

    def _run(self, key: PullKey, pull: _Pull, auth: dict[str, str] | None) -> None:
        image = key[0]
        repository, tag = parse_repository_tag(image)
        try:
            for event in self._api.pull(repository, tag=tag or "latest", stream=True,
                                        auth_config=auth, decode=True):
                if not isinstance(event, Mapping):
                    continue
                if event.get("error"):
                    self._finish(key, pull, error=str(event["error"]))
                    return
                with self._lock:
                    pull.record(event)
        except docker.errors.APIError as exc:
            self._finish(key, pull, error=str(exc.explanation or exc))
            return
        except (requests.RequestException, docker.errors.DockerException, OSError) as exc:
            log.warning("pull of %s interrupted (daemon unreachable?): %s", image, exc)
            self._finish(key, pull, error=None, forget=True, outcome="interrupted")
            return
        except Exception as exc:  # a bug must not leave a pull "running" forever
            log.exception("pull of %s crashed", image)
            self._finish(key, pull, error=f"pull crashed: {exc}")
            return
        self._finish(key, pull, error=None, forget=True)
        log.info("pulled %s", image)

    def _finish(self, key: PullKey, pull: _Pull, *, error: str | None,
                forget: bool = False, outcome: str | None = None) -> None:
        with self._lock:
            self._threads.pop(key, None)
            pull_finished(outcome or ("done" if forget else "failed"), pull.view().progress)
            if forget:
                pull.phase = PullPhase.DONE
                if self._pulls.get(key) is pull:
                    del self._pulls[key]
                return
            pull.phase = PullPhase.FAILED
            pull.error = error
            pull.message = "pull failed"
            pull.failed_at = self._clock()
            log.warning("pull of %s failed: %s", key[0], error)
