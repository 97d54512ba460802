"""When the selected IE may not be used: not ready, missing, another id, cordoned."""

from __future__ import annotations

import pytest

from testbed.stack import Stack
from tests.e2e.helpers import (
    DIE_KIND,
    assert_one_container_per,
    container_of,
    deploy,
    entity,
    reason,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "3600"}]


def die_ready(stack: Stack, name: str) -> bool | None:
    ready: bool | None = ((stack.driver.get(DIE_KIND, name) or {}).get("status") or {}).get(
        "apiReady")
    return ready


def test_ie_not_ready_then_started(stack: Stack, busybox_image: str) -> None:
    ie = stack.add_ie("edge-1", start=False)
    stack.driver.apply(ie.die())
    stack.driver.run_until(lambda: die_ready(stack, ie.name) is False, timeout=30)
    assert stack.orion is not None
    stack.orion.create_entity(entity("web"), "ServiceComponent")
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Pending", timeout=30)
    assert stack.scd_status("web")["reason"] == "IENotReady"
    assert reason(stack, "web", "IEReady") == "IENotReady"
    stack.driver.run_for(30)
    assert stack.phase("web") == "Pending"
    assert_one_container_per(stack, [])
    ie.start()
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=120)
    assert die_ready(stack, ie.name) is True
    assert stack.orion.status_history(entity("web")) == ["Starting", "Running"]
    assert_one_container_per(stack, ["web"])


def test_die_missing_then_applied(stack: Stack, busybox_image: str) -> None:
    ie = stack.add_ie("edge-1")
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Pending", timeout=30)
    assert stack.scd_status("web")["reason"] == "IENotFound"
    assert reason(stack, "web", "ContainerReady") == "NotPlaced"
    assert_one_container_per(stack, [])
    stack.driver.apply(ie.die())  # the related DIE appearing resyncs the SCD
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    assert_one_container_per(stack, ["web"])


def test_id_mismatch_places_nothing(stack: Stack, busybox_image: str) -> None:
    ie = stack.add_ie("edge-1")
    stack.driver.apply(ie.die())
    manifest = Stack.scd("web", ie, busybox_image, cliArgs=SLEEP)
    manifest["spec"]["selectedIE"]["id"] = "urn:ngsi-ld:InfrastructureElement:someone-else"
    stack.driver.apply(manifest)
    stack.driver.run_until(lambda: stack.phase("web") == "Pending", timeout=30)
    stack.driver.run_for(60)
    status = stack.scd_status("web")
    assert (status["phase"], status["reason"]) == ("Pending", "IEIdMismatch")
    assert status.get("placement") is None
    assert_one_container_per(stack, [])


def test_cordon_stops_new_placements_only(stack: Stack, busybox_image: str) -> None:
    ie = stack.add_ie("edge-1")
    stack.driver.apply(ie.die())
    first = deploy(stack, ie, "first", busybox_image, cliArgs=SLEEP)["container"]["id"]
    stack.driver.apply(ie.die(annotations={"apiReady": "false"}))
    stack.driver.apply(Stack.scd("second", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("second") == "Pending", timeout=30)
    stack.driver.run_for(60)
    assert stack.scd_status("second")["reason"] == "IECordoned"
    assert stack.phase("first") == "Running"
    assert container_of(stack, "first").id == first
    assert container_of(stack, "first").status == "running"
    assert_one_container_per(stack, ["first"])
    stack.driver.apply(ie.die())  # uncordon: the waiting SCD is placed
    stack.driver.run_until(lambda: stack.phase("second") == "Running", timeout=60)
    assert_one_container_per(stack, ["first", "second"])
