"""hooks.ie against loopback HTTP servers: wire format, token handling, error classification,
timeouts and the per-hook time budget."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wrappers import Response

from hooks.errors import PermanentError, TemporaryError
from hooks.http import Deadline
from hooks.ie import Endpoint, IEClient
from hooks.reasons import Reason
from hooks.settings import Settings
from ieapi.contract import ContainerSpec, RegistryAuth
from tests.hooks.helpers import (
    TOKEN,
    FakeServer,
    error_response,
    fake_ie,
    refused_url,
    silent_server,
)

SPEC = ContainerSpec(image="registry.test/app:1", is_job=False, alias="web",
                     registry_auth=RegistryAuth.model_validate(
                         {"url": "registry.test", "username": "u", "password": "s3cret"}))


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    (tmp_path / "ie-a").write_text(TOKEN + "\n")
    return tmp_path


@pytest.fixture
def settings(token_dir: Path) -> Settings:
    return Settings(ie_token_dir=token_dir, ie_connect_timeout_seconds=0.5,
                    ie_read_timeout_seconds=0.5)


@pytest.fixture
def client(settings: Settings) -> Iterator[IEClient]:
    c = IEClient(settings)
    yield c
    c.session.close()


def ep(url: str, token_key: str = "ie-a") -> Endpoint:  # noqa: S107 - a file name
    return Endpoint(ie="ie-a", url=url, token_key=token_key)


def budget(seconds: float = 5.0) -> Deadline:
    return Deadline(seconds)


def test_ensure_get_delete_list_info_round_trip(client: IEClient) -> None:
    with fake_ie() as (ie, server):
        status = client.ensure(ep(server.url), "demo.web", SPEC, budget())
        assert status.state.value == "running"
        assert status.name == "demo.web"
        # the one call that reveals secrets: the IE needs the registry password
        method, path, headers, body = server.requests[-1]
        assert (method, path) == ("PUT", "/v1/containers/demo.web")
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert json.loads(body)["registryAuth"]["password"] == "s3cret"

        found = client.get(ep(server.url), "demo.web", budget())
        assert found is not None
        assert found.id == "id-demo.web"
        assert len(client.list(ep(server.url), budget()).items) == 1
        assert client.info(ep(server.url), budget()).ie_id == ie.ie_id

        assert client.delete(ep(server.url), "demo.web", budget()).deleted is True
        assert client.delete(ep(server.url), "demo.web", budget()).deleted is False
        assert client.get(ep(server.url), "demo.web", budget()) is None


@pytest.mark.parametrize(("status", "code", "reason"), [
    (409, "PortInUse", Reason.PORT_IN_USE),
    (409, "Conflict", Reason.NAME_CONFLICT),
    (403, "PrivilegedNotAllowed", Reason.PRIVILEGED_NOT_ALLOWED),
    (400, "InvalidRequest", Reason.INVALID_SPEC),
    (413, "PayloadTooLarge", Reason.INVALID_SPEC),
    (401, "Unauthorized", Reason.IE_UNAUTHORIZED),
    (404, "NotFound", Reason.IE_REJECTED),
])
def test_4xx_is_permanent_with_the_ies_code_and_field(
        client: IEClient, status: int, code: str, reason: Reason) -> None:
    with fake_ie(fail=(status, code, "it says no")) as (_, server), \
            pytest.raises(PermanentError) as err:
        client.ensure(ep(server.url), "demo.web", SPEC, budget())
    assert err.value.reason is reason
    assert err.value.code == code
    assert err.value.http_status == status
    assert "it says no" in err.value.message


def test_field_is_carried() -> None:
    server = FakeServer(lambda r: error_response(400, "InvalidRequest", "bad port",
                                                 "ports.0.number"))
    try:
        with pytest.raises(PermanentError) as err:
            IEClient(Settings()).ensure(ep(server.url), "x", SPEC, budget())
    finally:
        server.close()
    assert err.value.field == "ports.0.number"
    assert "(field ports.0.number)" in err.value.message


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_temporary(client: IEClient, status: int) -> None:
    with fake_ie(fail=(status, "DockerUnavailable", "dockerd down")) as (_, server):
        with pytest.raises(TemporaryError) as err:
            client.get(ep(server.url), "demo.web", budget())
        calls = len(server.requests)
    assert err.value.reason is Reason.IE_ERROR
    assert calls == (2 if status == 503 else 1)  # one short retry on 503 only


def test_a_bare_404_is_not_taken_for_a_missing_container(client: IEClient) -> None:
    server = FakeServer(lambda r: Response("no such page", status=404))
    try:
        with pytest.raises(PermanentError) as err:
            client.get(ep(server.url), "demo.web", budget())
    finally:
        server.close()
    assert err.value.reason is Reason.IE_REJECTED


def test_non_contract_answer_is_temporary(client: IEClient) -> None:
    server = FakeServer(lambda r: Response("<html>proxy</html>", content_type="text/html"))
    try:
        with pytest.raises(TemporaryError) as err:
            client.info(ep(server.url), budget())
    finally:
        server.close()
    assert err.value.reason is Reason.IE_ERROR


def test_refused_port_is_temporary_unreachable_with_a_stable_message(client: IEClient) -> None:
    url = refused_url()
    messages = set()
    for _ in range(2):
        with pytest.raises(TemporaryError) as err:
            client.ensure(ep(url), "demo.web", SPEC, budget())
        assert err.value.reason is Reason.IE_UNREACHABLE
        messages.add(err.value.message)
    assert len(messages) == 1, messages  # no object addresses: status must not churn
    assert "Connection refused" in messages.pop()


def test_silent_server_times_out_within_the_read_timeout(client: IEClient) -> None:
    with silent_server() as url:
        start = time.monotonic()
        with pytest.raises(TemporaryError) as err:
            client.get(ep(url), "demo.web", budget())
        elapsed = time.monotonic() - start
    assert err.value.reason is Reason.IE_UNREACHABLE
    assert 0.4 <= elapsed < 1.5  # read timeout 0.5 s, no retry after a read timeout
    assert "read timeout" in err.value.message


def test_deadline_caps_the_read_timeout(token_dir: Path) -> None:
    client = IEClient(Settings(ie_token_dir=token_dir, ie_read_timeout_seconds=5))
    with silent_server() as url:
        start = time.monotonic()
        with pytest.raises(TemporaryError):
            client.get(ep(url), "demo.web", Deadline(0.3))
        assert time.monotonic() - start < 1.0
        with pytest.raises(TemporaryError) as err:
            client.get(ep(url), "demo.web", Deadline(0.0))
    assert err.value.reason is Reason.DEADLINE_EXCEEDED


def test_missing_token_file_is_permanent_and_sends_nothing(client: IEClient) -> None:
    with fake_ie() as (_, server):
        with pytest.raises(PermanentError) as err:
            client.info(ep(server.url, token_key="ie-unknown"), budget())
        assert server.requests == []
    assert err.value.reason is Reason.TOKEN_MISSING


@pytest.mark.parametrize("key", ["../ie-a", "..data", "a/b", ""])
def test_token_key_cannot_leave_the_token_dir(client: IEClient, key: str) -> None:
    with fake_ie() as (_, server), pytest.raises(PermanentError):
        client.info(ep(server.url, token_key=key), budget())


def test_rotated_token_is_picked_up(client: IEClient, token_dir: Path) -> None:
    with fake_ie() as (ie, server):
        client.info(ep(server.url), budget())
        (token_dir / "ie-a").write_text("rotated")
        # make sure the stat differs even on coarse mtime file systems
        st = (token_dir / "ie-a").stat()
        os.utime(token_dir / "ie-a", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        ie.token = "rotated"
        assert client.info(ep(server.url), budget()).ie_id == ie.ie_id
        assert server.requests[-1][2]["Authorization"] == "Bearer rotated"


def test_no_token_dir_sends_no_authorization() -> None:
    client = IEClient(Settings())
    with fake_ie(token=None) as (_, server):
        client.info(ep(server.url), budget())
        assert "Authorization" not in server.requests[-1][2]


def test_dropped_connection_is_retried_once(client: IEClient) -> None:
    """The first connection is closed without an answer (like a stale keep-alive socket);
    the idempotent DELETE is sent again on a new one."""
    body = json.dumps({"name": "demo.web", "deleted": True}).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    accepted: list[int] = []

    def serve() -> None:
        first, _ = sock.accept()
        accepted.append(1)
        first.close()
        second, _ = sock.accept()
        accepted.append(2)
        second.recv(65536)
        second.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() +
                       b"\r\nConnection: close\r\n\r\n" + body)
        second.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert client.delete(ep(url), "demo.web", budget()).deleted
    finally:
        thread.join(timeout=5)
        sock.close()
    assert accepted == [1, 2]
