"""A Metacontroller-faithful test driver: an in-memory API server plus the CompositeController
loop of Metacontroller v4.17.2, calling real hooks over HTTP.

No Metacontroller binary can be had here (DESIGN.md §3), so tests drive the hooks the way
Metacontroller does. What it reproduces, from DESIGN.md §3 and Metacontroller's source
(pkg/controller/composite/controller.go, pkg/hooks/webhook.go,
pkg/controller/common/customize/manager.go, pkg/controller/common/finalizer/finalizer.go):

- Both CompositeControllers are read from the project's own ``metacontroller/*.yaml``; hook
  URLs keep their path and get the given base URL instead of the in-cluster service host.
- Objects (SCDs, DIEs) live in a store that behaves like the API server for custom resources:
  uid, resourceVersion, ``generation`` 1 on create and +1 on a spec change only (and when
  ``deletionTimestamp`` is set: k8s.io/apiserver registry ``markAsDeleting``); status is a
  subresource (ignored on create/update of the object, written only by status writes); the
  project's CRD schemas are applied like a structural schema: unknown fields and nulls of
  non-nullable fields are pruned, defaults applied, types/enum/pattern/length/range/required/
  list-map keys validated (an invalid object is refused with :class:`InvalidError`, an invalid
  status write fails the sync). CEL ``x-kubernetes-validations`` are NOT evaluated.
  A write that changes nothing is a no-op (no resourceVersion bump, no watch event).
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
  ``Authorization: <type> <TrimSpace(secret value)>`` sent on every call; ``type: Basic`` and
  ``authorization`` together with ``basicAuth`` are refused, and so is a Secret or key that does
  not exist (the controller does not start: :class:`ControllerError`). The driver's Secrets are
  ``secrets`` (namespace, name) → data; by default every Secret a webhook names exists with a
  fresh random value (the install steps create it), readable with :meth:`Driver.secret`.
- Hook calls: POST ``application/json``; ONLY 200 is success. Anything else, a timeout (the
  manifest's ``timeout``, default 10 s, enforced on the whole exchange) or an undecodable body
  is an error: status untouched, Warning event ``SyncError`` "Sync error: ...", requeue with
  backoff. 429 requeues after ``Retry-After`` seconds (an integer or an HTTP date) without an
  event. v2 hooks parse strictly (``responseUnMarshallMode`` default strict for v2): unknown or
  duplicate keys are errors; wrong types are errors in any mode; keys are case-sensitive.
- Response: ``resyncAfterSeconds`` > 0 requeues after that long; ``finalized: true`` removes the
  finalizer (the source does this whichever hook answered); then the status: ``observedGeneration``
  is set on the returned status (``null`` → ``{}``), which replaces ``.status`` wholesale, written
  only when different. Every status write is an update event that queues another sync unless
  ``parentResource.ignoreStatusChanges``, with which an update queues a sync only when the
  generation, labels or annotations changed or a ``deletionTimestamp`` is set. The object
  disappears once deleting and without finalizers; a status write to a gone object is
  silently dropped.
- A related object's add/update/delete resyncs every parent whose (cached or freshly fetched)
  customize answer selects it. As in Metacontroller, the informer for a related kind starts
  with the first customize answer naming it; its initial-list events and the "related
  informer not synced" requeue are not modelled.
- ``resyncPeriodSeconds`` enqueues every parent of the controller each period (at least 1 s).

Time: by default a simulated clock that jumps to the next scheduled item when nothing is due
(hook calls take real time but no simulated time); ``Driver(..., clock=RealClock())`` sleeps
instead. Single worker, one item at a time, on the caller's thread.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets as secrets_module
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

JSON = dict[str, Any]
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
MANIFESTS_DIR = ROOT / "metacontroller"
CRDS_DIR = ROOT / "crds"
FINALIZER_PREFIX = "metacontroller.io/compositecontroller-"
DEFAULT_HOOK_TIMEOUT = 10.0
BACKOFF_BASE = 0.005
BACKOFF_MAX = 1000.0


# =========================================================================== errors


class InvalidError(ValueError):
    """The API server would refuse the object (HTTP 422); ``errors`` lists field errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class ControllerError(Exception):
    """Metacontroller could not create the controller (e.g. its webhook's Secret is missing)."""


class HookError(Exception):
    """A hook call that Metacontroller counts as failed."""


class TooManyRequestsError(HookError):
    def __init__(self, after_seconds: int) -> None:
        super().__init__(f"Too many request, it will be resync after: {after_seconds}")
        self.after_seconds = after_seconds


class HotLoopError(AssertionError):
    """Work never ran out at a fixed time: the hooks keep changing something."""


# =========================================================================== structural schema


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def apply_schema(value: Any, schema: JSON, path: str = "") -> tuple[Any, list[str]]:
    """Prune, default and validate ``value`` like the API server does with a structural
    schema (CEL rules excepted). Returns the resulting value and the field errors."""
    errors: list[str] = []
    result = _apply(copy.deepcopy(value), schema, path or "<root>", errors)
    return result, errors


def _apply(value: Any, schema: JSON, path: str, errors: list[str]) -> Any:
    if value is None:
        if not schema.get("nullable", False):
            errors.append(f"{path}: Invalid value: null")
        return value
    typ = schema.get("type")
    if typ is not None and not _TYPES[typ](value):
        errors.append(f"{path}: Invalid value: {type(value).__name__}: must be {typ}")
        return value
    if schema.get("x-kubernetes-int-or-string"):
        return value
    if isinstance(value, dict):
        value = _apply_object(value, schema, path, errors)
    elif isinstance(value, list):
        value = _apply_array(value, schema, path, errors)
    else:
        _check_scalar(value, schema, path, errors)
    return value


def _apply_object(value: JSON, schema: JSON, path: str, errors: list[str]) -> JSON:
    props: JSON = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if not props and additional is None and not preserve and path.endswith(".metadata"):
        return value  # ObjectMeta is validated by the API server itself, never pruned
    out: JSON = {}
    for key, item in value.items():
        sub = props.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is None:
            if preserve:
                out[key] = item
            continue  # pruned
        if item is None and not sub.get("nullable", False):
            continue  # null of a non-nullable field: pruned before defaulting
        out[key] = _apply(item, sub, f"{path}.{key}", errors)
    for key, sub in props.items():
        if key not in out and "default" in sub:
            out[key] = _apply(copy.deepcopy(sub["default"]), sub, f"{path}.{key}", errors)
    for key in schema.get("required", []):
        if key not in out:
            errors.append(f"{path}.{key}: Required value")
    return out


def _apply_array(value: list[Any], schema: JSON, path: str, errors: list[str]) -> list[Any]:
    items = schema.get("items", {})
    out = [_apply(item, items, f"{path}[{i}]", errors) for i, item in enumerate(value)]
    if "maxItems" in schema and len(out) > schema["maxItems"]:
        errors.append(f"{path}: Too many: {len(out)}: must have at most {schema['maxItems']} items")
    if "minItems" in schema and len(out) < schema["minItems"]:
        errors.append(f"{path}: Too few: must have at least {schema['minItems']} items")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for i, item in enumerate(out):
            if isinstance(item, dict):
                k = json.dumps([item.get(x) for x in keys])
                if k in seen:
                    errors.append(f"{path}[{i}]: Duplicate value: {k}")
                seen.add(k)
    elif schema.get("x-kubernetes-list-type") == "set" and \
            len({json.dumps(i, sort_keys=True) for i in out}) != len(out):
        errors.append(f"{path}: Duplicate value")
    return out


def _check_scalar(value: Any, schema: JSON, path: str, errors: list[str]) -> None:
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: Unsupported value: {value!r}: supported values: {schema['enum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: Too long: may not be more than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: Invalid value: should be at least {schema['minLength']} long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: Invalid value: {value!r}: should match {schema['pattern']!r}")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            errors.append(f"{path}: Invalid value: {value!r}: must be a date-time")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: Invalid value: {value}: should be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: Invalid value: {value}: should be <= {schema['maximum']}")


# =========================================================================== manifests


@dataclass(frozen=True)
class CRD:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...]
    schema: JSON

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def key(self) -> str:
        """Key of this type in Metacontroller v2 children/related maps."""
        return f"{self.kind}.{self.group}/{self.version}"


def load_crds(directory: Path = CRDS_DIR) -> dict[str, CRD]:
    """The project's CRDs by kind (the storage version's schema)."""
    crds: dict[str, CRD] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            version = next(v for v in spec["versions"] if v.get("storage"))
            crds[spec["names"]["kind"]] = CRD(
                kind=spec["names"]["kind"], group=spec["group"], version=version["name"],
                plural=spec["names"]["plural"], namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(spec["names"].get("shortNames", [])),
                schema=version["schema"]["openAPIV3Schema"])
    return crds


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go ``time.Duration`` string (``10s``, ``1m30s``, ``500ms``) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class Hook:
    name: str           # customize | sync | finalize
    url: str
    version: str
    timeout: float
    strict: bool
    authorization: JSON | None = None  # the webhook's `authorization`, as written


@dataclass(frozen=True)
class Controller:
    name: str
    crd: CRD
    hooks: dict[str, Hook]
    resync_period: float | None
    ignore_status_changes: bool
    manifest: JSON

    @property
    def finalizer(self) -> str:
        return FINALIZER_PREFIX + self.name


def load_controllers(base_url: str, crds: dict[str, CRD], directory: Path = MANIFESTS_DIR,
                     hook_timeout: float | None = None) -> list[Controller]:
    """The CompositeControllers in ``directory``, hook URLs re-pointed at ``base_url``."""
    by_resource = {(c.api_version, c.plural): c for c in crds.values()}
    controllers = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CompositeController":
                continue
            spec = doc["spec"]
            parent = spec["parentResource"]
            crd = by_resource[(parent["apiVersion"], parent["resource"])]
            hooks = {}
            for name, hook in (spec.get("hooks") or {}).items():
                webhook = hook["webhook"]
                version = hook.get("version", "v1")
                if version != "v2":
                    raise NotImplementedError(f"{path.name}: {name} hook is {version}; only v2")
                split = urllib.parse.urlsplit(webhook["url"])
                url = base_url.rstrip("/") + split.path + (f"?{split.query}" if split.query else "")
                timeout = parse_duration(webhook["timeout"]) if "timeout" in webhook \
                    else DEFAULT_HOOK_TIMEOUT
                mode = webhook.get("responseUnMarshallMode")
                hooks[name] = Hook(name, url, version, hook_timeout or timeout,
                                   strict=mode == "strict" if mode else version == "v2",
                                   authorization=webhook.get("authorization"))
                if webhook.get("authorization") and webhook.get("basicAuth"):
                    raise ControllerError(f"{path.name}: {name} hook: authorization and "
                                          "basicAuth are mutually exclusive")
            period = spec.get("resyncPeriodSeconds")
            controllers.append(Controller(
                name=doc["metadata"]["name"], crd=crd, hooks=hooks,
                resync_period=max(float(period), 1.0) if period is not None else None,
                ignore_status_changes=bool(parent.get("ignoreStatusChanges", False)),
                manifest=doc))
    return controllers


def _resolve_authorization(hook: Hook,
                           secrets: Mapping[tuple[str, str], Mapping[str, str]]) -> str | None:
    """The Authorization header of a webhook, as Metacontroller's ResolveAuthorization builds it
    when the controller is created."""
    spec = hook.authorization
    if not spec:
        return None
    kind = str(spec.get("type") or "").strip()
    if kind.lower() == "basic":
        raise ControllerError(f"{hook.name} hook: authorization type {kind!r} is not "
                              "supported; use the basicAuth field instead")
    ref = spec["secretRef"]
    where = f"{ref['namespace']}/{ref['name']}"
    data = secrets.get((ref["namespace"], ref["name"]))
    if data is None:
        raise ControllerError(f"can't resolve endpoint config for {hook.name} hook: can't "
                              f"get authorization secret {where}: not found")
    if ref["key"] not in data:
        raise ControllerError(f"can't resolve endpoint config for {hook.name} hook: "
                              f"authorization secret {where} does not contain key "
                              f"{ref['key']!r}")
    return f"{kind or 'Bearer'} {data[ref['key']].strip()}"


# =========================================================================== strict decoding


def _pairs(pairs: list[tuple[str, Any]]) -> JSON:
    out: JSON = {}
    dupes = []
    for k, v in pairs:
        if k in out:
            dupes.append(k)
        out[k] = v
    if dupes:
        out["\x00duplicates"] = dupes
    return out


def _decode(body: bytes) -> Any:
    return json.loads(body, object_pairs_hook=_pairs)


def _check_fields(obj: JSON, fields: dict[str, Callable[[Any], bool]], where: str,
                  strict_errors: list[str]) -> None:
    """Go ``encoding/json`` into a struct: wrong types are fatal, unknown or duplicate keys are
    strict-mode errors (sigs.k8s.io/json UnmarshalStrict, case-sensitive)."""
    for dup in obj.pop("\x00duplicates", []):
        strict_errors.append(f'duplicate field "{dup}"')
    for key, value in obj.items():
        check = fields.get(key)
        if check is None:
            strict_errors.append(f'unknown field "{where}{key}"')
        elif value is not None and not check(value):
            raise HookError(f"can't unmarshal webhookResponse: json: cannot unmarshal "
                            f"{type(value).__name__} into field {where}{key}")


def _strip_dupes(value: Any, strict_errors: list[str]) -> Any:
    """Free-form maps (status, children) still report duplicate keys in strict mode."""
    if isinstance(value, dict):
        for dup in value.pop("\x00duplicates", []):
            strict_errors.append(f'duplicate field "{dup}"')
        return {k: _strip_dupes(v, strict_errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_dupes(v, strict_errors) for v in value]
    return value


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _is_list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(i is None or check(i) for i in v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for k, x in v.items() if k[0] != "\x00")


_SYNC_FIELDS = {"status": _is_obj, "children": _is_list_of(_is_obj),
                "resyncAfterSeconds": _is_num, "finalized": lambda v: isinstance(v, bool)}
_SELECTOR_FIELDS = {"matchLabels": _is_str_map, "matchExpressions": _is_list_of(_is_obj)}
_EXPRESSION_FIELDS = {"key": _is_str, "operator": _is_str, "values": _is_list_of(_is_str)}
_RULE_FIELDS = {"apiVersion": _is_str, "resource": _is_str, "labelSelector": _is_obj,
                "namespaceSelector": _is_obj, "namespace": _is_str,
                "names": _is_list_of(_is_str)}


def parse_sync_response(body: bytes, strict: bool) -> JSON:
    """A sync/finalize hook answer as Metacontroller decodes it (see module docstring)."""
    errors: list[str] = []
    try:
        raw = _decode(body)
    except ValueError as exc:
        raise HookError(f"can't unmarshal webhookResponse: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HookError(f"can't unmarshal webhookResponse: cannot unmarshal "
                        f"{type(raw).__name__} into CompositeHookResponse")
    _check_fields(raw, _SYNC_FIELDS, "", errors)
    raw = _strip_dupes(raw, errors)
    if strict and errors:
        raise HookError(f"strict validation failed for v2 webhookResponse: {', '.join(errors)}")
    return {k: v for k, v in raw.items() if k in _SYNC_FIELDS}


def parse_customize_response(body: bytes, strict: bool) -> list[JSON]:
    """The ``relatedResources`` rules of a customize answer, decoded like Metacontroller."""
    errors: list[str] = []
    try:
        raw = _decode(body)
    except ValueError as exc:
        raise HookError(f"can't unmarshal webhookResponse: {exc}") from exc
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise HookError("can't unmarshal webhookResponse: not an object")
    _check_fields(raw, {"relatedResources": _is_list_of(_is_obj)}, "", errors)
    rules = []
    for i, rule in enumerate(raw.get("relatedResources") or []):
        if rule is None:
            continue
        _check_fields(rule, _RULE_FIELDS, f"relatedResources[{i}].", errors)
        for sel in ("labelSelector", "namespaceSelector"):
            if isinstance(rule.get(sel), dict):
                _check_fields(rule[sel], _SELECTOR_FIELDS, f"relatedResources[{i}].{sel}.",
                              errors)
                for j, expr in enumerate(rule[sel].get("matchExpressions") or []):
                    if isinstance(expr, dict):
                        _check_fields(expr, _EXPRESSION_FIELDS,
                                      f"relatedResources[{i}].{sel}.matchExpressions[{j}].",
                                      errors)
        rules.append(_strip_dupes({k: v for k, v in rule.items() if k in _RULE_FIELDS}, errors))
    if strict and errors:
        raise HookError(f"strict validation failed for v2 webhookResponse: {', '.join(errors)}")
    return rules


def selector_matches(selector: JSON | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (a missing selector matches everything here, as
    Metacontroller's ``toSelector(nil)`` does)."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


# =========================================================================== clocks


class SimulatedClock:
    """Starts at the real time (so timestamps look real) and jumps when told to."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        self._now = max(self._now, when)

    def advance(self, seconds: float) -> None:
        self._now += seconds


class RealClock:
    def now(self) -> float:
        return time.time()

    def advance_to(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            time.sleep(delay)

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


Clock = SimulatedClock | RealClock


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


@dataclass(frozen=True)
class StatusWrite:
    kind: str
    namespace: str | None
    name: str
    status: JSON
    at: float


ObjKey = tuple[str, str, str]        # kind, namespace ("" when cluster-scoped), name
QueueKey = tuple[str, str, str]      # controller, namespace, name


@dataclass
class _Queue:
    ready: dict[tuple[str, str], int] = field(default_factory=dict)   # item → order; deduplicated
    waiting: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: dict[tuple[str, str], int] = field(default_factory=dict)


class Driver:
    """See the module docstring. ``hooks_base_url`` e.g. ``http://127.0.0.1:5000``."""

    def __init__(self, hooks_base_url: str, *, clock: Clock | None = None,
                 hook_timeout: float | None = None, manifests_dir: Path = MANIFESTS_DIR,
                 crds_dir: Path = CRDS_DIR, session: requests.Session | None = None,
                 secrets: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> None:
        self.clock: Clock = clock or SimulatedClock()
        self.crds = load_crds(crds_dir)
        self.controllers = {c.name: c for c in load_controllers(
            hooks_base_url, self.crds, manifests_dir, hook_timeout)}
        self.secrets = ({k: dict(v) for k, v in secrets.items()} if secrets is not None
                        else self._install_secrets())
        self._auth_headers = {(c.name, h.name): _resolve_authorization(h, self.secrets)
                              for c in self.controllers.values() for h in c.hooks.values()}
        self.events: list[Event] = []
        self.hook_calls: list[HookCall] = []
        self.status_writes: list[StatusWrite] = []
        self._session = session or requests.Session()
        self._session.trust_env = False  # never a proxy for loopback hooks
        self._objects: dict[ObjKey, JSON] = {}
        self._queues = {name: _Queue() for name in self.controllers}
        self._customize_cache: dict[tuple[str, str, int], list[JSON]] = {}
        self._watched: set[str] = set()  # kinds with a related informer
        self._resource_version = 0
        self._sequence = 0
        now = self.clock.now()
        self._next_resync = {c.name: now + c.resync_period
                             for c in self.controllers.values() if c.resync_period}

    def _install_secrets(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every Secret key a webhook names, with a fresh random value."""
        made: dict[tuple[str, str], dict[str, str]] = {}
        for ctl in self.controllers.values():
            for hook in ctl.hooks.values():
                ref = (hook.authorization or {}).get("secretRef")
                if ref:
                    data = made.setdefault((ref["namespace"], ref["name"]), {})
                    data.setdefault(ref["key"], secrets_module.token_hex(16))
        return made

    def secret(self, namespace: str, name: str, key: str) -> str:
        """A value of one of the driver's Secrets (what the hooks must be given too)."""
        return self.secrets[(namespace, name)][key]

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API server side

    def _crd(self, kind: str) -> CRD:
        for crd in self.crds.values():
            if kind in (crd.kind, crd.plural, *crd.short_names) or kind.lower() == crd.kind.lower():
                return crd
        raise KeyError(f"unknown kind {kind!r}")

    def _key(self, crd: CRD, name: str, namespace: str | None) -> ObjKey:
        return (crd.kind, (namespace or "default") if crd.namespaced else "", name)

    def get(self, kind: str, name: str, namespace: str | None = None) -> JSON | None:
        """A copy of the stored object, or None."""
        obj = self._objects.get(self._key(self._crd(kind), name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str) -> list[JSON]:
        crd = self._crd(kind)
        return [copy.deepcopy(o) for k, o in sorted(self._objects.items()) if k[0] == crd.kind]

    def _bump(self, obj: JSON) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)

    def _validate(self, crd: CRD, obj: JSON) -> JSON:
        body = {k: v for k, v in obj.items() if k != "status"}
        schema = {**crd.schema, "properties": {
            k: v for k, v in crd.schema.get("properties", {}).items() if k != "status"}}
        result, errors = apply_schema(body, schema)
        if errors:
            raise InvalidError(errors)
        out: JSON = result
        return out

    def apply(self, obj: JSON) -> JSON:
        """Create or update like ``kubectl apply``: spec, labels and annotations come from
        ``obj``; status and finalizers already stored are kept. Returns the stored object."""
        crd = self._crd(obj.get("kind", ""))
        if obj.get("apiVersion") != crd.api_version:
            raise InvalidError([f"apiVersion: must be {crd.api_version}"])
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace")
        if not (isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
            raise InvalidError([f"metadata.name: Invalid value: {name!r}: a DNS-1123 subdomain"])
        if namespace is not None and not (crd.namespaced and _DNS_LABEL.match(namespace)):
            raise InvalidError([f"metadata.namespace: Invalid value: {namespace!r}"])
        key = self._key(crd, name, namespace)
        clean = self._validate(crd, obj)
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
            _drop_empty(new_meta)
            new = {"apiVersion": crd.api_version, "kind": crd.kind, "metadata": new_meta,
                   "spec": clean.get("spec", {})}
            self._bump(new)
            self._objects[key] = new
            self._notify(crd, key, None, new)
            return copy.deepcopy(new)
        new = copy.deepcopy(old)
        new["metadata"]["labels"] = dict(meta.get("labels") or {})
        new["metadata"]["annotations"] = dict(meta.get("annotations") or {})
        _drop_empty(new["metadata"])
        new["spec"] = clean.get("spec", {})
        if new == old:
            return copy.deepcopy(old)  # no-op update: no event
        if new["spec"] != old["spec"]:
            new["metadata"]["generation"] += 1
        self._bump(new)
        self._objects[key] = new
        self._notify(crd, key, old, new)
        return copy.deepcopy(new)

    def set_status(self, kind: str, name: str, status: JSON,
                   namespace: str | None = None) -> JSON:
        """Write ``.status`` through the status subresource (as another actor would)."""
        crd = self._crd(kind)
        key = self._key(crd, name, namespace)
        self._write_status(crd, key, status)
        return copy.deepcopy(self._objects[key])

    def _write_status(self, crd: CRD, key: ObjKey, status: JSON) -> bool:
        old = self._objects.get(key)
        if old is None:
            raise KeyError(f"{crd.kind} {key[1]}/{key[2]} not found")
        clean, errors = apply_schema(status, crd.schema["properties"]["status"], ".status")
        if errors:
            raise InvalidError(errors)
        if old.get("status") == clean:
            return False
        new = copy.deepcopy(old)
        new["status"] = clean
        self._bump(new)
        self._objects[key] = new
        self.status_writes.append(StatusWrite(crd.kind, key[1] or None, key[2],
                                              copy.deepcopy(clean), self.clock.now()))
        self._notify(crd, key, old, new)
        return True

    def _set_finalizers(self, crd: CRD, key: ObjKey, finalizers: list[str]) -> None:
        old = self._objects[key]
        if old["metadata"].get("finalizers", []) == finalizers:
            return
        new = copy.deepcopy(old)
        new["metadata"]["finalizers"] = finalizers
        _drop_empty(new["metadata"])
        if not finalizers and new["metadata"].get("deletionTimestamp"):
            del self._objects[key]
            self._notify(crd, key, old, None)
            return
        self._bump(new)
        self._objects[key] = new
        self._notify(crd, key, old, new)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """``kubectl delete``: gone at once without finalizers, else ``deletionTimestamp`` is
        set (and ``generation`` bumped) until the last finalizer is removed."""
        crd = self._crd(kind)
        key = self._key(crd, name, namespace)
        old = self._objects.get(key)
        if old is None:
            raise KeyError(f"{crd.kind} {key[1]}/{key[2]} not found")
        if not old["metadata"].get("finalizers"):
            del self._objects[key]
            self._notify(crd, key, old, None)
            return
        if old["metadata"].get("deletionTimestamp"):
            return
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["metadata"]["generation"] += 1
        self._bump(new)
        self._objects[key] = new
        self._notify(crd, key, old, new)

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
            for pkey, parent in list(self._objects.items()):
                if pkey[0] != ctl.crd.kind:
                    continue
                try:
                    rules = self._customize(ctl, parent)
                except HookError:
                    continue
                if any(self._rule_selects(rule, related) for rule in rules):
                    self._enqueue(ctl, pkey[1], pkey[2])

    def _ready(self, queue: _Queue, item: tuple[str, str]) -> None:
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
                auth = self._auth_headers.get((ctl.name, hook.name))
                if auth:
                    headers["Authorization"] = auth
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
                raise TooManyRequestsError(_retry_after(resp.headers.get("Retry-After", ""),
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
            for (kind, ns, name), obj in sorted(self._objects.items()):
                if kind == crd.kind and self._rule_selects(rule, obj):
                    group[f"{ns}/{name}" if ns else name] = copy.deepcopy(obj)
        return related

    # ------------------------------------------------------------------ sync

    def _sync(self, ctl: Controller, namespace: str, name: str) -> None:
        crd = ctl.crd
        key: ObjKey = (crd.kind, namespace, name)
        parent = self._objects.get(key)
        if parent is None:
            return  # deleted: nothing to do
        finalize = ctl.hooks.get("finalize")
        finalizers = list(parent["metadata"].get("finalizers", []))
        if finalize is not None and ctl.finalizer not in finalizers \
                and not parent["metadata"].get("deletionTimestamp"):
            self._set_finalizers(crd, key, [*finalizers, ctl.finalizer])
        elif finalize is None and ctl.finalizer in finalizers:
            self._set_finalizers(crd, key, [f for f in finalizers if f != ctl.finalizer])
        parent = self._objects.get(key)
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
            live = self._objects.get(key)
            if live is not None and ctl.finalizer in live["metadata"].get("finalizers", []):
                self._set_finalizers(crd, key, [f for f in live["metadata"]["finalizers"]
                                                if f != ctl.finalizer])
        manage_error = None
        if response.get("children"):
            manage_error = HookError(f"can't reconcile children for {crd.kind} "
                                     f"{namespace}/{name}: no child resources are declared")
        status = dict(response.get("status") or {})
        status["observedGeneration"] = generation
        if key in self._objects:  # else: deleted meanwhile, NotFound is swallowed
            try:
                self._write_status(crd, key, status)
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
            parent = self._objects.get((ctl.crd.kind, *item))
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
        now = self.clock.now()
        for ctl_name, due in list(self._next_resync.items()):
            if due <= now:
                ctl = self.controllers[ctl_name]
                for kind, ns, name in list(self._objects):
                    if kind == ctl.crd.kind:
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
        """Nothing is due: let the clock reach ``when``. A subclass whose objects change
        behind its back (tests/support/kube.py, a real API server) returns early on news."""
        self.clock.advance_to(when)

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

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0,
                  max_steps: int = 10_000) -> None:
        """Run until ``predicate()`` holds; TimeoutError after ``timeout`` clock seconds."""
        deadline = self.clock.now() + timeout
        for _ in range(max_steps):
            if predicate():
                return
            if not self.step(until=deadline) and self.clock.now() >= deadline:
                break
        if predicate():
            return
        raise TimeoutError(f"condition not met within {timeout}s; last calls: "
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
        crd = self._crd(kind)
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


def _drop_empty(meta: JSON) -> None:
    """The API server omits empty labels, annotations and finalizers (omitempty)."""
    for key in ("labels", "annotations", "finalizers"):
        if key in meta and not meta[key]:
            del meta[key]


def _retry_after(value: str, now: float) -> int:
    """Metacontroller: an HTTP date (RFC 1123) → seconds until then, rounded up; else the
    integer; unparsable → 0."""
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        try:
            return int(value)
        except ValueError:
            return 0
    return int(-(-(when - now) // 1))

