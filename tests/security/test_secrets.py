"""Secrets (registry passwords, IE tokens, the broker token, WireGuard private keys) never appear
in the hooks' or the IE API's logs (DEBUG, access logs on), in any status the hooks wrote, in
hook answers or Warning events, in the IE API's error bodies, in the labels, environment or
anything else `docker inspect` shows of the containers made, or in any process's argv or
environment on the IE (wireguard-go, wg)."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from pathlib import Path

import pytest
import requests

from testbed.procs import free_port
from testbed.stack import NAMESPACE, Stack
from tests.reliability.helpers import SCD_KIND, SLEEP, assert_hooks_answered, ready_ie
from tests.support.wghub import missing_tools

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def _secret(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(12)}"


def _leaks(text: str, known: dict[str, str]) -> list[str]:
    return [name for name, value in known.items() if value in text]


def test_secrets_never_leak(dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    known = {"registry password": _secret("regpw"), "second registry password": _secret("regpw2"),
             "wireguard private key": base64.b64encode(secrets.token_bytes(32)).decode(),
             "broker token": _secret("brokertok")}
    # With WireGuard here the overlay is really set up (keepalive 0: up once configured, no
    # hub needed); without it the component fails with WireGuardUnsupported: the key must
    # stay secret either way.
    wireguard = not missing_tools()
    hooks_env = {"LLO_LOG_LEVEL": "DEBUG", "LLO_ACCESS_LOG": "true"}
    with Stack(tmp_path, dockerd, broker_token=known["broker token"],
               hooks_env=hooks_env) as stack:
        ie = ready_ie(stack, IEAPI_LOG_LEVEL="debug")
        known["IE token"] = ie.token
        assert stack.orion is not None
        for name in ("web", "pull"):
            stack.orion.create_entity(f"urn:ngsi-ld:Service:1:Component:{name}",
                                      "ServiceComponent")
        overlay = {"internalIp": "10.99.0.2/32", "dns": "10.99.0.1",
                   "publicKey": base64.b64encode(secrets.token_bytes(32)).decode(),
                   "privateKey": known["wireguard private key"], "endpoint": "127.0.0.1:51820",
                   "allowedIps": "10.99.0.0/24", "persistentKeepalive": 0}
        stack.driver.apply(Stack.scd(
            "web", ie, busybox_image, cliArgs=SLEEP, envVars=[{"key": "MODE", "value": "demo"}],
            imageRegistry={"url": "127.0.0.1:1", "username": "user",
                           "password": known["registry password"]},
            networkOverlay=overlay))
        unpullable = f"127.0.0.1:{free_port()}/llo/private:1"  # nothing listens: pull fails
        stack.driver.apply(Stack.scd(
            "pull", ie, unpullable, cliArgs=SLEEP,
            imageRegistry={"url": unpullable.split("/", maxsplit=1)[0], "username": "user",
                           "password": known["second registry password"]}))
        web_phase = "Running" if wireguard else "Failed"
        stack.driver.run_until(lambda: stack.phase("web") == web_phase
                               and stack.phase("pull") == "Failed", timeout=60)
        processes = []  # every process's argv and environment while the overlay runs
        for proc in Path("/proc").glob("[0-9]*"):
            for part in ("cmdline", "environ"):
                with contextlib.suppress(OSError):
                    processes.append((proc / part).read_bytes().decode(errors="replace"))
        inspected = [stack.client.api.inspect_container(c.id) for c in ie.containers(stack.client)]
        assert len(inspected) == 1

        # The IE API's own error bodies, for requests carrying the secrets.
        error_bodies = []
        with requests.Session() as http:
            http.trust_env = False
            auth = {"Authorization": f"Bearer {ie.token}"}
            for body in (
                {"image": "Bad Image", "registryAuth": {"password": known["registry password"]}},
                {"image": busybox_image, "registryAuth": {"password": known["registry password"],
                                                          "token": known["registry password"]}},
                {"image": busybox_image, "networkOverlay": {
                    "privateKey": known["wireguard private key"], "mtu": "many"}},
            ):
                answer = http.put(f"{ie.url}/v1/containers/default.probe", json=body,
                                  headers=auth, timeout=10)
                assert answer.status_code == 400, answer.text
                error_bodies.append(answer.text)
            wrong = http.get(f"{ie.url}/v1/containers", timeout=10,
                             headers={"Authorization": f"Bearer {known['broker token']}"})
            assert wrong.status_code == 401
            error_bodies.append(wrong.text)

        for name in ("web", "pull"):
            stack.driver.delete(SCD_KIND, name, NAMESPACE)
        stack.driver.run_until(lambda: stack.get_scd("web") is None
                               and stack.get_scd("pull") is None, timeout=60)
        assert_hooks_answered(stack.driver)
        assert stack.hooks is not None
        assert ie.server is not None
        places = {
            "hooks log": stack.hooks.log_path.read_text(errors="replace"),
            "ieapi log": ie.server.log_path.read_text(errors="replace"),
            "status writes": json.dumps([w.status for w in stack.driver.status_writes]),
            "hook answers": json.dumps([c.response for c in stack.driver.hook_calls]),
            "events": json.dumps([e.message for e in stack.driver.events]),
            "ieapi error bodies": "\n".join(error_bodies),
            "docker inspect": json.dumps(inspected),
        }
    # The scan must look at real material: DEBUG logs with requests in them, and the container.
    assert f"scd default/web: {web_phase}" in places["hooks log"]
    assert "DEBUG" in places["hooks log"]
    assert "PUT /v1/containers/default.web" in places["ieapi log"]
    assert "MODE=demo" in inspected[0]["Config"]["Env"]
    # The test's stack hands the IE its token through the environment (as an operator might);
    # the overlay's key must not reach any process's argv or environment.
    assert not [text for text in processes if known["wireguard private key"] in text]
    assert processes
    leaks = {place: _leaks(text, known) for place, text in places.items()}
    assert leaks == {place: [] for place in places}, leaks
