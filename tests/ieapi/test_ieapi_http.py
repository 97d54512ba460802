"""The HTTP surface: authentication, input errors with the field named, Docker failures,
info, and the OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
import schemathesis
from schemathesis.core.result import Ok

from ieapi import create_app
from ieapi.contract import ContainerSpec
from ieapi.settings import Settings, SettingsError, running_in_container
from testbed.procs import server_env
from tests.ieapi.helpers import TOKEN, IEApiClient, SettingsFactory, sleeper_spec

# --------------------------------------------------------------------------- auth


def test_routes_need_the_token_except_health_and_openapi(make_settings: SettingsFactory) -> None:
    client = create_app(make_settings()).test_client()
    for path in ("/v1/info", "/v1/containers", "/v1/containers/ns.x"):
        missing = client.get(path)
        assert missing.status_code == 401, path
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert missing.get_json()["error"]["code"] == "Unauthorized"
        wrong = client.get(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        basic = client.get(path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
    assert client.put("/v1/containers/ns.x", json={"image": "x"}).status_code == 401
    assert client.delete("/v1/containers/ns.x").status_code == 401
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/openapi.json").status_code == 200


def test_token_file_is_reread_when_rotated(make_settings: SettingsFactory,
                                           tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    client = create_app(make_settings(token=None, token_file=token_file)).test_client()

    def status(token: str) -> int:
        return client.get("/v1/containers/ns.none",
                          headers={"Authorization": f"Bearer {token}"}).status_code

    assert status("first-token") == 404  # authenticated; nothing there
    # Rotation the Kubernetes way: a new file swapped in atomically.
    staged = tmp_path / "token.new"
    staged.write_text("second-token")
    os.replace(staged, token_file)
    assert status("first-token") == 401
    assert status("second-token") == 404
    # And an in-place rewrite.
    token_file.write_text("third-token-longer")
    assert status("second-token") == 401
    assert status("third-token-longer") == 404


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    docker_host = f"unix://{tmp_path}/docker.sock"  # never contacted: the check comes first
    with pytest.raises(SettingsError, match="IEAPI_TOKEN"):
        create_app(Settings(docker_host=docker_host))
    with pytest.raises(SettingsError, match="empty"):
        create_app(Settings(docker_host=docker_host, token=""))
    env = {k: v for k, v in server_env().items() if not k.startswith("IEAPI_")}
    result = subprocess.run([sys.executable, "-m", "ieapi"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "IEAPI_TOKEN" in result.stderr
    assert "IEAPI_INSECURE_NO_AUTH" in result.stderr
    # The image's entrypoint form refuses too, before any worker starts.
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "python:ieapi.gunicorn_conf"],
        env={**env, "IEAPI_BIND": "127.0.0.1:0"}, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 2
    assert "ieapi cannot start: no token" in result.stdout + result.stderr


@pytest.mark.skipif(not running_in_container(), reason="not running in a container")
def test_in_a_container_refuses_to_start_without_explicit_ids() -> None:
    """Here for real: this test runs in a container, like the ieapi image."""
    env = {**{k: v for k, v in server_env().items() if not k.startswith("IEAPI_")},
           "IEAPI_TOKEN": "t", "IEAPI_IE_ID": "urn:ngsi-ld:IE:1", "IEAPI_BIND": "127.0.0.1:0"}
    for argv in ([sys.executable, "-m", "ieapi"],
                 [sys.executable, "-m", "gunicorn", "--config", "python:ieapi.gunicorn_conf"]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 2, result
        assert "running in a container: set IEAPI_INSTANCE_ID" in result.stdout + result.stderr


def test_insecure_flag_opens_the_api(make_settings: SettingsFactory) -> None:
    client = create_app(make_settings(token=None, insecure_no_auth=True)).test_client()
    assert client.get("/v1/containers/ns.none").status_code == 404


def test_help_lists_the_environment() -> None:
    result = subprocess.run([sys.executable, "-m", "ieapi", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0
    for variable in ("IEAPI_TOKEN_FILE", "IEAPI_ALLOW_PRIVILEGED", "DOCKER_HOST", "IEAPI_BIND"):
        assert variable in result.stdout


# --------------------------------------------------------------------------- input errors


def _put_raw(ie: IEApiClient, name: str, data: bytes | str) -> tuple[int, dict[str, Any]]:
    response = ie.flask.put(f"/v1/containers/{name}", data=data,
                            headers={"Authorization": f"Bearer {TOKEN}",
                                     "Content-Type": "application/json"})
    return response.status_code, response.get_json()


@pytest.mark.parametrize(("body", "field"), [
    ({"image": "x", "ports": [{"number": 70000}]}, "ports.0.number"),
    ({"image": "x", "bogus": 1}, "bogus"),
    ({"image": "x", "envVars": [{"key": "A", "value": "1", "extra": 2}]}, "envVars.0.extra"),
    ({"image": "x", "ports": [{"number": 80, "protocol": "ICMP"}]}, "ports.0.protocol"),
    ({"image": ""}, "image"),
    ({}, "image"),
    ({"image": "x", "envVars": [{"key": "A=B", "value": "1"}]}, "envVars.0.key"),
    ({"image": "x", "envVars": [{"key": "A", "value": "nul\u0000"}]}, "envVars.0.value"),
    ({"image": "x", "cliArgs": [{"key": "-a", "value": "\u0000"}]}, "cliArgs.0.value"),
    ({"image": "UPPER/case"}, "image"),
    ({"image": "app:" + "t" * 300}, "image"),
    ({"image": "x", "alias": "-bad alias"}, "alias"),
    ({"image": "x", "registryAuth": {"password": 5}}, "registryAuth.password"),
])
def test_invalid_body_is_400_naming_the_field(ie: IEApiClient, body: dict[str, Any],
                                              field: str) -> None:
    status, answer = _put_raw(ie, "ns.bad", json.dumps(body))
    assert status == 400, answer
    assert answer["error"]["code"] == "InvalidRequest"
    assert answer["error"]["field"] == field


def test_bad_json_and_bad_name_and_bad_image(ie: IEApiClient) -> None:
    status, answer = _put_raw(ie, "ns.bad", "{not json")
    assert status == 400
    assert "JSON" in answer["error"]["message"]
    status, answer = _put_raw(ie, "-starts-with-dash", json.dumps({"image": "x"}))
    assert (status, answer["error"]["field"]) == (400, "name")
    assert ie.get("x" * 201).status == 400
    assert ie.delete("bad$name").body["error"]["field"] == "name"
    status, answer = _put_raw(ie, "ns.bad", json.dumps({"image": "Not A Valid/Reference"}))
    assert (status, answer["error"]["field"]) == (400, "image")


def test_secret_is_never_echoed_in_errors(ie: IEApiClient) -> None:
    body = {"image": "x", "registryAuth": {"username": "u", "password": "hunter2-secret"},
            "bogus": True}
    status, answer = _put_raw(ie, "ns.bad", json.dumps(body))
    assert status == 400
    assert "hunter2-secret" not in json.dumps(answer)


def test_body_over_the_limit_is_413(make_settings: SettingsFactory) -> None:
    client = create_app(make_settings(max_body_bytes=2048)).test_client()
    big = json.dumps({"image": "x", "envVars": [{"key": "K", "value": "v" * 4096}]})
    response = client.put("/v1/containers/ns.big", data=big, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "PayloadTooLarge"


def test_unknown_route_and_method_are_json(ie: IEApiClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    missing = ie.flask.get("/v2/nothing", headers=headers)
    assert (missing.status_code, missing.get_json()["error"]["code"]) == (404, "NotFound")
    wrong = ie.flask.post("/v1/containers/ns.x", headers=headers)
    assert wrong.status_code == 405
    assert "PUT" in wrong.headers["Allow"]
    assert wrong.get_json()["error"]["code"] == "InvalidRequest"


# --------------------------------------------------------------------------- Docker side


def test_docker_unreachable_is_503(make_settings: SettingsFactory, tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-such-docker.sock"
    client = create_app(make_settings(docker_host=dead)).test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for response in (
        client.get("/v1/info", headers=headers),
        client.get("/v1/containers", headers=headers),
        client.get("/v1/containers/ns.x", headers=headers),
        client.put("/v1/containers/ns.x", json={"image": "x"}, headers=headers),
        client.delete("/v1/containers/ns.x", headers=headers),
    ):
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "DockerUnavailable"
        assert response.headers["Retry-After"].isdigit()
    assert client.get("/healthz").status_code == 200


@pytest.mark.docker
def test_info_reports_the_engine(ie: IEApiClient, busybox_image: str,
                                 docker_client: docker.DockerClient) -> None:
    before = ie.info()
    assert before.status == 200
    version, info = docker_client.version(), docker_client.info()
    assert before.body["dockerVersion"] == version["Version"]
    assert before.body["dockerApiVersion"] == version["ApiVersion"]
    assert before.body["cpus"] == info["NCPU"]
    assert before.body["memoryBytes"] == info["MemTotal"]
    assert before.body["architecture"] == info["Architecture"]
    assert before.body["os"] == info["OperatingSystem"]
    assert before.body["ieId"] == ie.settings.ie_id
    assert before.body["hostname"] == ie.settings.hostname
    assert before.body["allowPrivileged"] is False
    assert before.body["managedContainers"] == 0
    ie.put("ns.counted", sleeper_spec(busybox_image))
    assert ie.info().body["managedContainers"] == 1


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_document_describes_the_routes(ie: IEApiClient) -> None:
    response = ie.flask.get("/openapi.json")
    document = json.loads(response.data)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert set(paths) == {"/healthz", "/openapi.json", "/metrics", "/v1/info", "/v1/containers",
                          "/v1/containers/{name}", "/v1/containers/{name}/logs"}
    logs = paths["/v1/containers/{name}/logs"]["get"]
    assert {p["name"] for p in logs["parameters"]} == {
        "tail", "since", "timestamps", "follow", "limitBytes"}
    assert "IEAPI_LOGS_MAX_BYTES" in logs["description"]
    assert set(logs["responses"]) >= {"200", "400", "401", "404", "429"}
    assert set(paths["/v1/containers/{name}"]) >= {"put", "get", "delete", "parameters"}
    schemas = document["components"]["schemas"]
    for name in ("ContainerSpec", "ContainerStatus", "ContainerList", "DeleteResult", "IEInfo",
                 "ErrorBody"):
        assert name in schemas
    assert schemas["ContainerSpec"]["additionalProperties"] is False
    assert set(schemas["ContainerSpec"]["properties"]) == {
        field.alias for field in ContainerSpec.model_fields.values()}
    refs = {value for value in _walk(document) if isinstance(value, str)
            and value.startswith("#/")}
    for ref in refs:
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part]
        assert isinstance(target, dict), ref
    loaded = schemathesis.openapi.from_dict(document)
    results = list(loaded.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "PUT /v1/containers/{name}", "GET /v1/info", "DELETE /v1/containers/{name}"}


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
