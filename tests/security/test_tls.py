"""Optional TLS between the hooks and the IE API: ieapi serves HTTPS with IEAPI_TLS_CERT_FILE /
IEAPI_TLS_KEY_FILE (gunicorn certfile/keyfile), the hooks verify the IE's certificate against
LLO_IE_CA_BUNDLE only. REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the hooks' environment make plain
`requests` ignore an explicit CA (docs/design.md §3): both are set here, pointing at the *wrong* CA,
to prove the hooks' session does not read them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from testbed.procs import python_module_argv, server_env
from testbed.stack import Stack
from tests.reliability.helpers import (
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    die_condition,
    die_ready,
    ready_ie,
    report,
)
from tests.security.pki import ServerPKI, make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), "llo-test")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPKI:
    return make_pki(tmp_path_factory.mktemp("other-pki"), "other")


def _tls_env(pki: ServerPKI) -> dict[str, str]:
    return {"IEAPI_TLS_CERT_FILE": str(pki.cert), "IEAPI_TLS_KEY_FILE": str(pki.key)}


def _hooks_env(trusted: ServerPKI, decoy: ServerPKI) -> dict[str, str]:
    return {"LLO_IE_CA_BUNDLE": str(trusted.ca), "REQUESTS_CA_BUNDLE": str(decoy.ca),
            "CURL_CA_BUNDLE": str(decoy.ca)}


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_https_ie_verified_against_the_configured_ca(dockerd: str, busybox_image: str,
                                                     tmp_path: Path, pki: ServerPKI,
                                                     other_pki: ServerPKI) -> None:
    with Stack(tmp_path, dockerd, hooks_env=_hooks_env(pki, other_pki)) as stack:
        assert stack.hooks is not None
        assert _environ_of(stack.hooks.pid)["REQUESTS_CA_BUNDLE"] == str(other_pki.ca)
        ie = ready_ie(stack, **_tls_env(pki))
        assert ie.url.startswith("https://")
        with requests.Session() as session:
            session.trust_env = False
            info = session.get(f"{ie.url}/v1/info", verify=str(pki.ca), timeout=5,
                               headers={"Authorization": f"Bearer {ie.token}"})
            assert info.status_code == 200
            with pytest.raises(requests.exceptions.SSLError):
                session.get(f"{ie.url}/healthz", verify=str(other_pki.ca), timeout=5)
            plain = f"http://127.0.0.1:{ie.port}/healthz"
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get(plain, timeout=5)  # no plain HTTP beside HTTPS
        # The image's HEALTHCHECK follows the server to HTTPS.
        check = subprocess.run(
            python_module_argv("ieapi.healthcheck"), capture_output=True, text=True, timeout=30,
            check=False, env=server_env({"IEAPI_BIND": f"127.0.0.1:{ie.port}", **_tls_env(pki)}))
        assert check.returncode == 0, check.stderr
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
        assert_hooks_answered(stack.driver)
        assert_exactly(stack, {ie.name: ["web"]})


def test_certificate_of_another_ca_is_a_clear_condition(dockerd: str, busybox_image: str,
                                                        tmp_path: Path, pki: ServerPKI,
                                                        other_pki: ServerPKI) -> None:
    # The hooks trust only `other_pki`; the env variables name the IE's real CA, which must
    # not help.
    with Stack(tmp_path, dockerd, hooks_env=_hooks_env(other_pki, pki)) as stack:
        ie = stack.add_ie("edge-1", env=_tls_env(pki))
        stack.driver.apply(ie.die())
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
        stack.driver.run_for(15)
        reachable = die_condition(stack, ie.name, "Reachable")
        assert not die_ready(stack, ie.name)
        assert reachable.get("reason") == "IETLSError", reachable
        assert "CERTIFICATE_VERIFY_FAILED" in reachable.get("message", ""), reachable
        assert stack.phase("web") == "Pending"
        ie_ready = stack.condition("web", "IEReady") or {}
        assert "TLS" in ie_ready.get("message", ""), ie_ready
        assert_hooks_answered(stack.driver)  # a TLS failure is a condition, never a crash
        assert_exactly(stack, {ie.name: []})
        report("TLS wrong CA", die_reachable=reachable.get("message"))


def test_half_configured_tls_refuses_to_start(tmp_path: Path, pki: ServerPKI) -> None:
    env = server_env({"IEAPI_TOKEN": "t", "IEAPI_TLS_CERT_FILE": str(pki.cert),
                      "IEAPI_BIND": "127.0.0.1:0"})
    done = subprocess.run(python_module_argv("ieapi"), env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done
    assert "IEAPI_TLS_KEY_FILE" in done.stderr, done.stderr
    env.update(IEAPI_TLS_KEY_FILE=str(tmp_path / "missing.key"))
    done = subprocess.run(python_module_argv("ieapi"), env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done
    assert "not a readable file" in done.stderr, done.stderr
