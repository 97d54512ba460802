"""The new IE cannot run the component (not ready, unreachable, port taken, image not
pullable): the old container keeps serving, the conditions say why, and a later change of
selectedIE (back, or to a third IE) converges without leaks."""

from __future__ import annotations

import pytest
import requests

from testbed.procs import free_port
from testbed.stack import FAST_HOOKS_ENV, IE, Stack
from tests.migration.helpers import (
    SLEEP,
    Recorder,
    assert_only_on,
    container_id,
    container_name,
    containers_by_ie,
    die_ready,
    history,
    ie_listing,
    image_only_here,
    migration_target,
    reason_of,
    retag,
    select,
    settled_on,
    start_component,
    sync_responses,
    untag,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def assert_old_one_serves(stack: Stack, ie_a: IE, reason: str) -> None:
    """Phase Migrating for `reason`, A's container alone and Ready, Migrated False."""
    status = stack.scd_status("web")
    assert (status["phase"], status["reason"]) == ("Migrating", reason)
    assert status["placement"]["ie"] == ie_a.name
    expected: dict[str, list[str]] = {name: [] for name in stack.ies}
    expected[ie_a.name] = [container_name(ie_a, "web")]
    assert containers_by_ie(stack) == expected
    ready = stack.condition("web", "Ready")
    migrated = stack.condition("web", "Migrated")
    assert ready is not None
    assert migrated is not None
    assert ready["status"] == "True"
    assert (migrated["status"], migrated["reason"]) == ("False", reason)
    assert history(stack, "web")[-1] == "Migrating"


def test_target_down_then_recovers(stack: Stack, busybox_image: str, ie_a: IE,
                                   ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    ie_b.stop()
    stack.driver.run_until(lambda: die_ready(stack, ie_b) is False)

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: stack.scd_status("web").get("reason") == "IENotReady")
    stack.driver.run_for(30)
    assert_old_one_serves(stack, ie_a, "IENotReady")
    assert migration_target(stack, "web") is None  # a closed gate records no intent
    assert reason_of(stack, "web", "IEReady") == "IENotReady"

    ie_b.start()
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))
    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_target_lost_right_after_intent_then_recovers(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    ie_b.stop()

    # Whether the ensure on B fails first (IEUnreachable) or B's DIE turns not ready first
    # depends on which resync comes first; either way the move waits and A serves.
    recorder = Recorder(stack, "web")
    recorder.run_until(lambda: stack.scd_status("web").get("reason") == "IENotReady")
    stack.driver.run_for(30)
    assert {s.status["reason"] for s in recorder.snapshots} <= {
        "MigrationPending", "IEUnreachable", "IENotReady"}
    assert all(s.containers[ie_a.name] == [container_name(ie_a, "web")]
               and s.containers[ie_b.name] == [] for s in recorder.snapshots)
    assert_old_one_serves(stack, ie_a, "IENotReady")
    assert migration_target(stack, "web") == ie_b.name  # kept: B may have the container

    ie_b.start()
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))
    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_port_taken_on_target_then_back(stack: Stack, busybox_image: str, ie_a: IE,
                                        ie_b: IE) -> None:
    """All IEs share this machine's ports, so the port A's container publishes is taken on
    B's host: what a port held by another program on a real target IE looks like."""
    port = free_port()
    manifest = start_component(
        stack, "web", ie_a, busybox_image, ports=[{"number": port, "protocol": "TCP"}],
        exposePorts=True,
        cliArgs=[{"key": "httpd"}, {"key": "-f"}, {"key": "-p"}, {"key": str(port)},
                 {"key": "-h"}, {"key": "/www"}])
    serving = container_id(stack, ie_a)
    url = f"http://127.0.0.1:{port}/"
    assert requests.get(url, timeout=5).status_code == 200

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: reason_of(stack, "web", "Migrated") == "PortInUse")
    mark = len(stack.driver.hook_calls)
    stack.driver.run_for(120)
    assert_old_one_serves(stack, ie_a, "PortInUse")
    assert str(port) in str(stack.condition("web", "Migrated"))
    assert migration_target(stack, "web") == ie_b.name
    assert requests.get(url, timeout=5).status_code == 200  # the old one still answers
    # A permanent refusal is retried at the permanent pace, not in a loop (the controller's
    # own resyncPeriodSeconds may add one sync per period).
    permanent = float(FAST_HOOKS_ENV["LLO_RESYNC_PERMANENT_SECONDS"])
    answers = sync_responses(stack, "web", mark)
    assert 1 <= len(answers) <= 2 * 120 / permanent + 1
    assert all(a["resyncAfterSeconds"] == permanent for a in answers)

    select(stack, manifest, ie_a)
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_a))
    assert_only_on(stack, "web", ie_a)
    assert container_id(stack, ie_a) == serving
    assert requests.get(url, timeout=5).status_code == 200
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_image_not_pullable_on_target_then_third_ie(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE, ie_c: IE) -> None:
    """A has the image; B does not and cannot pull it (the tag is dropped from the shared
    dockerd after A's container was made from it, and no registry is reachable)."""
    client = stack.client
    with image_only_here(client, busybox_image) as image:
        manifest = start_component(stack, "web", ie_a, image, cliArgs=SLEEP)
        untag(client, image)

        select(stack, manifest, ie_b)
        stack.driver.run_until(lambda: reason_of(stack, "web", "Migrated") == "PullFailed")
        stack.driver.run_for(30)
        assert_old_one_serves(stack, ie_a, "PullFailed")
        assert image in str(stack.condition("web", "Migrated"))
        assert ie_listing(ie_b) == ["default.web"]  # a failed pull, no container

        retag(client, busybox_image, image)  # C will find it locally
        select(stack, manifest, ie_c)
        stack.driver.run_until(lambda: settled_on(stack, "web", ie_c))

    assert_only_on(stack, "web", ie_c)
    assert ie_listing(ie_b) == []  # the abandoned pull was forgotten too
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]
