"""Real WireGuard overlays through the IE API: a hub (wireguard-go + dnsmasq in a network
namespace this test creates, tests/support/wghub.py) and components on two IEs (two IE API
apps with their own instance ids on the session's dockerd, as on two machines).

Every packet stays on this machine: the WireGuard UDP sockets are on the host's loopback, the
tunnels end in the hub's and the containers' namespaces. Skipped only where the machine lacks
the tools (no TUN device, no wireguard-go/wg/dnsmasq, not root); the skip message says which.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from ieapi import create_app
from testbed.dockerd import remove_managed
from tests.ieapi.helpers import TOKEN, IEApiClient, SettingsFactory, eventually, sleeper_spec
from tests.support.wghub import Hub, leftovers, needs_wireguard

pytestmark = needs_wireguard

SERVICE = "urn:ngsi-ld:Service:overlay"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub(tmp_path / "hub").start()
    yield hub
    hub.stop()
    assert subprocess.run(["ip", "netns", "pids", hub.netns], capture_output=True,
                          check=False).returncode != 0  # the namespace is gone


@pytest.fixture
def two_ies(make_settings: SettingsFactory,
            docker_client: docker.DockerClient) -> Iterator[tuple[IEApiClient, IEApiClient]]:
    clients = []
    for _ in range(2):
        instance = f"ovl-{uuid.uuid4().hex[:8]}"
        settings = make_settings(instance_id=instance, container_prefix=f"o{instance[-6:]}",
                                 overlay_handshake_grace_seconds=20)
        clients.append(IEApiClient(create_app(settings).test_client(), settings, TOKEN))
    yield clients[0], clients[1]
    for client in clients:
        remove_managed(docker_client, client.settings.managed_by)
        client.engine.close()


def component(image: str, name: str, overlay: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return sleeper_spec(image, service=SERVICE, alias=name, networkOverlay=overlay, **extra)


def overlay_up(ie: IEApiClient, name: str) -> dict[str, Any]:
    answer = ie.get(name)
    assert answer.status == 200, answer.body
    overlay = answer.body["overlay"]
    assert overlay["state"] == "up", overlay
    return dict(answer.body)


def in_container(client: docker.DockerClient, container: str, *cmd: str) -> tuple[int, str]:
    code, out = client.containers.get(container).exec_run(list(cmd))
    return int(code), out.decode(errors="replace")


def reaches(client: docker.DockerClient, container: str, target: str) -> bool:
    code, _ = in_container(client, container, "ping", "-c", "1", "-W", "2", target)
    return code == 0


def test_components_on_two_ies_reach_each_other_by_address_and_name(
        two_ies: tuple[IEApiClient, IEApiClient], hub: Hub, busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    ie_a, ie_b = two_ies
    assert ie_a.info().body["wireguard"] in ("kernel", "userspace")
    overlay_a, overlay_b = hub.client("comp-a"), hub.client("comp-b")
    first = ie_a.put("ns.comp-a", component(busybox_image, "comp-a", overlay_a))
    assert first.status == 201, first.body
    assert first.body["overlay"]["address"] == f"{overlay_a['internalIp']}/32"
    assert first.body["overlay"]["state"] in ("pending", "up")
    assert ie_b.put("ns.comp-b", component(busybox_image, "comp-b", overlay_b)).status == 201
    # A neighbour on comp-a's service network, without overlay: its name must still resolve.
    assert ie_a.put("ns.comp-a2", sleeper_spec(busybox_image, service=SERVICE,
                                               alias="comp-a2")).status == 201

    body_a = eventually(lambda: overlay_up(ie_a, "ns.comp-a"), timeout=30)
    eventually(lambda: overlay_up(ie_b, "ns.comp-b"), timeout=30)
    assert body_a["overlay"]["reason"] == "OverlayUp"
    assert body_a["overlay"]["latestHandshake"].endswith("Z")
    assert all(stamp > 0 for stamp in hub.latest_handshakes().values())  # seen by the hub too

    a, b = ie_a.container_name("ns.comp-a"), ie_b.container_name("ns.comp-b")
    assert eventually(lambda: reaches(docker_client, a, overlay_b["internalIp"]), timeout=20)
    assert eventually(lambda: reaches(docker_client, b, overlay_a["internalIp"]), timeout=20)
    # By name: the overlay's DNS (the hub's dnsmasq) through Docker's embedded DNS...
    assert eventually(lambda: reaches(docker_client, a, "comp-b"), timeout=20)
    code, out = in_container(docker_client, a, "nslookup", "-type=a", "comp-b")
    assert code == 0, out
    assert overlay_b["internalIp"] in out, out
    # ...while the service network's own names keep working.
    a2_ip = docker_client.containers.get(ie_a.container_name("ns.comp-a2")).attrs[
        "NetworkSettings"]["Networks"].popitem()[1]["IPAddress"]
    code, out = in_container(docker_client, a, "nslookup", "-type=a", "comp-a2")
    assert code == 0, out
    assert a2_ip in out, out
    code, resolv = in_container(docker_client, a, "cat", "/etc/resolv.conf")
    assert "127.0.0.11" in resolv
    # The route for allowedIps goes through wg0, inside the container only.
    code, routes = in_container(docker_client, a, "ip", "route")
    assert f"{hub.subnet} dev wg0" in routes, routes


def test_restart_replacement_and_teardown(
        two_ies: tuple[IEApiClient, IEApiClient], hub: Hub, busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    ie_a, ie_b = two_ies
    overlay_a, overlay_b = hub.client("comp-a"), hub.client("comp-b")
    assert ie_a.put("ns.comp-a", component(busybox_image, "comp-a", overlay_a)).status == 201
    assert ie_b.put("ns.comp-b", component(busybox_image, "comp-b", overlay_b)).status == 201
    eventually(lambda: overlay_up(ie_a, "ns.comp-a"), timeout=30)
    a = ie_a.container_name("ns.comp-a")
    assert eventually(lambda: reaches(docker_client, a, overlay_b["internalIp"]), timeout=20)
    old_pid = docker_client.containers.get(a).attrs["State"]["Pid"]

    # Restart by the container's own restart policy (PID 1 dies): the namespace is new, the
    # overlay follows without any call to the IE API (docker events), old process gone.
    container_id = docker_client.containers.get(a).id
    subprocess.run(["kill", "-9", str(old_pid)], check=True)

    def restarted_and_up() -> bool:
        attrs = docker_client.containers.get(a).attrs
        return bool(attrs["State"]["Running"] and attrs["State"]["Pid"] != old_pid
                    and reaches(docker_client, a, overlay_b["internalIp"]))

    assert eventually(restarted_and_up, timeout=40, interval=0.5)
    assert len([p for p in leftovers(container_id) if p.startswith("process")]) <= 1

    # Replacement (a spec change): the new container gets the overlay, the old one's is gone.
    changed = component(busybox_image, "comp-a", overlay_a,
                        envVars=[{"key": "GENERATION", "value": "2"}])
    assert ie_a.put("ns.comp-a", changed).status == 201
    new_id = docker_client.containers.get(a).id
    assert new_id != container_id
    eventually(lambda: leftovers(container_id) == [], timeout=15)
    assert eventually(lambda: reaches(docker_client, a, overlay_b["internalIp"]), timeout=30)

    # Teardown: nothing of either overlay is left on the IE.
    b_id = docker_client.containers.get(ie_b.container_name("ns.comp-b")).id
    assert ie_a.delete("ns.comp-a").body["deleted"] is True
    assert ie_b.delete("ns.comp-b").body["deleted"] is True
    eventually(lambda: leftovers(new_id) == [] and leftovers(b_id) == [], timeout=15)


def test_migration_moves_the_overlay(
        two_ies: tuple[IEApiClient, IEApiClient], hub: Hub, busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    """What the hooks do on a migration (make-before-break): ensure on the new IE, then
    delete on the old one. The peer keeps its key and address, so the hub follows it."""
    ie_a, ie_b = two_ies
    overlay_m, overlay_p = hub.client("mover"), hub.client("probe")
    assert ie_a.put("ns.mover", component(busybox_image, "mover", overlay_m)).status == 201
    assert ie_a.put("ns.probe", component(busybox_image, "probe", overlay_p)).status == 201
    eventually(lambda: overlay_up(ie_a, "ns.mover"), timeout=30)
    old_id = docker_client.containers.get(ie_a.container_name("ns.mover")).id
    probe = ie_a.container_name("ns.probe")
    assert eventually(lambda: reaches(docker_client, probe, "mover"), timeout=20)

    assert ie_b.put("ns.mover", component(busybox_image, "mover", overlay_m)).status == 201
    assert ie_a.delete("ns.mover").body["deleted"] is True
    eventually(lambda: leftovers(old_id) == [], timeout=15)
    eventually(lambda: overlay_up(ie_b, "ns.mover"), timeout=30)
    new = ie_b.container_name("ns.mover")
    # Until the old container is gone it may still send with the same key, and the hub then
    # follows it (WireGuard roaming); the new one's next keepalive (25 s) brings it back.
    assert eventually(lambda: reaches(docker_client, probe, "mover"), timeout=60)
    assert eventually(lambda: reaches(docker_client, new, overlay_p["internalIp"]), timeout=20)


def test_private_key_stays_secret(
        two_ies: tuple[IEApiClient, IEApiClient], hub: Hub, busybox_image: str,
        docker_client: docker.DockerClient, caplog: pytest.LogCaptureFixture) -> None:
    ie_a, _ = two_ies
    overlay = hub.client("secret")
    key = overlay["privateKey"]
    answer = ie_a.put("ns.secret", component(busybox_image, "secret", overlay))
    assert answer.status == 201
    eventually(lambda: overlay_up(ie_a, "ns.secret"), timeout=30)
    container = docker_client.containers.get(ie_a.container_name("ns.secret"))
    texts = [str(answer.body), str(ie_a.get("ns.secret").body), str(ie_a.list().body),
             str(container.attrs), caplog.text]
    for proc in Path("/proc").glob("[0-9]*"):
        for part in ("cmdline", "environ"):
            try:
                texts.append((proc / part).read_bytes().decode(errors="replace"))
            except OSError:
                continue
    # (this test's own process holds the key in memory, never in its argv or environment)
    assert not [t for t in texts if key in t]
    bad = ie_a.put("ns.bad", component(busybox_image, "bad", {**overlay, "publicKey": key[:-4]}))
    assert bad.status == 400
    assert bad.body["error"]["field"] == "networkOverlay.publicKey"
    assert key not in str(bad.body)


def test_unreachable_hub_and_unresolvable_endpoint_are_reported(
        make_settings: SettingsFactory, hub: Hub, busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    settings = make_settings(overlay_handshake_grace_seconds=2)
    ie = IEApiClient(create_app(settings).test_client(), settings, TOKEN)
    try:
        silent = {**hub.client("lost"), "endpoint": "127.0.0.1:9"}  # nobody answers there
        assert ie.put("ns.lost", component(busybox_image, "lost", silent)).status == 201
        time.sleep(2.5)
        overlay = ie.get("ns.lost").body["overlay"]
        assert (overlay["state"], overlay["reason"]) == ("down", "EndpointUnreachable")
        unresolvable = {**hub.client("nowhere"), "endpoint": "no-such-hub.invalid:51820"}
        answer = ie.put("ns.nowhere", component(busybox_image, "nowhere", unresolvable))
        assert answer.body["overlay"]["reason"] == "EndpointUnreachable", answer.body
        assert answer.body["state"] == "running"  # the container is kept; the hooks decide
    finally:
        remove_managed(docker_client, settings.managed_by)
        ie.engine.close()


def test_an_ie_without_wireguard_says_so(
        make_ie: Callable[..., IEApiClient], cleanup: None, hub: Hub,
        busybox_image: str) -> None:
    ie = make_ie(wireguard="off")
    assert ie.info().body["wireguard"] == "none"
    answer = ie.put("ns.nowg", component(busybox_image, "nowg", hub.client("nowg")))
    assert answer.status == 201
    assert (answer.body["overlay"]["state"], answer.body["overlay"]["reason"]) == (
        "down", "WireGuardUnsupported")
