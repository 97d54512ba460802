"""Deleting the SCD while a migration is in flight: every container any status named is
removed before the finalizer is released, whichever IE is slow to confirm."""

from __future__ import annotations

import pytest

from testbed.metacontroller import FINALIZER_PREFIX
from testbed.stack import IE, NAMESPACE, Stack
from tests.migration.helpers import (
    SCD_KIND,
    SLEEP,
    Recorder,
    assert_all_gone,
    cleanup_ies,
    container_name,
    containers_by_ie,
    history,
    migration_target,
    placement_ie,
    select,
    start_component,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def delete(stack: Stack) -> None:
    stack.driver.delete(SCD_KIND, "web", NAMESPACE)


def assert_held(stack: Stack, reason: str = "DeletePending") -> None:
    """Still there, terminating, its finalizer kept."""
    scd = stack.get_scd("web")
    assert scd is not None
    assert any(f.startswith(FINALIZER_PREFIX) for f in scd["metadata"]["finalizers"])
    status = stack.scd_status("web")
    assert (status["phase"], status["reason"]) == ("Terminating", reason)


def test_delete_while_both_containers_exist(stack: Stack, busybox_image: str, ie_a: IE,
                                            ie_b: IE) -> None:
    """B just took over, A is queued for deletion and its IE API is down: the finalizer
    waits for A, however long, and goes as soon as A confirms."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: placement_ie(stack, "web") == ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    ie_a.stop()

    delete(stack)
    recorder = Recorder(stack, "web")
    recorder.run_until(lambda: not containers_by_ie(stack)[ie_b.name])
    stack.driver.run_for(60)
    assert_held(stack)
    assert cleanup_ies(stack, "web") == [ie_a.name]  # what is left is named
    assert containers_by_ie(stack) == {"ie-a": [container_name(ie_a, "web")], "ie-b": [],
                                       "ie-c": []}

    ie_a.start()
    recorder.run_until(lambda: stack.get_scd("web") is None)
    assert_all_gone(stack)
    # No moment where the SCD was gone and a container of it was left.
    released = [s for s in recorder.snapshots if not s.exists]
    assert released
    assert all(s.containers == {name: [] for name in stack.ies} for s in released)
    assert history(stack, "web") == [
        "Starting", "Running", "Migrating", "Running", "Removing", "Finished"]


def test_delete_while_target_unreachable(stack: Stack, busybox_image: str, ie_a: IE,
                                         ie_b: IE) -> None:
    """B recorded as the target, then its API goes away: B's DIE still exists, so the
    finalizer waits for B to confirm (it may hold the new container) with no grace period."""
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    ie_b.stop()

    delete(stack)
    stack.driver.run_until(lambda: not containers_by_ie(stack)[ie_a.name])
    stack.driver.run_for(60)
    assert_held(stack)
    assert migration_target(stack, "web") == ie_b.name
    assert placement_ie(stack, "web") is None  # A confirmed: no longer named

    ie_b.start()
    stack.driver.run_until(lambda: stack.get_scd("web") is None)
    assert_all_gone(stack)
    assert history(stack, "web") == [
        "Starting", "Running", "Migrating", "Removing", "Finished"]
