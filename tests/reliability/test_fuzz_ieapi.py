"""Schemathesis against the IE API's own OpenAPI document (`/openapi.json`), through WSGI, over
the session's real dockerd: whatever it generates (valid and invalid bodies, names, headers),
the answer is never a 5xx and always conforms to the documented response schema.

Fuzzed images cannot be pulled (dockerd's registry traffic goes to a dead loopback proxy), so
nothing runs; whatever the run leaves (containers, networks) is removed by label afterwards.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from ieapi import create_app, openapi
from ieapi.settings import Settings
from testbed.dockerd import remove_managed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TOKEN = "fuzz-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def ieapi_schema(dockerd: str, docker_client: docker.DockerClient) -> Iterator[BaseSchema]:
    instance = f"fuzz-{uuid.uuid4().hex[:8]}"
    app = create_app(Settings(
        token=TOKEN, docker_host=dockerd, ie_id="urn:ngsi-ld:InfrastructureElement:fuzz",
        hostname="fuzz", instance_id=instance, container_prefix=f"f{instance[-8:]}",
        stop_timeout_seconds=1, docker_timeout_seconds=20))
    yield schemathesis.openapi.from_wsgi("/openapi.json", app)
    engine = app.extensions["ieapi"].engine
    engine.pulls.wait(20)
    engine.close()
    remove_managed(docker_client, instance)


OPERATIONS = [("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/v1/info"),
              ("GET", "/v1/containers"), ("PUT", "/v1/containers/{name}"),
              ("GET", "/v1/containers/{name}"), ("DELETE", "/v1/containers/{name}"),
              ("GET", "/v1/containers/{name}/logs"), ("GET", "/metrics")]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


# Negative data (bodies and names that break the schema) where there is input to break.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if "{name}" in p]


@pytest.mark.parametrize(("method", "path", "mode"), CASES,
                         ids=[f"{m.value}-{x} {p}" for x, p, m in CASES])
def test_ieapi_never_5xx_and_conforms(ieapi_schema: BaseSchema, method: str, path: str,
                                      mode: GenerationMode) -> None:
    operation = ieapi_schema[path][method]

    codes: Counter[int] = Counter()

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:  # a schemathesis Case
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=[not_a_server_error, response_schema_conformance])
        codes[response.status_code] += 1

    run()
    print(f"[measured] schemathesis {mode.value} {method} {path}: answers by status {dict(codes)}")


def test_every_operation_is_fuzzed(ieapi_schema: BaseSchema) -> None:
    """A new route in the document must be added to OPERATIONS."""
    documented = {(method.upper(), path) for path, item in openapi.document()["paths"].items()
                  for method in item if method != "parameters"}
    assert documented == set(OPERATIONS)
