"""The Metacontroller driver's store and the real API server agree (issue 10, point 6): what
the API server refuses, the driver refuses too (CEL rules included), and what it accepts, the
driver stores the same way (pruned and defaulted alike).

The driver's verdict is testbed/objectstore.py's: the ObjectMeta name rules, then the CRD's
structural schema with its CEL rules (testbed/crdschema.py). The server's verdict is a
server-side dry-run create, with the API server's default field validation (unknown fields
pruned, as the driver prunes them). Cases: the refusal table of test_crds.py, names the aerOS
HLO makes, every shape of tests/hlo, the samples, and CEL-specific ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from testbed.crdschema import InvalidError, check_object_name
from testbed.manifests import load_crds
from tests.hlo.test_hlo_shapes import SHAPES
from tests.k8s.test_crds import CRDS, INVALID, SAMPLE_FILES, die, scd
from tests.support.crdserver import CrdApiServer
from tests.support.kube import KubeClient

pytestmark = pytest.mark.k8s

JSON = dict[str, Any]
DRIVER_CRDS = load_crds()


@pytest.fixture(scope="module")
def client() -> Iterator[KubeClient]:
    with CrdApiServer() as api:
        api.kubectl("apply", "-f", str(CRDS))
        api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
        kube = KubeClient(api)
        try:
            yield kube
        finally:
            kube.close()


def server_verdict(client: KubeClient, obj: JSON) -> JSON | None:
    """The object as the API server would store it, or None when it refuses it."""
    crd = DRIVER_CRDS[obj["kind"]]
    namespace = obj["metadata"].get("namespace", "default") if crd.namespaced else None
    path = KubeClient.path(crd, namespace)
    answer = client.request("POST", path, body=obj, params={"dryRun": "All"},
                            ok=(200, 201, 400, 422))
    if answer.status_code in (400, 422):
        return None
    stored: JSON = answer.json()
    return stored


def driver_verdict(obj: JSON) -> JSON | None:
    crd = DRIVER_CRDS[obj["kind"]]
    meta = obj["metadata"]
    try:
        check_object_name(meta.get("name"), meta.get("namespace") if crd.namespaced else None,
                          crd.namespaced)
        return crd.checker.check_object(obj)
    except InvalidError:
        return None


def _mutated(base: JSON, mutate: Callable[[JSON], None]) -> JSON:
    obj = copy.deepcopy(base)
    mutate(obj)
    return obj


CASES: list[tuple[str, JSON]] = [
    *((f"table:{name}", _mutated(base, mutate)) for name, base, mutate, _ in INVALID),
    *((f"table-base:{name}", copy.deepcopy(base)) for name, base, _, _ in INVALID),
    *((f"hlo:{name}", shape.object) for name, shape in SHAPES.items()),
    *((f"sample:{path.name}", doc) for path in SAMPLE_FILES
      for doc in yaml.safe_load_all(path.read_text()) if doc),
    ("name:253-with-dots", scd(name=".".join(["a" * 62] * 4) + "." + "b" * 1)),
    ("name:254", scd(name="c" * 254)),
    ("name:upper-case", scd(name="aeriOS-web")),
    ("name:underscore", scd(name="my_app")),
    ("cel:ports-unique", scd(ports=[{"number": 80}, {"number": 81}, {"number": 80,
                                                                     "protocol": "UDP"}])),
    ("cel:ports-duplicate-after-default", scd(ports=[{"number": 53, "protocol": "TCP"},
                                                     {"number": 53}])),
    ("cel:ports-duplicate-udp", scd(ports=[{"number": 53, "protocol": "UDP"}] * 2)),
    ("die:plain", die()),
]


@pytest.mark.parametrize("obj", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_driver_and_api_server_agree(client: KubeClient, obj: JSON) -> None:
    server = server_verdict(client, obj)
    driver = driver_verdict(obj)
    assert (driver is None) == (server is None), (
        f"API server {'refuses' if server is None else 'accepts'}, "
        f"driver {'refuses' if driver is None else 'accepts'}")
    if server is not None and driver is not None:
        assert driver["spec"] == server["spec"]  # pruned and defaulted alike
