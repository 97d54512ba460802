"""The hook routes through Flask's test client, with a fake IE API and the Orion-LD double on
loopback: the Metacontroller protocol, the full SCD/DIE lifecycle, and robustness (never a
500, 400 only for non-requests, a bug keeps the old status)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hooks import create_app
from hooks.resources import DIE_RELATED_KEY
from hooks.settings import Settings
from testbed.orion import OrionDouble
from tests.hooks.helpers import JSON, TOKEN, FakeIE, FakeServer, refused_url, silent_server

ENTITY = "urn:ngsi-ld:Service:1:Component:1"
IE_ID = "urn:ngsi-ld:InfrastructureElement:A"
RESPONSE_KEYS = {"status", "children", "resyncAfterSeconds", "finalized"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def orion() -> Iterator[OrionDouble]:
    with OrionDouble() as double:
        double.create_entity(ENTITY, "ServiceComponent")
        yield double


@pytest.fixture
def ie() -> Iterator[tuple[FakeIE, FakeServer]]:
    fake = FakeIE(ie_id=IE_ID)
    server = FakeServer(fake.handle)
    yield fake, server
    server.close()


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tokens"
    d.mkdir()
    (d / "ie-a").write_text(TOKEN)
    return d


def make_settings(token_dir: Path, broker_url: str = "", **extra: Any) -> Settings:
    return Settings.model_validate({
        "ie_token_dir": token_dir, "broker_url": broker_url,
        "ie_connect_timeout_seconds": 0.5, "ie_read_timeout_seconds": 0.5,
        "broker_connect_timeout_seconds": 0.5, "broker_read_timeout_seconds": 0.5, **extra})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(token_dir: Path, orion: OrionDouble, clock: Clock) -> Flask:
    return create_app(make_settings(token_dir, orion.url), clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def die_object(url: str, **meta: Any) -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "DockerInfrastructureElement",
            "metadata": {"name": "ie-a", "uid": "die-uid", "generation": 1, **meta},
            "spec": {"id": IE_ID, "hostname": "ie-a", "api": {"url": url}}}


def scd_object(**spec: Any) -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
            "metadata": {"name": "web", "namespace": "demo", "uid": "scd-uid", "generation": 1,
                         "labels": {"app.kubernetes.io/instance":
                                    "urn_ngsi-ld_Service_1_Component_1",
                                    "app.kubernetes.io/part-of": "urn_ngsi-ld_Service_1"}},
            "spec": {"selectedIE": {"id": IE_ID, "hostname": "ie-a"}, "image": "busybox:test",
                     "ports": [{"number": 8080}],
                     "cliArgs": [{"key": "-dbhost", "value": "db"}, {"key": "-forwarding"}],
                     **spec}}


def sync_body(parent: JSON, die: JSON | None, *, key_name: str = "ie-a",
              finalizing: bool = False) -> JSON:
    related = {DIE_RELATED_KEY: {key_name: die} if die is not None else {}}
    return {"controller": {"metadata": {"name": "scd"}}, "parent": parent, "children": {},
            "related": related, "finalizing": finalizing}


def post(client: FlaskClient, path: str, body: Any) -> JSON:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer: JSON = response.get_json()
    assert set(answer) == RESPONSE_KEYS  # Metacontroller v2 parses strictly
    assert answer["children"] == []
    return answer


def ready_die(client: FlaskClient, url: str) -> JSON:
    die = die_object(url)
    die["status"] = post(client, "/die/sync", {"parent": die})["status"]
    assert die["status"]["apiReady"] is True
    return die


# --------------------------------------------------------------------------- lifecycle


def test_scd_lifecycle_through_the_routes(client: FlaskClient, orion: OrionDouble,
                                          ie: tuple[FakeIE, FakeServer], clock: Clock) -> None:
    fake, server = ie
    die = ready_die(client, server.url)
    scd = scd_object()

    customize = client.post("/scd/customize", json={"controller": {}, "parent": scd})
    assert customize.get_json() == {"relatedResources": [{
        "apiVersion": "llo.aeros-project.eu/v1alpha1",
        "resource": "dockerinfrastructureelements", "names": ["ie-a"]}]}

    first = post(client, "/scd/sync", sync_body(scd, die))
    assert first["status"]["placement"]["ie"] == "ie-a"
    assert fake.containers == {}  # intent only: nothing created before the status names the IE
    assert first["resyncAfterSeconds"] == 0.2  # intent: act on it soon (LLO_RESYNC_INTENT_SECONDS)
    scd["status"] = first["status"]

    clock.tick(2)
    second = post(client, "/scd/sync", sync_body(scd, die))
    assert second["status"]["phase"] == "Running"
    assert second["resyncAfterSeconds"] == 60.0
    sent = json.loads(server.requests[-1][3])
    assert sent["alias"] == "web"
    assert sent["service"] == "urn_ngsi-ld_Service_1"
    assert sent["component"] == "urn_ngsi-ld_Service_1_Component_1"
    assert sent["owner"] == {"namespace": "demo", "name": "web", "uid": "scd-uid"}
    assert sent["cliArgs"] == [{"key": "-dbhost", "value": "db"}, {"key": "-forwarding"}]
    assert server.requests[-1][1] == "/v1/containers/demo.web"
    assert orion.status_history(ENTITY) == ["Starting", "Running"]
    scd["status"] = second["status"]

    clock.tick(60)
    third = post(client, "/scd/sync", sync_body(scd, die))
    assert third["status"] == second["status"]  # steady: no status write, no broker write
    assert orion.status_history(ENTITY) == ["Starting", "Running"]

    scd["metadata"]["deletionTimestamp"] = "2024-05-01T10:01:02Z"
    final = post(client, "/scd/finalize", sync_body(scd, die, finalizing=True))
    assert final["finalized"] is True
    assert fake.containers == {}
    assert orion.status_history(ENTITY) == ["Starting", "Running", "Removing", "Finished"]


def test_related_die_keyed_with_a_leading_slash_is_found(
        client: FlaskClient, ie: tuple[FakeIE, FakeServer]) -> None:
    die = ready_die(client, ie[1].url)
    answer = post(client, "/scd/sync", sync_body(scd_object(), die, key_name="/ie-a"))
    assert answer["status"]["reason"] == "PlacementRecorded"


def test_ie_down_is_a_200_with_unknown_phase(client: FlaskClient,
                                             ie: tuple[FakeIE, FakeServer]) -> None:
    die = ready_die(client, ie[1].url)
    scd = scd_object()
    scd["status"] = post(client, "/scd/sync", sync_body(scd, die))["status"]
    die["spec"]["api"]["url"] = refused_url()
    answer = post(client, "/scd/sync", sync_body(scd, die))
    assert answer["status"]["phase"] == "Unknown"
    assert answer["status"]["reason"] == "IEUnreachable"
    assert answer["status"]["placement"]["ie"] == "ie-a"


def test_answer_stays_within_the_budget_when_every_peer_hangs(token_dir: Path) -> None:
    with silent_server() as url:
        app = create_app(make_settings(token_dir, url, hook_budget_seconds=1.0,
                                       ie_read_timeout_seconds=5,
                                       broker_read_timeout_seconds=5))
        client = app.test_client()
        scd = scd_object()
        placement = {"ie": "ie-a", "apiUrl": url, "container": "demo.web"}
        scd["status"] = {"placement": placement,
                         "pendingCleanups": [{**placement, "ie": f"ie-{i}"} for i in range(3)]}
        die = die_object(url)
        die["status"] = {"apiReady": True}
        start = time.monotonic()
        answer = post(client, "/scd/sync", sync_body(scd, die))
        elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert answer["status"]["phase"] == "Unknown"
    assert len(answer["status"]["pendingCleanups"]) == 3  # kept for the next sync


def test_die_hooks(client: FlaskClient, ie: tuple[FakeIE, FakeServer]) -> None:
    fake, server = ie
    die = ready_die(client, server.url)
    assert die["status"]["ieId"] == IE_ID
    fake.containers["demo.web"] = {"name": "demo.web", "state": "running"}
    die["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    held = post(client, "/die/finalize", {"parent": die, "finalizing": True})
    assert held["finalized"] is False
    assert "1 managed container(s)" in held["status"]["message"]
    fake.containers.clear()
    assert post(client, "/die/finalize", {"parent": die, "finalizing": True})["finalized"]


def test_die_with_wrong_token_is_not_ready(client: FlaskClient, token_dir: Path,
                                           ie: tuple[FakeIE, FakeServer]) -> None:
    (token_dir / "ie-a").write_text("wrong")
    status = post(client, "/die/sync", {"parent": die_object(ie[1].url)})["status"]
    assert status["apiReady"] is False
    assert status["reason"] == "IEUnauthorized"


def test_invalid_die_is_reported_not_refused(client: FlaskClient) -> None:
    die = die_object("http://x")
    del die["spec"]["api"]
    answer = post(client, "/die/sync", {"parent": die})
    assert answer["status"]["apiReady"] is False
    assert answer["status"]["reason"] == "InvalidSpec"


# --------------------------------------------------------------------------- robustness


BAD_BODIES = [
    (b"not json", "body"),
    (b"[1, 2]", "body"),
    (b"{}", "parent"),
    (b'{"parent": "x"}', "parent"),
    (b'{"parent": {}}', "parent.metadata"),
    (b'{"parent": {"metadata": {"namespace": "x"}}}', "parent.metadata.name"),
]
HOOKS = ["/scd/sync", "/scd/finalize", "/die/sync", "/die/finalize"]
CASES_400 = [(path, body, field) for path in [*HOOKS, "/scd/customize"]
             for body, field in BAD_BODIES] + \
    [(path, b'{"parent": {"metadata": {"name": "a"}}, "related": []}', "related")
     for path in HOOKS]


@pytest.mark.parametrize(("path", "body", "field"), CASES_400)
def test_non_requests_get_400_naming_the_field(client: FlaskClient, path: str, body: bytes,
                                               field: str) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12)
PARENTS = st.fixed_dictionaries({"metadata": st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=10)},
    optional={"namespace": JSON_VALUES, "annotations": JSON_VALUES, "labels": JSON_VALUES,
              "deletionTimestamp": JSON_VALUES})},
    optional={"spec": JSON_VALUES, "status": JSON_VALUES})
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"parent": PARENTS}, optional={
        "related": JSON_VALUES, "children": JSON_VALUES, "finalizing": JSON_VALUES,
        "controller": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
)


@hsettings(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, path=st.sampled_from(["/scd/sync", "/scd/finalize", "/die/sync",
                                          "/die/finalize", "/scd/customize"]))
def test_garbage_never_gets_a_500(client: FlaskClient, body: bytes, path: str) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    answer = response.get_json()
    if response.status_code == 400:
        assert answer["error"]["field"]
    elif path != "/scd/customize":
        assert set(answer) == RESPONSE_KEYS
        assert isinstance(answer["status"], dict)


def test_a_bug_keeps_the_old_status(client: FlaskClient, monkeypatch: pytest.MonkeyPatch,
                                    ie: tuple[FakeIE, FakeServer]) -> None:
    die = ready_die(client, ie[1].url)
    scd = scd_object()
    scd["status"] = post(client, "/scd/sync", sync_body(scd, die))["status"]

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("hooks.servicecomponent.report", boom)
    answer = post(client, "/scd/sync", sync_body(scd, die))
    assert answer["status"]["placement"] == scd["status"]["placement"]
    ready = next(c for c in answer["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    assert answer["resyncAfterSeconds"] == 5.0


def test_hook_secret(token_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    client = create_app(make_settings(token_dir, hook_secret_file=secret)).test_client()
    body = {"parent": {"metadata": {"name": "a"}}}
    assert client.post("/scd/customize", json=body).status_code == 401
    assert client.post("/scd/customize", json=body,
                       headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/scd/customize", json=body,
                       headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_request_size_limit(token_dir: Path) -> None:
    client = create_app(make_settings(token_dir, max_request_bytes=2048)).test_client()
    response = client.post("/scd/sync", data=b"{" + b" " * 4096 + b"}",
                           content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "RequestEntityTooLarge"


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    assert client.get("/nope").get_json()["error"]["code"] == "NotFound"
    assert client.get("/scd/sync").status_code == 405
    assert client.get("/healthz").get_json() == {"status": "ok"}
