"""Session-wide fixtures every test tier shares: a Docker Engine and a busybox image.

Nothing here imports `hooks`; subdirectories add their own conftest for that.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import docker
import pytest

from testbed import procs
from testbed.crdschema import unevaluable_rules
from testbed.dockerd import (
    DOCKER_API_VERSION,
    Dockerd,
    DockerdNotInstalledError,
    docker_engine,
    start_dockerd,
    stop_dockerd,
)
from testbed.images import ensure_busybox
from testbed.manifests import load_crds
from testbed.stack import Stack

_ENGINES: list[Dockerd] = []


def pytest_configure(config: pytest.Config) -> None:
    """`requests` (and so the docker SDK) lets REQUESTS_CA_BUNDLE override an explicit CA;
    no test here needs the system bundle, so drop it before anything reads it."""
    for name in procs.DROPPED_ENV:
        os.environ.pop(name, None)


def pytest_report_header(config: pytest.Config) -> str:
    """The Metacontroller driver's store skips CEL rules cel-python cannot evaluate like the
    API server (testbed/crdschema.py): every run says which, so a green e2e run is read right."""
    del config
    skipped = [f"{kind} {rule.path} {rule.rule!r}: {why}"
               for kind, crd in load_crds().items()
               for rule, why in unevaluable_rules(crd.schema).items()]
    return "Metacontroller driver: CEL rules of crds/ it cannot evaluate: " + (
        "; ".join(skipped) if skipped else "none (it evaluates every rule)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever uses the engine is a docker test, so `-m "not docker"` really skips them."""
    for item in items:
        if "dockerd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_engine_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """The session's Docker Engine: DOCKER_HOST if reachable, else a private dockerd."""
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    try:
        with docker_engine(log_path=log_path) as engine:
            _ENGINES.append(engine)
            yield engine
            _ENGINES.remove(engine)
    except DockerdNotInstalledError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dockerd(docker_engine_info: Dockerd) -> str:
    """The DOCKER_HOST url of the session's engine."""
    return docker_engine_info.url


@pytest.fixture
def own_dockerd(dockerd: str, tmp_path: Path) -> Iterator[Dockerd]:
    """A private dockerd for one test that restarts it, so the session's engine is never
    disturbed (`dockerd` only makes sure one can
    run here)."""
    engine = start_dockerd(log_path=tmp_path / "own-dockerd.log")
    try:
        yield engine
    finally:
        stop_dockerd(engine)


@pytest.fixture(scope="session")
def docker_client(dockerd: str) -> Iterator[docker.DockerClient]:
    """A docker SDK client pinned to an API version dockerd 20.10 speaks."""
    client = docker.DockerClient(base_url=dockerd, version=DOCKER_API_VERSION, timeout=30)
    client.api.trust_env = False
    yield client
    client.close()


@pytest.fixture
def stack(dockerd: str, busybox_image: str, tmp_path: Path) -> Iterator[Stack]:
    """The whole system for one test (testbed/stack.py), stopped by PID afterwards."""
    with Stack(tmp_path, dockerd) as whole:
        yield whole


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    """Tag of a locally built busybox image (`httpd -f -p 8080 -h /www` serves index.html)."""
    return ensure_busybox(docker_client)


def pytest_runtest_setup(item: pytest.Item) -> None:
    procs.STOPPED.clear()  # servers stopped by earlier tests are not this test's business


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, show the log tails of live servers and of the private dockerd."""
    report = yield
    if report.failed:
        for server in [*procs.RUNNING, *procs.STOPPED]:
            report.sections.append(
                (f"{server.name} (pid {server.pid}) log tail", server.log_tail()))
        for engine in _ENGINES:
            if not engine.external:
                report.sections.append((f"dockerd (pid {engine.pid}) log tail",
                                        engine.log_tail(20)))
    return report

