"""The project's CRDs on a real Kubernetes API server (apiextensions-apiserver + etcd).

What only a real server can tell: the CRDs are accepted and Established, ``kubectl explain``
shows the field descriptions, the samples pass server-side validation (CEL rules included),
invalid objects are refused with a message naming the field, and every status field the
hooks write survives the structural schema's pruning (a pruned field would make Metacontroller
see a difference on every sync and write again forever).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from pydantic import BaseModel

from hooks import create_app, resources
from hooks.resources import (
    BrokerInfo,
    Cleanup,
    Condition,
    ConditionStatus,
    ContainerInfo,
    DIEStatus,
    EntitySource,
    FailureInfo,
    Migration,
    Names,
    OverlayInfo,
    Phase,
    Placement,
    PullInfo,
    SCDStatus,
)
from hooks.settings import Settings
from ieapi.contract import NetworkOverlay, Protocol, PublishedPort
from ieapi.overlayspec import parse as parse_overlay
from testbed.orion import OrionDouble
from tests.support.crdserver import CrdApiServer
from tests.support.kube import subset

pytestmark = pytest.mark.k8s

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
SAMPLES = ROOT / "samples"
SCD_CRD = "servicecomponentdockers.llo.aeros-project.eu"
DIE_CRD = "dockerinfrastructureelements.llo.aeros-project.eu"
SAMPLE_FILES = sorted([*SAMPLES.glob("*.yaml"), *(SAMPLES / "local").glob("*.yaml")])
HOOK_BODIES = sorted([p for p in [*(SAMPLES / "hooks").glob("*.json"),
                                  *(SAMPLES / "local" / "hooks").glob("*.json")]
                      if "customize" not in p.name])
IE_ID = "urn:ngsi-ld:InfrastructureElement:Test:1"


@pytest.fixture(scope="module")
def api() -> Iterator[CrdApiServer]:
    with CrdApiServer() as server:
        server.kubectl("apply", "-f", str(CRDS))
        server.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                       f"crd/{SCD_CRD}", f"crd/{DIE_CRD}")
        yield server


def kubectl_json(api: CrdApiServer, *args: str) -> JSON:
    out: JSON = json.loads(api.kubectl("get", *args, "-o", "json").stdout)
    return out


def apply_json(api: CrdApiServer, obj: JSON, *flags: str) -> None:
    api.kubectl("apply", "--validate=strict", *flags, "-f", "-", input=json.dumps(obj))


def scd(name: str = "valid-scd", **spec: Any) -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selectedIE": {"id": IE_ID, "hostname": "ie-a"}, "image": "busybox:1",
                     **spec}}


def die(name: str = "ie-a", url: str = "http://127.0.0.1:8081") -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "DockerInfrastructureElement",
            "metadata": {"name": name},
            "spec": {"id": IE_ID, "hostname": name, "api": {"url": url, "tokenKey": name}}}


# =========================================================================== the CRDs


def test_both_crds_are_established(api: CrdApiServer) -> None:
    for name in (SCD_CRD, DIE_CRD):
        conditions = {c["type"]: c["status"]
                      for c in kubectl_json(api, "crd", name)["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
    resources_out = api.kubectl("api-resources", "--api-group=llo.aeros-project.eu").stdout
    assert "servicecomponentdockers" in resources_out
    assert "scd" in resources_out.split()
    assert "die" in resources_out.split()


def _description(crd_file: str, path: str) -> str:
    """The schema description of a dotted field path (``spec.ports.protocol``)."""
    doc = yaml.safe_load((CRDS / crd_file).read_text())
    node = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in path.split("."):
        node = node.get("items", node)["properties"][part]
    return str(node["description"])


@pytest.mark.parametrize(("resource", "crd_file", "path"), [
    ("scd", "servicecomponentdockers.yaml", "spec.selectedIE"),
    ("scd", "servicecomponentdockers.yaml", "spec.ports.protocol"),
    ("scd", "servicecomponentdockers.yaml", "spec.cliArgs"),
    ("scd", "servicecomponentdockers.yaml", "status.placement"),
    ("scd", "servicecomponentdockers.yaml", "status.conditions.lastTransitionTime"),
    ("die", "dockerinfrastructureelements.yaml", "spec.api.url"),
    ("die", "dockerinfrastructureelements.yaml", "status.apiReady"),
])
def test_kubectl_explain_shows_the_description(api: CrdApiServer, resource: str,
                                               crd_file: str, path: str) -> None:
    expected = " ".join(_description(crd_file, path).split())
    # The OpenAPI publisher picks up new CRDs asynchronously.
    deadline = time.monotonic() + 20
    while True:
        res = api.kubectl("explain", f"{resource}.{path}", check=False)
        shown = " ".join((res.stdout + res.stderr).split())
        if (res.returncode == 0 and expected in shown) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.returncode == 0, res.stderr
    assert expected in shown


# =========================================================================== samples


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_sample_applies_with_strict_server_side_validation(api: CrdApiServer,
                                                           path: Path) -> None:
    api.kubectl("apply", "--validate=strict", "-f", str(path))
    for doc in yaml.safe_load_all(path.read_text()):
        kind = "scd" if doc["kind"] == "ServiceComponentDocker" else "die"
        stored = kubectl_json(api, kind, doc["metadata"]["name"])
        # Nothing of what was written is lost (defaults may be added).
        assert subset(doc["spec"], stored["spec"]), (doc["spec"], stored["spec"])


# =========================================================================== invalid objects


def _set(path: str, value: Any) -> Callable[[JSON], None]:
    """A mutation setting (or with ``...`` deleting) a dotted path; ``ports.0`` indexes."""
    def mutate(obj: JSON) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return mutate


# A client configuration as the HLO writes it (keys: 32 bytes of base64, bare address).
OVERLAY = {"internalIp": "10.8.0.3", "dns": "10.8.0.1",
           "privateKey": base64.b64encode(bytes(range(32))).decode(),
           "publicKey": base64.b64encode(bytes(range(1, 33))).decode(),
           "endpoint": "hub.example.org:51820", "allowedIps": "10.8.0.0/24"}

INVALID: list[tuple[str, JSON, Callable[[JSON], None], tuple[str, ...]]] = [
    ("port-0", scd(ports=[{"number": 80}]), _set("spec.ports.0.number", 0),
     ("spec.ports[0].number",)),
    ("port-70000", scd(ports=[{"number": 80}]), _set("spec.ports.0.number", 70000),
     ("spec.ports[0].number",)),
    ("bad-protocol", scd(ports=[{"number": 80}]), _set("spec.ports.0.protocol", "HTTP"),
     ("spec.ports[0].protocol", "Unsupported value")),
    ("empty-image", scd(), _set("spec.image", ""), ("spec.image",)),
    ("missing-selected-ie", scd(), _set("spec.selectedIE", ...),
     ("spec.selectedIE", "Required value")),
    ("missing-ie-id", scd(), _set("spec.selectedIE.id", ...),
     ("spec.selectedIE.id", "Required value")),
    ("ports-as-string", scd(), _set("spec.ports", "80"), ("spec.ports", "array")),
    ("isjob-as-string", scd(), _set("spec.isJob", "yes"), ("spec.isJob", "boolean")),
    ("unknown-spec-field", scd(), _set("spec.replicas", 2), ('unknown field "spec.replicas"',)),
    ("unknown-nested-field", scd(), _set("spec.selectedIE.name", "x"),
     ('unknown field "spec.selectedIE.name"',)),
    ("duplicate-port-pair", scd(ports=[{"number": 80, "protocol": "TCP"}, {"number": 80}]),
     lambda obj: None, ("spec.ports", "each port number/protocol pair may appear only once")),
    ("env-key-with-equals", scd(envVars=[{"key": "A=B", "value": "x"}]), lambda obj: None,
     ("spec.envVars[0].key",)),
    ("cliarg-without-key", scd(cliArgs=[{"value": "x"}]), lambda obj: None,
     ("spec.cliArgs[0].key", "Required value")),
    ("overlay-mtu", scd(networkOverlay={"mtu": 10}), lambda obj: None,
     ("spec.networkOverlay.mtu",)),
    ("overlay-bad-private-key", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.privateKey", "bm9wZQ=="), ("spec.networkOverlay.privateKey",)),
    ("overlay-key-of-31-bytes", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.publicKey", base64.b64encode(bytes(31)).decode()),
     ("spec.networkOverlay.publicKey",)),
    ("overlay-bad-address", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.internalIp", "10.8.0.300"), ("spec.networkOverlay.internalIp",)),
    ("overlay-bad-cidr", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.allowedIps", "10.8.0.0/24,10.9.0.0/33"),
     ("spec.networkOverlay.allowedIps",)),
    ("overlay-bad-dns", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.dns", "dns.example"), ("spec.networkOverlay.dns",)),
    ("overlay-endpoint-without-port", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.endpoint", "hub.example.org"), ("spec.networkOverlay.endpoint",)),
    ("overlay-incomplete", scd(networkOverlay=OVERLAY),
     _set("spec.networkOverlay.privateKey", ...),
     ("spec.networkOverlay", "either {} (no overlay) or has all of")),
    ("die-bad-url", die(), _set("spec.api.url", "ftp://ie-a:21"), ("spec.api.url",)),
    ("die-url-not-a-url", die(), _set("spec.api.url", "127.0.0.1:8081"), ("spec.api.url",)),
    ("die-missing-api", die(), _set("spec.api", ...), ("spec.api", "Required value")),
    ("die-bad-token-key", die(), _set("spec.api.tokenKey", "../etc/passwd"),
     ("spec.api.tokenKey",)),
]


@pytest.mark.parametrize(("base", "mutate", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_object_is_refused_naming_the_field(
        api: CrdApiServer, base: JSON, mutate: Callable[[JSON], None],
        expected: tuple[str, ...]) -> None:
    obj = copy.deepcopy(base)
    obj["metadata"]["name"] = obj["metadata"]["name"].replace("valid-scd", "invalid-scd") \
        .replace("ie-a", "invalid-die")
    mutate(obj)
    res = api.kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(obj),
                      check=False)
    assert res.returncode != 0, f"accepted: {json.dumps(obj)}"
    for text in expected:
        assert text in res.stderr
    kind = "scd" if obj["kind"] == "ServiceComponentDocker" else "die"
    assert api.kubectl("get", kind, obj["metadata"]["name"], check=False).returncode != 0


def test_valid_bases_of_the_invalid_table_are_accepted(api: CrdApiServer) -> None:
    """The table's objects are refused for the one rule each breaks, not for something else."""
    for name, base, _, _ in INVALID:
        obj = copy.deepcopy(base)
        if name in ("duplicate-port-pair", "env-key-with-equals", "cliarg-without-key",
                    "overlay-mtu"):
            continue  # their base is the invalid object itself
        apply_json(api, obj, "--dry-run=server")


ACCEPTED_OVERLAYS = {
    "empty-means-none": {},
    "as-the-hlo-writes-it": OVERLAY,
    "prefix-ipv6-keepalive-off": {**OVERLAY, "internalIp": "10.8.0.3/24",
                                  "allowedIps": "10.8.0.0/24, fd00::/64",
                                  "endpoint": "[fd00::1]:51820", "mtu": 1380,
                                  "persistentKeepalive": 0},
}


@pytest.mark.parametrize("overlay", ACCEPTED_OVERLAYS.values(), ids=ACCEPTED_OVERLAYS.keys())
def test_overlay_forms_are_accepted_by_the_schema_and_the_ie_alike(
        api: CrdApiServer, overlay: JSON) -> None:
    apply_json(api, scd(networkOverlay=overlay), "--dry-run=server")
    if overlay:
        parse_overlay(NetworkOverlay.model_validate(overlay))  # the IE applies the same


# =========================================================================== status round trip


def _missing_fields(model: type[BaseModel], value: Any, path: str = "status") -> list[str]:
    """Fields of ``model`` (recursively) absent from its JSON ``value``."""
    missing: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in value:
            missing.append(f"{path}.{key}")
            continue
        sub = value[key]
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            inner = getattr(arg, "__args__", (arg,))[0] if isinstance(sub, list) else arg
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                items = sub if isinstance(sub, list) else [sub]
                if not items:
                    missing.append(f"{path}.{key}[]")
                for i, item in enumerate(items):
                    missing.extend(_missing_fields(inner, item, f"{path}.{key}[{i}]"))
                break
    return missing


def _placement(ie: str, container: str = "default.full") -> Placement:
    return Placement(ie=ie, ie_id=f"urn:ngsi-ld:InfrastructureElement:{ie}",
                     api_url=f"https://{ie}.example:8081", token_key=f"{ie}-token",
                     insecure_skip_tls_verify=True, container=container)


def _conditions(types: tuple[str, ...]) -> list[Condition]:
    return [Condition(type=t, status=status, reason=f"Because{t}", message=f"{t} message",
                      last_transition_time="2024-05-01T10:00:00Z", observed_generation=3)
            for t, status in zip(types, [*ConditionStatus] * 3, strict=False)]


def full_scd_status() -> JSON:
    """An SCD status with every field of hooks.resources.SCDStatus set."""
    status = SCDStatus(
        phase=Phase.MIGRATING, reason="MigrationPending", message="moving to ie-b",
        ie="ie-a", names=Names(container="default.full", alias="full"),
        placement=_placement("ie-a"),
        migration=Migration(to=_placement("ie-b")),
        pending_cleanups=[Cleanup(**_placement("ie-c").model_dump(), reason="Migrated")],
        container=ContainerInfo(
            id="0123abcd", state="running", image="busybox:1", image_id="sha256:0123",
            exit_code=0, restart_count=2, started_at="2024-05-01T10:00:00Z",
            finished_at="2024-05-01T09:59:00Z",
            ports=[PublishedPort(container_port=80, protocol=Protocol.TCP, host_ip="0.0.0.0",
                                 host_port=8080),
                   PublishedPort(container_port=53, protocol=Protocol.UDP, host_ip="",
                                 host_port=5353)],
            network="llo-net-service-1",
            overlay=OverlayInfo(interface="wg0", address="10.8.0.3/32", mode="userspace",
                                state="up", last_handshake="<3m")),
        failure=FailureInfo(exit_code=3, finished_at="2024-05-01T09:59:00Z", restart_count=2,
                            last_output="boom\n\ufffd é\n", last_output_truncated=True),
        pull=PullInfo(layers_total=3, layers_done=1, bytes_total=2**33, bytes_done=2**32,
                      message="Downloading"),
        broker=BrokerInfo(entity_id="urn:ngsi-ld:Service:1:Component:1",
                          entity_source=EntitySource.QUERY, desired="Migrating",
                          reported="Running", state="Failed", message="broker down"),
        conditions=_conditions(resources.SCD_CONDITION_ORDER),
        observed_generation=3)
    dumped = resources.dump(status)
    assert _missing_fields(SCDStatus, dumped) == []
    return dumped


def full_die_status() -> JSON:
    """A DIE status with every field of hooks.resources.DIEStatus set."""
    status = DIEStatus(
        api_ready=True, reason="Ready", message="answered", ie_id=IE_ID,
        docker_version="20.10.24", docker_api_version="1.41", os="Debian GNU/Linux 12",
        architecture="x86_64", cpus=2, memory_bytes=25 * 2**30, allow_privileged=False,
        conditions=_conditions(("Ready",)), observed_generation=1)
    dumped = resources.dump(status)
    assert _missing_fields(DIEStatus, dumped) == []
    return dumped


def put_status(api: CrdApiServer, kind: str, name: str, status: JSON) -> JSON:
    """Replace .status through the /status subresource (as Metacontroller does), read back."""
    obj = kubectl_json(api, kind, name)
    obj["status"] = status
    meta = obj["metadata"]
    base = "/apis/llo.aeros-project.eu/v1alpha1"
    path = (f"{base}/namespaces/{meta['namespace']}/servicecomponentdockers/{name}/status"
            if kind == "scd" else f"{base}/dockerinfrastructureelements/{name}/status")
    api.kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(obj))
    stored: JSON = kubectl_json(api, kind, name)["status"]
    return stored


def test_full_model_status_is_stored_intact(api: CrdApiServer) -> None:
    apply_json(api, scd("full-status"))
    sent = full_scd_status()
    assert put_status(api, "scd", "full-status", sent) == sent
    apply_json(api, die("full-status-ie"))
    sent = full_die_status()
    assert put_status(api, "die", "full-status-ie", sent) == sent


@pytest.fixture(scope="module")
def hooks_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """The real hooks app (Flask test client) with a broker double and short IE timeouts."""
    tokens = tmp_path_factory.mktemp("tokens")
    for name in ("docker-machine-2", "local-docker"):
        (tokens / name).write_text("not-the-token")
    with OrionDouble() as orion:
        for i in (1, 2):
            orion.create_entity(f"urn:ngsi-ld:Service:1:Component:{i}", "ServiceComponent")
        orion.create_entity("urn:ngsi-ld:Service:Local:Component:1", "ServiceComponent")
        settings = Settings.model_validate({
            "ie_token_dir": tokens, "broker_url": orion.url, "ie_retries": 0,
            "ie_connect_timeout_seconds": 0.3, "ie_read_timeout_seconds": 0.3})
        yield create_app(settings).test_client()


@pytest.mark.parametrize("path", HOOK_BODIES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_hook_status_is_stored_intact(api: CrdApiServer, hooks_client: FlaskClient,
                                      path: Path) -> None:
    body = json.loads(path.read_text())
    route = "/" + path.stem.removesuffix("-placed").replace("-", "/", 1)
    answer = hooks_client.post(route, json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    status = answer.get_json()["status"]
    assert status, f"{route} returned no status"

    parent = body["parent"]
    kind = "scd" if parent["kind"] == "ServiceComponentDocker" else "die"
    name = f"{parent['metadata']['name']}-{path.stem}"[:63].rstrip("-")
    obj = {"apiVersion": parent["apiVersion"], "kind": parent["kind"],
           "metadata": {"name": name, "labels": parent["metadata"].get("labels", {}),
                        "annotations": parent["metadata"].get("annotations", {})},
           "spec": parent["spec"]}
    if kind == "scd":
        obj["metadata"]["namespace"] = parent["metadata"].get("namespace", "default")
    apply_json(api, obj)
    generation = kubectl_json(api, kind, name)["metadata"]["generation"]
    sent = {**status, "observedGeneration": generation}  # what Metacontroller writes
    assert put_status(api, kind, name, sent) == sent
