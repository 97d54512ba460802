"""`llo-docker logs|describe` (and `kubectl llo`) against the real CRD API server, with real
hooks, a real gunicorn ieapi and real containers, run as a user would run it: a subprocess with
a kubeconfig, through the real kubectl.

What is a double and why: the CRD API server serves no core/v1 Secret and no RBAC, so the
kubeconfig points at tests/support/coreapi.py, a front that forwards every path to the real CRD
server and answers Secret reads itself, exactly as kube-apiserver does (the Secret, or a 403
`Forbidden` / 404 `NotFound` Status). Metacontroller is the project's driver
(tests/support/kube.py), as in the other k8s tests. Everything else is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from testbed.dockerd import remove_managed
from testbed.metacontroller import CRDS_DIR
from testbed.procs import ServerProcess, free_port, running_server
from tests.support.coreapi import CoreFront, SecretRule, core_front
from tests.support.crdserver import CrdApiServer
from tests.support.kube import KubeDriver

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.docker]

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token"
IE = "edge-cli"
IE_ID = "urn:ngsi-ld:InfrastructureElement:cli"
TOKENS = ("llo-docker", "llo-ie-tokens")
VENV_BIN = Path(sys.executable).parent


@dataclass
class World:
    api: CrdApiServer
    hooks: ServerProcess
    ieapi: ServerProcess
    front: CoreFront
    image: str


@pytest.fixture(scope="module")
def world(dockerd: str, docker_client: docker.DockerClient, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("cli")
    instance = f"cli-{uuid.uuid4().hex[:8]}"
    tokens = tmp / "tokens"
    tokens.mkdir()
    (tokens / IE).write_text(TOKEN)
    ieapi_port, hooks_port = free_port(), free_port()
    ieapi_env = {"IEAPI_TOKEN": TOKEN, "IEAPI_IE_ID": IE_ID, "IEAPI_INSTANCE_ID": instance,
                 "IEAPI_CONTAINER_PREFIX": f"c{instance[-8:]}", "DOCKER_HOST": dockerd,
                 "IEAPI_STOP_TIMEOUT_SECONDS": "1", "IEAPI_BIND": f"127.0.0.1:{ieapi_port}"}
    hooks_env = {"LLO_LISTEN": f"127.0.0.1:{hooks_port}", "LLO_WORKERS": "1",
                 "LLO_THREADS": "4", "LLO_IE_TOKEN_DIR": str(tokens),
                 "LLO_RESYNC_CONVERGING_SECONDS": "0.5", "LLO_LOG_LEVEL": "INFO",
                 # a running job is synced at the steady pace: short, to see it end soon
                 "LLO_RESYNC_STEADY_SECONDS": "1"}
    gunicorn = [sys.executable, "-m", "gunicorn"]
    with CrdApiServer() as api:
        api.kubectl("apply", "-f", str(CRDS_DIR))
        api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
        try:
            with running_server([*gunicorn, "--config", "python:ieapi.gunicorn_conf"],
                                env=ieapi_env, port=ieapi_port, name="ieapi",
                                log_path=tmp / "ieapi.log", cwd=ROOT) as ieapi, \
                 running_server([*gunicorn, "--config", "python:hooks.gunicorn_conf",
                                 "hooks:create_app()"], env=hooks_env, port=hooks_port,
                                name="hooks", log_path=tmp / "hooks.log", cwd=ROOT) as hooks, \
                 core_front(api, tmp) as front:
                front.secrets[TOKENS] = SecretRule(data={IE: TOKEN})
                api.kubectl("apply", "-f", "-", input=yaml.safe_dump({
                    "apiVersion": "llo.aeros-project.eu/v1alpha1",
                    "kind": "DockerInfrastructureElement", "metadata": {"name": IE},
                    "spec": {"id": IE_ID, "hostname": IE, "api": {"url": ieapi.url}}}))
                yield World(api, hooks, ieapi, front, busybox_image)
        finally:
            remove_managed(docker_client, instance)


@pytest.fixture
def driver(world: World) -> Iterator[KubeDriver]:
    with KubeDriver(world.hooks.url, world.api) as d:
        yield d


@pytest.fixture
def secret(world: World) -> Iterator[SecretRule]:
    """The tokens Secret as the test leaves it; restored afterwards."""
    rule = SecretRule(data={IE: TOKEN})
    world.front.secrets[TOKENS] = rule
    yield rule
    world.front.secrets[TOKENS] = SecretRule(data={IE: TOKEN})


def _apply_scd(world: World, name: str, script: str, **spec: Any) -> None:
    world.api.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selectedIE": {"id": IE_ID, "hostname": IE}, "image": world.image,
                 "cliArgs": [{"key": "sh"}, {"key": "-c", "value": script}], **spec}}))


def _phase(driver: KubeDriver, name: str) -> str | None:
    phase: str | None = ((driver.cached("scd", name, "default") or {}).get("status") or {}) \
        .get("phase")
    return phase


def llo(world: World, *args: str, plugin: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed command, as a user runs it (kubectl on PATH, our kubeconfig)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(world.front.kubeconfig)
    argv = ["kubectl", "llo", *args] if plugin else [str(VENV_BIN / "llo-docker"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


# stdout and stderr reach Docker's log through two copiers: the pause keeps their order fixed.
CRASH = ('for i in $(seq 1 120); do echo "starting step $i"; done; sleep 0.5; '
         'echo "error: cannot open /data/db: permission denied" >&2; exit 3')


def test_from_get_scd_to_the_cause(world: World, driver: KubeDriver) -> None:
    """The README's walk-through: kubectl get scd → llo-docker describe → llo-docker logs."""
    _apply_scd(world, "db", CRASH, isJob=True)
    driver.run_until(lambda: _phase(driver, "db") == "Failed", timeout=60)
    driver.run_until_steady()
    row = world.api.kubectl("get", "scd", "db").stdout
    assert "Failed" in row
    assert "JobFailed" in row

    described = llo(world, "describe", "db")
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert "Phase:       Failed  (JobFailed)" in out
    assert f"Placement:   IE {IE}, container default.db" in out
    assert "Ready" in out
    assert "ContainerReady" in out
    assert "Last output (exit code 3" in out
    assert "older output left out" in out
    assert "  | error: cannot open /data/db: permission denied" in out
    assert len(out.splitlines()) < 120  # one screen: the tail is bounded

    logs = llo(world, "logs", "-n", "default", "db", "--tail", "2")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "starting step 120\nerror: cannot open /data/db: permission denied\n"
    whole = llo(world, "logs", "db")
    assert whole.stdout.count("starting step") == 120

    plugin = llo(world, "describe", "db", plugin=True)  # `kubectl llo describe db`
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout == out
    # The front served the Secret read and forwarded the rest to the real API server.
    paths = [p.split("?", 1)[0] for p in world.front.requests_seen]
    assert "/api/v1/namespaces/llo-docker/secrets/llo-ie-tokens" in paths
    assert "/apis/llo.aeros-project.eu/v1alpha1/namespaces/default/servicecomponentdockers/db" \
        in paths


def test_follow_ends_when_the_container_stops(world: World, driver: KubeDriver) -> None:
    _apply_scd(world, "ticker", "for i in 1 2 3 4 5; do echo tick $i; sleep 1; done",
               isJob=True)
    driver.run_until(lambda: _phase(driver, "ticker") in ("Running", "Succeeded"), timeout=60)
    followed = llo(world, "logs", "ticker", "-f", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "".join(f"tick {i}\n" for i in range(1, 6))


def test_not_placed_yet(world: World) -> None:
    world.api.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
        "metadata": {"name": "waiting", "namespace": "default"},
        "spec": {"selectedIE": {"id": "urn:x", "hostname": "nowhere"}, "image": "x"}}))
    answer = llo(world, "logs", "waiting")
    assert answer.returncode == 3
    assert "ServiceComponentDocker default/waiting is not placed on an IE yet" in answer.stderr
    missing = llo(world, "logs", "no-such-scd")
    assert missing.returncode == 1
    assert "no ServiceComponentDocker default/no-such-scd" in missing.stderr


def _placed_elsewhere(world: World, name: str, url: str) -> None:
    """An SCD whose status places it on an IE whose DIE is gone, at `url`."""
    world.api.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selectedIE": {"id": "urn:gone", "hostname": "gone-ie"}, "image": "x"}}))
    status = {"phase": "Unknown", "reason": "IENotFound", "placement": {
        "ie": "gone-ie", "ieId": "urn:gone", "apiUrl": url, "tokenKey": IE,
        "container": f"default.{name}"}}
    world.api.kubectl("patch", "scd", name, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": status}))


def test_ie_unreachable(world: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    _placed_elsewhere(world, "stranded", dead)
    answer = llo(world, "logs", "stranded")
    assert answer.returncode == 5
    assert f"cannot reach the IE API of IE 'gone-ie' at {dead}" in answer.stderr


def test_secret_forbidden_absent_or_without_the_key(world: World, secret: SecretRule) -> None:
    _placed_elsewhere(world, "guarded", world.ieapi.url)
    secret.forbidden_for = "jane"
    forbidden = llo(world, "logs", "guarded")
    assert forbidden.returncode == 4
    assert "no permission to read the IE token" in forbidden.stderr
    assert 'User "jane" cannot get resource "secrets"' in forbidden.stderr
    assert "get` on Secret llo-docker/llo-ie-tokens" in forbidden.stderr

    del world.front.secrets[TOKENS]
    absent = llo(world, "logs", "guarded")
    assert absent.returncode == 4
    assert "no Secret llo-docker/llo-ie-tokens" in absent.stderr

    world.front.secrets[TOKENS] = SecretRule(data={"other-ie": TOKEN})
    keyless = llo(world, "logs", "guarded")
    assert keyless.returncode == 4
    assert f"has no key {IE!r}" in keyless.stderr

    world.front.secrets[TOKENS] = SecretRule(data={IE: "wrong-token"})
    refused = llo(world, "logs", "guarded")
    assert refused.returncode == 5
    assert "refused the token" in refused.stderr
