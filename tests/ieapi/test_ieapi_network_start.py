"""Containers of one service start in parallel (the network lock covers the create only), so a
container created but not yet started must keep its service network alive: Docker lists it by
the network's name only, and would remove the network under it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker

from ieapi.contract import ContainerSpec
from ieapi.desired import desired_container
from tests.ieapi.helpers import IEApiClient, sleeper_spec


def test_created_container_keeps_its_network_when_the_last_running_one_goes(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    engine = ie.engine
    network = f"{ie.settings.container_prefix}-net-svc-start"
    assert ie.put("ns.one", sleeper_spec(busybox_image, service="svc-start",
                                         alias="one")).status == 201
    # What an ensure has done just before its (unlocked) start: created on the network.
    desired = desired_container("ns.two", ContainerSpec.model_validate(
        sleeper_spec(busybox_image, service="svc-start", alias="two")), ie.settings)
    net_id = docker_client.networks.get(network).id
    created = engine._create(desired, net_id)
    assert ie.delete("ns.one").body["deleted"] is True
    assert docker_client.networks.get(network).id == net_id  # kept for the created one
    docker_client.api.start(created)
    assert docker_client.containers.get(created).status == "running"
    assert ie.delete("ns.two").body["deleted"] is True
    assert not docker_client.networks.list(names=[network])


def test_starts_of_one_service_overlap(ie: IEApiClient, busybox_image: str,
                                       monkeypatch: Any) -> None:
    """Two creates in one service: the second start begins before the first one ends."""
    engine = ie.engine
    active, overlap = [0], [False]
    lock = threading.Lock()
    real_start = engine._api.start

    def slow_start(container: str) -> None:
        with lock:
            active[0] += 1
            overlap[0] = overlap[0] or active[0] > 1
        time.sleep(0.5)
        try:
            real_start(container)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(engine._api, "start", slow_start)
    specs = [("ns.a", "a"), ("ns.b", "b")]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda s: engine.ensure(s[0], ContainerSpec.model_validate(
            sleeper_spec(busybox_image, service="svc-par", alias=s[1]))), specs))
    assert [a.status.state.value for a in answers] == ["running", "running"]
    assert overlap[0]


def test_stops_of_one_service_overlap(ie: IEApiClient, busybox_image: str,
                                      monkeypatch: Any) -> None:
    """Two deletes in one service: the second stop begins before the first one ends, and the
    network still goes with the last container."""
    engine = ie.engine
    for name in ("a", "b"):
        assert ie.put(f"ns.{name}", sleeper_spec(busybox_image, service="svc-stop",
                                                 alias=name)).status == 201
    active, overlap = [0], [False]
    lock = threading.Lock()
    real_stop = engine._api.stop

    def slow_stop(container: str, **kwargs: Any) -> None:
        with lock:
            active[0] += 1
            overlap[0] = overlap[0] or active[0] > 1
        time.sleep(0.5)
        try:
            real_stop(container, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(engine._api, "stop", slow_stop)
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(engine.delete, ["ns.a", "ns.b"])) == [True, True]
    assert overlap[0]
    assert not ie.engine._find_networks(f"{ie.settings.container_prefix}-net-svc-stop",
                                        managed_only=True)
