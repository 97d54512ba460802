"""End to end over NATS: the hooks under gunicorn reach IEs whose agents only dial out, through
a real nats-server; the lifecycle, migration between an HTTP IE and a NATS IE, and the faults
that matter (no agent, agent killed, NATS server restarted, agent slower than the budget)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from testbed.manifests import FINALIZER_PREFIX
from testbed.natsbus import NatsServer, add_nats_ie, add_ready_nats_ie
from testbed.stack import NAMESPACE, Stack
from tests.e2e.helpers import (
    DIE_KIND,
    SCD_KIND,
    assert_one_container_per,
    container_of,
    delete_and_wait,
    deploy,
    entity,
)
from tests.migration.helpers import assert_only_on, select, start_component
from tests.support.faults import StallServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "3600"}]


@pytest.fixture
def stack(dockerd: str, busybox_image: str, tmp_path: Path,
          nats_server: NatsServer) -> Iterator[Stack]:
    with Stack(tmp_path, dockerd, hooks_env=nats_server.hooks_env()) as whole:
        yield whole


def _die_condition(stack: Stack, name: str) -> dict[str, str]:
    die = stack.driver.get(DIE_KIND, name) or {}
    for condition in (die.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def test_lifecycle_over_nats(stack: Stack, nats_server: NatsServer, busybox_image: str) -> None:
    ie = add_ready_nats_ie(stack, nats_server, "edge-nat-1")
    die = stack.driver.get(DIE_KIND, ie.name) or {}
    assert die["spec"]["api"]["url"].startswith("nats://")
    status = deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
    assert status["placement"]["apiUrl"] == nats_server.url
    assert status["broker"]["reported"] == "Running"
    running = container_of(stack, "web")
    assert running.status == "running"
    assert running.id == status["container"]["id"]
    assert stack.driver.warnings() == []
    assert_one_container_per(stack, ["web"])
    delete_and_wait(stack, "web")
    with pytest.raises(docker.errors.NotFound):
        stack.client.containers.get(running.id)
    assert stack.orion is not None
    assert stack.orion.status_history(entity("web")) == ["Starting", "Running", "Removing",
                                                         "Finished"]
    assert_one_container_per(stack, [])


def test_ie_without_agent_is_unreachable_at_once(stack: Stack, nats_server: NatsServer) -> None:
    """No responders: the server knows nobody serves the subject, so the probe fails at once
    (well under the 3 s read timeout), not after it."""
    ie = add_nats_ie(stack, nats_server, "edge-nat-none", start=False)
    stack.driver.apply(ie.die())
    stack.driver.run_until(lambda: bool(_die_condition(stack, ie.name)), timeout=30)
    condition = _die_condition(stack, ie.name)
    assert condition["status"] == "False"
    assert condition["reason"] == "IEUnreachable"
    assert "no agent is serving this IE on NATS" in condition["message"]
    (probe,) = stack.driver.calls("sync", "llo-docker-die")[-1:]
    assert probe.status_code == 200
    assert probe.seconds < 2.5, probe.seconds  # the read timeout is 3 s


def test_agent_killed_and_reconnecting(stack: Stack, nats_server: NatsServer,
                                       busybox_image: str) -> None:
    ie = add_ready_nats_ie(stack, nats_server, "edge-nat-2")
    status = deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
    first = status["container"]["id"]
    assert ie.server is not None
    ie.server.process.send_signal(signal.SIGKILL)
    ie.server.process.wait(10)
    stack.driver.run_until(lambda: stack.phase("web") == "Unknown", timeout=120)
    assert stack.condition("web", "IEReady") is not None
    assert "no agent is serving" in stack.scd_status("web")["message"]
    ie.start()
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=120)
    assert container_of(stack, "web").id == first  # the same container: nothing recreated
    assert_one_container_per(stack, ["web"])


def test_nats_server_restarted_mid_operation(dockerd: str, busybox_image: str, tmp_path: Path
                                             ) -> None:
    """The server goes away between the intent and the create, and again while a delete is
    pending: no duplicate container, and the delete is done once the server is back."""
    with NatsServer(tmp_path / "own-nats") as bus, \
            Stack(tmp_path / "stack", dockerd, hooks_env=bus.hooks_env()) as stack:
        ie = add_ready_nats_ie(stack, bus, "edge-nat-3")
        assert stack.orion is not None
        stack.orion.create_entity(entity("web"), "ServiceComponent")
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: "placement" in stack.scd_status("web"), timeout=30)
        bus.stop()
        stack.driver.run_for(10)
        assert stack.phase("web") != "Running"
        assert_one_container_per(stack, [])
        bus.start()
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=120)
        assert_one_container_per(stack, ["web"])
        running = container_of(stack, "web").id

        bus.stop()
        stack.driver.delete(SCD_KIND, "web", NAMESPACE)
        stack.driver.run_for(30)
        held = stack.get_scd("web")
        assert held is not None  # not lost: the finalizer waits for the IE
        assert any(f.startswith(FINALIZER_PREFIX) for f in held["metadata"]["finalizers"])
        assert container_of(stack, "web").id == running
        bus.start()
        stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=300)
        assert_one_container_per(stack, [])


def test_agent_slower_than_the_hook_budget(stack: Stack, nats_server: NatsServer) -> None:
    """An agent whose Docker never answers: the hook still answers in time, with the IE
    unreachable (no answer within the read timeout), and Metacontroller sees a 200."""
    with StallServer() as stall:
        ie = add_nats_ie(stack, nats_server, "edge-nat-slow", start=False,
                         env={"DOCKER_HOST": stall.url.replace("http://", "tcp://")})
        ie.start(wait_for_info=False)  # its `info` would hang on the stalled Docker
        stack.driver.apply(ie.die())
        stack.driver.run_until(lambda: bool(_die_condition(stack, ie.name)), timeout=30)
        condition = _die_condition(stack, ie.name)
        assert condition["reason"] == "IEUnreachable"
        assert "no answer within the read timeout" in condition["message"]
        probe = stack.driver.calls("sync", "llo-docker-die")[-1]
        assert probe.status_code == 200
        assert probe.seconds < 10.0
        ie.stop()


def test_migration_between_http_and_nats_ies(stack: Stack, nats_server: NatsServer,
                                              busybox_image: str) -> None:
    http_ie = stack.add_ready_ie("edge-http")
    nats_ie = add_ready_nats_ie(stack, nats_server, "edge-nat-4")
    manifest = start_component(stack, "web", http_ie, busybox_image, cliArgs=SLEEP)
    select(stack, manifest, nats_ie)
    stack.driver.run_until(lambda: stack.scd_status("web").get("placement", {}).get("ie")
                           == nats_ie.name and not stack.scd_status("web").get(
                               "pendingCleanups"), timeout=120)
    assert_only_on(stack, "web", nats_ie)
    select(stack, manifest, http_ie)
    stack.driver.run_until(lambda: stack.scd_status("web").get("placement", {}).get("ie")
                           == http_ie.name and not stack.scd_status("web").get(
                               "pendingCleanups"), timeout=120)
    assert_only_on(stack, "web", http_ie)


def test_cordon_over_nats_stops_new_placements_only(stack: Stack, nats_server: NatsServer,
                                                    busybox_image: str) -> None:
    """The operator's cordon (annotation apiReady: "false") is transport-blind: the same
    story as tests/e2e/test_gate.py, with the IE behind NATS."""
    ie = add_ready_nats_ie(stack, nats_server, "edge-nat-5")
    first = deploy(stack, ie, "first", busybox_image, cliArgs=SLEEP)["container"]["id"]
    stack.driver.apply(ie.die(annotations={"apiReady": "false"}))
    stack.driver.apply(Stack.scd("second", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("second") == "Pending", timeout=30)
    stack.driver.run_for(60)
    assert stack.scd_status("second")["reason"] == "IECordoned"
    assert stack.phase("first") == "Running"
    assert container_of(stack, "first").id == first
    assert_one_container_per(stack, ["first"])
    stack.driver.apply(ie.die())
    stack.driver.run_until(lambda: stack.phase("second") == "Running", timeout=60)
    assert_one_container_per(stack, ["first", "second"])
