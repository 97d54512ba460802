"""A real Docker registry (Debian's `docker-registry`, the distribution registry) on loopback.

dockerd never sends loopback traffic through its (dead) proxy and treats 127.0.0.0/8 as an
insecure registry, so it pulls from here over plain HTTP. With a `GatedRelay` in front, a pull
can be held midway for as long as a test needs, then completed: that is how the fault and race
tests get a pull that is really in progress.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testbed.procs import ServerProcess, start_server
from tests.support.faults import GatedRelay

REGISTRY_BINARY = "docker-registry"

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
"""


def registry_binary() -> str:
    """The registry executable, or a pytest skip naming the package that provides it."""
    path = shutil.which(REGISTRY_BINARY)
    if path is None:
        pytest.skip(f"{REGISTRY_BINARY} not installed (Debian package docker-registry)")
    return path


def start_registry(workdir: Path) -> ServerProcess:
    """A registry with its storage under `workdir`, on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "registry.yml"
    config.write_text(_CONFIG.format(root=workdir / "storage"))
    return start_server(
        [registry_binary(), "serve", str(config)], log_path=workdir / "registry.log",
        env={"REGISTRY_HTTP_ADDR": "127.0.0.1:{port}"}, name="registry", health_path="/v2/")


def push_unique_image(client: docker.DockerClient, base_image: str, registry_port: int) -> str:
    """Push an image with a layer of its own (random bytes) to the registry and forget it
    locally, so that pulling it really transfers a layer. Returns its path `llo/slow-<hex>:1`.
    The image runs like `base_image` (busybox)."""
    path = f"llo/slow-{secrets.token_hex(4)}"
    container = client.containers.create(
        base_image, ["sh", "-c", "head -c 200000 /dev/urandom > /payload"])
    try:
        container.start()
        container.wait(timeout=30)
        image = container.commit(repository=f"127.0.0.1:{registry_port}/{path}", tag="1",
                                 conf={"Cmd": ["sh"]})
    finally:
        container.remove(force=True)
    for line in client.api.push(f"127.0.0.1:{registry_port}/{path}", tag="1", stream=True,
                                decode=True):
        if "error" in line:
            raise RuntimeError(f"push failed: {line['error']}")
    client.images.remove(image.id, force=True)
    return f"{path}:1"


@contextlib.contextmanager
def gated_image(client: docker.DockerClient, base_image: str,
                workdir: Path) -> Iterator[tuple[str, GatedRelay]]:
    """A fresh image in a real registry behind a relay that holds its layer downloads:
    yields (image reference through the relay, relay). Pulls of it hang in "Pulling fs layer"
    until `relay.release()`; every local copy is removed at the end."""
    registry = start_registry(workdir)
    relay = GatedRelay(registry.port)
    reference = ""
    try:
        path = push_unique_image(client, base_image, registry.port)
        reference = f"127.0.0.1:{relay.port}/{path}"
        yield reference, relay
    finally:
        relay.release()
        relay.close()
        registry.stop()
        if reference:
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                client.images.remove(reference, force=True)
