"""Moving a component by changing spec.selectedIE: the new container runs before the old one
goes, whatever the HLO does meanwhile (change its mind, back or to a third IE)."""

from __future__ import annotations

import time

import pytest

from testbed.stack import IE, Stack
from tests.migration.helpers import (
    ENDING,
    SLEEP,
    STARTED,
    Recorder,
    assert_only_on,
    cleanup_ies,
    container_events,
    container_id,
    container_name,
    first_event,
    history,
    migration_target,
    placement_ie,
    select,
    settled_on,
    start_component,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def test_new_container_runs_before_the_old_one_is_removed(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    old, new = container_name(ie_a, "web"), container_name(ie_b, "web")
    since = time.time()
    recorder = Recorder(stack, "web")

    select(stack, manifest, ie_b)
    recorder.run_until(lambda: settled_on(stack, "web", ie_b))

    # While the phase said Migrating, the old container served and no other was made yet.
    migrating = [s for s in recorder.snapshots if s.status.get("phase") == "Migrating"]
    assert migrating
    assert all(s.containers[ie_a.name] == [old] for s in migrating)
    assert all(s.status["placement"]["ie"] == ie_a.name for s in migrating)
    # There was a sync after which both existed: the new one placed, the old one queued.
    both = [s for s in recorder.snapshots if s.placement == ie_b.name and s.cleanups]
    assert both
    for snap in both:
        assert snap.cleanups == [ie_a.name]
        assert snap.containers[ie_a.name] == [old]
        assert snap.containers[ie_b.name] == [new]
    # dockerd's own clock agrees: the new one started before the old one was stopped.
    events = container_events(stack.client, [ie_a, ie_b], since)
    assert first_event(events, STARTED, new) < first_event(events, ENDING, old)

    assert_only_on(stack, "web", ie_b)
    migrated = stack.condition("web", "Migrated")
    assert migrated is not None
    assert (migrated["status"], migrated["reason"]) == ("True", "MigrationCompleted")
    cleaned = stack.condition("web", "CleanedUp")
    assert cleaned is not None
    assert (cleaned["status"], cleaned["reason"]) == ("True", "CleanupDone")
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_back_to_the_old_ie_before_the_target_was_used(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE) -> None:
    """A→B→A with B only recorded (intent): B never gets a container, A's is never touched."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    serving = container_id(stack, ie_a)
    since = time.time()

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    select(stack, manifest, ie_a)
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_a))

    assert_only_on(stack, "web", ie_a)
    assert container_id(stack, ie_a) == serving
    assert container_events(stack.client, [ie_b], since) == []
    migrated = stack.condition("web", "Migrated")
    assert migrated is not None
    assert (migrated["status"], migrated["reason"]) == ("True", "MigrationAbandoned")
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_back_to_the_old_ie_while_its_container_awaits_cleanup(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE) -> None:
    """A→B→A with B just promoted and A still queued for deletion: the queued delete is
    dropped and A's very container is taken over again (make-before-break both ways)."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    serving = container_id(stack, ie_a)

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: placement_ie(stack, "web") == ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    assert container_id(stack, ie_b) is not None
    select(stack, manifest, ie_a)
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_a))

    assert_only_on(stack, "web", ie_a)
    assert container_id(stack, ie_a) == serving
    assert history(stack, "web") == [
        "Starting", "Running", "Migrating", "Running", "Migrating", "Running"]


def test_third_ie_selected_before_the_target_was_used(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE, ie_c: IE) -> None:
    """A→B→C with B only recorded: B is given up untouched, C takes over from A."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    since = time.time()

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    select(stack, manifest, ie_c)
    recorder = Recorder(stack, "web")
    recorder.run_until(lambda: settled_on(stack, "web", ie_c))

    assert_only_on(stack, "web", ie_c)
    assert container_events(stack.client, [ie_b], since) == []
    events = container_events(stack.client, [ie_a, ie_c], since)
    assert first_event(events, STARTED, container_name(ie_c, "web")) < \
        first_event(events, ENDING, container_name(ie_a, "web"))
    assert any(s.status.get("migration", {}).get("to", {}).get("ie") == ie_c.name
               for s in recorder.snapshots)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_third_ie_selected_while_the_first_move_is_finishing(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE, ie_c: IE) -> None:
    """A→B→C with B just promoted and A still queued: A is still deleted, B serves until C
    runs, then B goes too."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)

    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: placement_ie(stack, "web") == ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    since = time.time()
    select(stack, manifest, ie_c)
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_c))

    assert_only_on(stack, "web", ie_c)
    events = container_events(stack.client, [ie_b, ie_c], since)
    assert first_event(events, STARTED, container_name(ie_c, "web")) < \
        first_event(events, ENDING, container_name(ie_b, "web"))
    assert history(stack, "web") == [
        "Starting", "Running", "Migrating", "Running", "Migrating", "Running"]
