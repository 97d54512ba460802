"""The Metacontroller test driver against a real Kubernetes API server (tests/support/crdserver.py).

``KubeDriver`` is :class:`testbed.metacontroller.Driver` (same work queues, backoff,
customize cache, hook calls and strict response decoding) over :class:`ApiServerStore`, the
object store (testbed/objectstore.py) that does what Metacontroller v4.17.2 really does
with an API server:

- Informers: one LIST then a WATCH (``resourceVersion``, bookmarks, re-LIST on 410 Gone) per
  parent kind, each in a background thread; their events feed a local cache, which is all the
  sync loop reads (parents and related objects), like Metacontroller's shared informers. The
  initial LIST enqueues every parent, as informer "add" events do.
- Writes go to the API server, from the cached object:
  finalizers by an update of the whole object with its ``resourceVersion``, retried from a fresh
  GET on a 409 Conflict (Metacontroller's ``AtomicUpdate``: add/remove only its own finalizer);
  status by a PUT to the ``/status`` subresource that replaces ``.status`` wholesale with the
  hook's status plus ``observedGeneration``, sent only when it differs from the cached status
  and retried from a fresh GET on a conflict (``AtomicStatusUpdate``). A write's answer goes
  into the cache at once (Metacontroller continues with the returned object); the watch's echo
  of the same ``resourceVersion`` is then ignored.
- Deletion is the API server's: ``kubectl delete`` sets ``deletionTimestamp`` while a finalizer
  is present; once the finalize hook answers ``finalized: true`` the driver removes its
  finalizer and the API server deletes the object.
- Every status write whose stored status differs from the status sent (the structural schema
  pruned or defaulted something) is recorded in ``pruned``: Metacontroller would see a
  difference on every sync and write again, a hot loop.

Not reproduced: Events (this server has no core API; Warning events stay in ``events``), the
client-go rate limiter, leader election. Time is the real clock: ``run_until`` and friends wait
for watch events instead of sleeping blindly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from testbed.clocks import RealClock
from testbed.crdschema import InvalidError
from testbed.hookprotocol import HookError
from testbed.manifests import CRD, CRDS_DIR, MANIFESTS_DIR, Secrets, find_crd, load_crds
from testbed.metacontroller import Driver
from testbed.objectstore import ChangeListener, ObjKey, StatusWrite, object_key
from tests.support.crdserver import CrdApiServer

JSON = dict[str, Any]
FIELD_MANAGER = "llo-test-driver"
WATCH_SECONDS = 30  # the server ends each watch after this long; the informer re-watches
IDLE_POLL = 0.1  # longest wait for news before run_until re-checks its predicate



def subset(expected: Any, actual: Any) -> bool:
    """``expected`` is in ``actual`` (objects may have more keys, e.g. defaults the API server
    filled in): how a test compares what it sent with what the server stored."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            subset(e, a) for e, a in zip(expected, actual, strict=True))
    return bool(expected == actual)

class ApiError(HookError):
    """An API server call failed; the sync fails and is retried with backoff, as in
    Metacontroller."""

    def __init__(self, method: str, path: str, response: requests.Response) -> None:
        self.status_code = response.status_code
        try:
            body = response.json()
            message = body.get("message", response.text) if isinstance(body, dict) else body
        except ValueError:
            message = response.text
        self.message = str(message)
        super().__init__(f"{method} {path}: {response.status_code}: {self.message}")


# =========================================================================== REST client


class KubeClient:
    """Plain REST calls to the CRD API server with its admin client certificate."""

    def __init__(self, api: CrdApiServer) -> None:
        self.base_url = api.url
        self._ca = str(api.workdir / "ca.crt")
        self._cert = (str(api.workdir / "admin.crt"), str(api.workdir / "admin.key"))
        self.session = self.new_session()

    def new_session(self) -> requests.Session:
        """A session trusting only the server's CA (a thread should own its session)."""
        session = requests.Session()
        session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE
        session.verify = self._ca
        session.cert = self._cert
        return session

    def close(self) -> None:
        self.session.close()

    @staticmethod
    def path(crd: CRD, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        out = f"/apis/{crd.group}/{crd.version}"
        if crd.namespaced and namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{crd.plural}"
        if name is not None:
            out += f"/{name}"
        if subresource is not None:
            out += f"/{subresource}"
        return out

    def request(self, method: str, path: str, *, body: Any = None,
                content_type: str = "application/json", params: dict[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201)) -> requests.Response:
        """Send a request; an answer outside ``ok`` raises ApiError (404 included, unless
        listed)."""
        data = json.dumps(body) if body is not None else None
        resp = self.session.request(method, self.base_url + path, data=data, params=params,
                                    headers={"Content-Type": content_type}, timeout=30)
        if resp.status_code not in ok:
            raise ApiError(method, path, resp)
        return resp

    def get(self, crd: CRD, name: str, namespace: str | None = None) -> JSON | None:
        resp = self.request("GET", self.path(crd, namespace, name), ok=(200, 404))
        if resp.status_code == 404:
            return None
        obj: JSON = resp.json()
        return obj

    def list(self, crd: CRD) -> tuple[list[JSON], str]:
        """Every object of the kind (all namespaces) and the list's resourceVersion."""
        body = self.request("GET", self.path(crd)).json()
        for item in body["items"]:  # items of a list carry no apiVersion/kind
            item.setdefault("apiVersion", crd.api_version)
            item.setdefault("kind", crd.kind)
        return body["items"], str(body["metadata"]["resourceVersion"])


def key_of(crd: CRD, obj: JSON) -> ObjKey:
    """The store key of an object the API server sent."""
    meta = obj["metadata"]
    return (crd.kind, meta.get("namespace", "") if crd.namespaced else "", meta["name"])


def resource_version(obj: JSON) -> int:
    """etcd's resourceVersions are increasing integers (opaque in general, fine for a test)."""
    return int(obj["metadata"]["resourceVersion"])


# =========================================================================== informer


@dataclass(frozen=True)
class _WatchEvent:
    kind: str                 # the CRD kind
    type: str                 # ADDED | MODIFIED | DELETED | RELIST
    obj: JSON | None          # the object (None for RELIST)
    items: list[JSON] | None  # RELIST: the full list


class _Informer(threading.Thread):
    """WATCH one kind from ``resource_version`` on; re-LIST after 410 Gone. Events go to
    ``events``; the driver thread applies them."""

    def __init__(self, client: KubeClient, crd: CRD, resource_version: str,
                 events: queue.Queue[_WatchEvent]) -> None:
        super().__init__(name=f"informer-{crd.plural}", daemon=True)
        self.client, self.crd, self.rv, self.events = client, crd, resource_version, events
        self.stopping = threading.Event()
        self._session = client.new_session()
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._watch_once()
                except (requests.RequestException, OSError, ValueError, AttributeError):
                    if self.stopping.is_set():
                        return
                    time.sleep(0.2)
        finally:
            self._session.close()

    def _watch_once(self) -> None:
        params = {"watch": "1", "resourceVersion": self.rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SECONDS)}
        url = self.client.base_url + self.client.path(self.crd)
        with self._session.get(url, params=params, stream=True,
                               timeout=(5, WATCH_SECONDS + 15)) as resp:
            with self._lock:
                self._response = resp
            if resp.status_code == 410:
                self._relist()
                return
            resp.raise_for_status()
            for line in resp.iter_lines():
                if self.stopping.is_set():
                    return
                if not line:
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:  # our resourceVersion is too old
                        self._relist()
                    return
                self.rv = str(obj["metadata"]["resourceVersion"])
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    self.events.put(_WatchEvent(self.crd.kind, event["type"], obj, None))
        with self._lock:
            self._response = None

    def _relist(self) -> None:
        items, self.rv = self.client.list(self.crd)
        self.events.put(_WatchEvent(self.crd.kind, "RELIST", None, items))

    def stop(self) -> None:
        """Stop watching; a blocked read is ended by shutting its socket down."""
        self.stopping.set()
        with self._lock:
            resp = self._response
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.raw.connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                resp.close()
        self.join(timeout=5)


# =========================================================================== driver


@dataclass(frozen=True)
class PrunedStatus:
    """A status write whose stored status is not what was sent."""

    kind: str
    namespace: str | None
    name: str
    sent: JSON
    stored: JSON


class ApiServerStore:
    """The object store over a real API server; see the module docstring. ``start`` LISTs and
    starts the informers; ``close`` stops them."""

    def __init__(self, api: CrdApiServer, crds: dict[str, CRD]) -> None:
        self.crds = crds
        self.client = KubeClient(api)
        self.status_writes: list[StatusWrite] = []
        self.pruned: list[PrunedStatus] = []
        self._objects: dict[ObjKey, JSON] = {}
        self._on_change: ChangeListener | None = None
        self._events: queue.Queue[_WatchEvent] = queue.Queue()
        self._gone: set[str] = set()  # uids deleted (late watch events must not revive them)
        self._informers: list[_Informer] = []

    def start(self, on_change: ChangeListener, kinds: list[CRD]) -> None:
        self._on_change = on_change
        for crd in kinds:
            items, rv = self.client.list(crd)
            for item in items:
                self._ingest(crd, item)
            informer = _Informer(self.client, crd, rv, self._events)
            informer.start()
            self._informers.append(informer)

    def close(self) -> None:
        for informer in self._informers:
            informer.stop()
        self._informers.clear()
        self.client.close()

    # ------------------------------------------------------------------ the cache

    def cached(self, key: ObjKey) -> JSON | None:
        return self._objects.get(key)

    def cached_items(self, kind: str) -> list[tuple[ObjKey, JSON]]:
        return [(k, o) for k, o in self._objects.items() if k[0] == kind]

    def _crd_of_kind(self, kind: str) -> CRD:
        return next(c for c in self.crds.values() if c.kind == kind)

    def _changed(self, crd: CRD, key: ObjKey, old: JSON | None, new: JSON | None) -> None:
        if self._on_change is not None:
            self._on_change(crd, key, old, new)

    def _ingest(self, crd: CRD, obj: JSON) -> None:
        """A newer version of an object (watch event or write answer) into the cache."""
        if obj["metadata"]["uid"] in self._gone:
            return
        key = key_of(crd, obj)
        old = self._objects.get(key)
        if old is not None and old["metadata"]["uid"] == obj["metadata"]["uid"] \
                and resource_version(old) >= resource_version(obj):
            return  # an echo of what we already have
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", crd.api_version)
        obj.setdefault("kind", crd.kind)
        self._objects[key] = obj
        self._changed(crd, key, old, obj)

    def _forget(self, crd: CRD, obj: JSON) -> None:
        """The object is gone from the API server."""
        self._gone.add(obj["metadata"]["uid"])
        key = key_of(crd, obj)
        old = self._objects.get(key)
        if old is not None and old["metadata"]["uid"] == obj["metadata"]["uid"]:
            del self._objects[key]
            self._changed(crd, key, old, None)

    def _apply_event(self, event: _WatchEvent) -> None:
        crd = self._crd_of_kind(event.kind)
        if event.type == "RELIST":
            present = {item["metadata"]["uid"] for item in event.items or []}
            for key, obj in list(self._objects.items()):
                if key[0] == crd.kind and obj["metadata"]["uid"] not in present:
                    self._forget(crd, obj)
            for item in event.items or []:
                self._ingest(crd, item)
        elif event.type == "DELETED":
            assert event.obj is not None
            self._forget(crd, event.obj)
        else:
            assert event.obj is not None
            self._ingest(crd, event.obj)

    def refresh(self) -> None:
        """Apply every watch event that arrived."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._apply_event(event)

    def idle(self, until: float, has_work: Callable[[], bool]) -> None:
        """Wait until ``until``, until a watch event makes work due, or at most IDLE_POLL
        seconds: ``run_until`` then re-checks its predicate, which may depend on something
        outside the API server (a container, a ``kubectl delete`` still waiting)."""
        until = min(until, time.time() + IDLE_POLL)
        while True:
            remaining = until - time.time()
            if remaining <= 0:
                return
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                return
            self._apply_event(event)
            self.refresh()
            if has_work():
                return

    def wait_for_cache(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Apply watch events until ``predicate()`` holds (e.g. a ``kubectl apply`` was seen)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the informer cache did not catch up")
            with contextlib.suppress(queue.Empty):
                self._apply_event(self._events.get(timeout=remaining))
            self.refresh()

    # ------------------------------------------------------------------ writes (Metacontroller's)

    def _put(self, path: str, body: JSON, ok: tuple[int, ...]) -> requests.Response:
        """Every write the controller makes (a finalizer change, a status, each conflict retry)
        is one PUT through here."""
        return self.client.request("PUT", path, body=body, ok=ok)

    def _fresh(self, crd: CRD, key: ObjKey, uid: str) -> JSON | None:
        """The live object, or None when it is gone or was replaced by another uid."""
        live = self.client.get(crd, key[2], key[1] or None)
        if live is None or live["metadata"]["uid"] != uid:
            return None
        live.setdefault("apiVersion", crd.api_version)
        live.setdefault("kind", crd.kind)
        return live

    def set_finalizers(self, crd: CRD, key: ObjKey, finalizers: list[str]) -> None:
        """Add/remove finalizers by updating the object, retried on conflicts (AtomicUpdate)."""
        old = self._objects[key]
        before = list(old["metadata"].get("finalizers", []))
        added = [f for f in finalizers if f not in before]
        removed = {f for f in before if f not in finalizers}
        if not added and not removed:
            return
        uid = old["metadata"]["uid"]
        obj: JSON | None = copy.deepcopy(old)
        for _ in range(10):
            if obj is None:
                return  # gone meanwhile
            current = [f for f in obj["metadata"].get("finalizers", []) if f not in removed]
            current += [f for f in added if f not in current]
            if current == obj["metadata"].get("finalizers", []):
                self._ingest(crd, obj)
                return
            body = copy.deepcopy(obj)
            body["metadata"]["finalizers"] = current
            resp = self._put(self.client.path(crd, key[1], key[2]), body, ok=(200, 404, 409))
            if resp.status_code == 409:
                obj = self._fresh(crd, key, uid)
                continue
            if resp.status_code == 404:
                self._forget(crd, obj)
                return
            new: JSON = resp.json()
            if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
                self._forget(crd, new)  # the API server deleted it with its last finalizer
            else:
                self._ingest(crd, new)
            return
        raise HookError(f"finalizers of {crd.kind} {key[1]}/{key[2]}: conflicts did not end")

    def write_status(self, crd: CRD, key: ObjKey, status: JSON) -> bool:
        """Replace ``.status`` through the status subresource when it differs from the cached
        one (AtomicStatusUpdate). A 422 raises InvalidError (the sync fails, as in
        Metacontroller)."""
        old = self._objects.get(key)
        if old is None:
            raise KeyError(f"{crd.kind} {key[1]}/{key[2]} not found")
        uid = old["metadata"]["uid"]
        obj: JSON | None = old
        for _ in range(10):
            if obj is None:
                return False  # deleted meanwhile: NotFound is swallowed
            if obj.get("status") == status:
                if obj is not old:
                    self._ingest(crd, obj)
                return False
            body = copy.deepcopy(obj)
            body["status"] = copy.deepcopy(status)
            resp = self._put(self.client.path(crd, key[1], key[2], "status"), body,
                             ok=(200, 404, 409, 422))
            if resp.status_code == 409:
                obj = self._fresh(crd, key, uid)
                continue
            if resp.status_code == 404:
                return False
            if resp.status_code == 422:
                raise InvalidError([ApiError("PUT", "status", resp).message])
            new: JSON = resp.json()
            stored = new.get("status") or {}
            self.status_writes.append(StatusWrite(crd.kind, key[1] or None, key[2],
                                                  copy.deepcopy(stored), time.time()))
            if stored != status:
                self.pruned.append(PrunedStatus(crd.kind, key[1] or None, key[2],
                                                copy.deepcopy(status), copy.deepcopy(stored)))
            self._ingest(crd, new)
            return True
        raise HookError(f"status of {crd.kind} {key[1]}/{key[2]}: conflicts did not end")

    # ------------------------------------------------------------------ the test's side

    def _namespace(self, crd: CRD, namespace: str | None) -> str | None:
        return (namespace or "default") if crd.namespaced else None

    def apply(self, obj: JSON) -> JSON:
        """Create or update through server-side apply (spec, labels, annotations from ``obj``);
        the answer is in the cache when this returns."""
        crd = find_crd(self.crds, obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        namespace = self._namespace(crd, meta.get("namespace"))
        body = copy.deepcopy(obj)
        if namespace:
            body["metadata"]["namespace"] = namespace
        resp = self.client.request(
            "PATCH", self.client.path(crd, namespace, meta["name"]), body=body,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": "true"}, ok=(200, 201, 422))
        if resp.status_code == 422:
            raise InvalidError([ApiError("PATCH", "apply", resp).message])
        new: JSON = resp.json()
        self._ingest(crd, new)
        return copy.deepcopy(new)

    def set_status(self, kind: str, name: str, status: JSON,
                   namespace: str | None = None) -> JSON:
        """Replace ``.status`` as another actor would (from a fresh GET)."""
        crd = find_crd(self.crds, kind)
        ns = self._namespace(crd, namespace)
        live = self.client.get(crd, name, ns)
        if live is None:
            raise KeyError(f"{crd.kind} {ns}/{name} not found")
        live["status"] = status
        new: JSON = self.client.request("PUT", self.client.path(crd, ns, name, "status"),
                                        body=live).json()
        self._ingest(crd, new)
        return new

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """DELETE on the API server (``deletionTimestamp`` while finalizers remain)."""
        crd = find_crd(self.crds, kind)
        ns = self._namespace(crd, namespace)
        resp = self.client.request("DELETE", self.client.path(crd, ns, name), ok=(200, 202, 404))
        if resp.status_code == 404:
            raise KeyError(f"{crd.kind} {ns}/{name} not found")
        obj: JSON = resp.json()
        if obj.get("kind") == crd.kind and obj["metadata"].get("finalizers"):
            self._ingest(crd, obj)
        elif obj.get("kind") == crd.kind:
            self._forget(crd, obj)

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """The live object from the API server (not the cache), or None."""
        crd = find_crd(self.crds, kind)
        return self.client.get(crd, name, self._namespace(crd, namespace))

    def objects(self, kind: str) -> list[JSON]:
        """Every live object of the kind, from the API server."""
        return self.client.list(find_crd(self.crds, kind))[0]


class KubeDriver(Driver):
    """See the module docstring. Use as a context manager (it starts threads)."""

    def __init__(self, hooks_base_url: str, api: CrdApiServer, *,
                 hook_timeout: float | None = None, manifests_dir: Path = MANIFESTS_DIR,
                 crds_dir: Path = CRDS_DIR, session: requests.Session | None = None,
                 secrets: Secrets | None = None) -> None:
        self.api = api
        self.kube = ApiServerStore(api, load_crds(crds_dir))
        super().__init__(hooks_base_url, clock=RealClock(), hook_timeout=hook_timeout,
                         manifests_dir=manifests_dir, session=session, store=self.kube,
                         secrets=secrets)
        self.client = self.kube.client
        self.pruned = self.kube.pruned

    def __enter__(self) -> KubeDriver:
        return self

    def wait_for_cache(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Apply watch events until ``predicate()`` holds (e.g. a ``kubectl apply`` was seen)."""
        self.kube.wait_for_cache(predicate, timeout)

    def cached(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """The informer cache's copy (what the next sync will send to the hooks)."""
        crd = find_crd(self.crds, kind)
        obj = self.kube.cached(object_key(crd, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None
