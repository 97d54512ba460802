"""A Metacontroller-faithful test driver: the CompositeController loop of Metacontroller
v4.17.2, calling the real hooks over HTTP, over an object store.

No Metacontroller binary can be had here (docs/design.md, "Metacontroller's hook protocol"), so
tests drive the hooks the way Metacontroller does. What it reproduces, from that section and
Metacontroller's source (pkg/controller/composite/controller.go, pkg/hooks/webhook.go,
pkg/controller/common/customize/manager.go, pkg/controller/common/finalizer/finalizer.go):

- Both CompositeControllers are read from the project's own ``metacontroller/*.yaml``
  (testbed/manifests.py).
- Objects (SCDs, DIEs) live in an object store (testbed/objectstore.py): by default the
  in-memory API server ``MemoryStore``, which applies the CRD schemas like the API server
  (testbed/crdschema.py; CEL ``x-kubernetes-validations`` with cel-python, skipping and
  naming the rules it cannot evaluate); or a real
  API server (tests/support/kube.py). The loop reads only the store's cache, and writes only
  the finalizer and the status through it.
- Work queue per controller keyed by parent, deduplicated; delayed adds keep the earliest time;
  failures requeue with the client-go default per-item exponential backoff (5 ms · 2^n, at most
  1000 s; the overall 10 qps bucket is not modelled); success forgets the failures.
- Sync: add the finalizer ``metacontroller.io/compositecontroller-<name>`` first when a finalize
  hook is configured (an object update, so another event); customize hook (request
  ``{controller, parent}``), answers cached per (uid, generation); related objects from its
  rules (``names``, ``namespace``, ``labelSelector``), every requested group present even when
  empty, keyed ``Kind.group/version`` then by name (``ns/name`` for namespaced objects); sync
  request ``{controller, parent, children, related, finalizing}`` with ``children`` = ``{}``
  (no child types declared); finalize hook instead of sync once ``deletionTimestamp`` is set.
- Hook authentication (pkg/hooks/auth.go, endpoint_config.go, webhook.go): a webhook's
  ``authorization`` (``type``, default ``Bearer``; ``secretRef`` ``{name, namespace, key}``) is
  resolved ONCE, when the controller is created, into the header
  ``Authorization: <type> <TrimSpace(secret value)>`` sent on every call; ``type: Basic``,
  ``authorization`` together with ``basicAuth``, and a Secret or key that does not exist are
  refused (the controller does not start: :class:`ControllerError`). The driver's Secrets are
  ``secrets``, (namespace, name) → data; by default every Secret a webhook names exists with a
  fresh random value (the install steps create it), readable with :meth:`Driver.secret`.
- Hook calls: POST ``application/json``; ONLY 200 is success. Anything else, a timeout (the
  manifest's ``timeout``, default 10 s, enforced on the whole exchange) or an undecodable body
  is an error: status untouched, Warning event ``SyncError`` "Sync error: ...", requeue with
  backoff. 429 requeues after ``Retry-After`` seconds (an integer or an HTTP date) without an
  event. v2 hooks parse strictly (testbed/hookprotocol.py): unknown or duplicate keys are
  errors; wrong types are errors in any mode; keys are case-sensitive.
- Response: ``resyncAfterSeconds`` > 0 requeues after that long; ``finalized: true`` removes the
  finalizer (the source does this whichever hook answered); then the status: ``observedGeneration``
  is set on the returned status (``null`` → ``{}``), which replaces ``.status`` wholesale, written
  only when different. Every status write is an update event that queues another sync unless
  ``parentResource.ignoreStatusChanges``, with which an update queues a sync only when the
  generation, labels or annotations changed or a ``deletionTimestamp`` is set. A status write
  to a gone object is silently dropped.
- A related object's add/update/delete resyncs every parent whose (cached or freshly fetched)
  customize answer selects it. As in Metacontroller, the informer for a related kind starts
  with the first customize answer naming it; its initial-list events and the "related
  informer not synced" requeue are not modelled.
- ``resyncPeriodSeconds`` enqueues every parent of the controller each period (at least 1 s).
- The API rate limit: every request Metacontroller's client makes for a parent waits for a
  token of client-go's token bucket (``--client-go-qps``/``--client-go-burst``, default 5 and
  10, one bucket for both controllers): a finalizer change is a GET of the live object and an
  UPDATE when it still needs it, a status update a GET (also when nothing changed, and when the
  object is gone: a 404) and an UPDATE of ``/status`` when the status differs from the stored
  one before pruning (testbed/ratelimit.py says what is and is not modelled). Every request is
  recorded in ``api_requests``; ``rate_limit=TokenBucket(qps=0)`` turns the limit off.

Time: by default a simulated clock that jumps to the next scheduled item when nothing is due
(hook calls take real time but no simulated time; a wait for a token takes simulated time);
``Driver(..., clock=RealClock())`` sleeps instead. One worker, one item at a time, on the
caller's thread; with a real clock, ``workers=N`` (Metacontroller's ``--workers``, default 5)
makes ``run_until``/``run_for`` sync up to N parents per controller at once on N threads, an
item never on two at a time (client-go's workqueue: an item queued while it is being synced is
synced again after). ``flags=`` sets the rate limit and the workers from
testbed/mcflags.py's ``MetacontrollerFlags``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets as secrets_module
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from testbed.clocks import Clock, RealClock, SimulatedClock
from testbed.crdschema import InvalidError
from testbed.hookprotocol import (
    HookError,
    TooManyRequestsError,
    parse_customize_response,
    parse_sync_response,
    retry_after,
    selector_matches,
)
from testbed.manifests import (
    CRD,
    CRDS_DIR,
    FINALIZER_PREFIX,
    MANIFESTS_DIR,
    Controller,
    ControllerError,
    Hook,
    Secrets,
    find_crd,
    load_controllers,
    load_crds,
    resolve_authorization,
    secret_refs,
)
from testbed.mcflags import MetacontrollerFlags
from testbed.objectstore import MemoryStore, ObjectStore, ObjKey, StatusWrite
from testbed.ratelimit import ApiRequest, TokenBucket

__all__ = [  # what tests import from here, wherever it is defined
    "CRDS_DIR", "FINALIZER_PREFIX", "MANIFESTS_DIR", "Clock", "ControllerError", "Driver",
    "Event", "HookCall", "HookError", "HotLoopError", "InvalidError", "RealClock",
    "SimulatedClock", "StatusWrite",
]

JSON = dict[str, Any]
T = TypeVar("T")
BACKOFF_BASE = 0.005
BACKOFF_MAX = 1000.0


def _installed_secrets(controllers: list[Controller]) -> dict[tuple[str, str], dict[str, str]]:
    """Every Secret key a webhook names, with a fresh random value."""
    made: dict[tuple[str, str], dict[str, str]] = {}
    for namespace, name, key in sorted(secret_refs(controllers)):
        made.setdefault((namespace, name), {})[key] = secrets_module.token_hex(16)
    return made


class HotLoopError(AssertionError):
    """Work never ran out at a fixed time: the hooks keep changing something."""


# =========================================================================== the driver


@dataclass(frozen=True)
class Event:
    kind: str
    namespace: str | None
    name: str
    type: str           # Normal | Warning
    reason: str
    message: str
    at: float


@dataclass(frozen=True)
class HookCall:
    controller: str
    hook: str
    url: str
    request: JSON
    status_code: int | None
    response: Any
    error: str | None
    at: float
    seconds: float = 0.0  # real time the exchange took (hooks run in real time)


@dataclass
class _Queue:
    ready: dict[tuple[str, str], int] = field(default_factory=dict)   # item → order; deduplicated
    waiting: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    processing: set[tuple[str, str]] = field(default_factory=set)   # on a worker now
    dirty: set[tuple[str, str]] = field(default_factory=set)        # queued while processing


class Driver:
    """See the module docstring. ``hooks_base_url`` e.g. ``http://127.0.0.1:5000``."""

    def __init__(self, hooks_base_url: str, *, clock: Clock | None = None,
                 hook_timeout: float | None = None, manifests_dir: Path = MANIFESTS_DIR,
                 crds_dir: Path = CRDS_DIR, session: requests.Session | None = None,
                 store: ObjectStore | None = None, secrets: Secrets | None = None,
                 rate_limit: TokenBucket | None = None, workers: int = 1,
                 flags: MetacontrollerFlags | None = None) -> None:
        self.clock: Clock = clock or SimulatedClock()
        if flags is not None:
            rate_limit, workers = TokenBucket(flags.qps, flags.burst), flags.workers
        if workers > 1 and not isinstance(self.clock, RealClock):
            raise ValueError("workers > 1 needs a RealClock (a simulated clock has one thread)")
        self.rate_limit = rate_limit if rate_limit is not None else TokenBucket()
        self.workers = max(1, workers)
        self.api_requests: list[ApiRequest] = []
        self._lock = threading.RLock()  # held by a worker except while it waits on the network
        self.store: ObjectStore = store or MemoryStore(load_crds(crds_dir), self.clock)
        self.crds = self.store.crds
        try:
            controllers = load_controllers(hooks_base_url, self.crds, manifests_dir,
                                           hook_timeout)
            self.secrets: dict[tuple[str, str], dict[str, str]] = (
                {k: dict(v) for k, v in secrets.items()} if secrets is not None
                else _installed_secrets(controllers))
            self._auth = {(c.name, h.name): resolve_authorization(h, self.secrets)
                          for c in controllers for h in c.hooks.values()}
        except ControllerError:
            self.store.close()
            raise
        self.controllers = {c.name: c for c in controllers}
        self.events: list[Event] = []
        self.hook_calls: list[HookCall] = []
        self._session = session or requests.Session()
        self._session.trust_env = False  # never a proxy for loopback hooks
        if self.workers > 1:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.workers)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        self._queues = {name: _Queue() for name in self.controllers}
        self._customize_cache: dict[tuple[str, str, int], list[JSON]] = {}
        self._watched: set[str] = set()  # kinds with a related informer
        self._sequence = 0
        now = self.clock.now()
        self._next_resync = {c.name: now + c.resync_period
                             for c in self.controllers.values() if c.resync_period}
        parents = {c.crd.kind: c.crd for c in self.controllers.values()}
        try:
            self.store.start(self._notify, list(parents.values()))
        except BaseException:
            self.close()
            raise

    def secret(self, namespace: str, name: str, key: str) -> str:
        """A value of one of the driver's Secrets (the hooks must be given the same)."""
        return self.secrets[(namespace, name)][key]

    def close(self) -> None:
        self.store.close()
        self._session.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the test's side

    def apply(self, obj: JSON) -> JSON:
        """Create or update the object like ``kubectl apply``; returns the stored object."""
        with self._lock:
            return self.store.apply(obj)

    def set_status(self, kind: str, name: str, status: JSON,
                   namespace: str | None = None) -> JSON:
        """Write ``.status`` through the status subresource (as another actor would)."""
        with self._lock:
            return self.store.set_status(kind, name, status, namespace)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """``kubectl delete``: ``deletionTimestamp`` while finalizers remain."""
        with self._lock:
            self.store.delete(kind, name, namespace)

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """A copy of the stored object, or None."""
        with self._lock:
            return self.store.get(kind, name, namespace)

    def objects(self, kind: str) -> list[JSON]:
        with self._lock:
            return self.store.objects(kind)

    @property
    def status_writes(self) -> list[StatusWrite]:
        """Every status write that changed the stored status, in order."""
        return self.store.status_writes

    # ------------------------------------------------------------------ informers → queues

    def _notify(self, crd: CRD, key: ObjKey, old: JSON | None, new: JSON | None) -> None:
        for ctl in self.controllers.values():
            if ctl.crd.kind == crd.kind \
                    and not (ctl.ignore_status_changes and _ignorable_update(old, new)):
                self._enqueue(ctl, key[1], key[2])
        for obj in (o for o in (old, new) if o is not None):
            self._notify_related(obj)

    def _notify_related(self, related: JSON) -> None:
        if related.get("kind") not in self._watched:
            return  # no related informer for this kind (yet)
        for ctl in self.controllers.values():
            if "customize" not in ctl.hooks:
                continue
            for pkey, parent in self.store.cached_items(ctl.crd.kind):
                try:
                    rules = self._customize(ctl, parent)
                except HookError:
                    continue
                if any(self._rule_selects(rule, related) for rule in rules):
                    self._enqueue(ctl, pkey[1], pkey[2])

    def _ready(self, queue: _Queue, item: tuple[str, str]) -> None:
        if item in queue.processing:
            queue.dirty.add(item)
            return
        if item not in queue.ready:
            self._sequence += 1
            queue.ready[item] = self._sequence

    def _enqueue(self, ctl: Controller, namespace: str, name: str, delay: float = 0.0) -> None:
        queue = self._queues[ctl.name]
        item = (namespace, name)
        if delay <= 0:
            self._ready(queue, item)
            return
        when = self.clock.now() + delay
        queue.waiting[item] = min(queue.waiting.get(item, when), when)

    # ------------------------------------------------------------------ the API rate limit

    @contextlib.contextmanager
    def _unlocked(self) -> Iterator[None]:
        """Let the other workers run while this one waits on the network or for a token."""
        if self.workers == 1:
            yield
            return
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()

    def _request(self, verb: str, crd: CRD, key: ObjKey) -> bool:
        """One API request for the object: wait for its token, record it. True when the object
        exists (a GET of a gone object is a 404)."""
        delay = self.rate_limit.reserve(self.clock.now())
        if delay > 0:
            if self.workers == 1:
                self.clock.advance(delay)
            else:
                with self._unlocked():
                    time.sleep(delay)
        found = self.store.cached(key) is not None
        self.api_requests.append(ApiRequest(verb, crd.kind, key[1] or None, key[2],
                                            self.clock.now(), delay, found))
        return found

    def _update_finalizers(self, crd: CRD, key: ObjKey, change: Callable[[list[str]], list[str]]
                           ) -> None:
        """AtomicUpdate: GET the live object, UPDATE it when the change still changes it."""
        if not self._request("get", crd, key):
            return
        live = self.store.cached(key)
        assert live is not None
        before = list(live["metadata"].get("finalizers", []))
        after = change(before)
        if after == before:
            return
        self._request("update", crd, key)
        if self.store.cached(key) is not None:
            self.store.set_finalizers(crd, key, after)

    def _update_status(self, crd: CRD, key: ObjKey, status: JSON) -> None:
        """AtomicStatusUpdate: GET the live object (404: gone, nothing to do), UPDATE /status
        when the status differs from the stored one (compared before the server prunes it)."""
        if not self._request("get", crd, key):
            return
        live = self.store.cached(key)
        assert live is not None
        if live.get("status") == status:
            return
        self._request("update-status", crd, key)
        if self.store.cached(key) is not None:
            self.store.write_status(crd, key, status)

    # ------------------------------------------------------------------ hooks

    def _call(self, ctl: Controller, hook: Hook, request: JSON,
              decode: Callable[[bytes, bool], T]) -> T:
        """POST ``request`` to ``hook`` and decode the answer; every call is recorded in
        ``hook_calls`` with the error Metacontroller would report, if any."""
        body = json.dumps(request).encode()
        started = time.monotonic()
        status_code: int | None = None
        text: Any = None
        try:
            try:
                headers = {"Content-Type": "application/json"}
                auth = self._auth.get((ctl.name, hook.name))
                if auth:
                    headers["Authorization"] = auth
                with self._unlocked():
                    resp = self._session.post(hook.url, data=body,
                                              timeout=(hook.timeout, hook.timeout),
                                              headers=headers)
            except requests.RequestException as exc:
                raise HookError(f"http error: Post {hook.url!r}: {exc}") from exc
            status_code, content = resp.status_code, resp.content
            try:
                text = json.loads(content)
            except ValueError:
                text = content.decode(errors="replace")
            if time.monotonic() - started > hook.timeout:
                raise HookError(f"http error: Post {hook.url!r}: context deadline exceeded "
                                "(Client.Timeout exceeded while awaiting headers)")
            if resp.status_code == 429:
                raise TooManyRequestsError(retry_after(resp.headers.get("Retry-After", ""),
                                                        self.clock.now()))
            if resp.status_code != 200:
                raise HookError(f"unsupported status code: {resp.status_code} body: "
                                f"{content.decode(errors='replace')}")
            result = decode(content, hook.strict)
        except HookError as exc:
            self.hook_calls.append(HookCall(ctl.name, hook.name, hook.url, request, status_code,
                                            text, str(exc), self.clock.now(),
                                            time.monotonic() - started))
            raise
        self.hook_calls.append(HookCall(ctl.name, hook.name, hook.url, request, status_code,
                                        text, None, self.clock.now(),
                                        time.monotonic() - started))
        return result

    def _customize(self, ctl: Controller, parent: JSON) -> list[JSON]:
        hook = ctl.hooks.get("customize")
        if hook is None:
            return []
        meta = parent["metadata"]
        cache_key = (ctl.name, meta["uid"], meta["generation"])
        cached = self._customize_cache.get(cache_key)
        if cached is not None:
            return cached
        request = {"controller": copy.deepcopy(ctl.manifest), "parent": copy.deepcopy(parent)}
        try:
            rules = self._call(ctl, hook, request, parse_customize_response)
        except TooManyRequestsError:
            raise
        except HookError as exc:
            raise HookError(f"customize hook failed (version=v2): {exc}") from exc
        self._customize_cache[cache_key] = rules
        for rule in rules:  # Metacontroller starts a related informer per rule resource
            with contextlib.suppress(HookError):
                self._watched.add(self._rule_crd(rule).kind)
        return rules

    def _rule_crd(self, rule: JSON) -> CRD:
        for crd in self.crds.values():
            if crd.api_version == rule.get("apiVersion") and crd.plural == rule.get("resource"):
                return crd
        raise HookError(f"can't find resource {rule.get('resource')!r} in apiVersion "
                        f"{rule.get('apiVersion')!r}")

    @staticmethod
    def _check_rule(rule: JSON) -> None:
        if rule.get("names") and (rule.get("labelSelector") or rule.get("namespaceSelector")):
            raise HookError("related rule cannot have both names and "
                            "labelSelector/namespaceSelector specified")
        if rule.get("namespace") and rule.get("namespaceSelector"):
            raise HookError("related rule cannot have both namespace and namespaceSelector "
                            "specified")
        if rule.get("namespaceSelector"):
            raise NotImplementedError("namespaceSelector is not modelled by this driver")

    def _rule_selects(self, rule: JSON, obj: JSON) -> bool:
        try:
            crd = self._rule_crd(rule)
            self._check_rule(rule)
        except HookError:
            return False
        if obj.get("apiVersion") != crd.api_version or obj.get("kind") != crd.kind:
            return False
        meta = obj["metadata"]
        if crd.namespaced and rule.get("namespace") and meta.get("namespace") != rule["namespace"]:
            return False
        if rule.get("names") and meta["name"] not in rule["names"]:
            return False
        return selector_matches(rule.get("labelSelector"), meta.get("labels") or {})

    def _related(self, ctl: Controller, parent: JSON) -> JSON:
        related: JSON = {}
        for rule in self._customize(ctl, parent):
            crd = self._rule_crd(rule)
            self._check_rule(rule)
            group = related.setdefault(crd.key, {})
            for (_, ns, name), obj in sorted(self.store.cached_items(crd.kind)):
                if self._rule_selects(rule, obj):
                    group[f"{ns}/{name}" if ns else name] = copy.deepcopy(obj)
        return related

    # ------------------------------------------------------------------ sync

    def _sync(self, ctl: Controller, namespace: str, name: str) -> None:
        crd = ctl.crd
        key: ObjKey = (crd.kind, namespace, name)
        parent = self.store.cached(key)
        if parent is None:
            return  # deleted: nothing to do
        finalize = ctl.hooks.get("finalize")
        finalizers = list(parent["metadata"].get("finalizers", []))
        if finalize is not None and ctl.finalizer not in finalizers \
                and not parent["metadata"].get("deletionTimestamp"):
            self._update_finalizers(crd, key, lambda fs: fs if ctl.finalizer in fs
                                    else [*fs, ctl.finalizer])
        elif finalize is None and ctl.finalizer in finalizers:
            self._update_finalizers(crd, key, lambda fs: [f for f in fs if f != ctl.finalizer])
        parent = self.store.cached(key)
        if parent is None:
            return
        related = self._related(ctl, parent)
        finalizing = finalize is not None and bool(parent["metadata"].get("deletionTimestamp"))
        hook = finalize if finalizing else ctl.hooks.get("sync")
        if hook is None:
            raise HookError("sync hook nil//not defined")
        request = {"controller": copy.deepcopy(ctl.manifest), "parent": copy.deepcopy(parent),
                   "children": {}, "related": related, "finalizing": finalizing}
        try:
            response = self._call(ctl, hook, request, parse_sync_response)
        except TooManyRequestsError:
            raise
        except HookError as exc:
            raise HookError(f"sync hook failed for {crd.kind} {namespace}/{name}: "
                            f"{hook.name} hook failed (version={hook.version}): {exc}") from exc
        generation = parent["metadata"]["generation"]
        resync = response.get("resyncAfterSeconds") or 0
        if resync > 0:
            self._enqueue(ctl, namespace, name, float(resync))
        if response.get("finalized"):
            self._update_finalizers(crd, key, lambda fs: [f for f in fs if f != ctl.finalizer])
        manage_error = None
        if response.get("children"):
            manage_error = HookError(f"can't reconcile children for {crd.kind} "
                                     f"{namespace}/{name}: no child resources are declared")
        status = dict(response.get("status") or {})
        status["observedGeneration"] = generation
        try:
            self._update_status(crd, key, status)  # a 404 (deleted meanwhile) is swallowed
        except InvalidError as exc:
            raise HookError(f"can't update status for {crd.kind} {namespace}/{name}: "
                            f"{crd.kind}.{crd.group} {name!r} is invalid: {exc}") from exc
        if manage_error is not None:
            raise manage_error

    def _process(self, ctl: Controller, item: tuple[str, str]) -> None:
        queue = self._queues[ctl.name]
        try:
            self._sync(ctl, *item)
        except TooManyRequestsError as exc:
            self._enqueue(ctl, *item, delay=float(exc.after_seconds))
            return
        except HookError as exc:
            parent = self.store.cached((ctl.crd.kind, *item))
            if parent is not None:
                self.events.append(Event(ctl.crd.kind, item[0] or None, item[1], "Warning",
                                         "SyncError", f"Sync error: {exc}", self.clock.now()))
            failures = queue.failures.get(item, 0)
            queue.failures[item] = failures + 1
            self._enqueue(ctl, *item, delay=min(BACKOFF_BASE * 2 ** failures, BACKOFF_MAX))
            return
        queue.failures.pop(item, None)

    # ------------------------------------------------------------------ running

    def _promote_due(self) -> None:
        self.store.refresh()
        now = self.clock.now()
        for ctl_name, due in list(self._next_resync.items()):
            if due <= now:
                ctl = self.controllers[ctl_name]
                for (_, ns, name), _ in self.store.cached_items(ctl.crd.kind):
                    self._enqueue(ctl, ns, name)
                assert ctl.resync_period is not None
                self._next_resync[ctl_name] = now + ctl.resync_period
        for queue in self._queues.values():
            for item, when in list(queue.waiting.items()):
                if when <= now:
                    del queue.waiting[item]
                    self._ready(queue, item)

    def _next_time(self) -> float | None:
        times = [t for q in self._queues.values() for t in q.waiting.values()]
        times.extend(self._next_resync.values())
        return min(times) if times else None

    def _idle(self, when: float) -> None:
        """Nothing is due: let the clock reach ``when``; a store whose objects change behind
        its back (tests/support/kube.py, a real API server) returns early on news."""
        self.store.idle(when, lambda: any(q.ready for q in self._queues.values()))

    def pending(self) -> bool:
        """Work is due now (without advancing the clock)."""
        self._promote_due()
        return any(q.ready for q in self._queues.values())

    def step(self, until: float | None = None) -> bool:
        """Process one work item, advancing the clock to the next scheduled one when nothing is
        due (not beyond ``until``). False when there is nothing to do by then."""
        self._promote_due()
        if not any(q.ready for q in self._queues.values()):
            when = self._next_time()
            if when is None or (until is not None and when > until):
                if until is not None:
                    self._idle(until)
                return False
            self._idle(when)
            self._promote_due()
        heads = [(seq, ctl_name, item) for ctl_name, queue in self._queues.items()
                 for item, seq in queue.ready.items()]
        if not heads:
            return False
        _, ctl_name, item = min(heads)
        del self._queues[ctl_name].ready[item]
        self._process(self.controllers[ctl_name], item)
        return True

    # ------------------------------------------------------------------ workers

    def _done(self, ctl_name: str, item: tuple[str, str]) -> None:
        queue = self._queues[ctl_name]
        queue.processing.discard(item)
        if item in queue.dirty:
            queue.dirty.discard(item)
            self._ready(queue, item)

    def _run_workers(self, done: Callable[[], bool], deadline: float) -> bool:
        """``self.workers`` threads per controller take items as they become due until
        ``done()`` (checked every 20 ms) or the clock passes ``deadline``."""
        stop = threading.Event()
        errors: list[BaseException] = []

        def take(ctl_name: str) -> tuple[str, str] | None:
            queue = self._queues[ctl_name]
            heads = sorted((seq, item) for item, seq in queue.ready.items())
            if not heads:
                return None
            item = heads[0][1]
            del queue.ready[item]
            queue.processing.add(item)
            return item

        def worker(ctl_name: str) -> None:
            try:
                while not stop.is_set():
                    with self._lock:
                        self._promote_due()
                        item = take(ctl_name)
                        if item is not None:
                            try:
                                self._process(self.controllers[ctl_name], item)
                            finally:
                                self._done(ctl_name, item)
                            continue
                    stop.wait(0.005)
            except BaseException as exc:  # surfaced on the caller's thread
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=worker, args=(name,), daemon=True,
                                    name=f"metacontroller-{name}-{i}")
                   for name in self.controllers for i in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while not errors:
                with self._lock:
                    if done():
                        return True
                if self.clock.now() >= deadline:
                    return False
                time.sleep(0.02)
        finally:
            stop.set()
            for t in threads:
                t.join()
        raise errors[0]

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0,
                  max_steps: int = 10_000) -> None:
        """Run until ``predicate()`` holds; TimeoutError after ``timeout`` clock seconds."""
        deadline = self.clock.now() + timeout
        if self.workers > 1:
            if self._run_workers(predicate, deadline):
                return
            raise self._timed_out(timeout)
        for _ in range(max_steps):
            if predicate():
                return
            if not self.step(until=deadline) and self.clock.now() >= deadline:
                break
        if predicate():
            return
        raise self._timed_out(timeout)

    def _timed_out(self, timeout: float) -> TimeoutError:
        return TimeoutError(f"condition not met within {timeout}s; last calls: "
                            f"{[(c.hook, c.status_code, c.error) for c in self.hook_calls[-5:]]}")

    def run_until_steady(self, max_steps: int = 200) -> int:
        """Process everything due now, without advancing the clock. HotLoopError if it never ends.
        Returns the number of syncs made."""
        steps = 0
        while self.pending():
            if steps >= max_steps:
                raise HotLoopError(f"still busy after {max_steps} syncs at a fixed time; last "
                              f"status writes: {self.status_writes[-3:]}")
            self.step()
            steps += 1
        return steps

    def run_for(self, seconds: float, max_steps: int = 10_000) -> None:
        """Let ``seconds`` of clock time pass, processing everything scheduled meanwhile."""
        deadline = self.clock.now() + seconds
        if self.workers > 1:
            self._run_workers(lambda: False, deadline)
            return
        for _ in range(max_steps):
            if not self.step(until=deadline) and self.clock.now() >= deadline:
                return
        raise HotLoopError(f"more than {max_steps} syncs in {seconds}s")

    # ------------------------------------------------------------------ conveniences

    def calls(self, hook: str | None = None, controller: str | None = None) -> list[HookCall]:
        return [c for c in self.hook_calls
                if (hook is None or c.hook == hook)
                and (controller is None or c.controller == controller)]

    def warnings(self, name: str | None = None) -> list[Event]:
        return [e for e in self.events
                if e.type == "Warning" and (name is None or e.name == name)]

    def controller_for(self, kind: str) -> Controller:
        crd = find_crd(self.crds, kind)
        return next(c for c in self.controllers.values() if c.crd.kind == crd.kind)


def _ignorable_update(old: JSON | None, new: JSON | None) -> bool:
    """Metacontroller's updateParentObject with ignoreStatusChanges: an update is skipped when
    generation, labels and annotations are unchanged and no deletionTimestamp is set (so a
    status write, or a finalizer change alone, queues nothing)."""
    if old is None or new is None:
        return False
    before, after = old["metadata"], new["metadata"]
    return (before.get("generation") == after.get("generation")
            and (before.get("labels") or {}) == (after.get("labels") or {})
            and (before.get("annotations") or {}) == (after.get("annotations") or {})
            and not after.get("deletionTimestamp"))
