"""Smoke tests: the built crdserver really has the Kubernetes API semantics we rely on.

Why: the project's hook tests trust this server to behave like a cluster for CRDs
(status subresource, generation, finalizers, schema/explain). If a Debian sid
package bump or a flag change breaks any of that, these fail first and clearly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.crdserver import CrdApiServer

pytestmark = pytest.mark.k8s

GROUP = "smoke.llo-test.example"
PLURAL = "widgets"
RESOURCE = f"{PLURAL}.{GROUP}"
FIELD_DOC = "How many sprockets the widget wants; a smoke-test field description."

CRD = json.dumps(
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": RESOURCE},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "sprockets": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "description": FIELD_DOC,
                                        }
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
)


def widget(name: str, sprockets: int, finalizers: list[str] | None = None) -> str:
    """A Widget manifest as JSON (kubectl reads JSON as YAML)."""
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if finalizers:
        meta["finalizers"] = finalizers
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": meta,
            "spec": {"sprockets": sprockets},
        }
    )


@pytest.fixture(scope="module")
def api() -> Iterator[CrdApiServer]:
    """One server for the module, with the Widget CRD applied and Established."""
    with CrdApiServer() as server:
        server.kubectl("apply", "-f", "-", input=CRD)
        server.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{RESOURCE}")
        yield server


def get(api: CrdApiServer, name: str) -> dict[str, Any]:
    out = api.kubectl("get", RESOURCE, name, "-n", "default", "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def put_status(api: CrdApiServer, obj: dict[str, Any]) -> dict[str, Any]:
    """PUT the object to its /status subresource over raw REST and return the reply."""
    name = obj["metadata"]["name"]
    path = f"/apis/{GROUP}/v1/namespaces/default/{PLURAL}/{name}/status"
    out = api.kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(obj)).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_crd_served_in_discovery(api: CrdApiServer) -> None:
    out = api.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name").stdout
    assert RESOURCE in out.split()
    versions = api.kubectl("api-versions").stdout.split()
    assert f"{GROUP}/v1" in versions
    assert "apiextensions.k8s.io/v1" in versions


def test_status_subresource_and_generation(api: CrdApiServer) -> None:
    api.kubectl("apply", "-f", "-", input=widget("w-status", 1))
    obj = get(api, "w-status")
    assert obj["metadata"]["generation"] == 1
    assert "status" not in obj

    # Status written through /status is stored; generation does not move.
    obj["status"] = {"phase": "Ready"}
    written = put_status(api, obj)
    assert written["status"] == {"phase": "Ready"}
    after_status = get(api, "w-status")
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["metadata"]["generation"] == 1

    # A status change sent to the main resource is ignored (status subresource semantics).
    api.kubectl(
        "patch", RESOURCE, "w-status", "-n", "default", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Hacked"}}),
    )  # fmt: skip
    assert get(api, "w-status")["status"] == {"phase": "Ready"}

    # A spec change bumps generation and keeps status.
    api.kubectl("apply", "-f", "-", input=widget("w-status", 2))
    after_spec = get(api, "w-status")
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["spec"]["sprockets"] == 2
    assert after_spec["status"] == {"phase": "Ready"}


def test_schema_validation_rejects_bad_spec(api: CrdApiServer) -> None:
    bad = api.kubectl("apply", "-f", "-", input=widget("w-bad", -3), check=False)
    assert bad.returncode != 0
    assert "sprockets" in bad.stderr
    gone = api.kubectl("get", RESOURCE, "w-bad", "-n", "default", check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def test_finalizer_holds_deletion(api: CrdApiServer) -> None:
    fin = "smoke.llo-test.example/hold"
    api.kubectl("apply", "-f", "-", input=widget("w-fin", 1, finalizers=[fin]))
    api.kubectl("delete", RESOURCE, "w-fin", "-n", "default", "--wait=false")
    held = get(api, "w-fin")
    assert held["metadata"].get("deletionTimestamp")
    assert held["metadata"]["finalizers"] == [fin]

    api.kubectl(
        "patch", RESOURCE, "w-fin", "-n", "default", "--type=merge",
        "-p", json.dumps({"metadata": {"finalizers": None}}),
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = api.kubectl("get", RESOURCE, "w-fin", "-n", "default", check=False)
        if res.returncode != 0:
            assert "NotFound" in res.stderr
            return
        time.sleep(0.1)
    pytest.fail("w-fin still present after its finalizer was removed")


def test_explain_shows_field_description(api: CrdApiServer) -> None:
    # The OpenAPI publisher picks up new CRDs asynchronously; give it a moment.
    deadline = time.monotonic() + 20
    out = ""
    while time.monotonic() < deadline:
        res = api.kubectl("explain", f"{PLURAL}.spec.sprockets", f"--api-version={GROUP}/v1",
                          check=False)  # fmt: skip
        out = res.stdout + res.stderr
        if res.returncode == 0 and FIELD_DOC in out:
            break
        time.sleep(0.5)
    assert FIELD_DOC in out
    assert "integer" in out
