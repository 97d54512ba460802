"""The shared Docker test infrastructure works: engine up, image built, networking usable."""

from __future__ import annotations

import docker
import pytest
import requests

from testbed.images import INDEX_HTML, variant_tag
from testbed.procs import free_port
from tests.ieapi.helpers import eventually

pytestmark = pytest.mark.docker


def test_engine_answers_and_image_runs(docker_client: docker.DockerClient,
                                       busybox_image: str) -> None:
    out = docker_client.containers.run(busybox_image, ["sh", "-c", "echo hi; cat /www/index.html"],
                                       remove=True)
    assert out == b"hi\n" + INDEX_HTML


def test_published_port_answers_on_loopback(docker_client: docker.DockerClient,
                                            busybox_image: str) -> None:
    port = free_port()
    container = docker_client.containers.run(
        busybox_image, ["httpd", "-f", "-p", "8080", "-h", "/www"], detach=True, init=True,
        ports={"8080/tcp": port})
    try:
        with requests.Session() as session:
            session.trust_env = False
            body = eventually(
                lambda: session.get(f"http://127.0.0.1:{port}/index.html", timeout=2).content)
        assert body == INDEX_HTML
    finally:
        container.remove(force=True)


def test_variant_tag_is_same_image(docker_client: docker.DockerClient, busybox_image: str) -> None:
    tag = variant_tag(docker_client, "variant-a")
    assert docker_client.images.get(tag).id == docker_client.images.get(busybox_image).id
