"""What the IE API lets a caller do on the IE, over the session's real dockerd: only containers
it manages are visible or touched, privileged only where the IE allows it, and no way to mount
host paths or join host namespaces (unknown fields are a 400 naming the field)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from flask.testing import FlaskClient

from hooks.tokens import TokenDir
from ieapi import create_app
from ieapi.settings import Settings
from testbed.dockerd import remove_managed

pytestmark = [pytest.mark.docker]

TOKEN = "containment-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLEEP = [{"key": "sleep"}, {"key": "3600"}]


class IEApi:
    def __init__(self, client: FlaskClient, settings: Settings) -> None:
        self.client, self.settings = client, settings

    def put(self, name: str, body: dict[str, Any]) -> Any:
        return self.client.put(f"/v1/containers/{name}", json=body, headers=AUTH)

    def docker_name(self, name: str) -> str:
        return f"{self.settings.container_prefix}-{name}"


@pytest.fixture
def make_ieapi(dockerd: str, docker_client: docker.DockerClient) -> Iterator[Callable[..., IEApi]]:
    made: list[tuple[Any, str]] = []

    def make(**overrides: Any) -> IEApi:
        instance = f"sec-{uuid.uuid4().hex[:8]}"
        values: dict[str, Any] = {
            "token": TOKEN, "docker_host": dockerd, "ie_id": "urn:ngsi-ld:IE:sec",
            "hostname": "sec", "instance_id": instance, "container_prefix": f"s{instance[-8:]}",
            "stop_timeout_seconds": 1}
        values.update(overrides)
        settings = Settings(**values)
        app = create_app(settings)
        made.append((app.extensions["ieapi"].engine, instance))
        return IEApi(app.test_client(), settings)

    yield make
    for engine, instance in made:
        engine.pulls.wait(10)
        engine.close()
        remove_managed(docker_client, instance)


HOST_ACCESS = {
    "volumes": ["/:/host"], "binds": ["/etc:/etc"], "mounts": [{"source": "/"}],
    "networkMode": "host", "pidMode": "host", "ipcMode": "host", "utsMode": "host",
    "usernsMode": "host", "capAdd": ["SYS_ADMIN"], "devices": ["/dev/sda"],
    "securityOpt": ["apparmor=unconfined"], "hostConfig": {"Privileged": True},
    "user": "0", "cgroupParent": "/", "tmpfs": {"/run": ""},
}


@pytest.mark.parametrize("field", sorted(HOST_ACCESS))
def test_host_access_fields_are_refused(make_ieapi: Callable[..., IEApi], busybox_image: str,
                                        field: str) -> None:
    ie = make_ieapi()
    answer = ie.put("default.x", {"image": busybox_image, "cliArgs": SLEEP,
                                  field: HOST_ACCESS[field]})
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "InvalidRequest"
    assert error["field"] == field, error
    assert ie.client.get("/v1/containers", headers=AUTH).get_json()["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"ports": [{"number": 80, "hostIp": "0.0.0.0", "hostPort": 22}]}, "ports.0.hostIp"),
    ({"registryAuth": {"username": "u", "password": "p", "identitytoken": "x"}},
     "registryAuth.identitytoken"),
    ({"envVars": [{"key": "A", "value": "1", "from": "/etc/shadow"}]}, "envVars.0.from"),
])
def test_nested_unknown_fields_are_refused(make_ieapi: Callable[..., IEApi], busybox_image: str,
                                           body: dict[str, Any], field: str) -> None:
    answer = make_ieapi().put("default.x", {"image": busybox_image, **body})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == field


def test_created_container_has_no_host_access(make_ieapi: Callable[..., IEApi],
                                              busybox_image: str,
                                              docker_client: docker.DockerClient) -> None:
    ie = make_ieapi()
    assert ie.put("default.web", {"image": busybox_image, "cliArgs": SLEEP}).status_code == 201
    attrs = docker_client.api.inspect_container(ie.docker_name("default.web"))
    host = attrs["HostConfig"]
    assert attrs["Mounts"] == []
    assert not host.get("Binds")
    assert not host.get("Mounts")
    assert host["Privileged"] is False
    assert host["NetworkMode"] not in ("host", "none")
    assert host["PidMode"] == ""
    assert host["IpcMode"] != "host"
    assert host["UTSMode"] == ""
    assert host["UsernsMode"] == ""
    assert not host.get("CapAdd")
    assert not host.get("Devices")
    assert not host.get("SecurityOpt")


def test_privileged_only_where_allowed(make_ieapi: Callable[..., IEApi], busybox_image: str,
                                       docker_client: docker.DockerClient) -> None:
    body = {"image": busybox_image, "cliArgs": SLEEP, "privileged": True}
    strict = make_ieapi()
    answer = strict.put("default.p", body)
    assert answer.status_code == 403
    assert answer.get_json()["error"] == {
        "code": "PrivilegedNotAllowed", "field": "privileged",
        "message": answer.get_json()["error"]["message"]}
    assert strict.client.get("/v1/containers", headers=AUTH).get_json()["items"] == []
    lenient = make_ieapi(allow_privileged=True)
    answer = lenient.put("default.p", body)
    if answer.status_code == 201:
        attrs = docker_client.api.inspect_container(lenient.docker_name("default.p"))
        assert attrs["HostConfig"]["Privileged"] is True
    else:
        # This sandbox's root lacks capabilities that a privileged container gets, so runc
        # refuses to start it: the request passed the IE's gate and reached Docker as asked.
        assert answer.status_code == 502, answer.get_json()
        assert "caps" in answer.get_json()["error"]["message"], answer.get_json()


def test_only_managed_containers_are_touched(make_ieapi: Callable[..., IEApi], busybox_image: str,
                                             docker_client: docker.DockerClient) -> None:
    ie = make_ieapi()
    other = make_ieapi()
    # A hand-made container under a name the IE API would use, and one of another instance.
    hand_made = docker_client.containers.run(busybox_image, ["sleep", "3600"], detach=True,
                                             init=True, name=ie.docker_name("default.hand"))
    try:
        assert other.put("default.theirs", {"image": busybox_image,
                                             "cliArgs": SLEEP}).status_code == 201
        theirs = docker_client.containers.get(other.docker_name("default.theirs"))
        for name in ("default.hand",):
            assert ie.client.get(f"/v1/containers/{name}", headers=AUTH).status_code == 404
            deleted = ie.client.delete(f"/v1/containers/{name}", headers=AUTH)
            assert deleted.status_code == 200
            assert deleted.get_json()["deleted"] is False
            conflict = ie.put(name, {"image": busybox_image, "cliArgs": SLEEP})
            assert conflict.status_code == 409
            assert conflict.get_json()["error"]["field"] == "name"
        assert ie.client.get("/v1/containers", headers=AUTH).get_json()["items"] == []
        # Another instance's container is not reachable by its ID or name through this IE API.
        for ref in (theirs.id, theirs.id[:12], theirs.name):
            assert ie.client.get(f"/v1/containers/{ref}", headers=AUTH).status_code == 404
            ie.client.delete(f"/v1/containers/{ref}", headers=AUTH)
        hand_made.reload()
        theirs.reload()
        assert hand_made.status == "running"
        assert theirs.status == "running"
    finally:
        hand_made.remove(force=True)


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "%2e%2e%2fx", ".hidden", "-rm", "x" * 201,
                                  "default.x%0A"])  # %0A: a real newline in the path
def test_names_cannot_escape(make_ieapi: Callable[..., IEApi], busybox_image: str,
                             name: str) -> None:
    ie = make_ieapi()
    for answer in (ie.put(name, {"image": busybox_image}),
                   ie.client.get(f"/v1/containers/{name}", headers=AUTH),
                   ie.client.delete(f"/v1/containers/{name}", headers=AUTH)):
        assert answer.status_code in (400, 404, 405), (name, answer.status_code)


def test_image_with_a_trailing_newline_is_refused(make_ieapi: Callable[..., IEApi],
                                                  busybox_image: str) -> None:
    answer = make_ieapi().put("default.x", {"image": busybox_image + "\n"})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "image"


def test_hook_token_keys_cannot_leave_the_token_dir(tmp_path: Path) -> None:
    """A DIE names its token file (spec.api.tokenKey): a path outside the directory is no key."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tmp_path / "secret").write_text("not a token")
    (tokens / "edge-1").write_text("t1")
    directory = TokenDir(tokens)
    assert directory.get("edge-1") == "t1"
    for key in ("../secret", "/etc/passwd", "..", ".", "..data", "a/../../secret", "",
                "edge-1\n"):
        assert directory.get(key) is None, key
