"""Which ServiceComponent entity is updated (issue 10, point 4), with the whole stack: gunicorn
hooks, ieapi, dockerd and the Orion-LD double answering idPattern queries as Orion-LD does.

The HLO's instance label turns every `:` of the id into `_`, so an id with `_` of its own
decodes to an entity that does not exist; the hooks find the right one by query, write only
to it, and reuse it (one query in the SCD's whole life)."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack
from tests.e2e.helpers import assert_one_container_per, delete_and_wait

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "600"}]


def _queries(stack: Stack) -> int:
    assert stack.orion is not None
    return sum(1 for r in stack.orion.iter_requests("GET") if "idPattern=" in r.path)


def test_an_id_with_underscores_is_found_by_query_and_reused(stack: Stack, ie: IE,
                                                             busybox_image: str) -> None:
    assert stack.orion is not None
    right = "urn:ngsi-ld:Service:my_app:Component:web_1"
    decoy = "urn:ngsi-ld:Service:my_app:Component:web_2"   # same service, another component
    for eid in (right, decoy):
        stack.orion.create_entity(eid, "ServiceComponent")
    stack.driver.apply(Stack.scd("web", ie, busybox_image, service="Service_my_app",
                                 component="Service_my_app_Component_web_1", cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running"
                           and stack.scd_status("web").get("broker", {}).get("reported")
                           == "Running", timeout=60)
    broker = stack.scd_status("web")["broker"]
    assert (broker["entityId"], broker["entitySource"]) == (right, "Query")
    assert stack.orion.status_history(right) == ["Starting", "Running"]
    assert stack.orion.status_history(decoy) == []
    assert stack.orion.entity("urn:ngsi-ld:Service:my:app:Component:web:1") is None
    assert _queries(stack) == 1  # Starting found it; Running reused status.broker.entityId

    delete_and_wait(stack, "web")
    assert stack.orion.status_history(right)[-2:] == ["Removing", "Finished"]
    assert stack.orion.status_history(decoy) == []
    assert _queries(stack) == 1
    assert_one_container_per(stack, [])


def test_two_candidates_are_ambiguous_and_nothing_is_written(stack: Stack, ie: IE,
                                                             busybox_image: str) -> None:
    assert stack.orion is not None
    both = ("urn:ngsi-ld:Service:a_b:Component:c", "urn:ngsi-ld:Service:a:b_Component:c")
    for eid in both:
        stack.orion.create_entity(eid, "ServiceComponent")
    stack.driver.apply(Stack.scd("amb", ie, busybox_image, component="Service_a_b_Component_c",
                                 cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("amb") == "Running" and (
        stack.condition("amb", "BrokerSynced") or {}).get("reason") == "EntityAmbiguous",
        timeout=60)
    message = stack.condition("amb", "BrokerSynced")["message"]  # type: ignore[index]
    assert all(eid in message for eid in both)
    assert all(stack.orion.status_history(eid) == [] for eid in both)
    delete_and_wait(stack, "amb")
    assert all(stack.orion.status_history(eid) == [] for eid in both)
    assert_one_container_per(stack, [])
