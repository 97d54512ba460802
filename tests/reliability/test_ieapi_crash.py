"""The IE API crashes (SIGKILL of its whole process group) in the middle of work, then comes back
on the same port. "Middle" is made real: a pull held midway by a gated relay in front of a real
registry, or a container whose stop takes seconds (PID 1 `sleep` ignores SIGTERM, no init) so
that ieapi is inside Docker's stop when it dies.

Each test checks: every hook answered 200 within Metacontroller's 10 s, the conditions named the
fault while it lasted, the work completed once the IE API was back, and the IE then holds
exactly one container per live SCD and none of a deleted one.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from testbed.stack import NAMESPACE, Stack
from tests.reliability.helpers import (
    SCD_KIND,
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    condition_history,
    container_labels,
    entity,
    kill_ieapi,
    ready_ie,
    reasons_seen,
    report,
)
from tests.support.registry import gated_image

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

# A stop that takes this long keeps ieapi inside Docker's stop while the hook's 3 s read
# timeout (FAST_HOOKS_ENV) has already given up on the call.
SLOW_STOP = {"IEAPI_CONTAINER_INIT": "false", "IEAPI_STOP_TIMEOUT_SECONDS": "8"}
IE_DOWN = {"IEUnreachable", "IENotReady"}


def test_killed_while_pulling_then_restarted(stack: Stack, docker_client: docker.DockerClient,
                                            busybox_image: str, tmp_path: Path) -> None:
    ie = ready_ie(stack)
    assert stack.orion is not None
    stack.orion.create_entity(entity("web"), "ServiceComponent")
    with gated_image(docker_client, busybox_image, tmp_path / "registry") as (image, relay):
        stack.driver.apply(Stack.scd("web", ie, image, cliArgs=SLEEP))
        stack.driver.run_until(
            lambda: (stack.condition("web", "ContainerReady") or {}).get("reason")
            == "ImagePulling", timeout=30)
        relay.wait_until_holding(1)  # a layer download is parked: the pull is midway
        assert stack.scd_status("web")["container"]["state"] == "pulling"

        kill_ieapi(ie)
        outage = len(stack.driver.hook_calls)
        stack.driver.run_for(20)
        assert reasons_seen(stack.driver, "web", "IEReady") & IE_DOWN
        assert stack.phase("web") != "Running"
        assert ie.containers(stack.client) == []

        ie.start()
        relay.release()
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=120)
        assert_hooks_answered(stack.driver, outage)
    slowest = assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["web"]})
    (container,) = ie.containers(stack.client)
    assert container.attrs["Config"]["Image"] == image
    report("ieapi killed mid-pull", slowest_hook_s=round(slowest, 2),
           ie_ready=condition_history(stack.driver, "web", "IEReady"))
    assert stack.orion.status_history(entity("web"))[-1] == "Running"


def test_killed_while_replacing_then_restarted(stack: Stack, busybox_image: str) -> None:
    ie = ready_ie(stack, **SLOW_STOP)
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    old_hash = container_labels(stack, ie, "web")["llo.aeros-project.eu/spec-hash"]

    new_args = [{"key": "sleep"}, {"key": "3601"}]
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=new_args))
    # The ensure is stopping the old container; the hook gave up waiting after its read timeout.
    stack.driver.run_until(
        lambda: "IEUnreachable" in reasons_seen(stack.driver, "web", "IEReady"), timeout=30)
    (old,) = ie.containers(stack.client)
    assert old.labels["llo.aeros-project.eu/spec-hash"] == old_hash  # midway: not replaced yet
    kill_ieapi(ie)

    stack.driver.run_for(10)
    assert {"IEUnreachable"} <= reasons_seen(stack.driver, "web", "IEReady")
    messages = [m for _, r, m in condition_history(stack.driver, "web", "IEReady")
                if r == "IEUnreachable"]
    assert any("read timeout" in m for m in messages), messages
    assert any("refused" in m.lower() or "connect" in m for m in messages), messages

    ie.start()
    stack.driver.run_until(
        lambda: stack.phase("web") == "Running"
        and stack.scd_status("web").get("observedGeneration") == 2
        and container_labels(stack, ie, "web")["llo.aeros-project.eu/spec-hash"] != old_hash,
        timeout=120)
    slowest = assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["web"]})
    (container,) = ie.containers(stack.client)
    assert container.attrs["Config"]["Cmd"] == ["sleep", "3601"]
    report("ieapi killed mid-replace", slowest_hook_s=round(slowest, 2),
           ie_ready=condition_history(stack.driver, "web", "IEReady"))


def test_killed_while_deleting_then_restarted(stack: Stack, busybox_image: str) -> None:
    ie = ready_ie(stack, **SLOW_STOP)
    assert stack.orion is not None
    stack.orion.create_entity(entity("web"), "ServiceComponent")
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)

    stack.driver.delete(SCD_KIND, "web", NAMESPACE)
    stack.driver.run_until(lambda: len(stack.driver.calls("finalize")) >= 1, timeout=30)
    # The DELETE is inside Docker's stop (8 s) and the hook stopped waiting (3 s): kill now.
    assert len(ie.containers(stack.client)) == 1
    kill_ieapi(ie)

    stack.driver.run_for(30)
    assert stack.get_scd("web") is not None, "finalizer released while the IE was down"
    ready = stack.condition("web", "Ready") or {}
    assert ready.get("reason") in {"DeletePending", "Terminating"}, ready
    assert "edge-1" in ready.get("message", ""), ready

    ie.start()
    stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=120)
    slowest = assert_hooks_answered(stack.driver)
    report("ieapi killed mid-delete", slowest_hook_s=round(slowest, 2),
           ready=condition_history(stack.driver, "web", "Ready"))
    assert_exactly(stack, {ie.name: []})
    assert stack.client.networks.list(
        filters={"label": f"llo.aeros-project.eu/managed-by={ie.instance_id}"}) == []
    assert stack.orion.status_history(entity("web"))[-2:] == ["Removing", "Finished"]
