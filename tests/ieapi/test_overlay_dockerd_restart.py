"""The IE's Docker Engine restarts under a container with an overlay (a dedicated private
dockerd, so the session's engine is never disturbed): the container comes back in a new network
namespace, and its overlay with it, without any call to the IE API (the start-event watcher
reconnects to the restarted daemon)."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from ieapi import create_app
from testbed.dockerd import (
    DOCKER_API_VERSION,
    Dockerd,
    restart_dockerd,
)
from testbed.images import ensure_busybox
from tests.ieapi.helpers import TOKEN, IEApiClient, SettingsFactory, eventually
from tests.ieapi.test_overlay_real import component, overlay_up, reaches
from tests.support.wghub import Hub, leftovers, needs_wireguard

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              needs_wireguard]


def test_overlay_comes_back_after_a_daemon_restart(
        own_dockerd: Dockerd, make_settings: SettingsFactory, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=own_dockerd.url, version=DOCKER_API_VERSION,
                                 timeout=30)
    hub = Hub(tmp_path / "hub").start()
    settings = make_settings(docker_host=own_dockerd.url)
    ie = IEApiClient(create_app(settings).test_client(), settings, TOKEN)
    try:
        image = ensure_busybox(client)
        overlay = hub.client("web")
        assert ie.put("ns.web", component(image, "web", overlay)).status == 201
        eventually(lambda: overlay_up(ie, "ns.web"), timeout=30)
        name = ie.container_name("ns.web")
        before = client.containers.get(name).attrs
        restart_dockerd(own_dockerd)

        def back() -> bool:
            state = client.containers.get(name).attrs["State"]
            return bool(state["Running"] and state["Pid"] != before["State"]["Pid"]
                        and reaches(client, name, hub.address))

        assert eventually(back, timeout=60, interval=1)
        assert client.containers.get(name).id == before["Id"]  # the same container, restarted
        assert ie.delete("ns.web").body["deleted"] is True
        eventually(lambda: leftovers(before["Id"]) == [], timeout=15)
    finally:
        ie.engine.close()
        hub.stop()
        client.close()
