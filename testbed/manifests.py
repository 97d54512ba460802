"""The project's CRDs and CompositeControllers as the Metacontroller test driver reads them.

Both come from the repository's own ``crds/*.yaml`` and ``metacontroller/*.yaml``; hook URLs
keep their path and get the test's base URL instead of the in-cluster service host.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from testbed.crdschema import StructuralSchema

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
MANIFESTS_DIR = ROOT / "metacontroller"
CRDS_DIR = ROOT / "crds"
# Test data kept beside the repository, not part of it: tests that read it skip without it.
SHARED_DIR = ROOT.parent / "shared"
METACONTROLLER_CRDS = SHARED_DIR / "metacontroller" / "metacontroller-crds-v1.yaml"
METACONTROLLER_CRDS_MISSING = (f"Metacontroller's CRDs not found at {METACONTROLLER_CRDS} (test "
                               "data kept beside the repository, in ../shared)")
FINALIZER_PREFIX = "metacontroller.io/compositecontroller-"
DEFAULT_HOOK_TIMEOUT = 10.0


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

    @cached_property
    def checker(self) -> StructuralSchema:
        """The storage version's schema, applied as the API server does."""
        return StructuralSchema(self.schema)

    def names(self, kind: str) -> bool:
        """``kind`` names this type the way kubectl accepts it (kind, plural, short name)."""
        return kind in (self.kind, self.plural, *self.short_names) \
            or kind.lower() == self.kind.lower()


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


def find_crd(crds: dict[str, CRD], kind: str) -> CRD:
    """The CRD ``kind`` names (kind, plural or short name, as kubectl accepts them)."""
    for crd in crds.values():
        if crd.names(kind):
            return crd
    raise KeyError(f"unknown kind {kind!r}")


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


class ControllerError(Exception):
    """Metacontroller could not create the controller (e.g. its webhook's Secret is missing)."""


Secrets = Mapping[tuple[str, str], Mapping[str, str]]  # (namespace, name) -> data


def resolve_authorization(hook: Hook, secrets: Secrets) -> str | None:
    """The Authorization header of a webhook, as Metacontroller's ResolveAuthorization
    (pkg/hooks/auth.go) builds it once, when the controller is created: ``<type>
    <TrimSpace(value)>``, type default ``Bearer``, ``Basic`` refused; a missing Secret or key
    means no controller."""
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


def secret_refs(controllers: list[Controller]) -> set[tuple[str, str, str]]:
    """(namespace, name, key) of every Secret the controllers' webhooks authenticate with."""
    refs = set()
    for ctl in controllers:
        for hook in ctl.hooks.values():
            ref = (hook.authorization or {}).get("secretRef")
            if ref:
                refs.add((ref["namespace"], ref["name"], ref["key"]))
    return refs


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
                if webhook.get("authorization") and webhook.get("basicAuth"):
                    raise ControllerError(f"{path.name}: {name} hook: authorization and "
                                          "basicAuth are mutually exclusive")
                hooks[name] = Hook(name, url, version, hook_timeout or timeout,
                                   strict=mode == "strict" if mode else version == "v2",
                                   authorization=webhook.get("authorization"))
            period = spec.get("resyncPeriodSeconds")
            controllers.append(Controller(
                name=doc["metadata"]["name"], crd=crd, hooks=hooks,
                resync_period=max(float(period), 1.0) if period is not None else None,
                ignore_status_changes=bool(parent.get("ignoreStatusChanges", False)),
                manifest=doc))
    return controllers
