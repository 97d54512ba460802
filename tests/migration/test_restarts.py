"""The hooks are stateless: a migration survives any number of hook restarts, including a
replica killed after it created the new container but before Metacontroller got the status
naming it (the invariant 'a container only exists on an IE the status already names')."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hooks.resources import DIE_RELATED_KEY
from testbed.stack import IE, Stack
from tests.migration.helpers import (
    DIE_KIND,
    SCD_KIND,
    SLEEP,
    assert_only_on,
    cleanup_ies,
    container_id,
    container_name,
    containers_by_ie,
    history,
    migration_target,
    placement_ie,
    restart_hooks,
    select,
    settled_on,
    start_component,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

JSON = dict[str, Any]


def test_hook_restarts_at_every_stage(stack: Stack, busybox_image: str, ie_a: IE,
                                      ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    restart_hooks(stack)  # intent recorded, nothing made on B yet
    stack.driver.run_until(lambda: placement_ie(stack, "web") == ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    assert containers_by_ie(stack)[ie_a.name] == [container_name(ie_a, "web")]
    restart_hooks(stack)  # B serves, A queued for deletion
    restart_hooks(stack)  # and once more, for good measure
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))

    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


@contextlib.contextmanager
def frozen(ie: IE) -> Iterator[None]:
    """SIGSTOP the IE API's process group (ours: Stack started it in its own session): it
    accepts connections but answers nothing until thawed."""
    assert ie.server is not None
    os.killpg(ie.server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(ie.server.pid, signal.SIGCONT)


def sync_request(stack: Stack, name: str, selected: IE) -> tuple[str, JSON]:
    """The sync Metacontroller would send now: URL and body, built from the driver's store."""
    ctl = stack.driver.controller_for(SCD_KIND)
    body = {"controller": ctl.manifest, "parent": stack.get_scd(name), "children": {},
            "related": {DIE_RELATED_KEY: {selected.name: stack.driver.get(DIE_KIND,
                                                                          selected.name)}},
            "finalizing": False}
    return ctl.hooks["sync"].url, body


def unread_bytes(port: int) -> int:
    """Bytes received but not yet read by whoever owns local TCP `port` (/proc/net/tcp):
    how to tell that a request reached a frozen server."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, queues = fields[1], fields[4]
        if int(local.split(":")[1], 16) == port:
            total += int(queues.split(":")[1], 16)
    return total


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Real-time wait (for processes outside the driver's clock)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_hooks_killed_between_create_and_status(stack: Stack, busybox_image: str, ie_a: IE,
                                                ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    status_before = stack.scd_status("web")
    url, body = sync_request(stack, "web", ie_b)
    assert stack.hooks is not None
    hooks_log = stack.hooks.log_path
    offset = hooks_log.stat().st_size
    outcome: list[BaseException | requests.Response] = []

    def call() -> None:
        try:  # authenticated as Metacontroller is: without it the hooks answer 401 at once
            outcome.append(requests.post(url, json=body, timeout=15, headers=stack.hook_auth))
        except requests.RequestException as exc:
            outcome.append(exc)

    def planned() -> bool:
        if "stage Migrating" in hooks_log.read_text(errors="replace")[offset:]:
            return True
        if outcome:  # answered without planning the ensure (a 401, say): say what instead
            answer = outcome[0]
            raise AssertionError("the hooks answered before planning the ensure on B: " + (
                f"HTTP {answer.status_code} {answer.text[:300]}"
                if isinstance(answer, requests.Response) else repr(answer)))
        return False

    with frozen(ie_b):
        caller = threading.Thread(target=call)
        caller.start()
        # The hooks log their plan, then PUT to B, whose bytes wait unread in B's sockets.
        wait_for(planned, timeout=20, what="the hooks never planned the ensure on B")
        wait_for(lambda: unread_bytes(ie_b.port) > 0, timeout=20,
                 what="the hooks' PUT never reached B")
        os.killpg(stack.hooks.pid, signal.SIGKILL)
        stack.stop_hooks()
        caller.join(timeout=20)
        assert len(outcome) == 1
        assert isinstance(outcome[0], requests.RequestException)
    # Thawed, B serves the PUT of the dead replica: a container exists on B that no status
    # write ever reported; the status still names B as the target (intent), so it is not lost.
    wait_for(lambda: container_id(stack, ie_b) is not None, timeout=30,
             what="B never created the container of the killed sync")
    orphan_candidate = container_id(stack, ie_b)
    assert stack.scd_status("web") == status_before

    stack.start_hooks()
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))

    assert container_id(stack, ie_b) == orphan_candidate  # adopted, not duplicated
    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]
