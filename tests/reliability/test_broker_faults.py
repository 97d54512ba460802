"""Orion-LD answering 500, without the entity (404), or hanging: the container lifecycle goes on,
BrokerSynced says what is wrong, hooks answer in time, and the broker catches up once it can."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack
from tests.reliability.helpers import (
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    condition_history,
    entity,
    report,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


# (fault, the BrokerSynced reason while it lasts, a text its message must contain)
CASES = [
    ("hang", "BrokerUnreachable", "read timeout"),
    ("error", "BrokerError", "500"),
    ("no-entity", "EntityNotFound", entity("web")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_broker_fault(stack: Stack, ie: IE, busybox_image: str,
                      case: tuple[str, str, str]) -> None:
    fault, reason, says = case
    orion = stack.orion
    assert orion is not None
    if fault == "no-entity":
        pass  # the entity is created only when the fault "clears"
    else:
        orion.create_entity(entity("web"), "ServiceComponent")
        orion.set_fault("hang" if fault == "hang" else "error")
    start = len(stack.driver.hook_calls)
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    stack.driver.run_for(5)
    synced = stack.condition("web", "BrokerSynced") or {}
    assert (synced.get("status"), synced.get("reason")) == ("False", reason), synced
    assert says in synced.get("message", ""), synced
    assert (stack.condition("web", "Ready") or {}).get("status") == "True"  # not blocked
    slowest = assert_hooks_answered(stack.driver, start)

    if fault == "no-entity":
        orion.create_entity(entity("web"), "ServiceComponent")
    else:
        orion.clear_fault()
    stack.driver.run_until(
        lambda: (stack.condition("web", "BrokerSynced") or {}).get("status") == "True",
        timeout=120)
    assert orion.status_history(entity("web"))[-1] == "Running"
    assert stack.scd_status("web")["broker"]["reported"] == "Running"
    assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["web"]})
    report(f"broker {fault}", slowest_hook_s=round(slowest, 2),
           broker_synced=condition_history(stack.driver, "web", "BrokerSynced")[:3])
