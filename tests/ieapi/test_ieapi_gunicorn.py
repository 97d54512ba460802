"""The IE API as it runs on an IE: `python -m ieapi` (gunicorn) as a real process."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import requests

from ieapi.contract import LABEL_MANAGED
from testbed.dockerd import remove_managed
from testbed.images import INDEX_HTML
from testbed.procs import ServerProcess, free_port, python_module_argv, running_server
from tests.ieapi.helpers import TOKEN, eventually, httpd_spec, sleeper_spec

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def instance() -> str:
    return f"gunicorn-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(dockerd: str, instance: str, docker_client: docker.DockerClient,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "IEAPI_BIND": f"127.0.0.1:{port}",
        "IEAPI_TOKEN": TOKEN,
        "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:gunicorn",
        "IEAPI_INSTANCE_ID": instance,
        "IEAPI_CONTAINER_PREFIX": f"g{instance[-8:]}",
        "IEAPI_STOP_TIMEOUT_SECONDS": "1",
        "DOCKER_HOST": dockerd,
    }
    log_path = tmp_path_factory.mktemp("ieapi") / "gunicorn.log"
    with running_server(python_module_argv("ieapi"), env=env, port=port, log_path=log_path,
                        name="ieapi") as process:
        yield process
    remove_managed(docker_client, instance)


@pytest.fixture
def api(server: ServerProcess) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session


def test_lifecycle_through_gunicorn(server: ServerProcess, api: requests.Session,
                                    busybox_image: str) -> None:
    url = f"{server.url}/v1/containers/ns.served"
    port = free_port()
    assert requests.get(url, timeout=5).status_code == 401
    created = api.put(url, json=httpd_spec(busybox_image, port), timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "running"
    with requests.Session() as plain:
        plain.trust_env = False
        body = eventually(lambda: plain.get(f"http://127.0.0.1:{port}/", timeout=2).content)
    assert body == INDEX_HTML
    assert api.get(url, timeout=10).json()["id"] == created.json()["id"]
    names = [item["name"] for item in api.get(f"{server.url}/v1/containers", timeout=10).json()[
        "items"]]
    assert "ns.served" in names
    assert api.delete(url, timeout=30).json() == {"name": "ns.served", "deleted": True}
    assert api.get(url, timeout=10).status_code == 404
    assert "Authorization" not in server.log_tail(200)
    assert TOKEN not in server.log_tail(200)


def test_concurrent_puts_through_gunicorn_make_one_container(
        server: ServerProcess, api: requests.Session, busybox_image: str,
        docker_client: docker.DockerClient, instance: str) -> None:
    url = f"{server.url}/v1/containers/ns.together"
    spec = sleeper_spec(busybox_image, service="svc-together", alias="together")

    def put() -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.put(url, json=spec, timeout=30,
                               headers={"Authorization": f"Bearer {TOKEN}"})

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: put(), range(6)))
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    label = {"label": f"{LABEL_MANAGED}={instance}"}
    named = [c for c in docker_client.containers.list(all=True, filters=label)
             if c.name.endswith("-ns.together")]
    assert len(named) == 1
    assert api.delete(url, timeout=30).json()["deleted"] is True


def test_healthcheck_module(server: ServerProcess, tmp_path: Path) -> None:
    def check(bind: str) -> int:
        return subprocess.run([sys.executable, "-m", "ieapi.healthcheck"],
                              env={"IEAPI_BIND": bind, "PATH": "/usr/bin:/bin"},
                              capture_output=True, timeout=30, check=False).returncode

    assert check(f"127.0.0.1:{server.port}") == 0
    assert check(f"127.0.0.1:{free_port()}") == 1
