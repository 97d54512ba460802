"""The Metacontroller driver behaves like Metacontroller (docs/design.md §1), checked against a tiny
scripted hook app that also checks the shape of every request it gets."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, make_server

from hooks.resources import DIE_RELATED_KEY
from testbed.metacontroller import (
    FINALIZER_PREFIX,
    MANIFESTS_DIR,
    ControllerError,
    Driver,
    HotLoopError,
    InvalidError,
    RealClock,
    SimulatedClock,
)
from testbed.ratelimit import TokenBucket

JSON = dict[str, Any]
Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Script = Callable[[JSON], Answer]
SCD_FINALIZER = FINALIZER_PREFIX + "llo-docker-scd"
DIE_FINALIZER = FINALIZER_PREFIX + "llo-docker-die"
IE_ID = "urn:ngsi-ld:InfrastructureElement:CloudFerro:4073c6a5a93b"


def die(name: str = "docker-machine-2", ie_id: str = IE_ID) -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "DockerInfrastructureElement",
            "metadata": {"name": name},
            "spec": {"id": ie_id, "hostname": name, "api": {"url": "http://127.0.0.1:9"}}}


def scd(name: str = "svc-a", hostname: str = "docker-machine-2", image: str = "busybox:1",
        labels: dict[str, str] | None = None) -> JSON:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"selectedIE": {"id": IE_ID, "hostname": hostname}, "image": image}}


class FakeHooks:
    """A Flask app on loopback serving the five hook paths. Each answer comes from a script
    (replaceable per path); every request is recorded and checked for Metacontroller's shape."""

    PATHS = ("/scd/customize", "/scd/sync", "/scd/finalize", "/die/sync", "/die/finalize")

    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each call
        self.shape_errors: list[str] = []
        self.scripts: dict[str, Script] = {
            "/scd/customize": lambda body: (200, {"relatedResources": [{
                "apiVersion": "llo.aeros-project.eu/v1alpha1",
                "resource": "dockerinfrastructureelements",
                "names": [body["parent"]["spec"]["selectedIE"]["hostname"]]}]}),
            "/scd/sync": lambda body: (200, {"status": {"phase": "Running"},
                                             "resyncAfterSeconds": 0}),
            "/scd/finalize": lambda body: (200, {"status": {"phase": "Terminating"},
                                                 "finalized": True}),
            "/die/sync": lambda body: (200, {"status": {"apiReady": True}}),
            "/die/finalize": lambda body: (200, {"status": {"apiReady": True},
                                                 "finalized": True}),
        }
        app = Flask(__name__)
        for path in self.PATHS:
            app.add_url_rule(path, path, self._handle(path), methods=["POST"])
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def _handle(self, path: str) -> Callable[[], Response]:
        def view() -> Response:
            body = request.get_json(force=True)
            if request.mimetype != "application/json":
                self.shape_errors.append(f"{path}: content type {request.mimetype}")
            self._check(path, body)
            self.calls.append((path, body))
            self.authorizations.append(request.headers.get("Authorization"))
            answer = self.scripts[path](body)
            status, payload = answer[0], answer[1]
            headers = answer[2] if len(answer) == 3 else {}
            if isinstance(payload, str | bytes):
                return Response(payload, status=status, headers=headers,
                                mimetype="application/json")
            return Response(json.dumps(payload), status=status, headers=headers,
                            mimetype="application/json")
        return view

    def _check(self, path: str, body: JSON) -> None:
        if path.endswith("/customize"):
            if set(body) != {"controller", "parent"}:
                self.shape_errors.append(f"{path}: keys {sorted(body)}")
            return
        if set(body) != {"controller", "parent", "children", "related", "finalizing"}:
            self.shape_errors.append(f"{path}: keys {sorted(body)}")
        if body.get("children") != {}:
            self.shape_errors.append(f"{path}: children {body.get('children')}")
        if body.get("finalizing") is not path.endswith("/finalize"):
            self.shape_errors.append(f"{path}: finalizing {body.get('finalizing')}")
        if body["controller"].get("kind") != "CompositeController":
            self.shape_errors.append(f"{path}: controller {body['controller'].get('kind')}")
        if path.startswith("/scd/") and set(body["related"]) != {DIE_RELATED_KEY}:
            self.shape_errors.append(f"{path}: related {sorted(body['related'])}")
        if path.startswith("/die/") and body["related"] != {}:
            self.shape_errors.append(f"{path}: related {body['related']}")

    def bodies(self, path: str) -> list[JSON]:
        return [b for p, b in self.calls if p == path]

    def __enter__(self) -> FakeHooks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def hooks() -> Iterator[FakeHooks]:
    with FakeHooks() as fake:
        yield fake
        assert fake.shape_errors == []


@pytest.fixture
def driver(hooks: FakeHooks) -> Iterator[Driver]:
    with Driver(hooks.url, clock=SimulatedClock(1_700_000_000.0)) as d:
        yield d


def scd_status(d: Driver, name: str = "svc-a") -> JSON | None:
    obj = d.get("scd", name, "default")
    assert obj is not None
    status: JSON | None = obj.get("status")
    return status


# =========================================================================== sync and status


def test_sync_request_and_status(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    (first, *_) = hooks.bodies("/scd/sync")
    parent = first["parent"]
    assert parent["metadata"]["uid"]
    assert parent["metadata"]["generation"] == 1
    assert parent["metadata"]["finalizers"] == [SCD_FINALIZER]  # added before the first call
    assert parent["spec"]["exposePorts"] is False  # CRD defaults applied by the "API server"
    related = first["related"][DIE_RELATED_KEY]
    assert list(related) == ["docker-machine-2"]  # cluster-scoped: keyed by bare name
    assert related["docker-machine-2"]["spec"]["id"] == IE_ID
    assert first["controller"]["metadata"]["name"] == "llo-docker-scd"
    assert scd_status(driver) == {"phase": "Running", "observedGeneration": 1}


def test_status_is_replaced_wholesale(hooks: FakeHooks, driver: Driver) -> None:
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Deploying",
                                                             "reason": "ImagePulling"}})
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    assert scd_status(driver) == {"phase": "Deploying", "reason": "ImagePulling",
                                  "observedGeneration": 1}
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Running"}})
    driver.apply(scd(labels={"touch": "1"}))  # an update event, same generation
    driver.run_until_steady()
    assert scd_status(driver) == {"phase": "Running", "observedGeneration": 1}
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": None})
    driver.apply(scd(labels={"touch": "2"}))
    driver.run_until_steady()
    assert scd_status(driver) == {"observedGeneration": 1}


def test_generation_bumps_on_spec_change_only(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    created = driver.apply(scd())
    driver.run_until_steady()
    same = driver.apply(scd())
    assert same["metadata"]["resourceVersion"] == driver.get("scd", "svc-a")["metadata"][  # type: ignore[index]
        "resourceVersion"]
    relabelled = driver.apply(scd(labels={"a": "b"}))
    assert relabelled["metadata"]["generation"] == 1
    assert relabelled["metadata"]["uid"] == created["metadata"]["uid"]
    changed = driver.apply(scd(image="busybox:2"))
    assert changed["metadata"]["generation"] == 2
    driver.run_until_steady()
    assert scd_status(driver) == {"phase": "Running", "observedGeneration": 2}


def test_customize_is_cached_per_uid_and_generation(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    driver.apply(scd(labels={"x": "1"}))
    driver.run_until_steady()
    driver.set_status("die", "docker-machine-2", {"apiReady": False})
    driver.run_until_steady()
    assert len(hooks.bodies("/scd/sync")) >= 3
    assert len(hooks.bodies("/scd/customize")) == 1
    driver.apply(scd(image="busybox:2"))
    driver.run_until_steady()
    customize = hooks.bodies("/scd/customize")
    assert [b["parent"]["metadata"]["generation"] for b in customize] == [1, 2]


@pytest.fixture
def status_driver(hooks: FakeHooks, tmp_path: Path) -> Iterator[Driver]:
    """A driver whose controllers say ignoreStatusChanges: false (the project's say true)."""
    for manifest in MANIFESTS_DIR.glob("compositecontroller-*.yaml"):
        doc = yaml.safe_load(manifest.read_text())
        doc["spec"]["parentResource"]["ignoreStatusChanges"] = False
        (tmp_path / manifest.name).write_text(yaml.safe_dump(doc))
    with Driver(hooks.url, clock=SimulatedClock(1_700_000_000.0), manifests_dir=tmp_path) as d:
        yield d


def test_writes_status_only_when_it_differs(hooks: FakeHooks, status_driver: Driver) -> None:
    driver = status_driver
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    # First sync writes, the write's event causes a second sync that writes nothing.
    assert len(hooks.bodies("/scd/sync")) == 2
    writes = [w for w in driver.status_writes if w.kind == "ServiceComponentDocker"]
    assert len(writes) == 1
    period = driver.controller_for("ServiceComponentDocker").resync_period
    assert period is not None
    driver.run_for(2 * period + 5)  # two resyncPeriodSeconds
    assert len(hooks.bodies("/scd/sync")) == 4
    assert len([w for w in driver.status_writes if w.kind == "ServiceComponentDocker"]) == 1


def test_status_that_always_changes_is_a_hot_loop(hooks: FakeHooks,
                                                  status_driver: Driver) -> None:
    counter = iter(range(10_000))
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"message": str(next(counter))}})
    status_driver.apply(die())
    status_driver.apply(scd())
    with pytest.raises(HotLoopError):
        status_driver.run_until_steady(max_steps=50)


def test_ignore_status_changes_true(hooks: FakeHooks, driver: Driver) -> None:
    """The project's manifests: a status write (or a finalizer added) queues nothing; a new
    generation, a label or annotation change, or a deletion does (Metacontroller's
    updateParentObject)."""
    assert driver.controller_for("scd").ignore_status_changes
    counter = iter(range(10_000))
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"message": str(next(counter))}})
    driver.apply(die())
    driver.apply(scd())
    assert driver.run_until_steady() == 2  # the DIE's sync and the SCD's; no echo of writes
    assert len(hooks.bodies("/scd/sync")) == 1
    for change in (scd(labels={"x": "1"}), scd(image="busybox:2")):
        driver.apply(change)
        driver.run_until_steady()
    annotated = scd(image="busybox:2", labels={"x": "1"})
    annotated["metadata"]["annotations"] = {"a": "b"}
    driver.apply(annotated)
    driver.run_until_steady()
    assert len(hooks.bodies("/scd/sync")) == 4
    driver.delete("scd", "svc-a", "default")
    driver.run_until_steady()
    assert len(hooks.bodies("/scd/finalize")) == 1
    assert driver.get("scd", "svc-a", "default") is None


def test_resync_after_seconds(hooks: FakeHooks, driver: Driver) -> None:
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Deploying"},
                                                  "resyncAfterSeconds": 7.5})
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    before = len(hooks.bodies("/scd/sync"))
    start = driver.clock.now()
    driver.run_until(lambda: len(hooks.bodies("/scd/sync")) > before, timeout=30)
    assert driver.clock.now() - start == pytest.approx(7.5)


# =========================================================================== errors


@pytest.mark.parametrize("answer", [
    (500, {"status": {"phase": "Failed"}}),
    (201, {"status": {"phase": "Failed"}}),
    (204, ""),
    (200, "{not json"),
    (200, ""),
    (200, [1, 2]),
])
def test_only_200_with_a_valid_body_counts(hooks: FakeHooks, driver: Driver,
                                           answer: Answer) -> None:
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    good = scd_status(driver)
    hooks.scripts["/scd/sync"] = lambda b: answer
    driver.apply(scd(image="busybox:2"))
    driver.run_until(lambda: len(driver.warnings("svc-a")) >= 4, timeout=60)
    assert scd_status(driver) == good  # untouched, observedGeneration still 1
    event = driver.warnings("svc-a")[0]
    assert event.reason == "SyncError"
    assert event.message.startswith("Sync error: ")
    # exponential backoff between the failing calls: 5 ms, 10 ms, 20 ms (client-go default)
    times = [c.at for c in driver.calls("sync", "llo-docker-scd") if c.error][:4]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.005, 0.01, 0.02]
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Running"}})
    driver.run_until(lambda: (scd_status(driver) or {}).get("observedGeneration") == 2,
                     timeout=60)


def test_backoff_resets_after_a_success(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    fail = {"on": True}
    hooks.scripts["/scd/sync"] = lambda b: (500, {}) if fail["on"] else (
        200, {"status": {"phase": "Running"}})
    driver.apply(scd())
    driver.run_until(lambda: len(driver.warnings()) >= 6, timeout=60)
    fail["on"] = False
    driver.run_until(lambda: scd_status(driver) is not None, timeout=60)
    fail["on"] = True
    driver.apply(scd(image="busybox:2"))
    start = len(driver.warnings())
    driver.run_until(lambda: len(driver.warnings()) >= start + 2, timeout=60)
    times = [c.at for c in driver.calls("sync", "llo-docker-scd") if c.error][-2:]
    assert round(times[1] - times[0], 6) == 0.005


def test_429_requeues_after_retry_after(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    hooks.scripts["/scd/sync"] = lambda b: (429, {}, {"Retry-After": "7"})
    driver.apply(scd(image="busybox:2"))
    before = len(hooks.bodies("/scd/sync"))
    driver.run_until(lambda: len(hooks.bodies("/scd/sync")) > before, timeout=5)
    first = driver.clock.now()
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Running"}})
    driver.run_until(lambda: len(hooks.bodies("/scd/sync")) > before + 1, timeout=30)
    assert driver.clock.now() - first == pytest.approx(7.0)
    assert driver.warnings() == []  # no event for 429
    assert scd_status(driver) == {"phase": "Running", "observedGeneration": 2}


def test_429_with_an_http_date(hooks: FakeHooks, driver: Driver) -> None:
    from email.utils import formatdate
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    when = formatdate(driver.clock.now() + 12.2, usegmt=True)  # second precision: 12 or 13 s
    hooks.scripts["/scd/sync"] = lambda b: (429, {}, {"Retry-After": when})
    driver.apply(scd(image="busybox:2"))
    before = len(hooks.bodies("/scd/sync"))
    driver.run_until(lambda: len(hooks.bodies("/scd/sync")) > before, timeout=5)
    first = driver.clock.now()
    driver.run_until(lambda: len(hooks.bodies("/scd/sync")) > before + 1, timeout=30)
    assert 12.0 <= driver.clock.now() - first <= 13.0


def test_hook_timeout_is_enforced(hooks: FakeHooks) -> None:
    def slow(body: JSON) -> Answer:
        time.sleep(0.6)
        return 200, {"status": {"phase": "Running"}}
    hooks.scripts["/scd/sync"] = slow
    with Driver(hooks.url, hook_timeout=0.2) as d:
        assert d.controllers["llo-docker-scd"].hooks["sync"].timeout == 0.2
        d.apply(die())
        d.apply(scd())
        d.run_until(lambda: len(d.warnings("svc-a")) >= 1, timeout=5)
        assert "http error" in d.warnings("svc-a")[0].message
        assert scd_status(d) is None
    time.sleep(0.5)  # let the slow handler finish before the server stops


@pytest.mark.parametrize(("body", "why"), [
    ('{"status": {}, "statuss": 1}', "unknown field"),
    ('{"Status": {}}', "unknown field"),  # case-sensitive
    ('{"status": {}, "status": {}}', "duplicate field"),
    ('{"status": {"a": 1, "a": 2}}', "duplicate field"),
    ('{"status": []}', "cannot unmarshal"),
    ('{"resyncAfterSeconds": "5"}', "cannot unmarshal"),
    ('{"finalized": "yes"}', "cannot unmarshal"),
])
def test_v2_responses_are_parsed_strictly(hooks: FakeHooks, driver: Driver, body: str,
                                          why: str) -> None:
    driver.apply(die())
    hooks.scripts["/scd/sync"] = lambda b: (200, body)
    driver.apply(scd())
    driver.run_until(lambda: len(driver.warnings("svc-a")) >= 1, timeout=5)
    assert why in driver.warnings("svc-a")[0].message
    assert scd_status(driver) is None


def test_customize_strict_and_errors(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    hooks.scripts["/scd/customize"] = lambda b: (200, {"relatedResources": [{
        "apiVersion": "llo.aeros-project.eu/v1alpha1", "resource": "dockerinfrastructureelements",
        "names": ["docker-machine-2"], "nmaes": []}]})
    driver.apply(scd())
    driver.run_until(lambda: len(driver.warnings("svc-a")) >= 1, timeout=5)
    assert "unknown field" in driver.warnings("svc-a")[0].message
    assert hooks.bodies("/scd/sync") == []  # no sync without the related objects


def test_invalid_status_is_refused_like_the_api_server(hooks: FakeHooks,
                                                       driver: Driver) -> None:
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "not camel case",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    driver.apply(die())
    driver.apply(scd())
    driver.run_until(lambda: len(driver.warnings("svc-a")) >= 1, timeout=5)
    assert "can't update status" in driver.warnings("svc-a")[0].message
    assert scd_status(driver) is None


def test_undeclared_status_fields_are_pruned(hooks: FakeHooks, driver: Driver) -> None:
    hooks.scripts["/scd/sync"] = lambda b: (200, {"status": {"phase": "Running", "extra": 1}})
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    assert scd_status(driver) == {"phase": "Running", "observedGeneration": 1}


def test_apply_validates_with_the_crd(driver: Driver) -> None:
    bad = scd()
    bad["spec"]["ports"] = [{"number": 0}]
    with pytest.raises(InvalidError, match=r"ports\[0\]\.number"):
        driver.apply(bad)
    with pytest.raises(InvalidError, match=r"metadata\.name"):
        driver.apply(scd(name="Not_A_Name"))
    assert driver.objects("scd") == []


# =========================================================================== related objects


def test_related_change_resyncs_the_parent(hooks: FakeHooks, driver: Driver) -> None:
    die_status: JSON = {"apiReady": True}
    hooks.scripts["/die/sync"] = lambda b: (200, {"status": die_status})
    driver.apply(die())
    driver.apply(die("other-machine", "urn:ngsi-ld:InfrastructureElement:X:2"))
    driver.apply(scd())
    driver.run_until_steady()
    before = len(hooks.bodies("/scd/sync"))
    die_status.update(apiReady=False, reason="Unreachable")
    driver.apply({**die("other-machine", "urn:ngsi-ld:InfrastructureElement:X:2"),
                  "metadata": {"name": "other-machine", "labels": {"poke": "1"}}})
    driver.run_until_steady()
    assert len(hooks.bodies("/scd/sync")) == before  # not selected: no resync
    driver.apply({**die(), "metadata": {"name": "docker-machine-2", "labels": {"poke": "1"}}})
    driver.run_until_steady()
    after = hooks.bodies("/scd/sync")
    # the label change and the DIE's status write both queue the SCD; the queue holds a key
    # once, so one sync sees both
    assert len(after) == before + 1
    seen = after[-1]["related"][DIE_RELATED_KEY]["docker-machine-2"]
    assert seen["status"] == {"apiReady": False, "reason": "Unreachable", "observedGeneration": 1}
    assert seen["metadata"]["labels"] == {"poke": "1"}


def test_missing_related_object_leaves_an_empty_group(hooks: FakeHooks,
                                                      driver: Driver) -> None:
    driver.apply(scd(hostname="nowhere"))
    driver.run_until_steady()
    assert hooks.bodies("/scd/sync")[0]["related"] == {DIE_RELATED_KEY: {}}
    before = len(hooks.bodies("/scd/sync"))
    driver.apply(die("nowhere"))  # the DIE appears: the SCD selecting it is resynced
    driver.run_until_steady()
    last = hooks.bodies("/scd/sync")[-1]
    assert len(hooks.bodies("/scd/sync")) > before
    assert list(last["related"][DIE_RELATED_KEY]) == ["nowhere"]


def test_die_controller(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    driver.run_until_steady()
    (first, *_) = hooks.bodies("/die/sync")
    assert first["related"] == {}
    obj = driver.get("die", "docker-machine-2")
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [DIE_FINALIZER]
    assert obj["status"] == {"apiReady": True, "observedGeneration": 1}
    assert "namespace" not in obj["metadata"]


# =========================================================================== deletion


def test_finalizer_flow(hooks: FakeHooks, driver: Driver) -> None:
    remaining = {"n": 2}

    def finalize(body: JSON) -> Answer:
        remaining["n"] -= 1
        return 200, {"status": {"phase": "Terminating"}, "finalized": remaining["n"] <= 0,
                     "resyncAfterSeconds": 5}
    hooks.scripts["/scd/finalize"] = finalize
    driver.apply(die())
    driver.apply(scd())
    driver.run_until_steady()
    driver.delete("scd", "svc-a", "default")
    deleting = driver.get("scd", "svc-a", "default")
    assert deleting is not None
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["generation"] == 2  # bumped with deletionTimestamp
    driver.run_until(lambda: driver.get("scd", "svc-a", "default") is None, timeout=30)
    calls = hooks.bodies("/scd/finalize")
    assert len(calls) == 2
    assert all(c["finalizing"] is True for c in calls)
    assert all(c["parent"]["metadata"]["deletionTimestamp"] for c in calls)
    assert calls[1]["parent"]["status"] == {"phase": "Terminating", "observedGeneration": 2}
    syncs_after_delete = [b for b in hooks.bodies("/scd/sync")
                          if b["parent"]["metadata"].get("deletionTimestamp")]
    assert syncs_after_delete == []


def test_delete_without_finalizer_is_immediate(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    driver.apply(scd())  # not synced yet: no finalizer
    driver.delete("scd", "svc-a", "default")
    assert driver.get("scd", "svc-a", "default") is None
    driver.run_until_steady()
    assert hooks.bodies("/scd/sync") == []
    with pytest.raises(KeyError):
        driver.delete("scd", "svc-a", "default")


def test_run_until_times_out(hooks: FakeHooks, driver: Driver) -> None:
    driver.apply(die())
    with pytest.raises(TimeoutError):
        driver.run_until(lambda: False, timeout=100)
    assert driver.clock.now() >= 1_700_000_000.0 + 100


# ----------------------------------------------------------------------- the API rate limit


def test_token_bucket_is_client_gos() -> None:
    """Starts full, then one token per 1/qps; a waiting caller's token is owed (others queue
    behind it); idle time refills up to the burst only."""
    bucket = TokenBucket(qps=5, burst=10)
    assert [bucket.reserve(100.0) for _ in range(10)] == [0.0] * 10
    assert bucket.reserve(100.0) == pytest.approx(0.2)
    assert bucket.reserve(100.0) == pytest.approx(0.4)
    assert bucket.reserve(101.0) == pytest.approx(0.0)   # 5 more came; 2 were owed
    assert bucket.reserve(101.0) == pytest.approx(0.0)
    assert bucket.reserve(101.0) == pytest.approx(0.0)
    assert bucket.reserve(101.0) == pytest.approx(0.2)
    assert [bucket.reserve(1000.0) for _ in range(10)] == [0.0] * 10  # no more than the burst
    assert bucket.reserve(1000.0) > 0
    assert TokenBucket(qps=0).reserve(0.0) == 0.0  # off


def test_every_request_spends_a_token(hooks: FakeHooks) -> None:
    """An SCD's first sync: finalizer GET+UPDATE, status GET+UPDATE. With one token a second,
    the clock moves on by the waits; the same status again costs its GET only."""
    clock = SimulatedClock(1_700_000_000.0)
    with Driver(hooks.url, clock=clock, rate_limit=TokenBucket(qps=1, burst=1)) as driver:
        driver.apply(scd())
        start = clock.now()
        driver.run_until_steady()
        log = [(r.verb, r.kind, r.name) for r in driver.api_requests]
        scd_kind = "ServiceComponentDocker"
        assert log == [("get", scd_kind, "svc-a"), ("update", scd_kind, "svc-a"),
                       ("get", scd_kind, "svc-a"), ("update-status", scd_kind, "svc-a")]
        assert [r.waited for r in driver.api_requests] == [0.0, 1.0, 1.0, 1.0]
        assert clock.now() - start == pytest.approx(3.0)
        period = driver.controller_for(scd_kind).resync_period
        assert period is not None
        driver.run_for(period + 1)  # the period brings a sync; the same status: a GET only
        assert [r.verb for r in driver.api_requests[4:]] == ["get"]
        driver.delete(scd_kind, "svc-a")
        mark = len(driver.api_requests)
        driver.run_until(lambda: driver.get(scd_kind, "svc-a") is None)
        assert [(r.verb, r.found) for r in driver.api_requests[mark:]] == [
            ("get", True), ("update", True), ("get", False)]


def test_workers_sync_several_parents_at_once(hooks: FakeHooks) -> None:
    """``workers=N``: up to N syncs of one controller at a time, never one parent twice."""
    lock = threading.Lock()
    running: dict[str, int] = {}
    peak = {"all": 0, "one": 0}

    def slow_sync(body: JSON) -> Answer:
        name = body["parent"]["metadata"]["name"]
        with lock:
            running[name] = running.get(name, 0) + 1
            peak["all"] = max(peak["all"], sum(running.values()))
            peak["one"] = max(peak["one"], running[name])
        time.sleep(0.3)
        with lock:
            running[name] -= 1
        return 200, {"status": {"phase": "Running"}}

    hooks.scripts["/scd/sync"] = slow_sync
    names = [f"svc-{i}" for i in range(8)]
    with Driver(hooks.url, clock=RealClock(), workers=4,
                rate_limit=TokenBucket(qps=0)) as driver:
        for name in names:
            driver.apply(scd(name))
        driver.apply(scd("svc-0", image="busybox:2"))  # queued again while it may be syncing
        driver.run_until(lambda: all(
            (driver.get("scd", n) or {}).get("status", {}).get("phase") == "Running"
            and (driver.get("scd", n) or {}).get("status", {}).get("observedGeneration")
            == (driver.get("scd", n) or {})["metadata"]["generation"] for n in names),
            timeout=30)
    assert peak["all"] == 4
    assert peak["one"] == 1
    with pytest.raises(ValueError, match="RealClock"):
        Driver(hooks.url, workers=2)


# =========================================================================== authentication


def test_sends_the_webhook_authorization_secret(hooks: FakeHooks) -> None:
    """pkg/hooks/auth.go: `Authorization: <type> <TrimSpace(value)>` on every call, from the
    Secret the webhook's `authorization.secretRef` names."""
    secrets = {("llo-docker", "llo-hook-secret"): {"token": " s3cret\n"}}
    with Driver(hooks.url, clock=SimulatedClock(1_700_000_000.0), secrets=secrets) as d:
        d.apply(die())
        d.apply(scd())
        d.run_until(lambda: bool(hooks.bodies("/scd/sync")), timeout=10)
    assert {p for p, _ in hooks.calls} >= {"/die/sync", "/scd/customize", "/scd/sync"}
    assert set(hooks.authorizations) == {"Bearer s3cret"}


def test_default_secrets_are_random_and_readable(hooks: FakeHooks) -> None:
    with Driver(hooks.url) as one, Driver(hooks.url) as two:
        first = one.secret("llo-docker", "llo-hook-secret", "token")
        assert len(first) >= 32
        assert first != two.secret("llo-docker", "llo-hook-secret", "token")


def _manifests_with(tmp_path: Path, change: Callable[[JSON], None]) -> Path:
    for manifest in MANIFESTS_DIR.glob("compositecontroller-*.yaml"):
        doc = yaml.safe_load(manifest.read_text())
        for hook in doc["spec"]["hooks"].values():
            change(hook["webhook"])
        (tmp_path / manifest.name).write_text(yaml.safe_dump(doc))
    return tmp_path


@pytest.mark.parametrize(("secrets", "change", "message"), [
    ({}, None, "can't get authorization secret llo-docker/llo-hook-secret"),
    ({("llo-docker", "llo-hook-secret"): {"other": "x"}}, None,
     "does not contain key 'token'"),
    (None, lambda w: w["authorization"].update(type="basic"), "use the basicAuth field"),
    (None, lambda w: w.update(basicAuth={"secretRef": {"name": "b", "namespace": "n"}}),
     "mutually exclusive"),
])
def test_controller_does_not_start_without_its_secret(
        hooks: FakeHooks, tmp_path: Path, secrets: dict[tuple[str, str], dict[str, str]] | None,
        change: Callable[[JSON], None] | None, message: str) -> None:
    """Metacontroller resolves the credential when it creates the controller; a missing Secret
    or key, type Basic, or authorization with basicAuth: no controller, no hook call."""
    manifests = _manifests_with(tmp_path, change) if change else MANIFESTS_DIR
    with pytest.raises(ControllerError, match=message):
        Driver(hooks.url, manifests_dir=manifests, secrets=secrets)
    assert hooks.calls == []
