"""The old container's removal: retried with backoff until its IE confirms, however long the
IE stays unreachable and however often the hooks restart meanwhile; the status shows it."""

from __future__ import annotations

import pytest

from testbed.stack import FAST_HOOKS_ENV, IE, Stack
from tests.migration.helpers import (
    SLEEP,
    assert_only_on,
    cleanup_ies,
    container_name,
    containers_by_ie,
    history,
    placement_ie,
    restart_hooks,
    select,
    settled_on,
    start_component,
    sync_responses,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

DOWN_FOR = 30.0  # simulated seconds the old IE stays unreachable between checks


def assert_cleanup_pending(stack: Stack, ie_a: IE, ie_b: IE) -> None:
    """B serves; A's container still exists and is named in pendingCleanups/CleanedUp."""
    status = stack.scd_status("web")
    assert (status["phase"], status["placement"]["ie"]) == ("Running", ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    assert status["pendingCleanups"][0]["container"] == "default.web"
    cleaned = stack.condition("web", "CleanedUp")
    assert cleaned is not None
    assert (cleaned["status"], cleaned["reason"]) == ("False", "CleanupPending")
    assert f"IE {ie_a.name!r}" in cleaned["message"]
    ready = stack.condition("web", "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    assert containers_by_ie(stack)[ie_a.name] == [container_name(ie_a, "web")]
    assert containers_by_ie(stack)[ie_b.name] == [container_name(ie_b, "web")]


def test_old_ie_down_during_cleanup(stack: Stack, busybox_image: str, ie_a: IE,
                                    ie_b: IE) -> None:
    manifest = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, ie_b)
    stack.driver.run_until(lambda: placement_ie(stack, "web") == ie_b.name)
    assert cleanup_ies(stack, "web") == [ie_a.name]
    ie_a.stop()  # before the delete that the promotion queued

    mark = len(stack.driver.hook_calls)
    stack.driver.run_for(DOWN_FOR)
    assert_cleanup_pending(stack, ie_a, ie_b)
    # Retried all along, with backoff: never faster than the error base, never slower than
    # its cap, never as a hot loop.
    answers = sync_responses(stack, "web", mark)
    base = float(FAST_HOOKS_ENV["LLO_RESYNC_ERROR_BASE_SECONDS"])
    cap = float(FAST_HOOKS_ENV["LLO_RESYNC_ERROR_MAX_SECONDS"])
    assert len(answers) >= DOWN_FOR / cap
    assert all(base <= a["resyncAfterSeconds"] <= cap for a in answers)
    assert len(answers) <= DOWN_FOR / base + 2

    for _ in range(3):
        restart_hooks(stack)
        stack.driver.run_for(DOWN_FOR / 3)
        assert_cleanup_pending(stack, ie_a, ie_b)

    ie_a.start()
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_b))
    assert_only_on(stack, "web", ie_b)
    cleaned = stack.condition("web", "CleanedUp")
    assert cleaned is not None
    assert (cleaned["status"], cleaned["reason"]) == ("True", "CleanupDone")
    assert history(stack, "web") == ["Starting", "Running", "Migrating", "Running"]
