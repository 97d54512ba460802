"""Where an SCD's container is and how to reach its IE API, found the way the hooks do (pure).

The SCD's `status.placement` names the IE, its API URL, the token key and the container (the
hooks record it before the container exists). The DIE of that IE, when it still exists, gives
the API's current URL and TLS setting (a DIE may move its URL); the token is the key
`tokenKey` of Secret `llo-ie-tokens`, the same file the hooks read from LLO_IE_TOKEN_DIR.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from hooks.resources import (
    API_VERSION,
    DIE,
    DIE_RESOURCE,
    Placement,
    SCDObject,
    read_die,
    read_scd,
)

JSON = dict[str, Any]

_GROUP_PATH = f"/apis/{API_VERSION}"
SCD_PATH = _GROUP_PATH + "/namespaces/{namespace}/servicecomponentdockers/{name}"
DIE_PATH = _GROUP_PATH + "/" + DIE_RESOURCE + "/{name}"
SECRET_PATH = "/api/v1/namespaces/{namespace}/secrets/{name}"  # noqa: S105  (a path)
TOKENS_NAMESPACE = "llo-docker"
TOKENS_SECRET = "llo-ie-tokens"  # noqa: S105  (the Secret's name, as in README)


class NotPlacedError(Exception):
    """The SCD names no IE yet: there is no container to read."""


class TokenError(Exception):
    """The Secret does not hold a usable token for the IE."""


@dataclass(frozen=True)
class Target:
    """One container on one IE, and how to reach its IE API."""

    scd: str              # namespace/name, for messages
    ie: str
    url: str
    container: str        # name on the IE API (`<namespace>.<name>`)
    token_key: str
    insecure_skip_tls_verify: bool


def placement_of(scd_json: JSON) -> tuple[SCDObject, Placement]:
    """The SCD and the placement whose container serves (during a migration: the old one,
    which still runs until the new one does)."""
    scd = read_scd(scd_json)
    placement = scd.status.placement
    label = f"{scd.metadata.namespace}/{scd.metadata.name}"
    if placement is None:
        status = scd.status
        why = f" (phase {status.phase.value}" + (f", {status.reason}" if status.reason else "") \
            + (f": {status.message}" if status.message else "") + ")"
        raise NotPlacedError(f"ServiceComponentDocker {label} is not placed on an IE yet{why}; "
                             "`llo-docker describe` shows why")
    return scd, placement


def target(scd: SCDObject, placement: Placement, die_json: JSON | None) -> Target:
    """The container's address: the DIE's current URL when the DIE still is this IE."""
    die: DIE | None = read_die(die_json)
    url, key, insecure = (placement.api_url, placement.token_key or placement.ie,
                          placement.insecure_skip_tls_verify)
    if die is not None and die.spec.id == placement.ie_id:
        url, key, insecure = die.spec.api.url, die.token_key, die.spec.api.insecure_skip_tls_verify
    return Target(scd=f"{scd.metadata.namespace}/{scd.metadata.name}", ie=placement.ie,
                  url=url.rstrip("/"), container=placement.container, token_key=key,
                  insecure_skip_tls_verify=insecure)


def token_from_secret(secret_json: JSON, key: str) -> str:
    """The token under `key` of a Secret (its `data` is base64, as the API serves it)."""
    data = secret_json.get("data") or {}
    name = (secret_json.get("metadata") or {}).get("name", TOKENS_SECRET)
    if not isinstance(data, dict) or key not in data:
        raise TokenError(f"Secret {name} has no key {key!r} (the DIE's spec.api.tokenKey, "
                         "default its name)")
    try:
        token = base64.b64decode(str(data[key]), validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValidationError) as exc:
        raise TokenError(f"Secret {name} key {key!r} is not a valid token") from exc
    if not token:
        raise TokenError(f"Secret {name} key {key!r} is empty")
    return token
