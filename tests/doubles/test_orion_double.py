"""The Orion-LD double answers like Orion-LD (docs/design.md §2), checked with plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from testbed.orion import CORE_CONTEXT, OrionDouble

E = "urn:ngsi-ld:Service:1:Component:1"
ENTITY = f"/ngsi-ld/v1/entities/{E}"
STATUS = "urn:ngsi-ld:ServiceComponentStatus:"
JSON_CT = {"Content-Type": "application/json"}


def status_body(value: str) -> dict[str, Any]:
    """The body the aerOS HLO sends (docs/design.md §2)."""
    return {"serviceComponentStatus": {"type": "Relationship", "object": STATUS + value}}


@pytest.fixture
def orion() -> Iterator[OrionDouble]:
    with OrionDouble() as double:
        yield double


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


def seed(orion: OrionDouble) -> None:
    orion.create_entity(E, "ServiceComponent", {
        "serviceComponentStatus": {"type": "Relationship", "object": STATUS + "Starting"},
        "image": "fiware/orion-ld:1.7.0"})


# --------------------------------------------------------------------------- GET


def test_get_missing_entity(orion: OrionDouble, http: requests.Session) -> None:
    r = http.get(orion.url + ENTITY)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                        "title": "Entity Not Found", "detail": E}


def test_get_entity(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.get(orion.url + ENTITY)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Link"].startswith(f"<{CORE_CONTEXT}>")
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in r.headers["Link"]
    assert r.json() == {
        "id": E, "type": "ServiceComponent",
        "serviceComponentStatus": {"type": "Relationship", "object": STATUS + "Starting"},
        "image": {"type": "Property", "value": "fiware/orion-ld:1.7.0"}}


def test_get_entity_as_json_ld(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.get(orion.url + ENTITY, headers={"Accept": "application/ld+json"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/ld+json"
    assert "Link" not in r.headers
    assert r.json()["@context"] == CORE_CONTEXT


def test_entity_id_in_path_may_be_percent_encoded(orion: OrionDouble,
                                                  http: requests.Session) -> None:
    seed(orion)
    r = http.get(orion.url + "/ngsi-ld/v1/entities/" + E.replace(":", "%3A"))
    assert r.status_code == 200
    assert r.json()["id"] == E


# --------------------------------------------------------------------------- POST entities


def test_create_entity_and_duplicate(orion: OrionDouble, http: requests.Session) -> None:
    body = {"id": E, "type": "ServiceComponent", **status_body("Starting")}
    r = http.post(orion.url + "/ngsi-ld/v1/entities", json=body)
    assert r.status_code == 201
    assert r.headers["Location"] == ENTITY
    assert r.content == b""
    assert orion.entity(E) == {"id": E, "type": "ServiceComponent", **status_body("Starting")}
    again = http.post(orion.url + "/ngsi-ld/v1/entities", json=body)
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/json"
    assert again.json() == {"type": "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
                            "title": "Entity already exists", "detail": E}


# --------------------------------------------------------------------------- PATCH .../attrs


def test_patch_attrs_all_exist(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))
    assert r.status_code == 204
    assert r.content == b""
    entity = orion.entity(E)
    assert entity is not None
    assert entity["serviceComponentStatus"]["object"] == STATUS + "Running"


def test_patch_attrs_some_missing_is_207(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY + "/attrs",
                   json={**status_body("Running"), "nope": {"type": "Property", "value": 1}})
    assert r.status_code == 207
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "notUpdated": [{"attributes": ["nope"], "statusCode": 404,
                        "title": "Attribute Not Found"}],
        "updated": ["serviceComponentStatus"]}
    entity = orion.entity(E)
    assert entity is not None
    assert entity["serviceComponentStatus"]["object"] == STATUS + "Running"
    assert "nope" not in entity


def test_patch_attrs_only_missing_is_404(orion: OrionDouble, http: requests.Session) -> None:
    orion.create_entity(E, "ServiceComponent")
    r = http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))
    assert r.status_code == 404
    assert r.json() == {"attributes": ["serviceComponentStatus"], "title": "Attribute Not Found"}
    assert orion.entity(E) == {"id": E, "type": "ServiceComponent"}
    assert orion.status_history(E) == []


def test_patch_attrs_of_missing_entity(orion: OrionDouble, http: requests.Session) -> None:
    r = http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    assert r.json()["detail"] == E


# --------------------------------------------------------------------------- POST .../attrs


def test_append_attrs_creates_and_overwrites(orion: OrionDouble,
                                             http: requests.Session) -> None:
    orion.create_entity(E, "ServiceComponent", {"image": "a"})
    r = http.post(orion.url + ENTITY + "/attrs",
                  json={**status_body("Running"), "image": {"type": "Property", "value": "b"}})
    assert r.status_code == 204
    assert r.content == b""
    entity = orion.entity(E)
    assert entity is not None
    assert entity["serviceComponentStatus"]["object"] == STATUS + "Running"
    assert entity["image"] == {"type": "Property", "value": "b"}
    missing = http.post(orion.url + "/ngsi-ld/v1/entities/urn:ngsi-ld:X:1/attrs",
                        json=status_body("Running"))
    assert missing.status_code == 404


# --------------------------------------------------------------------------- PATCH entity


def test_merge_patch_entity(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY, json={**status_body("Removing"), "new": 1})
    assert r.status_code == 204
    entity = orion.entity(E)
    assert entity is not None
    assert entity["serviceComponentStatus"] == {"type": "Relationship",
                                                "object": STATUS + "Removing"}
    assert entity["new"] == {"type": "Property", "value": 1}  # merge adds attributes
    missing = http.patch(orion.url + "/ngsi-ld/v1/entities/urn:ngsi-ld:X:1",
                         json=status_body("Running"))
    assert missing.status_code == 404


# --------------------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Content-Type": "text/plain"}, status_body("Running"), 415),
    ({}, status_body("Running"), 415),
    (JSON_CT, {**status_body("Running"), "@context": CORE_CONTEXT}, 400),
    ({"Content-Type": "application/ld+json"}, status_body("Running"), 400),
    ({"Content-Type": "application/ld+json", "Link": f"<{CORE_CONTEXT}>"},
     {**status_body("Running"), "@context": CORE_CONTEXT}, 400),
    ({"Content-Type": "application/ld+json"},
     {**status_body("Running"), "@context": CORE_CONTEXT}, 204),
    ({"Content-Type": "application/json; charset=utf-8",
      "Link": f'<{CORE_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"'},
     status_body("Running"), 204),
    ({**JSON_CT, "aeriOS": "true", "X-Whatever": "1"}, status_body("Running"), 204),
])
def test_content_type_rules(orion: OrionDouble, http: requests.Session,
                            headers: dict[str, str], body: dict[str, Any], status: int) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY + "/attrs", data=json.dumps(body).encode(),
                   headers=headers)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["Content-Type"] == "application/json"
        assert r.json()["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
        assert orion.status_history(E) == ["Starting"]  # nothing written
    else:
        assert orion.status_history(E) == ["Starting", "Running"]


def test_415_body(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY + "/attrs", data=b"x", headers={"Content-Type": "text/xml"})
    assert r.json() == {"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                        "title": "unsupported format of payload",
                        "detail": "only application/json and application/ld+json are supported"}


def test_invalid_json_is_400(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    r = http.patch(orion.url + ENTITY + "/attrs", data=b"{", headers=JSON_CT)
    assert r.status_code == 400


# --------------------------------------------------------------------------- gateway token


def test_bearer_token() -> None:
    with OrionDouble(token="s3cret") as orion, requests.Session() as http:
        http.trust_env = False
        seed(orion)
        assert http.get(orion.url + ENTITY).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"),
                          headers=bad).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert http.get(orion.url + ENTITY, headers=good).status_code == 200
        assert http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"),
                          headers=good).status_code == 204
        assert orion.status_history(E) == ["Starting", "Running"]


# --------------------------------------------------------------------------- history


def test_status_history_records_every_accepted_write(orion: OrionDouble,
                                                     http: requests.Session) -> None:
    http.post(orion.url + "/ngsi-ld/v1/entities",
              json={"id": E, "type": "ServiceComponent", **status_body("Starting")})
    http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))
    http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))  # repeated
    http.patch(orion.url + ENTITY, json=status_body("Removing"))
    http.post(orion.url + ENTITY + "/attrs", json=status_body("Finished"))
    http.patch(orion.url + ENTITY + "/attrs", data=b"{}", headers={"Content-Type": "text/plain"})
    assert orion.status_history(E) == ["Starting", "Running", "Running", "Removing", "Finished"]
    assert orion.status_history(E, raw=True)[0] == STATUS + "Starting"
    assert [r.status for r in orion.requests] == [201, 204, 204, 204, 204, 415]
    assert orion.requests[1].json() == status_body("Running")
    assert orion.requests[1].headers["content-type"] == "application/json"


# --------------------------------------------------------------------------- faults


def test_fault_error(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    orion.set_fault("error")
    r = http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"))
    assert r.status_code == 500
    assert orion.status_history(E) == ["Starting"]
    orion.set_fault("error", status=503, times=1)
    assert http.get(orion.url + ENTITY).status_code == 503
    assert http.get(orion.url + ENTITY).status_code == 200  # only once
    orion.set_fault("error")
    orion.clear_fault()
    assert http.patch(orion.url + ENTITY + "/attrs",
                      json=status_body("Running")).status_code == 204


def test_fault_hang(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    orion.set_fault("hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"), timeout=0.3)
    assert orion.status_history(E) == ["Starting"]
    orion.clear_fault()
    r = http.patch(orion.url + ENTITY + "/attrs", json=status_body("Running"), timeout=5)
    assert r.status_code == 204


def test_fault_down_and_back(orion: OrionDouble, http: requests.Session) -> None:
    seed(orion)
    url = orion.url
    assert http.get(url + ENTITY, timeout=5).status_code == 200  # a pooled connection exists
    orion.set_fault("down")
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(url + ENTITY, timeout=2)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + ENTITY, timeout=2)
    orion.clear_fault()
    assert orion.url == url
    r = http.get(url + ENTITY, timeout=5)
    assert r.status_code == 200  # state survives an outage
    assert r.json()["serviceComponentStatus"]["object"] == STATUS + "Starting"


def test_closed_double_refuses_connections() -> None:
    orion = OrionDouble().start()
    url = orion.url
    orion.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + ENTITY, timeout=2)


# --------------------------------------------------------------------------- query


def _query(orion: OrionDouble, http: requests.Session, **params: str) -> requests.Response:
    return http.get(orion.url + "/ngsi-ld/v1/entities", params=params)


def test_query_by_type_and_id_pattern(orion: OrionDouble, http: requests.Session) -> None:
    for eid in ("urn:ngsi-ld:Service:my_app:Component:web", "urn:ngsi-ld:Service:my:app:X:1",
                "urn:ngsi-ld:Service:other:Component:web"):
        orion.create_entity(eid, "ServiceComponent")
    orion.create_entity("urn:ngsi-ld:Service:my_app", "Service")
    r = _query(orion, http, type="ServiceComponent",
               idPattern="^urn:ngsi-ld:Service[:_]my[:_]app[:_]Component[:_]web$")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Link"].startswith(f"<{CORE_CONTEXT}>")
    assert r.json() == [{"id": "urn:ngsi-ld:Service:my_app:Component:web",
                         "type": "ServiceComponent"}]
    # Unanchored like MongoDB's $regex; `type` filters; nothing found is an empty array.
    found = _query(orion, http, type="ServiceComponent", idPattern="my.app").json()
    assert [e["id"] for e in found] == ["urn:ngsi-ld:Service:my_app:Component:web",
                                        "urn:ngsi-ld:Service:my:app:X:1"]
    assert [e["id"] for e in _query(orion, http, idPattern="my.app$").json()] == \
        ["urn:ngsi-ld:Service:my_app"]
    empty = _query(orion, http, type="ServiceComponent", idPattern="^nothing$")
    assert (empty.status_code, empty.json()) == (200, [])


def test_query_limit_and_count(orion: OrionDouble, http: requests.Session) -> None:
    for i in range(5):
        orion.create_entity(f"urn:ngsi-ld:Service:1:Component:{i}", "ServiceComponent")
    r = _query(orion, http, type="ServiceComponent", limit="2", count="true")
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Service:1:Component:0",
                                           "urn:ngsi-ld:Service:1:Component:1"]
    assert r.headers["NGSILD-Results-Count"] == "5"
    assert "NGSILD-Results-Count" not in _query(orion, http, type="ServiceComponent").headers
    assert _query(orion, http, type="ServiceComponent", limit="1001").status_code == 400


@pytest.mark.parametrize(("params", "title"), [
    ({}, "Too broad query"),
    ({"limit": "3"}, "Too broad query"),
    ({"idPattern": "(unclosed"}, "Invalid regular expression for idPattern"),
])
def test_query_refused(orion: OrionDouble, http: requests.Session, params: dict[str, str],
                       title: str) -> None:
    r = _query(orion, http, **params)
    assert r.status_code == 400
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert r.json()["title"] == title
