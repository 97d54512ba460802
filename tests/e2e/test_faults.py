"""Faults outside the hooks: an image that cannot be pulled, a broker that is down or has no
entity, an IE that is down while its container is deleted, no broker at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.metacontroller import FINALIZER_PREFIX
from testbed.orion import Fault
from testbed.stack import FAST_HOOKS_ENV, IE, NAMESPACE, Stack
from tests.e2e.helpers import (
    SCD_KIND,
    assert_one_container_per,
    container_of,
    deploy,
    entity,
    ieapi_requests,
    reason,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "3600"}]
UNPULLABLE = "registry.invalid/nothing:1"
PERMANENT_SECONDS = float(FAST_HOOKS_ENV["LLO_RESYNC_PERMANENT_SECONDS"])


def failed_pulls(ie: IE) -> int:
    """Pull attempts of UNPULLABLE the IE API logged as failed."""
    return ie.log_path.read_text().count(f"pull of {UNPULLABLE} failed")


def test_unpullable_image_fails_without_hammering(stack: Stack, ie: IE) -> None:
    assert stack.orion is not None
    stack.orion.create_entity(entity("bad"), "ServiceComponent")
    stack.driver.apply(Stack.scd("bad", ie, UNPULLABLE))
    stack.driver.run_until(lambda: stack.phase("bad") == "Failed", timeout=60)
    status = stack.scd_status("bad")
    assert status["reason"] == "PullFailed"
    assert UNPULLABLE in status["message"]
    assert status["container"]["state"] == "pullFailed"
    assert_one_container_per(stack, [])
    stack.driver.run_until(lambda: stack.scd_status("bad")["broker"]["reported"] == "Failed",
                           timeout=30)
    # Ten minutes on: one ensure per permanent pace plus one per resyncPeriodSeconds (the
    # controller's safety net), not a retry loop; and the IE retries the pull itself only
    # after IEAPI_PULL_FAILURE_TTL_SECONDS (300 s by default).
    period = stack.driver.controller_for(SCD_KIND).resync_period
    assert period is not None
    before, pulls_before = ieapi_requests(ie, "PUT", "bad"), failed_pulls(ie)
    seconds = 600
    stack.driver.run_for(seconds)
    calls = ieapi_requests(ie, "PUT", "bad") - before
    assert 1 <= calls <= seconds / PERMANENT_SECONDS + seconds / period + 2, calls
    assert failed_pulls(ie) - pulls_before <= seconds / 300 + 1
    assert stack.phase("bad") == "Failed"
    assert stack.orion.status_history(entity("bad")) == ["Starting", "Failed"]
    assert_one_container_per(stack, [])


@pytest.mark.parametrize(("fault", "why"), [("down", "BrokerUnreachable"),
                                            ("error", "BrokerError")])
def test_broker_fault_never_blocks_the_container(stack: Stack, ie: IE, busybox_image: str,
                                                 fault: Fault, why: str) -> None:
    assert stack.orion is not None
    stack.orion.create_entity(entity("web"), "ServiceComponent")
    stack.orion.set_fault(fault)
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    assert container_of(stack, "web").status == "running"
    condition = stack.condition("web", "BrokerSynced")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", why)
    assert stack.orion.status_history(entity("web")) == []
    stack.orion.clear_fault()
    stack.driver.run_until(lambda: reason(stack, "web", "BrokerSynced") == "BrokerSynced",
                           timeout=60)
    assert stack.orion.status_history(entity("web")) == ["Running"]
    assert stack.scd_status("web")["broker"]["reported"] == "Running"
    assert_one_container_per(stack, ["web"])


def test_missing_entity_is_reported(stack: Stack, ie: IE, busybox_image: str) -> None:
    deploy(stack, ie, "web", busybox_image, entity_exists=False, cliArgs=SLEEP)
    stack.driver.run_for(10)
    assert container_of(stack, "web").status == "running"
    condition = stack.condition("web", "BrokerSynced")
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "EntityNotFound")
    assert entity("web") in condition["message"]
    assert stack.orion is not None
    assert stack.orion.entity(entity("web")) is None  # the hooks never invent the entity
    assert_one_container_per(stack, ["web"])


def test_ie_down_during_delete_holds_the_finalizer(stack: Stack, ie: IE,
                                                   busybox_image: str) -> None:
    deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
    deploy(stack, ie, "stays", busybox_image, cliArgs=SLEEP)
    ie.stop()
    stack.driver.delete(SCD_KIND, "web", NAMESPACE)
    stack.driver.run_for(60)
    held = stack.get_scd("web")
    assert held is not None
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [FINALIZER_PREFIX + "llo-docker-scd"]
    assert held["status"]["phase"] == "Terminating"
    assert held["status"]["reason"] == "DeletePending"
    assert reason(stack, "web", "Ready") == "Terminating"
    finalize = stack.driver.calls("finalize", "llo-docker-scd")
    assert len(finalize) >= 3  # retried with backoff, every answer a 200
    assert all(c.status_code == 200 and c.error is None for c in finalize)
    assert stack.driver.warnings() == []
    assert container_of(stack, "web").status == "running"  # the IE still runs it
    ie.start()
    stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=60)
    assert_one_container_per(stack, ["stays"])


def test_without_a_broker(dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    with Stack(tmp_path, dockerd, broker=False) as stack:
        ie = stack.add_ie("edge-1")
        stack.driver.apply(ie.die())
        status = deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
        assert status["broker"]["state"] == "Disabled"
        assert reason(stack, "web", "BrokerSynced") == "BrokerDisabled"
        assert_one_container_per(stack, ["web"])
        stack.driver.delete(SCD_KIND, "web", NAMESPACE)
        stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=60)
        assert_one_container_per(stack, [])
        assert stack.driver.warnings() == []
