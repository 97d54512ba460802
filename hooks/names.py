"""The names an SCD gets on its IE: the container name and the DNS alias on the service network.

A Kubernetes object name is a DNS-1123 subdomain: up to 253 characters, dots allowed. The aerOS
HLO makes SCD names from NGSI-LD ids (`aeros-` + the id, lower-cased), so they are often longer
than 63 characters and carry dots when an id does. Docker and DNS are stricter:

- the IE API takes container names of at most 200 characters (`CONTAINER_NAME_PATTERN`; the
  IE's own prefix comes on top);
- a DNS name is dot-separated labels of at most 63 characters each, 253 in all.

Both names are derived here, deterministically and without I/O (docs/architecture.md "Names on
the IE"). A name that fits is used as it is, so every SCD that was valid before keeps exactly
the names it had. One that does not fit keeps a readable head and ends with a short hash of the
SCD's namespace and name:

- container `<namespace>.<name>`, or `<first characters>_<10 hex>` when longer than 200. `_`
  never occurs in a Kubernetes name or namespace, so a cut name can never equal an uncut one;
  two cut names are equal only with the same first 189 characters and the same 40-bit hash.
- alias: the SCD name itself when every label is at most 63 characters (it then resolves, dots
  and all, on Docker's embedded DNS), so a component reaches its peer by the CR name the HLO
  gave it. A label longer than 63 cannot be asked for in DNS at all; it is replaced by its
  first 54 characters, `-` and 8 hex of the hash. Peers must then use `status.names.alias`.
"""

from __future__ import annotations

import hashlib

from ieapi.contract import CONTAINER_NAME_MAX_LENGTH

DNS_LABEL_MAX = 63
DNS_NAME_MAX = 253
_CONTAINER_HASH = 10  # hex digits after "_" in a cut container name
_ALIAS_HASH = 8       # hex digits after "-" in a cut DNS label


def _digest(namespace: str, name: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()


def container_key(namespace: str, name: str) -> str:
    """The container name the hooks send to the IE (the IE adds its prefix): `<namespace>.<name>`
    (a namespace has no dot, so the first dot splits it), cut with a hash beyond 200."""
    full = f"{namespace}.{name}"
    if len(full) <= CONTAINER_NAME_MAX_LENGTH:
        return full
    suffix = "_" + _digest(namespace, name)[:_CONTAINER_HASH]
    return full[:CONTAINER_NAME_MAX_LENGTH - len(suffix)] + suffix


def alias_fits(name: str) -> bool:
    """True when `name` can be asked for in DNS as it is: labels of 1..63, 253 in all."""
    return len(name) <= DNS_NAME_MAX and all(
        0 < len(label) <= DNS_LABEL_MAX for label in name.split("."))


def dns_alias(namespace: str, name: str) -> str:
    """The DNS name of the SCD on its service network: the SCD name whenever DNS can carry it,
    else the same labels with each overlong one cut to a readable head and a hash."""
    if alias_fits(name):
        return name
    tag = _digest(namespace, name)[:_ALIAS_HASH]
    head = DNS_LABEL_MAX - _ALIAS_HASH - 1
    labels = [label if len(label) <= DNS_LABEL_MAX else f"{label[:head].rstrip('-')}-{tag}"
              for label in name.split(".")]
    return ".".join(labels)
