"""What the migration tests look at: the SCD's status, the containers each IE really has
(asked of dockerd, not of the hooks), the order in which dockerd started and destroyed them,
and the values the broker accepted. Kept apart from the tests so each test reads as a story.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests

from testbed.stack import IE, MANAGED_LABEL, NAMESPACE, Stack

JSON = dict[str, Any]
SCD_KIND = "ServiceComponentDocker"
DIE_KIND = "DockerInfrastructureElement"
ENTITY_PREFIX = "urn:ngsi-ld:Service:1:Component:"
# A long-running workload whose container stops at once (the IE runs an init as PID 1).
SLEEP = [{"key": "sleep"}, {"key": "3600"}]
# Simulated seconds a convergence may take: the driver's clock jumps, so this bounds the
# number of resyncs, not wall time.
CONVERGE = 120.0


def entity(name: str) -> str:
    """The ServiceComponent entity Stack.scd's instance label decodes to."""
    return ENTITY_PREFIX + name


def container_name(ie: IE, name: str) -> str:
    """The Docker name of SCD `name` on `ie` (`<prefix>-<namespace>.<name>`)."""
    return f"{ie.prefix}-{NAMESPACE}.{name}"


def start_component(stack: Stack, name: str, ie: IE, image: str, **spec: Any) -> JSON:
    """Create the entity and the SCD on `ie`, and run until it is Running there."""
    assert stack.orion is not None
    stack.orion.create_entity(entity(name), "ServiceComponent")
    manifest = Stack.scd(name, ie, image, **spec)
    stack.driver.apply(manifest)
    stack.driver.run_until(lambda: settled_on(stack, name, ie), timeout=CONVERGE)
    return manifest


def select(stack: Stack, manifest: JSON, ie: IE) -> JSON:
    """What the HLO does to migrate: change spec.selectedIE (nothing else) and apply."""
    manifest["spec"]["selectedIE"] = {"id": ie.ie_id, "hostname": ie.name}
    return stack.driver.apply(manifest)


def placement_ie(stack: Stack, name: str) -> str | None:
    placement = stack.scd_status(name).get("placement") or {}
    ie: str | None = placement.get("ie")
    return ie


def migration_target(stack: Stack, name: str) -> str | None:
    migration = stack.scd_status(name).get("migration") or {}
    ie: str | None = (migration.get("to") or {}).get("ie")
    return ie


def cleanup_ies(stack: Stack, name: str) -> list[str]:
    """IEs named in status.pendingCleanups, in order."""
    return [c["ie"] for c in stack.scd_status(name).get("pendingCleanups") or []]


def settled_on(stack: Stack, name: str, ie: IE) -> bool:
    """Running on `ie` with nothing in flight: no migration, no cleanup left."""
    status = stack.scd_status(name)
    return (status.get("phase") == "Running" and placement_ie(stack, name) == ie.name
            and "migration" not in status and not status.get("pendingCleanups"))


def containers_by_ie(stack: Stack) -> dict[str, list[str]]:
    """Docker names of every managed container, per IE (running or not)."""
    return {ie: sorted(c.name for c in found) for ie, found in stack.all_managed().items()}


def container_id(stack: Stack, ie: IE) -> str | None:
    """Id of the (single) managed container on `ie`, None when there is none."""
    found = ie.containers(stack.client)
    assert len(found) <= 1, f"{ie.name} has {[c.name for c in found]}"
    return str(found[0].id) if found else None


def assert_only_on(stack: Stack, name: str, ie: IE) -> None:
    """The no-leak check: exactly one container for the component, running on the selected
    IE, none on any other IE, and a status that says so."""
    expected: dict[str, list[str]] = {other: [] for other in stack.ies}
    expected[ie.name] = [container_name(ie, name)]
    assert containers_by_ie(stack) == expected
    (only,) = ie.containers(stack.client)
    assert only.status == "running"
    status = stack.scd_status(name)
    assert status["phase"] == "Running"
    assert status["placement"]["ie"] == ie.name
    assert "migration" not in status
    assert status.get("pendingCleanups", []) == []
    cleaned = stack.condition(name, "CleanedUp")
    assert cleaned is None or cleaned["status"] == "True"


def assert_all_gone(stack: Stack) -> None:
    assert containers_by_ie(stack) == {ie: [] for ie in stack.ies}


def history(stack: Stack, name: str) -> list[str]:
    assert stack.orion is not None
    return stack.orion.status_history(entity(name))


def die_ready(stack: Stack, ie: IE) -> bool | None:
    """The DIE's status.apiReady (None when the DIE is gone or not probed yet)."""
    status = (stack.driver.get(DIE_KIND, ie.name) or {}).get("status") or {}
    ready: bool | None = status.get("apiReady")
    return ready


def reason_of(stack: Stack, name: str, condition: str) -> str | None:
    found = stack.condition(name, condition)
    return None if found is None else str(found["reason"])


def ie_listing(ie: IE) -> list[str]:
    """Names the IE API itself reports (containers and pending pulls), asked over HTTP."""
    resp = requests.get(f"{ie.url}/v1/containers", timeout=10,
                        headers={"Authorization": f"Bearer {ie.token}"})
    resp.raise_for_status()
    return sorted(item["name"] for item in resp.json()["items"])


def restart_hooks(stack: Stack, down_for: float = 3.0) -> None:
    """Stop the hooks, let the driver fail its due syncs for `down_for` simulated seconds (as
    Metacontroller would: Warning events, requeue with backoff), then start them again."""
    stack.stop_hooks()
    failures = len(stack.driver.warnings())
    stack.driver.run_for(down_for)
    assert len(stack.driver.warnings()) > failures, "no sync was attempted while down"
    stack.start_hooks()


def sync_responses(stack: Stack, name: str, since: int = 0) -> list[JSON]:
    """Answers of the SCD sync/finalize hook for `name`, from the driver's `since`-th call on."""
    out = []
    for call in stack.driver.hook_calls[since:]:
        if call.hook in ("sync", "finalize") and call.controller == "llo-docker-scd" \
                and call.request["parent"]["metadata"]["name"] == name \
                and isinstance(call.response, dict):
            out.append(call.response)
    return out


@contextlib.contextmanager
def image_only_here(client: docker.DockerClient, source: str) -> Iterator[str]:
    """A fresh tag of `source` that no registry has: while it exists every IE can run it; once
    untagged (`untag`) an IE must pull it, which fails (no registry is reachable). Removed
    afterwards."""
    tag = f"llo-migration-local:{secrets.token_hex(4)}"
    repository, _, version = tag.partition(":")
    client.images.get(source).tag(repository, version)
    try:
        yield tag
    finally:
        untag(client, tag)


def untag(client: docker.DockerClient, tag: str) -> None:
    """Drop the tag only (the image and containers made from it stay)."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag)


def retag(client: docker.DockerClient, source: str, tag: str) -> None:
    repository, _, version = tag.partition(":")
    client.images.get(source).tag(repository, version)


# --------------------------------------------------------------------------- observing a run


@dataclass(frozen=True)
class Snapshot:
    """The world between two syncs."""

    exists: bool  # the SCD (a deleted one is gone once its finalizer is released)
    status: JSON
    containers: dict[str, list[str]]

    @property
    def placement(self) -> str | None:
        ie: str | None = (self.status.get("placement") or {}).get("ie")
        return ie

    @property
    def cleanups(self) -> list[str]:
        return [c["ie"] for c in self.status.get("pendingCleanups") or []]


class Recorder:
    """Wraps run_until predicates so that every step also records a Snapshot: how a test sees
    the states a migration passed through (e.g. 'a sync where both containers exist')."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.snapshots: list[Snapshot] = []

    def take(self) -> Snapshot:
        snap = Snapshot(self.stack.get_scd(self.name) is not None,
                        self.stack.scd_status(self.name), containers_by_ie(self.stack))
        self.snapshots.append(snap)
        return snap

    def watching(self, predicate: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            self.take()
            return predicate()
        return check

    def run_until(self, predicate: Callable[[], bool], timeout: float = CONVERGE) -> None:
        self.stack.driver.run_until(self.watching(predicate), timeout=timeout)


# --------------------------------------------------------------------------- dockerd's own log


@dataclass(frozen=True)
class ContainerEvent:
    at_ns: int
    action: str   # create, start, die, destroy, ...
    name: str


def container_events(client: docker.DockerClient, ies: list[IE],
                     since: float) -> list[ContainerEvent]:
    """dockerd's container events of these IEs since `since` (epoch seconds), oldest first:
    the ground truth for 'B was started before A was destroyed'."""
    instance_ids = {ie.instance_id for ie in ies}
    until = f"{time.time() + 0.001:.9f}"
    stream = client.events(since=int(since), until=until, decode=True,
                           filters={"type": "container"})
    out: list[ContainerEvent] = []
    for event in stream:
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        if attrs.get(MANAGED_LABEL) in instance_ids:
            out.append(ContainerEvent(int(event["timeNano"]), str(event["Action"]),
                                      str(attrs.get("name", ""))))
    return sorted(out, key=lambda e: e.at_ns)


def first_event(events: list[ContainerEvent], actions: set[str], name: str) -> int:
    """When `name` first had one of `actions`; fails the test when it never did."""
    for e in events:
        if e.action in actions and e.name == name:
            return e.at_ns
    raise AssertionError(f"no {sorted(actions)} event for {name}: {events}")


STARTED = {"start"}
ENDING = {"kill", "die", "stop", "destroy"}  # the first of these ends a container's service
