"""The API-server mode of the Metacontroller driver (tests/support/kube.py) does what
Metacontroller does to real objects: finalizer on the object, status through ``/status``
(wholesale, with observedGeneration), resyncs from watch events, finalize on a real delete.

A scripted hook app stands in for the hooks here, so each behaviour is checked on its own;
tests/k8s/test_e2e_kube.py runs the real hooks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

from hooks.resources import DIE_RELATED_KEY
from testbed.metacontroller import CRDS_DIR, FINALIZER_PREFIX
from tests.support.crdserver import CrdApiServer
from tests.support.kube import KubeDriver

pytestmark = pytest.mark.k8s

JSON = dict[str, Any]
Script = Callable[[JSON], JSON]
SCD_FINALIZER = FINALIZER_PREFIX + "llo-docker-scd"
IE_ID = "urn:ngsi-ld:InfrastructureElement:Test:1"


class ScriptedHooks:
    """The five hook paths on loopback; each answers 200 with its script's result."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []
        self.scripts: dict[str, Script] = {
            "/scd/customize": lambda body: {"relatedResources": [{
                "apiVersion": "llo.aeros-project.eu/v1alpha1",
                "resource": "dockerinfrastructureelements",
                "names": [body["parent"]["spec"]["selectedIE"]["hostname"]]}]},
            "/scd/sync": lambda body: {"status": {"phase": "Running", "reason": "Started"}},
            "/scd/finalize": lambda body: {"status": {"phase": "Terminating"},
                                           "finalized": True},
            "/die/sync": lambda body: {"status": {"apiReady": True, "reason": "Ready"}},
            "/die/finalize": lambda body: {"status": {"apiReady": True}, "finalized": True},
        }
        app = Flask(__name__)
        for path in self.scripts:
            app.add_url_rule(path, path, self._view(path), methods=["POST"])
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _view(self, path: str) -> Callable[[], Response]:
        def view() -> Response:
            body = request.get_json(force=True)
            self.calls.append((path, body))
            return Response(json.dumps(self.scripts[path](body)), 200,
                            content_type="application/json")
        return view

    def bodies(self, path: str) -> list[JSON]:
        return [b for p, b in self.calls if p == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def api() -> Iterator[CrdApiServer]:
    with CrdApiServer() as server:
        server.kubectl("apply", "-f", str(CRDS_DIR))
        server.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                       "crd/servicecomponentdockers.llo.aeros-project.eu",
                       "crd/dockerinfrastructureelements.llo.aeros-project.eu")
        yield server


@pytest.fixture
def hooks() -> Iterator[ScriptedHooks]:
    fake = ScriptedHooks()
    yield fake
    fake.close()


@pytest.fixture
def driver(api: CrdApiServer, hooks: ScriptedHooks) -> Iterator[KubeDriver]:
    with KubeDriver(hooks.url, api, hook_timeout=5) as d:
        yield d
    # Leave the server empty for the next test: no finalizer of a stopped driver may hold.
    for kind in ("scd", "die"):
        for obj in d.objects(kind):
            if obj["metadata"].get("finalizers"):
                api.kubectl("patch", kind, obj["metadata"]["name"],
                            *(["-n", obj["metadata"]["namespace"]]
                              if "namespace" in obj["metadata"] else []),
                            "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        api.kubectl("delete", kind, "--all", "--all-namespaces", "--wait=true")


def die(name: str = "ie-a") -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "DockerInfrastructureElement",
            "metadata": {"name": name},
            "spec": {"id": IE_ID, "hostname": name, "api": {"url": "http://127.0.0.1:9"}}}


def scd(name: str = "svc-a", image: str = "busybox:1", hostname: str = "ie-a") -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selectedIE": {"id": IE_ID, "hostname": hostname}, "image": image}}


def kubectl_json(api: CrdApiServer, *args: str) -> JSON:
    out: JSON = json.loads(api.kubectl("get", *args, "-o", "json").stdout)
    return out


def test_finalizer_and_status_on_the_real_object(api: CrdApiServer, driver: KubeDriver,
                                                 hooks: ScriptedHooks) -> None:
    api.kubectl("apply", "-f", "-", input=json.dumps(scd()))
    driver.run_until(lambda: bool(hooks.bodies("/scd/sync")), timeout=20)
    driver.run_until_steady()
    live = kubectl_json(api, "scd", "svc-a")
    assert live["metadata"]["finalizers"] == [SCD_FINALIZER]
    assert live["status"] == {"phase": "Running", "reason": "Started", "observedGeneration": 1}
    # The sync request carried the object as the API server has it (finalizer included), and
    # every requested related type is present even when empty.
    body = hooks.bodies("/scd/sync")[-1]
    assert body["parent"]["metadata"]["finalizers"] == [SCD_FINALIZER]
    assert body["related"] == {DIE_RELATED_KEY: {}}
    assert body["finalizing"] is False
    assert driver.pruned == []

    # A spec change (kubectl, outside the driver) bumps generation; the watch brings it in.
    api.kubectl("apply", "-f", "-", input=json.dumps(scd(image="busybox:2")))
    driver.run_until(lambda: (driver.cached("scd", "svc-a") or {}).get("status", {})
                     .get("observedGeneration") == 2, timeout=20)
    assert kubectl_json(api, "scd", "svc-a")["status"]["observedGeneration"] == 2


def test_status_is_replaced_wholesale(api: CrdApiServer, driver: KubeDriver,
                                      hooks: ScriptedHooks) -> None:
    driver.apply(scd())
    driver.run_until_steady()
    # Another actor writes a status with another field. With ignoreStatusChanges that alone
    # queues no sync; a label change always does, and the hook's status (without the field)
    # replaces everything.
    driver.set_status("scd", "svc-a", {"phase": "Failed", "message": "written by hand"})
    driver.run_until_steady()
    relabelled = scd()
    relabelled["metadata"]["labels"] = {"touched": "yes"}
    driver.apply(relabelled)
    driver.run_until_steady()
    assert kubectl_json(api, "scd", "svc-a")["status"] == {
        "phase": "Running", "reason": "Started", "observedGeneration": 1}


def test_unchanged_status_is_not_written_again(driver: KubeDriver,
                                               hooks: ScriptedHooks) -> None:
    driver.apply(scd())
    driver.run_until_steady()
    writes = len(driver.status_writes)
    syncs = len(hooks.bodies("/scd/sync"))
    driver.run_for(1.5)  # watch echoes of our own writes must not cause further writes
    assert len(driver.status_writes) == writes
    assert len(hooks.bodies("/scd/sync")) == syncs


def test_kubectl_delete_goes_through_finalize(api: CrdApiServer, driver: KubeDriver,
                                              hooks: ScriptedHooks) -> None:
    release = threading.Event()
    hooks.scripts["/scd/finalize"] = lambda body: {
        "status": {"phase": "Terminating"}, "finalized": release.is_set(),
        "resyncAfterSeconds": 0.5}
    driver.apply(scd())
    driver.run_until_steady()
    api.kubectl("delete", "scd", "svc-a", "--wait=false")
    held = kubectl_json(api, "scd", "svc-a")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [SCD_FINALIZER]

    driver.run_until(lambda: bool(hooks.bodies("/scd/finalize")), timeout=20)
    driver.run_until_steady()
    # finalized: false → still there, deleting, with the finalize hook's status.
    held = kubectl_json(api, "scd", "svc-a")
    assert held["status"] == {"phase": "Terminating", "observedGeneration":
                              held["metadata"]["generation"]}
    assert held["metadata"]["finalizers"] == [SCD_FINALIZER]
    first = hooks.bodies("/scd/finalize")[0]
    assert first["finalizing"] is True
    assert first["parent"]["metadata"]["deletionTimestamp"]

    # The hook is called again after resyncAfterSeconds; finalized: true lets it go.
    release.set()
    driver.run_until(lambda: api.kubectl("get", "scd", "svc-a", check=False).returncode != 0,
                     timeout=20)
    assert "NotFound" in api.kubectl("get", "scd", "svc-a", check=False).stderr
    assert driver.cached("scd", "svc-a") is None


def test_related_die_change_resyncs_the_scd(api: CrdApiServer, driver: KubeDriver,
                                            hooks: ScriptedHooks) -> None:
    driver.apply(scd())
    driver.run_until_steady()
    before = len(hooks.bodies("/scd/sync"))
    api.kubectl("apply", "-f", "-", input=json.dumps(die()))
    driver.run_until(lambda: any(b["related"][DIE_RELATED_KEY]
                                 for b in hooks.bodies("/scd/sync")[before:]), timeout=20)
    related = hooks.bodies("/scd/sync")[-1]["related"][DIE_RELATED_KEY]
    assert list(related) == ["ie-a"]
    assert related["ie-a"]["spec"]["id"] == IE_ID


def test_invalid_status_is_refused_and_left_untouched(api: CrdApiServer, driver: KubeDriver,
                                                      hooks: ScriptedHooks) -> None:
    driver.apply(scd())
    driver.run_until_steady()
    hooks.scripts["/scd/sync"] = lambda body: {"status": {"phase": "Exploded"}}
    driver.apply(scd(image="busybox:2"))  # a new generation, so a sync with the new script
    driver.run_until(lambda: bool(driver.warnings("svc-a")), timeout=20)
    warning = driver.warnings("svc-a")[0]
    assert "status.phase" in warning.message
    assert "Exploded" in warning.message
    assert kubectl_json(api, "scd", "svc-a")["status"]["phase"] == "Running"


def test_pruned_status_fields_are_detected(driver: KubeDriver, hooks: ScriptedHooks) -> None:
    """A status field the CRD does not declare is pruned by the API server; Metacontroller
    would then see a difference on every sync (the driver records it in ``pruned``)."""
    hooks.scripts["/scd/sync"] = lambda body: {"status": {"phase": "Running", "undeclared": 1}}
    driver.apply(scd())
    driver.run_until(lambda: bool(driver.pruned), timeout=20)
    assert driver.pruned[0].sent["undeclared"] == 1
    assert "undeclared" not in driver.pruned[0].stored


def test_watch_brings_external_deletes_promptly(api: CrdApiServer, driver: KubeDriver,
                                                hooks: ScriptedHooks) -> None:
    """The DIE controller resyncs only every 60 s: a prompt finalize proves the watch event
    (not a periodic resync) woke the driver."""
    driver.apply(die())
    driver.run_until_steady()
    assert kubectl_json(api, "die", "ie-a")["metadata"]["finalizers"] == [
        FINALIZER_PREFIX + "llo-docker-die"]
    started = time.monotonic()
    api.kubectl("delete", "die", "ie-a", "--wait=false")
    driver.run_until(lambda: api.kubectl("get", "die", "ie-a", check=False).returncode != 0,
                     timeout=20)
    assert time.monotonic() - started < 5
    assert hooks.bodies("/die/finalize")
