"""Every shape of CR the aerOS HLO produces, as the LLO API creates it (issue 10, point 5).

tests/hlo/chain.py turns an HLO allocation into the object the LLO API POSTs. Each shape goes
through the real CRD API server (accepted, defaults as the HLO meant), then through the whole
stack (gunicorn hooks driven by the Metacontroller driver over that API server, ieapi, dockerd,
the Orion-LD double) to Running or Succeeded with the broker holding the right value on the
right entity, and is deleted until Finished with nothing left on the IE. One stack serves all
shapes (module scope); shapes run one after another.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from hooks.names import dns_alias
from ieapi.contract import LABEL_OWNER_NAME
from testbed.images import INDEX_HTML
from testbed.procs import free_port
from testbed.stack import IE, Stack
from tests.hlo.chain import (
    HEAD_PREFIX,
    JSON,
    NAMESPACE,
    Allocation,
    Shape,
    WireGuard,
    hlo_cr,
    llo_api_object,
    short_label,
)
from tests.support.crdserver import CrdApiServer
from tests.support.kube import ApiError, KubeDriver
from tests.support.registry import push_unique_image, start_registry
from tests.support.wghub import Hub, genkey, missing_tools

pytestmark = [pytest.mark.hlo, pytest.mark.k8s, pytest.mark.e2e, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
SCD = "ServiceComponentDocker"
SCD_PATH = f"/apis/llo.aeros-project.eu/v1alpha1/namespaces/{NAMESPACE}/servicecomponentdockers"
EDGE = "edge-1"            # an IE the HLO does not make privileged
PI = "raspberrypi-1"       # "pi" in the hostname: the HLO sets privileged: true
SERVICE = "urn:ngsi-ld:Service:demo-app"
STATUS_PREFIX = "urn:ngsi-ld:ServiceComponentStatus:"


@dataclass
class Chain:
    api: CrdApiServer
    stack: Stack
    driver: KubeDriver
    ies: dict[str, IE]
    private_image: str
    privileged_runs: bool

    def post(self, obj: JSON) -> requests.Response:
        """What the LLO API's dynamic client does: POST the JSON to the namespace."""
        return self.driver.client.request("POST", SCD_PATH, body=obj, ok=(201, 422, 400))

    def status(self, name: str) -> JSON:
        obj = self.driver.get(SCD, name, NAMESPACE) or {}
        return dict(obj.get("status") or {})

    def containers_of(self, name: str) -> list[Any]:
        return [c for ie in self.ies.values() for c in ie.containers(self.stack.client)
                if c.labels.get(LABEL_OWNER_NAME) == name]


def _host_runs_privileged(client: docker.DockerClient, image: str) -> bool:
    """A sandboxed test host may lack the capabilities a privileged container needs."""
    try:
        client.containers.run(image, ["true"], privileged=True, remove=True)
    except docker.errors.APIError:
        return False
    return True


@pytest.fixture(scope="module")
def chain(dockerd: str, docker_client: docker.DockerClient, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("hlo")
    registry = start_registry(tmp / "registry")
    try:
        private_image = f"127.0.0.1:{registry.port}/" + push_unique_image(
            docker_client, busybox_image, registry.port)
        with CrdApiServer() as api, Stack(tmp / "stack", dockerd) as stack:
            api.kubectl("apply", "-f", str(ROOT / "crds"))
            api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
            ies = {EDGE: stack.add_ie(EDGE),
                   PI: stack.add_ie(PI, env={"IEAPI_ALLOW_PRIVILEGED": "true"})}
            with KubeDriver(stack.hooks_url, api, secrets=stack.driver.secrets) as driver:
                for ie in ies.values():
                    driver.apply(ie.die())
                driver.run_until(lambda: all(
                    ((driver.get("DockerInfrastructureElement", n) or {}).get("status") or {})
                    .get("apiReady") is True for n in ies), timeout=60)
                yield Chain(api, stack, driver, ies, private_image,
                            _host_runs_privileged(docker_client, busybox_image))
    finally:
        registry.stop()


def _httpd(port: int) -> tuple[tuple[str, str | None], ...]:
    return (("httpd", None), ("-f", None), ("-p", str(port)), ("-h", "/www"))


def _alloc(component: str, *, hostname: str = EDGE, **fields: Any) -> Allocation:
    ie_id = f"urn:ngsi-ld:InfrastructureElement:{hostname}"
    return Allocation(id=f"{SERVICE}:Component:{component}", service_id=SERVICE,
                      image="llo-test/busybox:1", ie_id=ie_id, ie_hostname=hostname,
                      **fields)


def shapes(private_image: str = "") -> list[Shape]:
    """Every shape the HLO produces; a published port is replaced per run by a free one."""
    port = 8080
    return [
        Shape("exposed", _alloc("web", ports=(port,), expose_ports=True,
                                cli_args=_httpd(port))),
        Shape("not-exposed", _alloc("backend", ports=(port,), cli_args=_httpd(port))),
        Shape("private-registry", _alloc("private", is_private=True, repo_username="hlo",
                                         repo_password="s3cret-Passw0rd",
                                         cli_args=(("sleep", None), ("600", None)))),
        Shape("job", _alloc("job", is_job=True, env_vars=(("GREETING", "hi"),),
                            cli_args=(("sh", None), ("-c", 'test "$GREETING" = hi')),
                            ), job=True),
        Shape("env-without-value", _alloc("env", env_vars=(("EMPTY", None), ("SET", "1"),
                                                           ("BLANK", "")),
                                          cli_args=(("sleep", None), ("600", None)))),
        Shape("bare-flags", _alloc("flags", cli_args=(("httpd", None), ("-f", None),
                                                       ("-v", None), ("-p", "18080"),
                                                       ("-h", "/www")))),
        Shape("privileged", _alloc("pi", hostname=PI,
                                   cli_args=(("sleep", None), ("600", None)))),
        Shape("overlay", _alloc("overlay", overlay=WireGuard(),
                                cli_args=(("sleep", None), ("600", None)))),
        Shape("dotted-id", _alloc("db.v1", cli_args=_httpd(8080))),
        Shape("long-id", _alloc("frontend-nginx-component-eu-central",
                                cli_args=(("sleep", None), ("600", None)))),
        Shape("underscore-id", Allocation(
            id="urn:ngsi-ld:Service:demo_app:Component:web_1",
            service_id="urn:ngsi-ld:Service:demo_app", image="llo-test/busybox:1",
            ie_id=f"urn:ngsi-ld:InfrastructureElement:{EDGE}", ie_hostname=EDGE,
            cli_args=(("sleep", None), ("600", None))),
            extra_entities=("urn:ngsi-ld:Service:demo_app:Component:web_2",)),
    ]


SHAPES = {s.name: s for s in shapes()}


def _with_port(shape: Shape, port: int) -> Shape:
    """The shape with its port replaced by `port` (a copy)."""
    alloc = shape.alloc
    if not alloc.ports:
        return dataclasses.replace(shape)
    args = tuple((k, str(port) if k == "-p" else v) for k, v in alloc.cli_args)
    return dataclasses.replace(shape, alloc=dataclasses.replace(alloc, ports=(port,),
                                                                cli_args=args))


def _expect_stored_spec(shape: Shape, stored: JSON) -> None:
    """The API server kept what the HLO meant: absent booleans are false, empty structs stay
    empty (and mean absent to the hooks), nothing else was added or lost."""
    alloc = shape.alloc
    spec = stored["spec"]
    assert spec["exposePorts"] is alloc.expose_ports
    assert spec["isJob"] is bool(alloc.is_job)
    assert spec["privileged"] is ("pi" in alloc.ie_hostname)
    assert spec["imageRegistry"] == ({"username": alloc.repo_username,
                                      "password": alloc.repo_password}
                                     if alloc.is_private else {})
    assert (spec["networkOverlay"] == {}) is (alloc.overlay is None)
    for key, value in shape.object["spec"].items():  # what was sent is kept as sent
        assert spec[key] == value, key


def _overlay_on(request: pytest.FixtureRequest, tmp_path: Path) -> WireGuard:
    """The overlay shape runs against a real hub (tests/support/wghub.py): a component is
    Running only once its overlay is up. The HLO's client configuration, made for it."""
    if missing_tools():
        pytest.skip(f"no real WireGuard here: missing {missing_tools()}")
    hub = Hub(tmp_path / "hub").start()
    request.addfinalizer(hub.stop)
    private, public = genkey()
    address = hub.add_peer("overlay", public)
    return WireGuard(address=address, dns=hub.address, public_key=hub.public_key,
                     private_key=private, endpoint=hub.endpoint, allowed_ips=str(hub.subnet))


@pytest.mark.parametrize("name", list(SHAPES))
def test_hlo_shape_runs_reports_and_goes(chain: Chain, name: str, busybox_image: str,
                                         request: pytest.FixtureRequest,
                                         tmp_path: Path) -> None:
    assert busybox_image == "llo-test/busybox:1"
    port = free_port("0.0.0.0")
    shape = _with_port(SHAPES[name], port)
    if name == "private-registry":
        shape.alloc = dataclasses.replace(shape.alloc, image=chain.private_image)
    if name == "overlay":
        shape.alloc = dataclasses.replace(shape.alloc, overlay=_overlay_on(request, tmp_path))
    obj = shape.object
    scd = shape.scd_name
    entity = shape.alloc.id
    orion = chain.stack.orion
    assert orion is not None
    orion.create_entity(entity, "ServiceComponent")
    for other in shape.extra_entities:
        orion.create_entity(other, "ServiceComponent")
    before = {e: orion.status_history(e) for e in (entity, *shape.extra_entities)}
    assert before[entity] == []

    # ---- the API server accepts it, with the HLO's meaning
    created = chain.post(obj)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored["metadata"]["name"] == scd
    _expect_stored_spec(shape, stored)

    # ---- the whole stack runs it and tells the right entity
    final = "Succeeded" if shape.job else "Running"
    if name == "privileged" and not chain.privileged_runs:
        final = "Unknown"  # Docker refuses here (sandbox without capabilities): see below
    want = {"Running": "Running", "Succeeded": "Finished", "Unknown": "Starting"}[final]
    chain.driver.run_until(lambda: chain.status(scd).get("phase") == final and (
        chain.status(scd).get("broker") or {}).get("reported") == want, timeout=120)
    status = chain.status(scd)
    assert status["broker"]["entityId"] == entity
    assert orion.status_history(entity)[-1] == want
    got = orion.entity(entity)
    assert got is not None
    assert got["serviceComponentStatus"]["object"] == STATUS_PREFIX + want
    for other in shape.extra_entities:
        assert orion.status_history(other) == before[other]  # never a wrong entity
    assert status["names"]["alias"] == dns_alias(NAMESPACE, scd)
    _check_container(chain, shape, status, port)

    # ---- deletion: Finished, nothing left on the IE
    chain.driver.delete(SCD, scd, NAMESPACE)
    chain.driver.run_until(lambda: chain.driver.get(SCD, scd, NAMESPACE) is None, timeout=120)
    assert orion.status_history(entity)[-1] == "Finished"
    assert chain.containers_of(scd) == []
    for other in shape.extra_entities:
        assert orion.status_history(other) == before[other]


def _check_container(chain: Chain, shape: Shape, status: JSON, port: int) -> None:
    """What the container on the IE says about the shape."""
    alloc = shape.alloc
    if shape.name == "privileged" and not chain.privileged_runs:
        # The hooks asked the IE for a privileged container and the IE (allowed) asked Docker,
        # which this host cannot do: reported, retried, nothing left behind.
        assert status["reason"] == "IEError", status
        assert "caps" in status["message"], status["message"]
        return
    (container,) = chain.containers_of(shape.scd_name)
    attrs = container.attrs
    host = attrs["HostConfig"]
    bindings = host.get("PortBindings") or {}
    if alloc.expose_ports:
        assert bindings == {f"{port}/tcp": [{"HostIp": "", "HostPort": str(port)}]}
        with requests.Session() as http:
            http.trust_env = False
            assert http.get(f"http://127.0.0.1:{port}/", timeout=5).content == INDEX_HTML
    else:
        assert bindings == {}  # not exposed: reachable on the service network only
    assert host["Privileged"] is ("pi" in alloc.ie_hostname)
    env = attrs["Config"]["Env"]
    for key, value in alloc.env_vars:
        assert f"{key}={value or ''}" in env
    args = [part for k, v in alloc.cli_args for part in ((k, v) if v else (k,))]
    assert [attrs["Path"], *attrs["Args"]][-len(args):] == args
    network = status["container"]["network"]
    assert status["names"]["alias"] in \
        attrs["NetworkSettings"]["Networks"][network]["Aliases"]
    assert short_label(alloc.service_id) in network
    if alloc.is_private:
        assert attrs["Config"]["Image"] == alloc.image


# =========================================================================== what the chain sends


def test_the_objects_carry_the_go_model_rules() -> None:
    """The fixture itself: omitempty drops false/""/empty lists, keeps empty structs."""
    not_exposed = SHAPES["not-exposed"].object["spec"]
    assert "exposePorts" not in not_exposed
    assert "isJob" not in not_exposed
    assert "privileged" not in not_exposed
    assert not_exposed["imageRegistry"] == {}
    assert not_exposed["networkOverlay"] == {}
    assert SHAPES["exposed"].object["spec"]["exposePorts"] is True
    env = SHAPES["env-without-value"].object["spec"]["envVars"]
    assert env == [{"key": "EMPTY"}, {"key": "SET", "value": "1"}, {"key": "BLANK"}]
    flags = SHAPES["bare-flags"].object["spec"]["cliArgs"]
    assert {"key": "-f"} in flags
    assert SHAPES["privileged"].object["spec"]["privileged"] is True
    overlay = SHAPES["overlay"].object["spec"]["networkOverlay"]
    assert set(overlay) == {"internalIp", "dns", "privateKey", "publicKey", "endpoint",
                            "allowedIps"}
    registry = SHAPES["private-registry"].object["spec"]["imageRegistry"]
    assert registry == {"username": "hlo", "password": "s3cret-Passw0rd"}  # no url
    assert SHAPES["job"].object["spec"]["isJob"] is True
    meta = SHAPES["exposed"].object["metadata"]
    assert meta["creationTimestamp"] is None
    assert "namespace" not in meta
    assert SHAPES["dotted-id"].scd_name == "aeros-service-demo-app-component-db.v1"
    assert len(SHAPES["long-id"].scd_name) > 63
    assert SHAPES["long-id"].object["metadata"]["labels"]["app.kubernetes.io/instance"] == \
        "Service_demo-app_Component_frontend-nginx-component-eu-central"
    assert SHAPES["underscore-id"].object["metadata"]["labels"][
        "app.kubernetes.io/instance"] == "Service_demo_app_Component_web_1"
    assert json.loads(json.dumps(SHAPES["exposed"].object)) == SHAPES["exposed"].object


# =========================================================================== refused by Kubernetes


@pytest.mark.parametrize(("case", "obj", "field"), [
    # An id longer than 63 characters without urn:ngsi-ld:: its label is too long for
    # Kubernetes; the HLO cannot deliver such a component (our CRD is not involved).
    ("id-longer-than-a-label", llo_api_object(hlo_cr(_alloc("x" * 60))), "metadata.labels"),
    # The public HEAD of crdGenarator.py writes the prefix `aeriOS-`: not a valid name.
    ("head-prefix", llo_api_object(hlo_cr(dataclasses.replace(_alloc("web"),
                                                              prefix=HEAD_PREFIX))),
     "metadata.name"),
])
def test_what_kubernetes_itself_refuses(chain: Chain, case: str, obj: JSON,
                                        field: str) -> None:
    """Refused before any controller sees it, with or without this project."""
    answer = chain.post(obj)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["message"], answer.json()["message"]
    with pytest.raises(ApiError):
        chain.driver.client.request("GET", f"{SCD_PATH}/{obj['metadata']['name']}")
    assert case


def test_unique_names() -> None:
    """No two shapes share an object name (they run one after another in one namespace)."""
    names = [s.scd_name for s in SHAPES.values()]
    assert len(set(names)) == len(names)
