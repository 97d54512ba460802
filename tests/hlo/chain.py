"""What the aerOS HLO → LLO API chain turns an allocation into: the object that reaches the
Kubernetes API server. Written from reading both public repositories (not copied):

- eclipse-aerios/hlo-deployment-engine, `src/app/localAllocationManager/crdGenarator.py`
  builds a dict and posts it as YAML: name `aeros-` + the component id without `urn:ngsi-ld:`,
  lower-cased, every character outside `[a-z0-9.-]` replaced by `-`, runs of `-` collapsed,
  ends trimmed, cut at 253 (`k8s_name` in `utils/tools.py`; the public HEAD spells the prefix
  `aeriOS-`, a rename that Kubernetes would refuse, see `HEAD_PREFIX`); labels `name` and
  `instance` = the id without the prefix, `:` → `_` (`short_label`), `part-of` = the service id
  so encoded, `created-by` = the LLO id so encoded, `managed-by: aeriOS-project.eu`;
  `selectedIE {id, hostname}`; `image`; `imageRegistry {username, password}` only for a
  private image; `exposePorts` always (a bool); `isJob` always (None when unset); `ports` with
  protocol TCP; `cliArgs`/`envVars` with `value` only when truthy; `privileged: true` when the
  hostname contains "pi"; `networkOverlay {internalIp, dns, privateKey, publicKey, endpoint,
  allowedIps}` with a WireGuard configuration.
- eclipse-aerios/llo-api, `models/serviceComponent.go`, decodes that YAML into Go structs and
  re-encodes them with `encoding/json`: every field is `omitempty`, so false, 0, "" and empty
  lists vanish, while nested structs (`selectedIE`, `imageRegistry`, `networkOverlay`) are
  always written, `{}` when empty; a YAML null leaves the zero value. `metav1.ObjectMeta`
  writes `creationTimestamp: null`. The object is created in namespace `default`
  (`config.Namespace`) through the dynamic client: a POST of that JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

API_VERSION = "llo.aeros-project.eu/v1alpha1"  # the LLO API's GVR group
KIND = "ServiceComponentDocker"
PREFIX = "aeros-"
HEAD_PREFIX = "aeriOS-"  # what the public HEAD of crdGenarator.py writes (upper case)
NAMESPACE = "default"
URN = "urn:ngsi-ld:"


@dataclass(frozen=True)
class WireGuard:
    """The HLO's WgClientConf: what it puts in networkOverlay (keys as `wg genkey` and
    `wg pubkey` print them: 32 bytes in base64)."""

    address: str = "10.8.0.2/32"
    dns: str = "10.8.0.1"
    public_key: str = "c2VydmVyLXB1YmxpYy1rZXktYmFzZTY0LWVuY29kZWQ="
    private_key: str = "Y2xpZW50LXByaXZhdGUta2V5LWJhc2U2NC1lbmNvZGU="
    endpoint: str = "domain.example:51820"
    allowed_ips: str = "10.8.0.0/24"


@dataclass(frozen=True)
class Allocation:
    """One ServiceComponentAllocation of the HLO (the fields crdGenarator reads)."""

    id: str
    service_id: str
    image: str
    ie_id: str
    ie_hostname: str
    llo_id: str = "urn:ngsi-ld:LowLevelOrchestrator:Docker:1"
    ports: tuple[int, ...] = ()
    expose_ports: bool = False
    is_job: bool | None = None
    is_private: bool | None = None
    repo_username: str | None = None
    repo_password: str | None = None
    env_vars: tuple[tuple[str, str | None], ...] = ()
    cli_args: tuple[tuple[str, str | None], ...] = ()
    overlay: WireGuard | None = None
    orchestration_type: str = KIND
    prefix: str = PREFIX


def short_label(urn: str) -> str:
    """The HLO's label encoding of an NGSI-LD id."""
    return urn.replace(URN, "").replace(":", "_")


def k8s_name(raw: str) -> str:
    """The HLO's object name rule (a DNS-1123 subdomain, at most 253 characters)."""
    name = re.sub(r"[^a-z0-9.-]", "-", raw.lower())
    name = re.sub(r"-+", "-", name)
    name = re.sub(r"^[^a-z0-9]+", "", name)
    name = re.sub(r"[^a-z0-9]+$", "", name)
    return name[:253]


def name_of(component_id: str, prefix: str = PREFIX) -> str:
    return prefix + k8s_name(component_id.replace(URN, ""))


def _pairs(items: tuple[tuple[str, str | None], ...]) -> list[JSON]:
    return [{"key": k, "value": v} if v else {"key": k} for k, v in items]


def hlo_cr(alloc: Allocation) -> JSON:
    """The dict the HLO posts (as YAML) to the LLO API."""
    spec: JSON = {"selectedIE": {"id": alloc.ie_id, "hostname": alloc.ie_hostname},
                  "image": alloc.image}
    if alloc.is_private:
        spec["imageRegistry"] = {"username": alloc.repo_username,
                                 "password": alloc.repo_password}
    spec["exposePorts"] = alloc.expose_ports
    spec["isJob"] = alloc.is_job
    spec["ports"] = [{"number": n, "protocol": "TCP"} for n in alloc.ports]
    spec["cliArgs"] = _pairs(alloc.cli_args)
    spec["envVars"] = _pairs(alloc.env_vars)
    if "pi" in alloc.ie_hostname:
        spec["privileged"] = True
    if alloc.overlay is not None:
        wg = alloc.overlay
        spec["networkOverlay"] = {"internalIp": wg.address, "dns": wg.dns,
                                  "privateKey": wg.private_key, "publicKey": wg.public_key,
                                  "endpoint": wg.endpoint, "allowedIps": wg.allowed_ips}
    labels = {
        "app.kubernetes.io/managed-by": "aeriOS-project.eu",
        "app.kubernetes.io/name": short_label(alloc.id),
        "app.kubernetes.io/instance": short_label(alloc.id),
        "app.kubernetes.io/part-of": short_label(alloc.service_id),
        "app.kubernetes.io/created-by": short_label(alloc.llo_id),
    }
    return {"apiVersion": API_VERSION, "kind": alloc.orchestration_type,
            "metadata": {"labels": labels, "name": name_of(alloc.id, alloc.prefix)},
            "spec": spec}


# ------------------------------------------------------------------ the LLO API's Go model

# Field order and kinds of models/serviceComponent.go: (json name, kind) where kind is
# "str", "bool", "int", "list", or a nested struct (its own field list).
_KEY_VALUE = [("key", "str"), ("value", "str")]
_STRUCTS: dict[str, list[tuple[str, Any]]] = {
    "spec": [
        ("selectedIE", [("id", "str"), ("hostname", "str")]),
        ("image", "str"),
        ("imageRegistry", [("url", "str"), ("username", "str"), ("password", "str")]),
        ("isJob", "bool"),
        ("ports", ("list", [("number", "int"), ("protocol", "str")])),
        ("exposePorts", "bool"),
        ("envVars", ("list", _KEY_VALUE)),
        ("cliArgs", ("list", _KEY_VALUE)),
        ("privileged", "bool"),
        ("networkOverlay", [("internalIp", "str"), ("dns", "str"), ("publicKey", "str"),
                            ("privateKey", "str"), ("endpoint", "str"), ("mtu", "int"),
                            ("allowedIps", "str"), ("persistentKeepalive", "int")]),
    ],
}
_ZERO = {"str": "", "bool": False, "int": 0}


def _go_struct(value: Any, fields: list[tuple[str, Any]]) -> JSON:
    """Decode `value` into a Go struct and marshal it back with encoding/json: unknown keys
    dropped, nulls left at the zero value, omitempty on every field, structs always kept."""
    source = value if isinstance(value, dict) else {}
    out: JSON = {}
    for name, kind in fields:
        raw = source.get(name)
        if isinstance(kind, list):  # a nested struct: never omitted
            out[name] = _go_struct(raw, kind)
        elif isinstance(kind, tuple):  # a slice of structs
            items = [_go_struct(item, kind[1]) for item in raw or []]
            if items:
                out[name] = items
        else:
            decoded = _ZERO[kind] if raw is None else raw
            if decoded != _ZERO[kind]:
                out[name] = decoded
    return out


def llo_api_object(cr: JSON) -> JSON:
    """The JSON the LLO API sends to the API server for the HLO's `cr`."""
    meta = cr.get("metadata") or {}
    metadata: JSON = {"name": meta["name"], "creationTimestamp": None}
    for key in ("namespace", "labels", "annotations"):
        if meta.get(key):
            metadata[key] = meta[key]
    return {"apiVersion": cr["apiVersion"], "kind": cr["kind"], "metadata": metadata,
            "spec": _go_struct(cr.get("spec"), _STRUCTS["spec"])}


@dataclass
class Shape:
    """One kind of allocation the HLO produces, and what must become of it."""

    name: str
    alloc: Allocation
    job: bool = False
    extra_entities: tuple[str, ...] = field(default=())  # other entities in the broker

    @property
    def object(self) -> JSON:
        return llo_api_object(hlo_cr(self.alloc))

    @property
    def scd_name(self) -> str:
        return name_of(self.alloc.id, self.alloc.prefix)
