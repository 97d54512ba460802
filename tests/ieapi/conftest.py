"""Fixtures for the IE API tests: an app per test on the session's dockerd, isolated by a
unique instance id and container prefix, and everything it made removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
import requests

from ieapi import create_app
from ieapi.engine import Engine
from ieapi.settings import Settings
from testbed.dockerd import remove_managed
from tests.ieapi.helpers import TOKEN, IEApiClient, SettingsFactory


@pytest.fixture
def instance_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(dockerd: str, instance_id: str) -> SettingsFactory:
    """Settings on the session's dockerd; the prefix and managed-by label are this test's."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "token": TOKEN,
            "docker_host": dockerd,
            "ie_id": "urn:ngsi-ld:InfrastructureElement:test",
            "hostname": "ie-test",
            "instance_id": instance_id,
            "container_prefix": f"t{instance_id[-8:]}",
            "stop_timeout_seconds": 1,
            "docker_timeout_seconds": 20,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_ie(make_settings: SettingsFactory) -> Iterator[Callable[..., IEApiClient]]:
    """Build IE API apps (several may share a dockerd, like several gunicorn processes)."""
    engines: list[Engine] = []

    def make(**overrides: Any) -> IEApiClient:
        settings = make_settings(**overrides)
        app = create_app(settings)
        client = IEApiClient(app.test_client(), settings, TOKEN)
        engines.append(client.engine)
        return client

    yield make
    for engine in engines:
        engine.pulls.wait(10)
        engine.close()


@pytest.fixture
def ie(make_ie: Callable[..., IEApiClient], cleanup: None) -> IEApiClient:
    return make_ie()


@pytest.fixture
def cleanup(docker_client: docker.DockerClient, instance_id: str) -> Iterator[None]:
    """Remove whatever this test's IE API instance created, even if the test failed."""
    yield
    remove_managed(docker_client, instance_id)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A session for loopback calls that ignores proxy and CA variables of the environment."""
    with requests.Session() as session:
        session.trust_env = False
        yield session
