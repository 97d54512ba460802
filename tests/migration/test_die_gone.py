"""A DIE that disappears while a migration is in flight (docs/migration.md, "When a DIE goes").

Target DIE deleted before the new container started: the move is given up (the target goes to
pendingCleanups, whatever it holds is deleted, which lets the DIE's finalizer go); the old
container keeps serving, phase Migrating says why, and a later selectedIE change or the DIE's
return converges. Source DIE deleted: its finalizer holds it while the old container exists;
the migration completes through the recorded placement and the DIE goes after the cleanup."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack
from tests.migration.helpers import (
    DIE_KIND,
    SLEEP,
    assert_only_on,
    cleanup_ies,
    container_name,
    containers_by_ie,
    history,
    ie_listing,
    image_only_here,
    migration_target,
    reason_of,
    retag,
    select,
    settled_on,
    start_component,
    untag,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def die_exists(stack: Stack, ie: IE) -> bool:
    return stack.driver.get(DIE_KIND, ie.name) is not None


def die_reason(stack: Stack, ie: IE) -> str | None:
    reason: str | None = ((stack.driver.get(DIE_KIND, ie.name) or {}).get("status")
                          or {}).get("reason")
    return reason


def assert_move_given_up(stack: Stack, ie_a: IE, reason: str) -> None:
    status = stack.scd_status("web")
    assert (status["phase"], status["reason"]) == ("Migrating", reason)
    assert status["placement"]["ie"] == ie_a.name
    assert "migration" not in status
    assert cleanup_ies(stack, "web") == []
    assert reason_of(stack, "web", "Migrated") == reason
    ready = stack.condition("web", "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    expected: dict[str, list[str]] = {name: [] for name in stack.ies}
    expected[ie_a.name] = [container_name(ie_a, "web")]
    assert containers_by_ie(stack) == expected


def test_target_die_deleted_right_after_intent_then_back(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)

    stack.driver.delete(DIE_KIND, ie_b.name)
    stack.driver.run_until(lambda: not die_exists(stack, ie_b)
                           and migration_target(stack, "web") is None
                           and not cleanup_ies(stack, "web"))
    stack.driver.run_for(30)
    assert_move_given_up(stack, ie_a, "IENotFound")
    assert history(stack, "web") == ["Starting", "Running", "Migrating"]

    stack.driver.apply(ie_b.die())  # the IE is back: the move starts over
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))
    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_target_die_deleted_while_its_pull_fails_then_third_ie(
        stack: Stack, busybox_image: str, ie_a: IE, ie_b: IE, ie_c: IE) -> None:
    """B holds a failed pull for the component, which holds B's DIE (its finalizer waits for
    the IE to have nothing managed): giving the move up is what lets the DIE go."""
    client = stack.client
    with image_only_here(client, busybox_image) as image:
        manifest = start_component(stack, "web", ie_a, image, cliArgs=SLEEP)
        untag(client, image)
        select(stack, manifest, ie_b)
        stack.driver.run_until(lambda: reason_of(stack, "web", "Migrated") == "PullFailed")
        assert ie_listing(ie_b) == ["default.web"]

        reasons: set[str] = set()

        def die_released() -> bool:
            reasons.add(str(stack.scd_status("web").get("reason")))
            return not die_exists(stack, ie_b)

        stack.driver.delete(DIE_KIND, ie_b.name)
        stack.driver.run_until(die_released)
        stack.driver.run_for(30)
        assert "IETerminating" in reasons  # seen while B's DIE was held
        assert_move_given_up(stack, ie_a, "IENotFound")
        assert ie_listing(ie_b) == []

        retag(client, busybox_image, image)
        select(stack, manifest, ie_c)
        stack.driver.run_until(lambda: settled_on(stack, "web", ie_c))

    assert_only_on(stack, "web", ie_c)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]


def test_source_die_deleted_mid_migration(stack: Stack, busybox_image: str, ie_a: IE,
                                          ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: migration_target(stack, "web") == ie_b.name)
    stack.driver.delete(DIE_KIND, ie_a.name)
    stack.driver.run_until(lambda: die_reason(stack, ie_a) == "ManagedContainersRemain")
    assert containers_by_ie(stack)[ie_a.name] == [container_name(ie_a, "web")]

    # Never a moment where A's DIE is gone while A still runs the old container.
    violations: list[dict[str, list[str]]] = []

    def settled_and_released() -> bool:
        containers = containers_by_ie(stack)
        if not die_exists(stack, ie_a) and containers[ie_a.name]:
            violations.append(containers)
        return settled_on(stack, "web", ie_b) and not die_exists(stack, ie_a)

    stack.driver.run_until(settled_and_released)
    assert violations == []
    assert_only_on(stack, "web", ie_b)
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]
