"""Container lifecycle through the IE API (Flask test client) on a real dockerd."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import docker
import pytest
import requests

from ieapi.contract import (
    LABEL_COMPONENT,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
    LABEL_OWNER_UID,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
)
from testbed.images import INDEX_HTML, variant_tag
from testbed.procs import free_port
from tests.ieapi.helpers import (
    Answer,
    IEApiClient,
    eventually,
    httpd_spec,
    job_spec,
    sleeper_spec,
)

pytestmark = pytest.mark.docker


def test_create_runs_and_publishes_the_port(ie: IEApiClient, busybox_image: str,
                                            http: requests.Session) -> None:
    port = free_port()
    created = ie.put("ns.web", httpd_spec(busybox_image, port))
    assert created.status == 201, created.body
    assert created.body["state"] == "running"
    assert created.body["ports"] == [
        {"containerPort": port, "protocol": "TCP", "hostIp": "", "hostPort": port}]
    body = eventually(lambda: http.get(f"http://127.0.0.1:{port}/index.html", timeout=2).content)
    assert body == INDEX_HTML
    got = ie.get("ns.web")
    assert got.status == 200
    assert got.body["id"] == created.body["id"]
    assert got.body["startedAt"] is not None
    assert "finishedAt" not in got.body  # Docker's zero time is reported as absent


def test_same_spec_keeps_and_changed_spec_replaces(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    first = ie.put("ns.app", sleeper_spec(busybox_image))
    assert first.status == 201
    again = ie.put("ns.app", sleeper_spec(busybox_image))
    assert (again.status, again.body["id"]) == (200, first.body["id"])

    other_image = variant_tag(docker_client, "replaced")
    replaced = ie.put("ns.app", sleeper_spec(other_image))
    assert replaced.status == 201
    assert replaced.body["id"] != first.body["id"]
    assert replaced.body["image"] == other_image
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(first.body["id"])
    env_changed = ie.put("ns.app", sleeper_spec(other_image, envVars=[{"key": "A", "value": "1"}]))
    assert env_changed.status == 201
    assert env_changed.body["id"] != replaced.body["id"]


def test_delete_twice_second_is_not_an_error(ie: IEApiClient, busybox_image: str,
                                             docker_client: docker.DockerClient) -> None:
    created = ie.put("ns.gone", sleeper_spec(busybox_image))
    first = ie.delete("ns.gone")
    second = ie.delete("ns.gone")
    assert (first.status, first.body) == (200, {"name": "ns.gone", "deleted": True})
    assert (second.status, second.body) == (200, {"name": "ns.gone", "deleted": False})
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(created.body["id"])
    assert ie.get("ns.gone").status == 404


@pytest.mark.parametrize("exit_code", [0, 1])
def test_job_reports_exit_code_and_is_not_restarted(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient,
        exit_code: int) -> None:
    created = ie.put("ns.job", job_spec(busybox_image, exit_code))
    assert created.status == 201
    assert created.body["isJob"] is True
    finished = eventually(lambda: (a := ie.get("ns.job")).body["state"] == "exited" and a)
    assert finished.body["exitCode"] == exit_code
    assert finished.body["finishedAt"] is not None
    policy = docker_client.containers.get(created.body["id"]).attrs["HostConfig"]["RestartPolicy"]
    assert policy["Name"] == "no"
    # An ensure of the same spec leaves a finished job alone.
    again = ie.put("ns.job", job_spec(busybox_image, exit_code))
    assert again.status == 200
    assert (again.body["state"], again.body["exitCode"]) == ("exited", exit_code)
    assert again.body["startedAt"] == finished.body["startedAt"]
    assert again.body["restartCount"] == 0


def test_service_restarts_on_failure_and_is_started_again_after_clean_exit(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    crashing = ie.put("ns.crash", {"image": busybox_image,
                                   "cliArgs": [{"key": "sh"}, {"key": "-c", "value": "exit 3"}]})
    assert crashing.status == 201
    attrs = docker_client.containers.get(crashing.body["id"]).attrs
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    eventually(lambda: ie.get("ns.crash").body["restartCount"] >= 1)

    clean = {"image": busybox_image, "cliArgs": [{"key": "true"}]}
    first = ie.put("ns.clean", clean)
    stopped = eventually(lambda: (a := ie.get("ns.clean")).body["state"] == "exited" and a)
    assert stopped.body["exitCode"] == 0
    restarted = ie.put("ns.clean", clean)
    assert restarted.status == 200
    assert restarted.body["id"] == first.body["id"]
    assert restarted.body["startedAt"] != stopped.body["startedAt"]


def test_container_config_labels_command_env_and_no_secrets(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    spec = sleeper_spec(
        busybox_image,
        cliArgs=[{"key": "sh"}, {"key": "-c", "value": "sleep 600"}, {"key": "--flag"}],
        envVars=[{"key": "GREETING", "value": "hello world"}, {"key": "EMPTY"}],
        registryAuth={"url": "registry.invalid", "username": "u", "password": "s3cr3t-pw"},
        service="urn_ngsi-ld_Service_1", alias="my-comp",
        component="urn_ngsi-ld_Service_1_Component_1",
        owner={"namespace": "ns", "name": "my-comp", "uid": "uid-1"})
    created = ie.put("ns.my-comp", spec)
    assert created.status == 201
    attrs = docker_client.containers.get(created.body["id"]).attrs
    assert attrs["Name"] == f"/{ie.container_name('ns.my-comp')}"
    assert attrs["Config"]["Cmd"] == ["sh", "-c", "sleep 600", "--flag"]
    assert attrs["Config"]["Entrypoint"] is None
    assert "GREETING=hello world" in attrs["Config"]["Env"]
    assert "EMPTY=" in attrs["Config"]["Env"]
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == ie.settings.managed_by
    assert labels[LABEL_NAME] == "ns.my-comp"
    assert labels[LABEL_SPEC_HASH] == created.body["specHash"]
    assert (labels[LABEL_OWNER_NAMESPACE], labels[LABEL_OWNER_NAME],
            labels[LABEL_OWNER_UID]) == ("ns", "my-comp", "uid-1")
    assert labels[LABEL_SERVICE] == "urn_ngsi-ld_Service_1"
    assert labels[LABEL_COMPONENT] == "urn_ngsi-ld_Service_1_Component_1"
    assert "s3cr3t-pw" not in str(attrs)
    assert "s3cr3t-pw" not in str(created.body)


def test_service_members_resolve_each_other_by_alias(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    service = "svc-alias"
    server = ie.put("ns.backend", httpd_spec(busybox_image, 8080, exposePorts=False,
                                             service=service, alias="backend"))
    client = ie.put("ns.frontend", sleeper_spec(busybox_image, service=service,
                                                alias="frontend"))
    assert (server.status, client.status) == (201, 201)
    network = f"{ie.settings.container_prefix}-net-{service}"
    assert server.body["network"] == client.body["network"] == network
    frontend = docker_client.containers.get(client.body["id"])

    def fetch() -> bytes:
        code, output = frontend.exec_run(["wget", "-qO-", "http://backend:8080/index.html"])
        assert code == 0, output
        return bytes(output)

    assert eventually(fetch) == INDEX_HTML
    backend = docker_client.containers.get(server.body["id"])
    code, _ = backend.exec_run(["ping", "-c1", "-W2", "frontend"])
    assert code == 0


def test_network_is_removed_with_its_last_container(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    network = f"{ie.settings.container_prefix}-net-svc-gc"
    ie.put("ns.one", sleeper_spec(busybox_image, service="svc-gc", alias="one"))
    ie.put("ns.two", job_spec(busybox_image, 0, service="svc-gc", alias="two"))
    labels = docker_client.networks.get(network).attrs["Labels"]
    assert labels[LABEL_MANAGED] == ie.settings.managed_by
    assert ie.delete("ns.one").body["deleted"] is True
    # The exited job still belongs to the network: it stays.
    assert docker_client.networks.get(network).name == network
    assert ie.delete("ns.two").body["deleted"] is True
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(network)


def test_unmanaged_container_is_invisible_and_untouched(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    stranger = docker_client.containers.create(
        busybox_image, ["sleep", "600"], name=ie.container_name("ns.stranger"),
        labels={LABEL_MANAGED: "somebody-else"})
    ours = ie.put("ns.ours", sleeper_spec(busybox_image))
    try:
        assert ie.get("ns.stranger").status == 404
        assert [item["name"] for item in ie.list().body["items"]] == ["ns.ours"]
        assert ie.delete("ns.stranger").body == {"name": "ns.stranger", "deleted": False}
        refused = ie.put("ns.stranger", sleeper_spec(busybox_image))
        assert refused.status == 409
        assert refused.body["error"]["code"] == "Conflict"
        assert refused.body["error"]["field"] == "name"
        stranger.reload()
        assert stranger.attrs["Config"]["Labels"][LABEL_MANAGED] == "somebody-else"
        assert ours.status == 201
    finally:
        stranger.remove(force=True)


def test_privileged_refused_when_not_allowed(ie: IEApiClient, busybox_image: str,
                                             docker_client: docker.DockerClient) -> None:
    refused = ie.put("ns.priv", sleeper_spec(busybox_image, privileged=True))
    assert refused.status == 403
    assert refused.body["error"]["code"] == "PrivilegedNotAllowed"
    assert refused.body["error"]["field"] == "privileged"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(ie.container_name("ns.priv"))


def _host_runs_privileged(client: docker.DockerClient, image: str) -> bool:
    """A sandboxed test host may lack capabilities that a privileged container needs."""
    try:
        client.containers.run(image, ["true"], privileged=True, remove=True)
    except docker.errors.APIError:
        return False
    return True


def test_privileged_passes_the_gate_when_allowed(
        make_ie: Callable[..., IEApiClient], cleanup: None, busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    host_can = _host_runs_privileged(docker_client, busybox_image)
    allowed = make_ie(allow_privileged=True).put(
        "ns.priv", sleeper_spec(busybox_image, privileged=True))
    if host_can:
        assert allowed.status == 201, allowed.body
        attrs = docker_client.containers.get(allowed.body["id"]).attrs
        assert attrs["HostConfig"]["Privileged"] is True
    else:
        # A sandbox without every capability: Docker itself refuses; the IE API did not.
        assert allowed.status == 502, allowed.body
        assert allowed.body["error"]["code"] == "DockerError"
        assert "caps" in allowed.body["error"]["message"]


def test_port_in_use_is_409_and_leaves_no_container(
        ie: IEApiClient, busybox_image: str, docker_client: docker.DockerClient) -> None:
    port = free_port()
    assert ie.put("ns.first", httpd_spec(busybox_image, port)).status == 201
    clash = ie.put("ns.second", httpd_spec(busybox_image, port))
    assert clash.status == 409
    assert clash.body["error"]["code"] == "PortInUse"
    assert clash.body["error"]["field"] == "ports"
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(ie.container_name("ns.second"))


def test_network_overlay_refused_when_incomplete_and_ignored_when_empty(
        ie: IEApiClient, busybox_image: str) -> None:
    answer = ie.put("ns.overlay", sleeper_spec(
        busybox_image, networkOverlay={"internalIp": "10.0.0.2", "privateKey": "k3y"}))
    assert answer.status == 400
    assert answer.body["error"]["field"].startswith("networkOverlay.")
    assert "k3y" not in str(answer.body)
    empty = ie.put("ns.overlay", sleeper_spec(busybox_image, networkOverlay={}))
    assert empty.status == 201
    assert "overlay" not in empty.body
    assert empty.body["warnings"] == []


def _concurrently(calls: list[Callable[[], Answer]]) -> list[Answer]:
    barrier = threading.Barrier(len(calls))
    results: list[Answer | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_concurrent_puts_of_one_name_make_one_container(
        make_ie: Callable[..., IEApiClient], cleanup: None, busybox_image: str,
        docker_client: docker.DockerClient, processes: int) -> None:
    """Two apps with their own engines stand for two gunicorn workers (no shared lock)."""
    apps = [make_ie() for _ in range(processes)]
    spec: dict[str, Any] = sleeper_spec(busybox_image, service="svc-race", alias="race")
    answers = _concurrently([
        functools.partial(apps[i % processes].put, "ns.race", spec) for i in range(4)])
    assert all(answer.status in (200, 201) for answer in answers), answers
    ids = {answer.body["id"] for answer in answers}
    assert len(ids) == 1
    network = f"{apps[0].settings.container_prefix}-net-svc-race"
    assert {answer.body["network"] for answer in answers} == {network}
    label = {"label": f"{LABEL_MANAGED}={apps[0].settings.managed_by}"}
    assert [c.id for c in docker_client.containers.list(all=True, filters=label)] == list(ids)
    assert [net.name for net in docker_client.networks.list(names=[network])] == [network]
