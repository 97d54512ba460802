"""Bearer tokens of the IE API (a real gunicorn ieapi reading IEAPI_TOKEN_FILE): a missing,
wrong or old token is refused with 401, the token file is re-read when rotated (an atomic
replace, as the kubelet does), and the hooks report a refused token as IEUnauthorized until
their own copy is rotated too."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
import requests

from testbed.stack import IE, Stack
from tests.reliability.helpers import (
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    die_condition,
    die_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def _rotate(path: Path, token: str) -> None:
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(token + "\n")
    os.replace(fresh, path)  # a new inode, like a Secret volume's symlink swap


def _status(session: requests.Session, ie: IE, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = session.get(f"{ie.url}/v1/containers", headers=headers, timeout=5)
    if answer.status_code == 401:
        body = answer.json()
        assert body["error"]["code"] == "Unauthorized"
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
        if authorization:
            assert authorization.split()[-1] not in answer.text  # never echoed
    return answer.status_code


def test_tokens_and_rotation(dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    token_file = tmp_path / "ieapi-token"
    with Stack(tmp_path / "stack", dockerd) as stack, requests.Session() as http:
        http.trust_env = False
        ie = stack.add_ie("edge-1", start=False)
        token_file.write_text(ie.token)
        ie.env.update(IEAPI_TOKEN="", IEAPI_TOKEN_FILE=str(token_file))
        ie.start()
        old = ie.token
        assert _status(http, ie, None) == 401
        assert _status(http, ie, "Bearer") == 401
        assert _status(http, ie, f"Bearer {old}x") == 401
        assert _status(http, ie, f"Basic {old}") == 401
        assert _status(http, ie, f"Bearer {old}") == 200
        assert http.get(f"{ie.url}/healthz", timeout=5).status_code == 200  # liveness is open
        assert http.get(f"{ie.url}/openapi.json", timeout=5).status_code == 200

        stack.driver.apply(ie.die())
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)

        new = secrets.token_hex(16)
        _rotate(token_file, new)
        assert _status(http, ie, f"Bearer {old}") == 401  # no restart needed, old one is dead
        assert _status(http, ie, f"Bearer {new}") == 200

        stack.driver.run_for(15)  # the hooks still hold the old token
        assert not die_ready(stack, ie.name)
        assert die_condition(stack, ie.name, "Ready").get("reason") == "IEUnauthorized"
        assert "edge-1" in ((stack.condition("web", "IEReady") or {}).get("message", ""))
        assert_exactly(stack, {ie.name: ["web"]})  # refused calls change nothing

        _rotate(stack.token_dir / ie.name, new)  # the hooks' Secret is rotated too
        stack.driver.run_until(lambda: die_ready(stack, ie.name)
                               and stack.phase("web") == "Running", timeout=60)
        assert_hooks_answered(stack.driver)
        assert_exactly(stack, {ie.name: ["web"]})
