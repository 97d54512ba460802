"""What one SCD costs from Metacontroller's API budget, through the real system.

Metacontroller spends a token of its client-go rate limit (``--client-go-qps``, default 5/s)
on every API request it makes for a parent: the GET before each finalizer or status update and
the update itself (tests/support/ratelimit.py). These counts are the floor the intent-first rule
allows (docs/architecture.md "Metacontroller's API budget"): a change that adds a write or a
sync per SCD fails here.
"""

from __future__ import annotations

import pytest

from testbed.ratelimit import ApiRequest, requests_for
from testbed.stack import FAST_HOOKS_ENV, IE, Stack
from tests.e2e.helpers import SCD_KIND, entity

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "3600"}]


def _apply(stack: Stack, ie: IE, name: str, image: str,
           service: str = "urn_ngsi-ld_Service_1") -> None:
    """The SCD and its ServiceComponent entity (which the HLO creates before the SCD)."""
    assert stack.orion is not None
    stack.orion.create_entity(entity(name), "ServiceComponent")
    stack.driver.apply(Stack.scd(name, ie, image, service=service, cliArgs=SLEEP))


def _verbs(log: list[ApiRequest]) -> list[str]:
    return [r.verb + ("" if r.found else " (404)") for r in log]


def test_one_scd_costs_six_requests_to_running_and_three_to_gone(
        stack: Stack, ie: IE, busybox_image: str) -> None:
    driver = stack.driver
    mark = len(driver.api_requests)
    _apply(stack, ie, "web", busybox_image)
    driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    applied = requests_for(driver.api_requests, "web", mark)
    assert _verbs(applied) == [
        "get", "update",               # the finalizer
        "get", "update-status",        # intent: the IE is named before any call to it
        "get", "update-status",        # Running, from the create's own answer
    ]
    phases = [w.status["phase"] for w in driver.status_writes if w.name == "web"]
    assert phases == ["Deploying", "Running"]  # no Deploying/ContainerCreated in between

    driver.run_for(5)  # nothing more until the steady resync
    assert len(requests_for(driver.api_requests, "web", mark)) == len(applied)
    # Steady resyncs: the same status, so a GET each and no write (a status the API server
    # prunes or defaults into something else would cost an UPDATE every time).
    driver.run_for(float(FAST_HOOKS_ENV["LLO_RESYNC_STEADY_SECONDS"]) * 2 + 1)
    steady = requests_for(driver.api_requests, "web", mark)[len(applied):]
    assert _verbs(steady) == ["get"] * 2

    mark = len(driver.api_requests)
    driver.delete(SCD_KIND, "web")
    driver.run_until(lambda: stack.get_scd("web") is None, timeout=60)
    assert _verbs(requests_for(driver.api_requests, "web", mark)) == [
        "get", "update",               # the finalizer goes: the finalize hook confirmed
        "get (404)",                   # the status update finds the object gone
    ]
    assert ie.containers(stack.client) == []


def test_a_service_applied_at_once_costs_the_same_per_scd(
        stack: Stack, ie: IE, busybox_image: str) -> None:
    """Eight components of one service applied together (one network, created concurrently on
    the IE's side as their syncs come): still three writes each, no retries, no extra syncs."""
    names = [f"part-{i}" for i in range(8)]
    mark = len(stack.driver.api_requests)
    for name in names:
        _apply(stack, ie, name, busybox_image, service="urn_ngsi-ld_Service_8")
    stack.driver.run_until(lambda: all(stack.phase(n) == "Running" for n in names), timeout=120)
    for name in names:
        log = requests_for(stack.driver.api_requests, name, mark)
        assert _verbs(log) == ["get", "update", "get", "update-status", "get",
                               "update-status"], name
    mark = len(stack.driver.api_requests)
    for name in names:
        stack.driver.delete(SCD_KIND, name)
    stack.driver.run_until(lambda: all(stack.get_scd(n) is None for n in names), timeout=120)
    for name in names:
        assert _verbs(requests_for(stack.driver.api_requests, name, mark)) == \
            ["get", "update", "get (404)"], name
    assert ie.containers(stack.client) == []
