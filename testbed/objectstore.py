"""Where the Metacontroller test driver keeps the objects: the seam between the controller loop
(testbed/metacontroller.py) and an API server.

:class:`ObjectStore` is what the loop needs: an informer cache to read, the two writes a
CompositeController makes (its finalizer, the parent's status), change notifications, and the
``kubectl``-like calls a test makes. Every API write the controller makes goes through
:meth:`ObjectStore.set_finalizers` or :meth:`ObjectStore.write_status` and nothing else, so a
client-side limit on the controller's writes wraps those two.

:class:`MemoryStore` behaves like the API server for custom resources: uid, resourceVersion,
``generation`` 1 on create and +1 on a spec change only (and when ``deletionTimestamp`` is set:
k8s.io/apiserver registry ``markAsDeleting``); status is a subresource (ignored on create/update
of the object, written only by status writes); the CRD schemas are applied like a structural
schema (testbed/crdschema.py; an invalid object is refused with :class:`InvalidError`, an
invalid status write fails the sync). A write that changes nothing is a no-op (no
resourceVersion bump, no watch event). The object disappears once deleting and without
finalizers. tests/support/kube.py has the store backed by a real API server.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from testbed.clocks import Clock, rfc3339
from testbed.crdschema import InvalidError, check_object_name
from testbed.manifests import CRD, find_crd

JSON = dict[str, Any]
ObjKey = tuple[str, str, str]        # kind, namespace ("" when cluster-scoped), name
ChangeListener = Callable[[CRD, ObjKey, JSON | None, JSON | None], None]


@dataclass(frozen=True)
class StatusWrite:
    kind: str
    namespace: str | None
    name: str
    status: JSON
    at: float


class ObjectStore(Protocol):
    """What the controller loop reads and writes; see the module docstring."""

    crds: dict[str, CRD]
    status_writes: list[StatusWrite]

    def start(self, on_change: ChangeListener, kinds: list[CRD]) -> None:
        """Report every later change of an object of ``kinds`` to ``on_change(crd, key, old,
        new)`` (``old`` None on create, ``new`` None on deletion)."""

    def close(self) -> None: ...

    # ------------------------------------------------------------ the controller's cache

    def cached(self, key: ObjKey) -> JSON | None:
        """The cached object itself (not a copy: the loop copies what it sends)."""

    def cached_items(self, kind: str) -> list[tuple[ObjKey, JSON]]:
        """Every cached object of the CRD kind, in the order they came."""

    def refresh(self) -> None:
        """Take in the changes made behind the loop's back (watch events), if any."""

    def idle(self, until: float, has_work: Callable[[], bool]) -> None:
        """Nothing is due: let time pass until ``until``; a store whose objects change behind
        the loop's back may return early once ``has_work()``."""

    # ------------------------------------------------------------ the controller's writes

    def set_finalizers(self, crd: CRD, key: ObjKey, finalizers: list[str]) -> None:
        """Replace the object's finalizers (deleting it when it is deleting and none remain)."""

    def write_status(self, crd: CRD, key: ObjKey, status: JSON) -> bool:
        """Replace ``.status`` through the status subresource when it differs; True when
        written. InvalidError when the server refuses it."""

    # ------------------------------------------------------------ the test's side (kubectl)

    def apply(self, obj: JSON) -> JSON: ...

    def set_status(self, kind: str, name: str, status: JSON,
                   namespace: str | None = None) -> JSON: ...

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None: ...

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None: ...

    def objects(self, kind: str) -> list[JSON]: ...


def object_key(crd: CRD, name: str, namespace: str | None) -> ObjKey:
    return (crd.kind, (namespace or "default") if crd.namespaced else "", name)


def drop_empty(meta: JSON) -> None:
    """The API server omits empty labels, annotations and finalizers (omitempty)."""
    for key in ("labels", "annotations", "finalizers"):
        if key in meta and not meta[key]:
            del meta[key]


def _ignore(crd: CRD, key: ObjKey, old: JSON | None, new: JSON | None) -> None:
    """No listener yet."""


class MemoryStore:
    """An in-memory API server for the project's custom resources (module docstring)."""

    def __init__(self, crds: dict[str, CRD], clock: Clock) -> None:
        self.crds = crds
        self.clock = clock
        self.status_writes: list[StatusWrite] = []
        self._objects: dict[ObjKey, JSON] = {}
        self._on_change: ChangeListener = _ignore
        self._resource_version = 0

    def start(self, on_change: ChangeListener, kinds: list[CRD]) -> None:
        self._on_change = on_change

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ the controller's cache

    def cached(self, key: ObjKey) -> JSON | None:
        return self._objects.get(key)

    def cached_items(self, kind: str) -> list[tuple[ObjKey, JSON]]:
        return [(k, o) for k, o in self._objects.items() if k[0] == kind]

    def refresh(self) -> None:
        pass  # nothing changes behind the loop's back

    def idle(self, until: float, has_work: Callable[[], bool]) -> None:
        self.clock.advance_to(until)

    # ------------------------------------------------------------ every write

    def _put(self, crd: CRD, key: ObjKey, old: JSON | None, new: JSON | None) -> None:
        """Store ``new`` under ``key`` (None: delete) with a fresh resourceVersion, and tell
        the listener."""
        if new is None:
            del self._objects[key]
        else:
            self._resource_version += 1
            new["metadata"]["resourceVersion"] = str(self._resource_version)
            self._objects[key] = new
        self._on_change(crd, key, old, new)

    # ------------------------------------------------------------ the controller's writes

    def set_finalizers(self, crd: CRD, key: ObjKey, finalizers: list[str]) -> None:
        old = self._objects[key]
        if old["metadata"].get("finalizers", []) == finalizers:
            return
        new = copy.deepcopy(old)
        new["metadata"]["finalizers"] = finalizers
        drop_empty(new["metadata"])
        if not finalizers and new["metadata"].get("deletionTimestamp"):
            self._put(crd, key, old, None)
            return
        self._put(crd, key, old, new)

    def write_status(self, crd: CRD, key: ObjKey, status: JSON) -> bool:
        old = self._objects.get(key)
        if old is None:
            raise KeyError(f"{crd.kind} {key[1]}/{key[2]} not found")
        clean = crd.checker.check_status(status)
        if old.get("status") == clean:
            return False
        new = copy.deepcopy(old)
        new["status"] = clean
        self.status_writes.append(StatusWrite(crd.kind, key[1] or None, key[2],
                                              copy.deepcopy(clean), self.clock.now()))
        self._put(crd, key, old, new)
        return True

    # ------------------------------------------------------------ the test's side

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """A copy of the stored object, or None."""
        obj = self._objects.get(object_key(find_crd(self.crds, kind), name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str) -> list[JSON]:
        crd = find_crd(self.crds, kind)
        return [copy.deepcopy(o) for _, o in sorted(self.cached_items(crd.kind))]

    def apply(self, obj: JSON) -> JSON:
        """Create or update like ``kubectl apply``: spec, labels and annotations come from
        ``obj``; status and finalizers already stored are kept. Returns the stored object."""
        crd = find_crd(self.crds, obj.get("kind", ""))
        if obj.get("apiVersion") != crd.api_version:
            raise InvalidError([f"apiVersion: must be {crd.api_version}"])
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace")
        check_object_name(name, namespace, crd.namespaced)
        key = object_key(crd, name, namespace)
        clean = crd.checker.check_object(obj)
        old = self._objects.get(key)
        if old is None:
            new_meta = {
                "name": key[2], "uid": str(uuid.uuid4()), "generation": 1,
                "creationTimestamp": rfc3339(self.clock.now()),
                "labels": dict(meta.get("labels") or {}),
                "annotations": dict(meta.get("annotations") or {}),
                "finalizers": list(meta.get("finalizers") or []),
            }
            if crd.namespaced:
                new_meta["namespace"] = key[1]
            drop_empty(new_meta)
            new = {"apiVersion": crd.api_version, "kind": crd.kind, "metadata": new_meta,
                   "spec": clean.get("spec", {})}
            self._put(crd, key, None, new)
            return copy.deepcopy(new)
        new = copy.deepcopy(old)
        new["metadata"]["labels"] = dict(meta.get("labels") or {})
        new["metadata"]["annotations"] = dict(meta.get("annotations") or {})
        drop_empty(new["metadata"])
        new["spec"] = clean.get("spec", {})
        if new == old:
            return copy.deepcopy(old)  # no-op update: no event
        if new["spec"] != old["spec"]:
            new["metadata"]["generation"] += 1
        self._put(crd, key, old, new)
        return copy.deepcopy(new)

    def set_status(self, kind: str, name: str, status: JSON,
                   namespace: str | None = None) -> JSON:
        """Write ``.status`` through the status subresource (as another actor would)."""
        crd = find_crd(self.crds, kind)
        key = object_key(crd, name, namespace)
        self.write_status(crd, key, status)
        return copy.deepcopy(self._objects[key])

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """``kubectl delete``: gone at once without finalizers, else ``deletionTimestamp`` is
        set (and ``generation`` bumped) until the last finalizer is removed."""
        crd = find_crd(self.crds, kind)
        key = object_key(crd, name, namespace)
        old = self._objects.get(key)
        if old is None:
            raise KeyError(f"{crd.kind} {key[1]}/{key[2]} not found")
        if not old["metadata"].get("finalizers"):
            self._put(crd, key, old, None)
            return
        if old["metadata"].get("deletionTimestamp"):
            return
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["metadata"]["generation"] += 1
        self._put(crd, key, old, new)
