"""Lint of the project's Kubernetes manifests, samples and hooks image, against the models they
must mirror and Metacontroller's own CompositeController schema.

Schema checks use the structural-schema evaluator of testbed/crdschema.py (prune,
default, validate; the ``jsonschema`` package is not installed, and plain JSON Schema would not
prune or flag unknown fields anyway). CEL ``x-kubernetes-validations`` are evaluated with
cel-python (tests/doubles/test_cel_rules.py); tests/k8s runs the CRDs on a real API server.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from hooks import resources
from hooks.protocol import CustomizeRequest, SyncRequest
from ieapi import gunicorn_conf as ieapi_gunicorn
from testbed.crdschema import apply_schema
from testbed.manifests import (
    FINALIZER_PREFIX,
    METACONTROLLER_CRDS,
    METACONTROLLER_CRDS_MISSING,
    load_controllers,
    load_crds,
    parse_duration,
)
from testbed.mcflags import (
    DEFAULTS,
    MetacontrollerFlags,
    container_args,
    parse_args,
    shipped,
)
from testbed.stack import HOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
MANIFESTS = ROOT / "metacontroller"
SAMPLES = ROOT / "samples"
JSON = dict[str, Any]


def _subset(a: Any, b: Any) -> bool:
    """Everything in ``a`` is in ``b`` (objects may gain keys, e.g. defaults)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and all(k in b and _subset(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_subset, a, b))
    return bool(a == b)


def _yaml(path: Path) -> JSON:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def _crd_doc(name: str) -> JSON:
    return _yaml(CRDS / name)


def _version(doc: JSON) -> JSON:
    versions = doc["spec"]["versions"]
    assert len(versions) == 1
    version: JSON = versions[0]
    return version


def _schema(doc: JSON) -> JSON:
    schema: JSON = _version(doc)["schema"]["openAPIV3Schema"]
    return schema


SCD_DOC = _crd_doc("servicecomponentdockers.yaml")
DIE_DOC = _crd_doc("dockerinfrastructureelements.yaml")


# =========================================================================== CRD basics


@pytest.mark.parametrize(("doc", "kind", "plural", "scope", "short"), [
    (SCD_DOC, "ServiceComponentDocker", "servicecomponentdockers", "Namespaced", "scd"),
    (DIE_DOC, "DockerInfrastructureElement", "dockerinfrastructureelements", "Cluster", "die"),
])
def test_crd_identity(doc: JSON, kind: str, plural: str, scope: str, short: str) -> None:
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["metadata"]["name"] == f"{plural}.{resources.GROUP}"
    spec = doc["spec"]
    assert spec["group"] == resources.GROUP
    assert spec["scope"] == scope
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["aeros", "llo"]
    version = _version(doc)
    assert version["name"] == resources.VERSION
    assert version["served"] is True
    assert version["storage"] is True
    # Metacontroller ignores a parent without the status subresource (docs/design.md §1).
    assert version["subresources"] == {"status": {}}


def _walk_schema(schema: JSON, path: str) -> list[tuple[str, JSON]]:
    out = [(path, schema)]
    for key, sub in schema.get("properties", {}).items():
        out.extend(_walk_schema(sub, f"{path}.{key}"))
    if "items" in schema:
        out.extend(_walk_schema(schema["items"], f"{path}[]"))
    return out


@pytest.mark.parametrize("doc", [SCD_DOC, DIE_DOC], ids=["scd", "die"])
def test_every_field_has_a_description(doc: JSON) -> None:
    missing = [path for path, sub in _walk_schema(_schema(doc), "")
               if path != ".metadata" and not str(sub.get("description", "")).strip()]
    assert missing == []


@pytest.mark.parametrize("doc", [SCD_DOC, DIE_DOC], ids=["scd", "die"])
def test_schema_is_structural(doc: JSON) -> None:
    """Every node has a type; no constructs that make a schema non-structural."""
    for path, sub in _walk_schema(_schema(doc), ""):
        assert "type" in sub, path
        assert not {"$ref", "additionalItems", "anyOf", "oneOf", "allOf", "not"} & set(sub), path
        if sub["type"] == "array":
            assert "items" in sub, path
        if sub.get("x-kubernetes-list-type") == "map":
            keys = sub["x-kubernetes-list-map-keys"]
            item = sub["items"]
            for key in keys:  # list-map keys must be required or defaulted
                assert key in item.get("required", []) or "default" in item["properties"][key]


# =========================================================================== CRD ↔ models


def _resolve(schema: JSON, defs: JSON) -> tuple[JSON, bool]:
    """A pydantic JSON-schema node with $ref/anyOf-null unwrapped, and whether it is nullable."""
    nullable = False
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        assert len(options) == 1, schema
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    if "$ref" in schema:
        ref = defs[schema["$ref"].rsplit("/", 1)[1]]
        schema = {**ref, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, nullable


def _compare(model: JSON, crd: JSON, defs: JSON, path: str, *, status: bool,
             problems: list[str]) -> None:
    m_props: JSON = model.get("properties", {})
    c_props: JSON = crd.get("properties", {})
    for name in sorted(set(m_props) - set(c_props)):
        problems.append(f"{path}.{name}: in the model, not declared in the CRD (pruned)")
    for name in sorted(set(c_props) - set(m_props)):
        problems.append(f"{path}.{name}: declared in the CRD, unknown to the model")
    for name in sorted(set(m_props) & set(c_props)):
        m, nullable = _resolve(m_props[name], defs)
        c = c_props[name]
        where = f"{path}.{name}"
        if m.get("type") != c.get("type"):
            problems.append(f"{where}: model type {m.get('type')}, CRD type {c.get('type')}")
            continue
        if status and nullable and c.get("nullable") is not True:
            problems.append(f"{where}: model allows null, CRD field is not nullable")
        if "enum" in m and "enum" in c and sorted(m["enum"]) != sorted(c["enum"]):
            problems.append(f"{where}: enum {sorted(m['enum'])} vs CRD {sorted(c['enum'])}")
        if "enum" in c and "enum" not in m:
            problems.append(f"{where}: CRD restricts to {c['enum']}, the model does not")
        if m.get("type") == "object":
            _compare(m, c, defs, where, status=status, problems=problems)
        elif m.get("type") == "array":
            m_items, _ = _resolve(m["items"], defs)
            if m_items.get("type") == "object":
                _compare(m_items, c["items"], defs, where + "[]", status=status,
                         problems=problems)


def _model_schema(model: type[BaseModel], mode: str) -> JSON:
    schema: JSON = model.model_json_schema(by_alias=True, mode=mode)  # type: ignore[arg-type]
    return schema


@pytest.mark.parametrize(("doc", "model"), [
    (SCD_DOC, resources.SCDStatus), (DIE_DOC, resources.DIEStatus)], ids=["scd", "die"])
def test_status_schema_mirrors_model(doc: JSON, model: type[BaseModel]) -> None:
    """Every status field the hooks write is declared (else the API server prunes it), with the
    same type, nullable where the model allows None, and the same enum values."""
    ms = _model_schema(model, "serialization")
    problems: list[str] = []
    _compare(ms, _schema(doc)["properties"]["status"], ms.get("$defs", {}), ".status",
             status=True, problems=problems)
    assert problems == []


@pytest.mark.parametrize(("doc", "model"), [
    (SCD_DOC, resources.SCDSpec), (DIE_DOC, resources.DIESpec)], ids=["scd", "die"])
def test_spec_schema_mirrors_model(doc: JSON, model: type[BaseModel]) -> None:
    ms = _model_schema(model, "validation")
    problems: list[str] = []
    _compare(ms, _schema(doc)["properties"]["spec"], ms.get("$defs", {}), ".spec",
             status=False, problems=problems)
    assert problems == []


def _defaults(crd: JSON, path: str = "") -> list[tuple[str, Any]]:
    out = [(path, crd["default"])] if "default" in crd else []
    for key, sub in crd.get("properties", {}).items():
        out.extend(_defaults(sub, f"{path}.{key}"))
    if "items" in crd:
        out.extend(_defaults(crd["items"], f"{path}[]"))
    return out


@pytest.mark.parametrize(("doc", "model"), [
    (SCD_DOC, resources.SCDSpec), (DIE_DOC, resources.DIESpec)], ids=["scd", "die"])
def test_crd_defaults_equal_model_defaults(doc: JSON, model: type[BaseModel]) -> None:
    """A field the user leaves out means the same to the API server and to the hooks; every
    spec boolean has a default, so `kubectl get -o yaml` shows the effective value."""
    ms = _model_schema(model, "validation")
    defs = ms.get("$defs", {})
    spec = _schema(doc)["properties"]["spec"]
    found = _defaults(spec)
    assert found, "no defaults at all"
    for path, value in found:
        node = ms
        for part in re.findall(r"\.(\w+)|(\[\])", path):
            node, _ = _resolve(node["properties"][part[0]] if part[0] else node["items"], defs)
        assert node.get("default") == value, path
    booleans = [p for p, sub in _walk_schema(spec, "") if sub.get("type") == "boolean"]
    assert booleans
    assert sorted(booleans) == sorted(p for p, _ in found if p in booleans)


def test_printer_columns() -> None:
    def cols(doc: JSON) -> dict[str, str]:
        return {c["name"]: c["jsonPath"] for c in _version(doc)["additionalPrinterColumns"]}
    scd = cols(SCD_DOC)
    assert scd["IE"] == ".status.ie"
    assert scd["Image"] == ".spec.image"
    assert scd["Phase"] == ".status.phase"
    assert scd["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert scd["Reason"] == ".status.reason"
    assert scd["Age"] == ".metadata.creationTimestamp"
    die = cols(DIE_DOC)
    assert die["Hostname"] == ".spec.hostname"
    assert die["URL"] == ".spec.api.url"
    assert die["API-Ready"] == ".status.apiReady"
    assert die["Docker"] == ".status.dockerVersion"
    assert die["Age"] == ".metadata.creationTimestamp"
    # every column points at a declared field
    for doc in (SCD_DOC, DIE_DOC):
        paths = {p for p, _ in _walk_schema(_schema(doc), "")}
        for name, json_path in cols(doc).items():
            plain = re.sub(r"\[\?\(.*\)\]", "[]", json_path)
            assert plain in paths or plain.startswith(".metadata."), name


def _scd(**spec: Any) -> JSON:
    base: JSON = {"selectedIE": {"id": "urn:ngsi-ld:InfrastructureElement:X:1",
                                 "hostname": "docker-machine-2"}, "image": "busybox:1.36"}
    return {"apiVersion": resources.API_VERSION, "kind": resources.SCD_KIND,
            "metadata": {"name": "x"}, "spec": {**base, **spec}}


def _spec_errors(obj: JSON) -> list[str]:
    schema = _schema(SCD_DOC)
    _, errors = apply_schema(obj, {**schema, "properties": {
        k: v for k, v in schema["properties"].items() if k != "status"}})
    return errors


def test_scd_schema_defaults_a_minimal_spec() -> None:
    schema = _schema(SCD_DOC)
    result, errors = apply_schema(_scd(ports=[{"number": 80}]), schema)
    assert errors == []
    assert result["spec"]["ports"] == [{"number": 80, "protocol": "TCP"}]
    assert result["spec"]["isJob"] is False
    assert result["spec"]["exposePorts"] is False  # the aerOS model's default
    assert result["spec"]["privileged"] is False


@pytest.mark.parametrize(("spec", "field"), [
    ({"image": ""}, ".spec.image"),
    ({"image": "busybox latest"}, ".spec.image"),
    ({"selectedIE": {"id": "urn:x:1", "hostname": "Docker_Machine"}}, ".spec.selectedIE.hostname"),
    ({"selectedIE": {"id": "", "hostname": "m"}}, ".spec.selectedIE.id"),
    ({"selectedIE": {"hostname": "m"}}, ".spec.selectedIE.id"),
    ({"ports": [{"number": 0}]}, ".spec.ports[0].number"),
    ({"ports": [{"number": 65536}]}, ".spec.ports[0].number"),
    ({"ports": [{"number": 80, "protocol": "HTTP"}]}, ".spec.ports[0].protocol"),
    ({"ports": [{"protocol": "TCP"}]}, ".spec.ports[0].number"),
    ({"envVars": [{"key": "A=B", "value": "x"}]}, ".spec.envVars[0].key"),
    ({"envVars": [{"value": "x"}]}, ".spec.envVars[0].key"),
    ({"cliArgs": [{"key": ""}]}, ".spec.cliArgs[0].key"),
    ({"isJob": "yes"}, ".spec.isJob"),
    ({"ports": [{"number": p} for p in range(1, 130)]}, ".spec.ports"),
])
def test_scd_schema_rejects(spec: JSON, field: str) -> None:
    errors = _spec_errors(_scd(**spec))
    assert any(e.startswith(f"<root>{field}:") for e in errors), errors


def test_scd_schema_rejects_missing_image() -> None:
    obj = _scd()
    del obj["spec"]["image"]
    assert any(e.startswith("<root>.spec.image: Required") for e in _spec_errors(obj))


@pytest.mark.parametrize(("api", "ok"), [
    ({"url": "http://10.0.0.5:8081"}, True),
    ({"url": "https://ie.example/api", "tokenKey": "docker-machine-2"}, True),
    ({"url": "nats://nats.example:4222"}, True),
    ({"url": "tls://nats.example:4222"}, True),
    ({"url": "ftp://10.0.0.5"}, False),
    ({"url": "http://"}, False),
    ({"url": "nats://"}, False),
    ({"url": "http://x:1", "tokenKey": "../etc"}, False),
    ({"url": "http://x:1", "tokenKey": ".hidden"}, False),
])
def test_die_api_schema(api: JSON, ok: bool) -> None:
    obj = {"apiVersion": resources.API_VERSION, "kind": resources.DIE_KIND,
           "metadata": {"name": "m"},
           "spec": {"id": "urn:ngsi-ld:InfrastructureElement:X:1", "hostname": "m", "api": api}}
    _, errors = apply_schema(obj, _schema(DIE_DOC))
    assert (errors == []) is ok, errors


def test_die_token_key_pattern_agrees_with_hooks() -> None:
    from hooks.tokens import is_valid_token_key
    pattern = _schema(DIE_DOC)["properties"]["spec"]["properties"]["api"]["properties"][
        "tokenKey"]["pattern"]
    for key in ["docker-machine-2", "a", "A_b.c-d", ".x", "..data", "a/b", "-x", "x y", "_x"]:
        assert bool(re.search(pattern, key)) == is_valid_token_key(key), key


def test_a_full_status_round_trips_through_the_crd() -> None:
    """A status using every field survives the API server unchanged (nothing pruned)."""
    hook_body = json.loads((SAMPLES / "hooks" / "scd-finalize.json").read_text())
    status = hook_body["parent"]["status"]
    status["migration"] = {"to": status["placement"]}
    status["pendingCleanups"] = [{**status["placement"], "reason": "Migrated"}]
    status["pull"] = {"layersTotal": 3, "layersDone": 1, "bytesTotal": 100, "bytesDone": 5,
                      "message": "Downloading"}
    model = resources.SCDStatus.model_validate(status)
    dumped = model.model_dump(mode="json", by_alias=True)  # nulls included
    kept, errors = apply_schema(dumped, _schema(SCD_DOC)["properties"]["status"])
    assert errors == []
    assert kept == dumped


# =========================================================================== metacontroller/


def _metacontroller_cc_schema() -> JSON:
    for doc in yaml.safe_load_all(METACONTROLLER_CRDS.read_text()):
        if doc and doc["spec"]["names"]["kind"] == "CompositeController":
            schema: JSON = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError("no CompositeController CRD")


CC_FILES = ["compositecontroller-scd.yaml", "compositecontroller-die.yaml"]


@pytest.mark.skipif(not METACONTROLLER_CRDS.is_file(), reason=METACONTROLLER_CRDS_MISSING)
@pytest.mark.parametrize("name", CC_FILES)
def test_composite_controllers_validate_against_metacontroller_schema(name: str) -> None:
    doc = _yaml(MANIFESTS / name)
    result, errors = apply_schema(doc, _metacontroller_cc_schema())
    assert errors == []
    # Nothing pruned: every field is one Metacontroller knows (defaults may be added).
    assert _subset(doc, result)


@pytest.mark.parametrize(("name", "resource", "hooks"), [
    ("compositecontroller-scd.yaml", "servicecomponentdockers",
     {"customize": "/scd/customize", "sync": "/scd/sync", "finalize": "/scd/finalize"}),
    ("compositecontroller-die.yaml", "dockerinfrastructureelements",
     {"sync": "/die/sync", "finalize": "/die/finalize"}),
])
def test_composite_controller_settings(name: str, resource: str, hooks: dict[str, str]) -> None:
    doc = _yaml(MANIFESTS / name)
    spec = doc["spec"]
    assert doc["apiVersion"] == "metacontroller.k8s.io/v1alpha1"
    assert spec["parentResource"] == {"apiVersion": resources.API_VERSION, "resource": resource,
                                      "ignoreStatusChanges": True}
    assert "childResources" not in spec
    assert spec["generateSelector"] is True
    assert spec["resyncPeriodSeconds"] > 0
    assert set(spec["hooks"]) == set(hooks)
    for hook, path in hooks.items():
        h = spec["hooks"][hook]
        assert h["version"] == "v2"  # v1 drops the cluster-scoped DIE (docs/design.md §1)
        assert h["webhook"]["url"] == f"http://llo-docker-hooks.llo-docker{path}"
        assert parse_duration(h["webhook"]["timeout"]) == 10.0
        assert h["webhook"]["responseUnMarshallMode"] == "strict"
        # Authenticated (Metacontroller v4.16+): the same Secret the hooks Deployment mounts.
        assert h["webhook"]["authorization"] == {"type": "Bearer", "secretRef": {
            "name": HOOK_SECRET[1], "namespace": HOOK_SECRET[0], "key": HOOK_SECRET[2]}}
        assert "basicAuth" not in h["webhook"]
        assert "@" not in h["webhook"]["url"]  # no secret in a URL


def test_driver_reads_the_manifests() -> None:
    """The test driver configures itself from these manifests (hook paths, timeouts)."""
    crds = load_crds(CRDS)
    ctls = {c.name: c for c in load_controllers("http://127.0.0.1:9", crds, MANIFESTS)}
    assert set(ctls) == {"llo-docker-scd", "llo-docker-die"}
    scd = ctls["llo-docker-scd"]
    assert scd.hooks["sync"].url == "http://127.0.0.1:9/scd/sync"
    assert scd.hooks["sync"].timeout == 10.0
    assert scd.finalizer == FINALIZER_PREFIX + "llo-docker-scd"
    assert ctls["llo-docker-die"].crd.namespaced is False


def _rendered(directory: Path) -> list[JSON]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_kustomize_renders_the_install() -> None:
    docs = _rendered(MANIFESTS)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert ("CustomResourceDefinition", "servicecomponentdockers.llo.aeros-project.eu") in kinds
    assert ("CustomResourceDefinition", "dockerinfrastructureelements.llo.aeros-project.eu") \
        in kinds
    assert ("CompositeController", "llo-docker-scd") in kinds
    assert ("CompositeController", "llo-docker-die") in kinds
    for kind in ("Namespace", "ServiceAccount", "Deployment", "Service", "ConfigMap"):
        assert any(k == kind for k, _ in kinds), kind
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "CompositeController"}
    for d in docs:
        if d["kind"] in cluster_scoped:
            assert "namespace" not in d["metadata"], d["kind"]
        else:
            assert d["metadata"]["namespace"] == "llo-docker", d["kind"]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"llo-docker-hooks:\S+", image)
    crds_only = _rendered(CRDS)
    assert sorted(d["kind"] for d in crds_only) == ["CustomResourceDefinition"] * 2


UPSTREAM = MANIFESTS / "upstream"
METACONTROLLER_BASE = "https://github.com/metacontroller/metacontroller/manifests/production"
# What the patch relies on in Metacontroller v4.17.2's manifests/production/metacontroller.yaml:
# a StatefulSet metacontroller/metacontroller whose container "metacontroller" has these args.
UPSTREAM_ARGS = ["--zap-log-level=4", "--discovery-interval=20s"]


def _upstream_overlay(tmp_path: Path) -> JSON:
    """``kubectl kustomize metacontroller/upstream/`` with its remote base (no network at test
    time) replaced by a stand-in of the StatefulSet it patches; the rendered StatefulSet."""
    kust = _yaml(UPSTREAM / "kustomization.yaml")
    assert kust["resources"] == [f"{METACONTROLLER_BASE}?ref=v4.17.2"]
    stand_in = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "metacontroller", "namespace": "metacontroller"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "metacontroller",
                     "image": "ghcr.io/metacontroller/metacontroller:v4.17.2",
                     "command": ["/usr/bin/metacontroller"], "args": UPSTREAM_ARGS}]}}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(stand_in))
    for patch in kust["patches"]:
        shutil.copy(UPSTREAM / patch["path"], tmp_path / patch["path"])
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({**kust,
                                                                 "resources": ["base.yaml"]}))
    (rendered,) = _rendered(tmp_path)
    return rendered


def test_metacontroller_overlay_sets_the_flags_sized_for_the_hooks(tmp_path: Path) -> None:
    """README's install step 1: upstream's Metacontroller with three flags, sized in
    metacontroller/upstream/flags.yaml from the hooks' own capacity."""
    rendered = _upstream_overlay(tmp_path)
    args = container_args(rendered)
    assert args[:2] == UPSTREAM_ARGS  # upstream's own flags survive the patch
    flags = parse_args(args)
    assert flags == shipped()  # what the driver and the benchmark run with
    assert {a.split("=")[0] for a in args[2:]} == {"--client-go-qps", "--client-go-burst",
                                                  "--workers"}
    # Workers: no more than one IE API serves at once (a create holds one of its threads), and
    # both controllers' syncs fit in one hooks replica (each holds a hook thread).
    settings = pytest.importorskip("hooks.settings").Settings()
    assert flags.workers <= int(ieapi_gunicorn.threads)
    assert 2 * flags.workers <= settings.workers * settings.threads
    assert flags.workers > DEFAULTS.workers
    # The API budget: well above the defaults, and a burst at least twice the rate.
    assert flags.qps >= 10 * DEFAULTS.qps
    assert flags.burst >= 2 * flags.qps
    readme = (ROOT / "README.md").read_text()
    assert "kubectl apply -k metacontroller/upstream/" in readme
    assert flags.describe() in readme
    assert METACONTROLLER_BASE not in readme  # the install step goes through the overlay


def test_flags_parse_like_go() -> None:
    assert parse_args([]) == DEFAULTS
    assert parse_args(["--workers=3", "-workers=7", "--client-go-qps=2.5"]) == \
        MetacontrollerFlags(qps=2.5, burst=10, workers=7)


def test_kubectl_apply_f_crds_sees_only_crds() -> None:
    """`kubectl apply -f crds/` reads every .yaml/.yml/.json file there: all must be CRDs (the
    kustomization is named `Kustomization`, which it skips)."""
    files = [p for p in CRDS.iterdir() if p.suffix in (".yaml", ".yml", ".json")]
    assert len(files) == 2
    assert all(_yaml(p)["kind"] == "CustomResourceDefinition" for p in files)
    assert (CRDS / "Kustomization").exists()


def _generated_configmap(docs: list[JSON]) -> JSON:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    return cm


def test_hooks_deployment() -> None:
    dep = _yaml(MANIFESTS / "deployment.yaml")
    svc = _yaml(MANIFESTS / "service.yaml")
    sa = _yaml(MANIFESTS / "rbac.yaml")
    rendered = _rendered(MANIFESTS)
    cm = _generated_configmap(rendered)
    rendered_dep = next(d for d in rendered if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    # the Service routes port 80 (the hook URLs carry no port) to the container port
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 80
    assert port["targetPort"] == container["ports"][0]["name"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["name"] == "llo-docker-hooks"
    # mounted secrets and the paths the settings point at
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["LLO_IE_TOKEN_DIR"] == "/var/run/secrets/llo/ie-tokens"
    ie_tokens = next(n for n, v in volumes.items()
                     if v.get("secret", {}).get("secretName") == "llo-ie-tokens")
    assert mounts[ie_tokens] == env["LLO_IE_TOKEN_DIR"]
    assert volumes[ie_tokens]["secret"]["optional"] is True
    broker = next(n for n, v in volumes.items()
                  if v.get("secret", {}).get("secretName") == "llo-broker-token")
    assert Path(env["LLO_BROKER_TOKEN_FILE"]).parent == Path(mounts[broker])
    assert "/tmp" in mounts.values()  # gunicorn needs a writable temp dir
    # the hook secret: the Secret the CompositeControllers name, required (auth on by default)
    hook = next(n for n, v in volumes.items()
                if v.get("secret", {}).get("secretName") == HOOK_SECRET[1])
    assert "optional" not in volumes[hook]["secret"]
    assert Path(mounts[hook]) / HOOK_SECRET[2] == Path(env["LLO_HOOK_SECRET_FILE"])
    assert cm["data"]["LLO_BROKER_HEADERS"] == "aeriOS=true"
    (rendered_container,) = rendered_dep["spec"]["template"]["spec"]["containers"]
    assert rendered_container["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]


def _copy_install(tmp_path: Path) -> Path:
    """metacontroller/ and crds/ side by side in tmp_path (the kustomization names ../crds)."""
    shutil.copytree(CRDS, tmp_path / "crds")
    return Path(shutil.copytree(MANIFESTS, tmp_path / "metacontroller"))


def test_a_setting_change_rolls_the_deployment(tmp_path: Path) -> None:
    """The ConfigMap is generated with a content hash in its name, and the Deployment refers to
    that name: editing configmap.env changes the pod template, so the pods roll."""
    before = _generated_configmap(_rendered(MANIFESTS))["metadata"]["name"]
    assert re.fullmatch(r"llo-docker-hooks-[a-z0-9]{10}", before)
    copy_dir = _copy_install(tmp_path)
    env_file = copy_dir / "configmap.env"
    env_file.write_text(env_file.read_text().replace("LLO_WORKERS=2", "LLO_WORKERS=3"))
    docs = _rendered(copy_dir)
    after = _generated_configmap(docs)
    assert after["data"]["LLO_WORKERS"] == "3"
    assert after["metadata"]["name"] != before
    dep = next(d for d in docs if d["kind"] == "Deployment")
    refs = [e["configMapRef"]["name"]
            for e in dep["spec"]["template"]["spec"]["containers"][0]["envFrom"]]
    assert refs == [after["metadata"]["name"]]


def _policy_namespace(docs: list[JSON]) -> str:
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    return str(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])


def test_metacontroller_namespace_is_set_in_the_kustomization(tmp_path: Path) -> None:
    assert _policy_namespace(_rendered(MANIFESTS)) == "metacontroller"
    copy_dir = _copy_install(tmp_path)
    kustomization = copy_dir / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count("value: metacontroller\n") == 1
    kustomization.write_text(text.replace("value: metacontroller\n", "value: mc-system\n"))
    assert _policy_namespace(_rendered(copy_dir)) == "mc-system"


def test_every_llo_variable_is_a_hooks_setting() -> None:
    """hooks.settings ignores unknown LLO_* variables: a misspelt one would be silently lost."""
    settings = pytest.importorskip("hooks.settings")
    known = {settings.Settings.env_name(f) for f in settings.Settings.model_fields}
    dep = _yaml(MANIFESTS / "deployment.yaml")
    cm = _generated_configmap(_rendered(MANIFESTS))
    names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    names |= set(cm["data"])
    llo = {n for n in names if n.startswith("LLO_")}
    assert llo
    assert llo - known == set()
    values = dict(cm["data"])
    settings.Settings.from_env(values)  # the ConfigMap's values are valid settings


# =========================================================================== samples


SEED_ORION_LD: JSON = {  # exactly the example of the original guide (seed)
    "apiVersion": "llo.aeros-project.eu/v1alpha1",
    "kind": "ServiceComponentDocker",
    "metadata": {
        "labels": {
            "app.kubernetes.io/name": "component-1-of-the-service-1",
            "app.kubernetes.io/instance": "urn_ngsi-ld_Service_1_Component_1",
            "app.kubernetes.io/part-of": "urn_ngsi-ld_Service_1",
            "app.kubernetes.io/managed-by": "aeros-project.eu",
            "app.kubernetes.io/created-by": "urn_ngsi-ld_LowLevelOrchestrator_2",
        },
        "name": "service-1-orion-ld",
    },
    "spec": {
        "selectedIE": {"id": "urn:ngsi-ld:InfrastructureElement:CloudFerro:4073c6a5a93b",
                       "hostname": "docker-machine-2"},
        "image": "fiware/orion-ld:1.7.0",
        "ports": [{"number": 1026, "protocol": "TCP"}],
        "cliArgs": [
            {"key": "-brokerId", "value": "test-broker"},
            {"key": "-dbhost", "value": "service-1-mongo"},
            {"key": "-t", "value": "0-255"},
            {"key": "-logLevel", "value": "DEBUG"},
            {"key": "-forwarding"},
            {"key": "-experimental"},
            {"key": "-wip", "value": "entityMaps"},
        ],
    },
}

SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml")) + sorted((SAMPLES / "local").glob("*.yaml"))


def test_orion_sample_is_the_seed() -> None:
    assert _yaml(SAMPLES / "scd-orion-ld.yaml") == SEED_ORION_LD


def test_mongo_sample_is_the_orion_database() -> None:
    orion = _yaml(SAMPLES / "scd-orion-ld.yaml")
    mongo = _yaml(SAMPLES / "scd-mongo.yaml")
    dbhost = next(a["value"] for a in orion["spec"]["cliArgs"] if a["key"] == "-dbhost")
    assert mongo["metadata"]["name"] == dbhost == "service-1-mongo"
    part_of = "app.kubernetes.io/part-of"
    assert mongo["metadata"]["labels"][part_of] == orion["metadata"]["labels"][part_of]
    assert mongo["spec"]["selectedIE"] == orion["spec"]["selectedIE"]


def _strict_scd(obj: JSON) -> resources.SCDObject:
    """The SCD as the hooks read it, with nothing the lenient reader would have forgiven."""
    scd = resources.read_scd(obj)
    assert scd.spec_error is None
    resources.SCDStatus.model_validate(obj.get("status") or {})
    return scd


def test_job_sample_is_a_job() -> None:
    job = _strict_scd(_yaml(SAMPLES / "scd-job.yaml"))
    assert job.spec is not None
    assert job.spec.is_job is True


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_validates(path: Path) -> None:
    doc = _yaml(path)
    crd = {resources.SCD_KIND: SCD_DOC, resources.DIE_KIND: DIE_DOC}[doc["kind"]]
    result, errors = apply_schema(doc, _schema(crd))
    assert errors == []
    assert _subset(doc, result)  # nothing pruned, only defaults added
    if doc["kind"] == resources.SCD_KIND:
        _strict_scd(doc)
    else:
        resources.DIE.model_validate(doc)


def test_sample_dies_match_their_scds() -> None:
    dies = {d["metadata"]["name"]: d for d in map(_yaml, SAMPLE_FILES)
            if d["kind"] == resources.DIE_KIND}
    for doc in map(_yaml, SAMPLE_FILES):
        if doc["kind"] == resources.SCD_KIND:
            selected = doc["spec"]["selectedIE"]
            assert dies[selected["hostname"]]["spec"]["id"] == selected["id"]


HOOK_BODIES = sorted(SAMPLES.glob("**/hooks/*.json"))


def test_hook_bodies_exist() -> None:
    names = sorted(str(p.relative_to(SAMPLES)) for p in HOOK_BODIES)
    expected = [f"{d}hooks/{n}" for d in ("", "local/") for n in
                ("die-sync.json", "scd-customize.json", "scd-finalize.json", "scd-sync.json")]
    expected.append("local/hooks/scd-sync-placed.json")  # the second sync: status names the IE
    assert names == sorted(expected)


def _sample_for(body_path: Path, kind: str) -> JSON:
    directory = body_path.parent.parent
    for path in sorted(directory.glob("*.yaml")):
        doc = _yaml(path)
        if doc["kind"] == kind and (kind == resources.DIE_KIND or "orion" in path.name
                                    or directory.name == "local"):
            return doc
    raise AssertionError(f"no {kind} sample beside {body_path}")


@pytest.mark.parametrize("path", HOOK_BODIES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_hook_body_is_what_metacontroller_sends(path: Path) -> None:
    body = json.loads(path.read_text())
    hook = path.stem.split("-")[1]
    kind = resources.SCD_KIND if path.name.startswith("scd") else resources.DIE_KIND
    controller = "llo-docker-scd" if kind == resources.SCD_KIND else "llo-docker-die"
    manifest = _yaml(MANIFESTS / f"compositecontroller-{controller.rsplit('-', 1)[1]}.yaml")
    assert body["controller"]["spec"] == manifest["spec"]
    assert body["controller"]["metadata"]["name"] == controller
    parent = body["parent"]
    sample = _sample_for(path, kind)
    crd = SCD_DOC if kind == resources.SCD_KIND else DIE_DOC
    defaulted, errors = apply_schema({k: v for k, v in sample.items() if k != "status"},
                                     {**_schema(crd), "properties": {
                                         k: v for k, v in _schema(crd)["properties"].items()
                                         if k != "status"}})
    assert errors == []
    assert parent["spec"] == defaulted["spec"], "stale: regenerate from the YAML sample"
    assert parent["metadata"].get("labels", {}) == sample["metadata"].get("labels", {})
    assert parent["metadata"]["uid"]
    assert FINALIZER_PREFIX + controller in parent["metadata"]["finalizers"]
    _, errors = apply_schema(parent, _schema(crd))
    assert errors == []
    if hook == "customize":
        assert set(body) == {"controller", "parent"}
        CustomizeRequest.model_validate(body)
        _strict_scd(parent)
        return
    assert set(body) == {"controller", "parent", "children", "related", "finalizing"}
    request = SyncRequest.model_validate(body)
    assert body["children"] == {}
    assert body["finalizing"] is (hook == "finalize")
    assert bool(parent["metadata"].get("deletionTimestamp")) is (hook == "finalize")
    if kind == resources.DIE_KIND:
        assert body["related"] == {}
        resources.DIE.model_validate(parent)
        return
    scd = _strict_scd(parent)
    assert scd.spec is not None
    assert set(body["related"]) == {resources.DIE_RELATED_KEY}
    die_obj = request.related_object(resources.DIE_RELATED_KEY, scd.spec.selected_ie.hostname)
    assert die_obj is not None
    die = resources.DIE.model_validate(die_obj)
    assert die.status is not None
    assert die.status.api_ready is True
    assert die.spec.id == scd.spec.selected_ie.id
    if hook == "finalize":
        assert scd.status is not None
        assert scd.status.placement is not None
        assert scd.metadata.generation == 2  # the API server bumps it with deletionTimestamp


# =========================================================================== hooks image


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^USER 10001(:10001)?$", text, re.M)
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert re.search(r'^CMD \["python", "-m", "hooks"\]$', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    installs = re.findall(r"pip install (\S+)", text)
    assert installs == ["."]  # the project, without the ieapi extra (no docker SDK)


def test_hooks_import_without_the_docker_sdk() -> None:
    """The hooks image installs no docker SDK: importing the hook service must not need it."""
    code = ("import sys; sys.modules['docker'] = None\n"
            "import hooks, hooks.resources, hooks.protocol\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_samples_are_not_mutated_by_checks() -> None:
    """Guard for the helpers above: apply_schema works on a copy."""
    doc = _yaml(SAMPLES / "scd-orion-ld.yaml")
    before = copy.deepcopy(doc)
    apply_schema(doc, _schema(SCD_DOC))
    assert doc == before


@pytest.mark.parametrize("path", HOOK_BODIES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_hooks_answer_the_sample_bodies(path: Path) -> None:
    """The curl-able samples work with the real hook service, and what it answers is a
    status the CRD keeps whole (nothing pruned, nothing refused). The IEs are unreachable
    here (TEST-NET address / closed port), so the hooks report that."""
    hooks_pkg = pytest.importorskip("hooks")
    from hooks.settings import Settings
    app = hooks_pkg.create_app(Settings(ie_connect_timeout_seconds=0.2,
                                        ie_read_timeout_seconds=0.2, ie_retries=0))
    kind, hook = path.stem.split("-")[:2]
    resp = app.test_client().post(f"/{kind}/{hook}", data=path.read_bytes(),
                                  content_type="application/json")
    assert resp.status_code == 200
    answer = resp.get_json()
    if hook == "customize":
        assert set(answer) == {"relatedResources"}
        return
    assert set(answer) <= {"status", "children", "resyncAfterSeconds", "finalized"}
    assert not answer.get("children")
    status = {**answer["status"], "observedGeneration": 1}
    kept, errors = apply_schema(status, _schema(SCD_DOC if kind == "scd" else DIE_DOC)[
        "properties"]["status"])
    assert errors == []
    assert kept == status
