"""hooks.broker against the Orion-LD double (testbed/orion.py) and loopback servers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from hooks.broker import BrokerClient
from hooks.brokerstatus import encodes_to, entity_id, id_pattern
from hooks.errors import PermanentError, TemporaryError
from hooks.http import Deadline
from hooks.observations import BrokerOutcome
from hooks.reasons import Reason
from hooks.resources import ObjectMeta
from hooks.settings import Settings
from testbed.orion import OrionDouble
from tests.hooks.helpers import FakeServer, json_response, refused_url, silent_server

ENTITY = "urn:ngsi-ld:Service:1:Component:1"


@pytest.fixture
def orion() -> Iterator[OrionDouble]:
    with OrionDouble() as double:
        yield double


def client_for(url: str, **extra: object) -> BrokerClient:
    return BrokerClient(Settings.model_validate({
        "broker_url": url, "broker_connect_timeout_seconds": 0.5,
        "broker_read_timeout_seconds": 0.5, **extra}))


def test_existing_attribute_is_patched(orion: OrionDouble) -> None:
    orion.create_entity(ENTITY, "ServiceComponent", {"serviceComponentStatus": {
        "type": "Relationship", "object": "urn:ngsi-ld:ServiceComponentStatus:Starting"}})
    outcome = client_for(orion.url).set_status(ENTITY, "Running", Deadline(5))
    assert outcome is BrokerOutcome.ACCEPTED
    assert orion.status_history(ENTITY)[-1] == "Running"
    assert [r.method for r in orion.requests] == ["PATCH"]


def test_missing_attribute_is_appended(orion: OrionDouble) -> None:
    orion.create_entity(ENTITY, "ServiceComponent")
    outcome = client_for(orion.url).set_status(ENTITY, "Starting", Deadline(5))
    assert outcome is BrokerOutcome.ACCEPTED
    assert orion.status_history(ENTITY) == ["Starting"]
    assert [r.method for r in orion.requests] == ["PATCH", "POST"]


def test_missing_entity_is_a_distinct_outcome(orion: OrionDouble) -> None:
    outcome = client_for(orion.url).set_status(ENTITY, "Running", Deadline(5))
    assert outcome is BrokerOutcome.ENTITY_NOT_FOUND
    assert orion.status_history(ENTITY) == []


def test_headers_token_and_tenant(tmp_path: Path) -> None:
    token_file = tmp_path / "broker-token"
    token_file.write_text("tok-1\n")
    with OrionDouble(token="tok-1") as orion:
        orion.create_entity(ENTITY, "ServiceComponent", {"serviceComponentStatus": {
            "type": "Relationship", "object": "urn:ngsi-ld:ServiceComponentStatus:Starting"}})
        client = client_for(orion.url, broker_token_file=token_file,
                            broker_headers="aeriOS=true", broker_tenant="t1")
        assert client.set_status(ENTITY, "Running", Deadline(5)) is BrokerOutcome.ACCEPTED
        sent = orion.requests[-1]
        headers = {k.lower(): v for k, v in sent.headers.items()}
        assert headers["aerios"] == "true"
        assert headers["ngsild-tenant"] == "t1"
        assert headers["content-type"] == "application/json"
        assert sent.json() == {"serviceComponentStatus": {
            "type": "Relationship", "object": "urn:ngsi-ld:ServiceComponentStatus:Running"}}
        token_file.write_text("wrong")
        with pytest.raises(PermanentError) as err:
            client.set_status(ENTITY, "Running", Deadline(5))
    assert err.value.reason is Reason.BROKER_REJECTED
    assert err.value.http_status == 401


def test_207_without_our_attribute_falls_back_to_append() -> None:
    calls: list[str] = []

    def handler(request: Request) -> Response:
        calls.append(request.method)
        if request.method == "PATCH":
            return json_response({"updated": [], "notUpdated": [
                {"attributes": ["serviceComponentStatus"], "statusCode": 404}]}, 207)
        return Response(status=204)

    server = FakeServer(handler)
    try:
        outcome = client_for(server.url).set_status(ENTITY, "Running", Deadline(5))
    finally:
        server.close()
    assert outcome is BrokerOutcome.ACCEPTED
    assert calls == ["PATCH", "POST"]


def test_5xx_is_temporary(orion: OrionDouble) -> None:
    orion.set_fault("error", status=503)
    with pytest.raises(TemporaryError) as err:
        client_for(orion.url, broker_retries=0).set_status(ENTITY, "Running", Deadline(5))
    assert err.value.reason is Reason.BROKER_ERROR


def test_hanging_broker_times_out(orion: OrionDouble) -> None:
    orion.set_fault("hang")
    start = time.monotonic()
    with pytest.raises(TemporaryError) as err:
        client_for(orion.url).set_status(ENTITY, "Running", Deadline(5))
    assert time.monotonic() - start < 1.5
    assert err.value.reason is Reason.BROKER_UNREACHABLE
    orion.clear_fault()


def test_broker_down_is_temporary() -> None:
    with pytest.raises(TemporaryError) as err:
        client_for(refused_url()).set_status(ENTITY, "Running", Deadline(5))
    assert err.value.reason is Reason.BROKER_UNREACHABLE


def test_silent_broker_respects_the_deadline() -> None:
    with silent_server() as url:
        start = time.monotonic()
        with pytest.raises(TemporaryError):
            client_for(url, broker_read_timeout_seconds=5).set_status(ENTITY, "Running",
                                                                      Deadline(0.3))
        assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(("labels", "annotations", "expected"), [
    ({"app.kubernetes.io/instance": "urn_ngsi-ld_Service_1_Component_1"}, {},
     "urn:ngsi-ld:Service:1:Component:1"),
    ({"app.kubernetes.io/instance": "Service_1_Component_1"}, {},
     "urn:ngsi-ld:Service:1:Component:1"),
    ({"app.kubernetes.io/instance": "Service_1_Component_1"},
     {"llo.aeros-project.eu/entity-id": "urn:ngsi-ld:Service:a_b:Component:1"},
     "urn:ngsi-ld:Service:a_b:Component:1"),
    ({}, {}, None),
])
def test_entity_id(labels: dict[str, str], annotations: dict[str, str],
                   expected: str | None) -> None:
    meta = ObjectMeta(name="x", labels=labels, annotations=annotations)
    assert entity_id(meta) == expected


def test_find_entities_against_the_double(orion: OrionDouble) -> None:
    right = "urn:ngsi-ld:Service:my_app:Component:web_1"
    orion.create_entity(right, "ServiceComponent")
    orion.create_entity("urn:ngsi-ld:Service:my_app", "Service")
    client = client_for(orion.url)
    pattern = id_pattern("Service_my_app_Component_web_1")
    assert client.find_entities("ServiceComponent", pattern, Deadline(5)) == [right]
    assert client.find_entities("ServiceComponent", id_pattern("Service_x"), Deadline(5)) == []
    query = orion.requests[0]
    assert [r.method for r in orion.requests] == ["GET", "GET"]
    assert "content-type" not in query.headers
    assert "limit=5" in query.path


def test_find_entities_errors() -> None:
    answers = [json_response({"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                              "title": "Too broad query"}, 400),
               json_response({"not": "an array"}, 200)]
    server = FakeServer(lambda request: answers.pop(0))
    try:
        client = client_for(server.url)
        with pytest.raises(PermanentError) as refused:
            client.find_entities("ServiceComponent", "^x$", Deadline(5))
        assert refused.value.reason is Reason.BROKER_REJECTED
        assert "Too broad query" in refused.value.message
        with pytest.raises(TemporaryError):
            client.find_entities("ServiceComponent", "^x$", Deadline(5))
    finally:
        server.close()


@pytest.mark.parametrize(("label", "matching", "other"), [
    ("Service_my_app_Component_web_1",
     ["urn:ngsi-ld:Service:my_app:Component:web_1", "urn:ngsi-ld:Service:my:app:Component:web:1",
      "urn:ngsi-ld:Service_my_app_Component_web_1"],
     ["urn:ngsi-ld:Service:my-app:Component:web_1", "urn:ngsi-ld:Service:my_app:Component:web_12",
      "xurn:ngsi-ld:Service:my_app:Component:web_1"]),
    ("urn_ngsi-ld_Service_demo.app_Component_db.v1",
     ["urn:ngsi-ld:Service:demo.app:Component:db.v1"],
     ["urn:ngsi-ld:Service:demoxapp:Component:db.v1"]),
])
def test_id_pattern_accepts_colon_or_underscore_at_each_underscore(
        label: str, matching: list[str], other: list[str]) -> None:
    pattern = re.compile(id_pattern(label))
    for eid in matching:
        assert pattern.search(eid), eid
        assert encodes_to(eid, label), eid  # the HLO writes this label for each of them
    for eid in other:
        assert not pattern.search(eid), eid
        assert not encodes_to(eid, label), eid
