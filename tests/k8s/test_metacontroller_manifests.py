"""The project's CompositeControllers against Metacontroller's own CRDs on a real API server.

Metacontroller's CRDs (v4.17.2, from its Helm chart) are test data kept outside the project,
in the ``shared/`` directory next to the repository (``<repo>/../shared``); without it these
tests are skipped. ``kubectl kustomize metacontroller/`` renders the whole install; this server
serves custom resources only, so just the kinds it serves (the CRDs and the
CompositeControllers) are applied, and the rest (Namespace, Deployment, Service, RBAC...) is
listed in the test's output as not checkable here.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.manifests import METACONTROLLER_CRDS, METACONTROLLER_CRDS_MISSING
from tests.support.crdserver import CrdApiServer
from tests.support.kube import subset

pytestmark = pytest.mark.k8s

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CONTROLLERS = ("llo-docker-scd", "llo-docker-die")


@pytest.fixture(scope="module")
def api() -> Iterator[CrdApiServer]:
    if not METACONTROLLER_CRDS.is_file():
        pytest.skip(METACONTROLLER_CRDS_MISSING)
    with CrdApiServer() as server:
        # Server-side: the CompositeController CRD is too big for the last-applied annotation.
        server.kubectl("apply", "--server-side", "-f", str(METACONTROLLER_CRDS))
        server.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                       "crd/compositecontrollers.metacontroller.k8s.io")
        yield server


@pytest.fixture(scope="module")
def rendered() -> list[JSON]:
    """``kubectl kustomize metacontroller/``: every document of the install."""
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "metacontroller")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def served_kinds(api: CrdApiServer) -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs the server serves, from discovery."""
    out = api.kubectl("api-resources", "--no-headers").stdout
    kinds = set()
    for line in out.splitlines():
        fields = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        kinds.add((fields[-3], fields[-1]))
    return kinds


def servable(api: CrdApiServer, rendered: list[JSON]) -> tuple[list[JSON], list[str]]:
    kinds = served_kinds(api)
    keep = [d for d in rendered if (d["apiVersion"], d["kind"]) in kinds]
    skipped = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered if d not in keep)
    return keep, skipped


def test_rendered_install_is_accepted(api: CrdApiServer, rendered: list[JSON]) -> None:
    keep, skipped = servable(api, rendered)
    print(f"not served by the CRD API server, not checked here: {', '.join(skipped)}")
    kinds = sorted({d["kind"] for d in keep})
    assert kinds == ["CompositeController", "CustomResourceDefinition"]
    assert sorted(d["metadata"]["name"] for d in keep if d["kind"] == "CompositeController") \
        == sorted(CONTROLLERS)
    # The project's CRDs first (Established), then the controllers naming them.
    crds = [d for d in keep if d["kind"] == "CustomResourceDefinition"]
    api.kubectl("apply", "--validate=strict", "-f", "-",
                input=yaml.safe_dump_all(crds))
    api.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                *(f"crd/{d['metadata']['name']}" for d in crds))
    controllers = [d for d in keep if d["kind"] == "CompositeController"]
    api.kubectl("apply", "--validate=strict", "-f", "-",
                input=yaml.safe_dump_all(controllers))
    for doc in controllers:
        stored = json.loads(api.kubectl("get", "compositecontroller", doc["metadata"]["name"],
                                        "-o", "json").stdout)
        # Nothing pruned: every field we wrote is in Metacontroller's schema.
        assert subset(doc["spec"], stored["spec"]), (doc["spec"], stored["spec"])


@pytest.mark.parametrize(("where", "value", "message"), [
    (("hooks", "sync", "webhook", "timout"), "10s", 'unknown field "spec.hooks.sync.webhook'
                                                    '.timout"'),
    (("hooks", "sync", "version"), "v3", "spec.hooks.sync.version"),
    (("parentResource", "ignoreStatusChanges"), "no", "spec.parentResource.ignoreStatusChanges"),
])
def test_broken_controller_is_refused(api: CrdApiServer, rendered: list[JSON],
                                      where: tuple[str, ...], value: Any, message: str) -> None:
    """The check above has teeth: Metacontroller's schema refuses what it does not know."""
    doc = copy.deepcopy(next(d for d in rendered if d["kind"] == "CompositeController"))
    doc["metadata"]["name"] = "llo-docker-broken"
    node = doc["spec"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    res = api.kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(doc),
                      check=False)
    assert res.returncode != 0
    assert message in res.stderr
