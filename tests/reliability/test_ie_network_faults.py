"""An IE API that accepts connections and never answers (a raw socket server on its port), and
one whose port is closed. The hooks must answer within their timeout, say what is wrong, and
finish the work once the IE API is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.stack import NAMESPACE, Stack
from tests.reliability.helpers import (
    SCD_KIND,
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    condition_history,
    die_condition,
    die_ready,
    ready_ie,
    reasons_seen,
    report,
)
from tests.support.faults import StallServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


READ_TIMEOUT = 1.5  # shorter than FAST_HOOKS_ENV's 3 s: each call to the silent IE waits it out


def test_ie_that_never_answers(dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    with Stack(tmp_path, dockerd,
               hooks_env={"LLO_IE_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT)}) as stack:
        _never_answers(stack, busybox_image)


def _never_answers(stack: Stack, busybox_image: str) -> None:
    ie = ready_ie(stack)
    for name in ("web", "old"):
        stack.driver.apply(Stack.scd(name, ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(
        lambda: stack.phase("web") == "Running" and stack.phase("old") == "Running", timeout=60)

    ie.stop()
    with StallServer(ie.port) as stall:
        # A spec change and a delete arrive while the IE API hangs; the DIE still says ready.
        stack.driver.apply(Stack.scd("web", ie, busybox_image,
                                     cliArgs=[{"key": "sleep"}, {"key": "3601"}]))
        stack.driver.delete(SCD_KIND, "old", NAMESPACE)
        start = len(stack.driver.hook_calls)
        stack.driver.run_until(
            lambda: not die_ready(stack, ie.name)
            and "IEUnreachable" in reasons_seen(stack.driver, "web", "IEReady")
            and any(c.hook == "finalize" for c in stack.driver.hook_calls[start:]), timeout=30)
        assert stall.accepted > 0  # the hooks really reached the silent peer
        hung = [c.seconds for c in stack.driver.hook_calls[start:]]
        slowest = assert_hooks_answered(stack.driver, start)
        assert slowest >= READ_TIMEOUT * 0.9, hung  # waited out the read timeout, not refused
        history = condition_history(stack.driver, "web", "IEReady")
        assert any(r == "IEUnreachable" and "no answer within the read timeout" in m
                   for _, r, m in history), history
        assert not die_ready(stack, ie.name)
        assert "read timeout" in die_condition(stack, ie.name, "Reachable").get("message", "")
        assert stack.get_scd("old") is not None  # finalizer held: the IE never confirmed
        assert stack.phase("web") != "Running"

    ie.start()
    stack.driver.run_until(
        lambda: stack.get_scd("old") is None and stack.phase("web") == "Running"
        and stack.scd_status("web").get("observedGeneration") == 2, timeout=120)
    assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["web"]})
    (container,) = ie.containers(stack.client)
    assert container.attrs["Config"]["Cmd"] == ["sleep", "3601"]
    report("IE never answers", slowest_hook_s=round(slowest, 2), calls_while_hung=len(hung),
           die_reachable=die_condition(stack, ie.name, "Reachable").get("reason"))


def test_ie_that_refuses_connections(stack: Stack, busybox_image: str) -> None:
    ie = stack.add_ie("edge-1", start=False)  # nothing listens on its port yet
    stack.driver.apply(ie.die())
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_for(20)
    reachable = die_condition(stack, ie.name, "Reachable")
    assert reachable.get("status") == "False", reachable
    assert reachable.get("reason") == "IEUnreachable", reachable
    assert "Connection refused" in reachable.get("message", ""), reachable
    assert stack.phase("web") == "Pending"
    ready = stack.condition("web", "IEReady") or {}
    assert ready.get("reason") == "IENotReady", ready
    assert "refused" in ready.get("message", ""), ready
    refused_slowest = assert_hooks_answered(stack.driver)

    ie.start()
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["web"]})
    report("IE refuses connections", slowest_hook_s=round(refused_slowest, 2),
           die_reachable=reachable.get("reason"))
