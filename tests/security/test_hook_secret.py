"""The hooks' shared secret (LLO_HOOK_SECRET_FILE): off in a bare `create_app`, on in the shipped
Deployment and in every Stack; when set, a call without it or with a wrong one is a 401 and the
right one (Bearer: what Metacontroller sends from `webhook.authorization`; or a Basic password,
`webhook.basicAuth`) is served. The file is re-read when rotated."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from hooks import create_app
from hooks.settings import Settings
from testbed.metacontroller import Driver
from testbed.stack import HOOK_SECRET, Stack
from tests.reliability.helpers import SLEEP, assert_exactly, assert_hooks_answered, ready_ie

ROOT = Path(__file__).resolve().parents[2]
BODY = json.loads((ROOT / "samples/local/hooks/scd-customize.json").read_text())
ROUTES = ["/scd/customize", "/scd/sync", "/scd/finalize", "/die/sync", "/die/finalize"]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _code(client: FlaskClient, route: str, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = client.post(route, json=BODY, headers=headers)
    if answer.status_code == 401:
        assert answer.get_json()["error"]["code"] == "Unauthorized"
    return answer.status_code


def test_off_by_default() -> None:
    client = create_app(Settings()).test_client()
    assert _code(client, "/scd/customize", None) == 200


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_or_missing_secret_is_401(tmp_path: Path, route: str) -> None:
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("s3cret-one\n")
    client = create_app(Settings(hook_secret_file=secret_file)).test_client()
    for wrong in (None, "", "Bearer", "Bearer s3cret-on", "Bearer s3cret-one2",
                  "bearer  s3cret-one", "s3cret-one", _basic("llo", "nope"),
                  _basic("s3cret-one", ""), "Basic !!!"):
        assert _code(client, route, wrong) == 401, wrong
    assert _code(client, route, "Bearer s3cret-one") != 401
    assert _code(client, route, _basic("llo", "s3cret-one")) != 401
    assert client.get("/healthz").status_code == 200  # probes need no secret


def test_rotation_and_missing_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("first")
    client = create_app(Settings(hook_secret_file=secret_file)).test_client()
    assert _code(client, "/scd/customize", "Bearer first") == 200
    fresh = tmp_path / "fresh"
    fresh.write_text("second")
    os.replace(fresh, secret_file)
    assert _code(client, "/scd/customize", "Bearer first") == 401
    assert _code(client, "/scd/customize", "Bearer second") == 200
    secret_file.unlink()
    assert _code(client, "/scd/customize", "Bearer second") == 401  # fail closed


@pytest.mark.e2e
@pytest.mark.docker
def test_metacontroller_sends_the_secret_of_webhook_authorization(
        dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    with Stack(tmp_path / "stack", dockerd) as stack:
        # The shipped CompositeControllers name Secret llo-hook-secret; the driver sends its
        # value as Metacontroller does, and the hooks hold the same value: it all works.
        ie = ready_ie(stack, "edge-2")
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
        assert_hooks_answered(stack.driver)
        # A Secret whose value differs from the hooks' file: every hook call is refused and
        # nothing changes (Metacontroller would only post Warning events).
        stack.driver.close()
        stack.driver = Driver(stack.hooks_url, secrets={
            HOOK_SECRET[:2]: {HOOK_SECRET[2]: "not-the-hooks-secret"}})
        edge = stack.add_ie("edge-1")
        stack.driver.apply(edge.die())
        stack.driver.run_for(5)
        assert stack.driver.calls()
        assert {c.status_code for c in stack.driver.calls()} == {401}
        die = stack.driver.get("DockerInfrastructureElement", "edge-1") or {}
        assert die.get("status") is None
        assert_exactly(stack, {ie.name: ["web"]})  # and nothing on edge-1
