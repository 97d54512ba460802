"""Hypothesis fuzzing of every hook route through the Flask test client: malformed and adversarial
bodies (wrong types, missing keys, huge or deeply nested JSON, unicode, raw bytes, v1-style keys)
never give a 5xx. A 200 is a response Metacontroller's strict v2 decoding accepts, whose status
the CRD's schema accepts; a 400 is a JSON error naming the field; an oversized body is a 413.

No network: the hooks' sessions get an adapter that refuses every connection, so a fuzzed
`spec.api.url` can never send a packet anywhere (they see "IE unreachable").
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from hooks import create_app
from hooks.broker import BrokerClient
from hooks.ie import IEClient
from hooks.settings import Settings
from testbed.crdschema import apply_schema
from testbed.hookprotocol import HookError, parse_customize_response, parse_sync_response
from testbed.manifests import load_crds

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "local" / "hooks"
MAX_BODY = 64 * 1024
SEEDS = {
    "/scd/customize": ["scd-customize.json"],
    "/scd/sync": ["scd-sync.json", "scd-sync-placed.json"],
    "/scd/finalize": ["scd-finalize.json"],
    "/die/sync": ["die-sync.json"],
    "/die/finalize": ["die-sync.json"],
}
ROUTES = sorted(SEEDS)
CRDS = load_crds()
STATUS_SCHEMA = {
    route: CRDS["ServiceComponentDocker" if route.startswith("/scd") else
                "DockerInfrastructureElement"].schema["properties"]["status"]
    for route in ROUTES}


class _Offline(BaseAdapter):
    """Refuses every request: fuzzed URLs must never reach a network."""

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        raise requests.ConnectionError("offline (fuzz test)")

    def close(self) -> None:
        pass


def _offline_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Offline())
    return session


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    tokens = tmp_path_factory.mktemp("tokens")
    (tokens / "edge-1").write_text("token")
    hook_settings = Settings(ie_token_dir=tokens, max_request_bytes=MAX_BODY, ie_retries=0,
                             broker_retries=0, broker_url="http://127.0.0.1:9",
                             log_level="ERROR")
    app = create_app(hook_settings,
                     ie_client=IEClient(hook_settings, session=_offline_session()),
                     broker_client=BrokerClient(hook_settings, session=_offline_session()))
    hooks_log = logging.getLogger("hooks")
    level = hooks_log.level
    hooks_log.setLevel(logging.CRITICAL)  # thousands of bad-request warnings
    yield app.test_client()
    hooks_log.setLevel(level)


def _seed(route: str, index: int) -> dict[str, Any]:
    names = SEEDS[route]
    body: dict[str, Any] = json.loads((SAMPLES / names[index % len(names)]).read_text())
    if route.endswith("/finalize"):
        body["finalizing"] = True
    return body


def check_answer(route: str, code: int, data: bytes) -> None:
    """What any answer to any body must satisfy."""
    assert code < 500, (code, data[:300])
    answer = json.loads(data)
    if code == 200:
        if route == "/scd/customize":
            parse_customize_response(data, True)
            return
        try:
            parsed = parse_sync_response(data, True)
        except HookError as exc:
            raise AssertionError(f"Metacontroller would reject: {exc}: {data[:300]!r}") from exc
        _, errors = apply_schema(parsed.get("status") or {}, STATUS_SCHEMA[route], ".status")
        assert not errors, errors
    elif code == 413:
        assert answer["error"]["code"]
    else:
        assert code in (400, 405, 415), (code, answer)
        assert answer["error"]["code"]
        if code == 400:
            assert isinstance(answer["error"].get("field"), str), answer
            assert answer["error"]["field"], answer


def post(client: FlaskClient, route: str, data: bytes) -> None:
    response = client.post(route, data=data, content_type="application/json")
    check_answer(route, response.status_code, response.data)


# --------------------------------------------------------------------------- strategies

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _mutate(body: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> Any:
    """One adversarial change at `path`: replace, delete, or rename a key v1/snake style."""
    if not path:
        return value if how == "replace" else body
    out = copy.deepcopy(body)
    holder: Any = out
    for part in path[:-1]:
        holder = holder[part]
    last = path[-1]
    if how == "replace":
        holder[last] = value
    elif how == "delete":
        del holder[last]
    elif isinstance(last, str) and isinstance(holder, dict):
        renamed = _snake(last) if how == "snake" else last.split(".")[0]
        holder[renamed] = holder.pop(last)
    return out


@st.composite
def mutated_bodies(draw: st.DrawFn, route: str) -> Any:
    body: Any = _seed(route, draw(st.integers(0, 1)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(body))
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["replace", "replace", "delete", "snake", "v1key"]))
        body = _mutate(body, path, how, draw(json_values))
        if not isinstance(body, dict):
            break
    return body


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.mark.parametrize("route", ROUTES)
def test_mutated_hook_requests(client: FlaskClient, route: str) -> None:
    @FUZZ
    @given(body=mutated_bodies(route))
    def run(body: Any) -> None:
        post(client, route, json.dumps(body).encode())

    run()


@pytest.mark.parametrize("route", ROUTES)
def test_arbitrary_json_and_bytes(client: FlaskClient, route: str) -> None:
    @FUZZ
    @given(data=st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                          st.binary(max_size=200),
                          st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
    def run(data: bytes) -> None:
        post(client, route, data)

    run()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [10, 500, 990, 1000, 5000, 100_000])
def test_deeply_nested_json(client: FlaskClient, route: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    for data in (nested, f'{{"parent": {{"metadata": {{"name": "x"}}, "status": {nested}}}}}',
                 json.dumps(_seed(route, 0))[:-1] + f', "deep": {nested}}}'):
        post(client, route, data.encode())


@pytest.mark.parametrize("route", ROUTES)
def test_size_bounds(client: FlaskClient, route: str) -> None:
    body = _seed(route, 0)
    body["padding"] = "x" * MAX_BODY
    response = client.post(route, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"]
    body["padding"] = list(range(8000))  # large but under the limit: answered, not a 5xx
    post(client, route, json.dumps(body).encode())


@pytest.mark.parametrize("route", ROUTES)
def test_not_a_hook_request_names_the_field(client: FlaskClient, route: str) -> None:
    cases = {
        b"[]": "body",
        b'"text"': "body",
        b"{}": "parent",
        b'{"parent": []}': "parent",
        b'{"parent": {"metadata": {}}}': "parent.metadata.name",
        b'{"parent": {"metadata": {"name": 7}}}': "parent.metadata.name",
        b'{"parent": {"metadata": "x"}}': "parent.metadata",
    }
    for data, field in cases.items():
        response = client.post(route, data=data, content_type="application/json")
        assert response.status_code == 400, (data, response.data)
        assert response.get_json()["error"]["field"] == field, (data, response.get_json())
