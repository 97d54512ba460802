"""An overlay through the whole stack (hooks, Metacontroller driver, one ieapi per IE): two
components of one service on two IEs reach each other over a real WireGuard hub by name; the
status shows the tunnel; a migration moves it (make-before-break: the old container serves
until the new one's overlay is up); deletion leaves no interface, process or socket.

The hub is tests/support/wghub.py (wireguard-go + dnsmasq in a namespace the test makes);
every packet stays on this machine. Skipped only without the tools (no TUN device, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed.stack import IE, NAMESPACE, Stack
from tests.migration.helpers import (
    CONVERGE,
    SCD_KIND,
    SLEEP,
    container_id,
    container_name,
    containers_by_ie,
    select,
    settled_on,
    start_component,
)
from tests.support.wghub import Hub, leftovers, needs_wireguard

pytestmark = [pytest.mark.e2e, pytest.mark.docker,
              needs_wireguard]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(tmp_path / "hub").start()
    yield hub
    hub.stop()


def reaches(client: docker.DockerClient, container: str, target: str) -> bool:
    code, _ = client.containers.get(container).exec_run(["ping", "-c", "1", "-W", "2", target])
    return bool(code == 0)


def eventually_reaches(client: docker.DockerClient, container: str, target: str,
                       attempts: int = 30) -> bool:
    """Real time for real packets (the driver's clock is simulated): up to ~60 s."""
    return any(reaches(client, container, target) for _ in range(attempts))


def test_overlay_follows_the_component_and_goes_with_it(
        stack: Stack, busybox_image: str, hub: Hub, ie_a: IE, ie_b: IE, *, ie_c: IE) -> None:
    web = start_component(stack, "web", ie_a, busybox_image, cliArgs=SLEEP,
                          networkOverlay=hub.client("web"))
    start_component(stack, "peer", ie_b, busybox_image, cliArgs=SLEEP,
                    networkOverlay=hub.client("peer"))
    status = stack.scd_status("web")
    overlay = status["container"]["overlay"]
    assert overlay["address"] == f"{hub.names['web']}/32"
    assert overlay["state"] == "up"
    assert overlay["lastHandshake"] == "<3m"
    assert overlay["mode"] in ("kernel", "userspace")
    ready = stack.condition("web", "OverlayReady")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "OverlayUp")
    peer = container_name(ie_b, "peer")
    assert eventually_reaches(stack.client, peer, "web")
    assert eventually_reaches(stack.client, container_name(ie_a, "web"), "peer")
    old = container_id(stack, ie_a)
    assert old is not None

    # Migration: the new container is Running (overlay up) before the old one goes.
    select(stack, web, ie_c)
    stack.driver.run_until(lambda: settled_on(stack, "web", ie_c), timeout=CONVERGE)
    assert containers_by_ie(stack) == {ie_a.name: [], ie_b.name: [container_name(ie_b, "peer")],
                                       ie_c.name: [container_name(ie_c, "web")]}
    assert stack.scd_status("web")["container"]["overlay"]["state"] == "up"
    assert leftovers(old) == []
    assert eventually_reaches(stack.client, peer, "web")
    assert eventually_reaches(stack.client, container_name(ie_c, "web"), "peer")

    # Deletion: nothing of either overlay is left on the IE.
    ids = [container_id(stack, ie) for ie in (ie_b, ie_c)]
    for name in ("web", "peer"):
        stack.driver.delete(SCD_KIND, name, NAMESPACE)
    stack.driver.run_until(lambda: stack.get_scd("web") is None
                           and stack.get_scd("peer") is None, timeout=CONVERGE)
    assert all(ids)
    assert [leftovers(str(i)) for i in ids] == [[], []]
