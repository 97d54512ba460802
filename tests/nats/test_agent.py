"""The NATS agent serves every IE contract operation over a real nats-server, with the same
service and engine as the HTTP server, and both transports serve one IE at once."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import nats
import pytest
import requests
from cloudevents.core.bindings import http as ce_http

from hooks.ienats import NatsRequester
from ieapi.contract import ContainerList, ContainerStatus, DeleteResult, ErrorBody, IEInfo
from ieapi.natswire import Operation, request_headers, subject
from testbed.dockerd import remove_managed
from testbed.images import BUSYBOX_TAG
from testbed.natsbus import NatsServer, request, start_agent
from testbed.procs import ServerProcess, python_module_argv, start_server

pytestmark = [pytest.mark.docker]

IE_NAME = "edge-nats.example"  # a dot: the subject token is edge-nats_example


@pytest.fixture
def engine_env(dockerd: str, docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """The engine settings of one IE (its own managed-by label), its containers removed after."""
    instance = f"nats-{secrets.token_hex(3)}"
    yield {"DOCKER_HOST": dockerd, "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:nats",
           "IEAPI_INSTANCE_ID": instance, "IEAPI_CONTAINER_PREFIX": instance,
           "IEAPI_STOP_TIMEOUT_SECONDS": "1"}
    remove_managed(docker_client, instance)


@pytest.fixture
def agent(nats_server: NatsServer, engine_env: dict[str, str], busybox_image: str,
          tmp_path: Path) -> Iterator[ServerProcess]:
    identity = nats_server.ie_identities.get(IE_NAME) or nats_server.add_ie(IE_NAME)
    process = start_agent(nats=nats_server, die_name=IE_NAME, identity=identity,
                          log_path=tmp_path / "agent.log", env=engine_env)
    yield process
    process.stop()


@pytest.fixture
def requester(nats_server: NatsServer) -> Iterator[NatsRequester]:
    client = NatsRequester(nats_server.hooks_identity, connect_timeout=2.0)
    yield client
    client.close()


def _spec(image: str) -> bytes:
    return json.dumps({"image": image, "cliArgs": [{"key": "sleep"}, {"key": "300"}]}).encode()


def test_every_operation_over_nats(agent: ServerProcess, requester: NatsRequester,
                                   nats_server: NatsServer, busybox_image: str) -> None:
    def call(op: Operation, name: str | None = None, body: bytes = b"") -> tuple[int, bytes]:
        answer = request(requester, nats_server, IE_NAME, op, name, body=body, timeout=30)
        return answer.status, answer.content

    status, body = call(Operation.INFO)
    assert status == 200
    assert IEInfo.model_validate_json(body).ie_id == "urn:ngsi-ld:InfrastructureElement:nats"

    status, body = call(Operation.ENSURE, "default.app", _spec(busybox_image))
    assert status == 201
    assert ContainerStatus.model_validate_json(body).state.value == "running"
    status, body = call(Operation.ENSURE, "default.app", _spec(busybox_image))
    assert status == 200  # same spec: kept, exactly as PUT answers over HTTP

    status, body = call(Operation.GET, "default.app")
    assert (status, ContainerStatus.model_validate_json(body).name) == (200, "default.app")
    status, body = call(Operation.LIST)
    assert [c.name for c in ContainerList.model_validate_json(body).items] == ["default.app"]

    status, body = call(Operation.DELETE, "default.app")
    assert (status, DeleteResult.model_validate_json(body).deleted) == (200, True)
    status, body = call(Operation.GET, "default.app")
    assert status == 404
    assert ErrorBody.model_validate_json(body).error.code.value == "NotFound"
    status, body = call(Operation.DELETE, "default.app")
    assert (status, DeleteResult.model_validate_json(body).deleted) == (200, False)


def test_bad_requests_get_the_contract_errors(agent: ServerProcess, requester: NatsRequester,
                                              nats_server: NatsServer) -> None:
    bad_name = request(requester, nats_server, IE_NAME, Operation.GET, "-no/such")
    assert bad_name.status == 400
    assert ErrorBody.model_validate_json(bad_name.content).error.field == "name"
    bad_spec = request(requester, nats_server, IE_NAME, Operation.ENSURE, "default.x",
                       body=b'{"image": "", "ports": [{"number": 0}]}')
    assert bad_spec.status == 400
    assert ErrorBody.model_validate_json(bad_spec.content).error.code.value == "InvalidRequest"
    no_name = request(requester, nats_server, IE_NAME, Operation.DELETE)
    assert (no_name.status, ErrorBody.model_validate_json(no_name.content).error.field) == \
        (400, "name")


def test_messages_are_binary_mode_cloudevents(agent: ServerProcess,
                                              nats_server: NatsServer) -> None:
    """What another aerOS component sees on the wire: ce-* headers, JSON data = the model.
    Read back with the CloudEvents SDK (its binary-mode reader takes the same `ce-` headers
    and `content-type` as the NATS protocol binding) as an independent judge."""
    seen: list[tuple[dict[str, str], bytes]] = []

    async def exchange() -> tuple[dict[str, str], bytes]:
        options = nats_server.hooks_identity.connect_options(nats_server.url)
        client = await nats.connect(nats_server.url, **options)
        try:
            headers = request_headers(Operation.GET, "default.none")
            seen.append((headers, b""))
            msg = await client.request(subject("llo.ie", IE_NAME, Operation.INFO), b"",
                                       timeout=10, headers=request_headers(Operation.INFO, None))
            return dict(msg.headers or {}), msg.data
        finally:
            await client.close()

    headers, data = asyncio.run(exchange())
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "eu.aeros-project.llo.ie.info.response"
    assert headers["ce-source"] == "/llo-docker/ie/edge-nats_example"
    assert headers["ce-statuscode"] == "200"
    assert headers["content-type"] == "application/json"
    assert len(headers["ce-id"]) == 32
    assert headers["ce-time"].endswith("Z")
    IEInfo.model_validate_json(data)

    answer = ce_http.from_binary_event(ce_http.HTTPMessage(headers=headers, body=data))
    assert answer.get_type() == "eu.aeros-project.llo.ie.info.response"
    assert answer.get_extension("statuscode") == "200"
    assert IEInfo.model_validate(answer.get_data()).ie_id == \
        "urn:ngsi-ld:InfrastructureElement:nats"
    (req_headers, body), = seen
    asked = ce_http.from_binary_event(ce_http.HTTPMessage(headers=req_headers, body=body))
    assert asked.get_type() == "eu.aeros-project.llo.ie.get.request"
    assert asked.get_subject() == "default.none"
    assert asked.get_source() == "/llo-docker/hooks"


def test_http_server_and_agent_serve_one_ie_at_once(
        agent: ServerProcess, requester: NatsRequester, nats_server: NatsServer,
        engine_env: dict[str, str], tmp_path: Path) -> None:
    """One engine implementation behind both: what one transport creates the other sees."""
    busybox_image = BUSYBOX_TAG  # built for the agent fixture
    env = {**engine_env, "IEAPI_TOKEN": "t0ken-for-both",
           "IEAPI_BIND": "127.0.0.1:{port}"}
    http = start_server(python_module_argv("ieapi"), env=env, log_path=tmp_path / "http.log",
                        name="ieapi-http")
    try:
        auth = {"Authorization": "Bearer t0ken-for-both"}
        created = requests.put(f"{http.url}/v1/containers/default.both", data=_spec(busybox_image),
                               headers={**auth, "Content-Type": "application/json"}, timeout=60)
        assert created.status_code == 201
        seen = request(requester, nats_server, IE_NAME, Operation.GET, "default.both")
        assert seen.status == 200
        assert ContainerStatus.model_validate_json(seen.content).id == created.json()["id"]
        again = request(requester, nats_server, IE_NAME, Operation.ENSURE, "default.both",
                        body=_spec(busybox_image), timeout=30)
        assert again.status == 200  # the same container, not a second one
        gone = request(requester, nats_server, IE_NAME, Operation.DELETE, "default.both")
        assert gone.status == 200
        assert requests.get(f"{http.url}/v1/containers/default.both", headers=auth,
                            timeout=10).status_code == 404
    finally:
        http.stop()


def test_agent_log_is_the_projects_format_and_holds_no_secret(
        agent: ServerProcess, requester: NatsRequester, nats_server: NatsServer) -> None:
    request(requester, nats_server, IE_NAME, Operation.INFO)
    lines = [json.loads(line) for line in agent.log_path.read_text().splitlines()
             if line.startswith("{")]
    assert any("serving llo.ie.edge-nats_example.*" in line.get("message", "")
               for line in lines), lines[:5]
    assert all(line.get("ie") == "urn:ngsi-ld:InfrastructureElement:nats" for line in lines)
    seeds = [p.read_text().strip() for p in nats_server.workdir.glob("*.nkey")]
    assert seeds
    text = agent.log_path.read_text()
    assert [s for s in seeds if s in text] == []
