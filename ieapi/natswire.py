"""The IE contract on NATS: subjects and CloudEvents, shared by the agent and the hooks.

Subjects (one request-reply subject per operation, scoped to one IE):

    <prefix>.<ie>.<operation>        e.g. llo.ie.edge-box-1.ensure

`<prefix>` defaults to `llo.ie`; `<ie>` is the DIE's `metadata.name` with every `.` written as
`_` (a DIE name is a DNS subdomain: `[a-z0-9.-]`, never `_`, so the mapping is one to one and
the token holds no NATS separator); `<operation>` is `info`, `list`, `ensure`, `get` or `delete`.
The container name is not in the subject: it is the CloudEvents `subject` attribute.

Messages are CloudEvents 1.0 in the NATS protocol binding's binary mode: the attributes are
NATS headers named `ce-<attribute>`, the data is the message payload with `content-type`
`application/json`, and that JSON is exactly the contract's model (the HTTP body of the same
operation). Requests have type `eu.aeros-project.llo.ie.<operation>.request`; answers
`eu.aeros-project.llo.ie.<operation>.response` with data the answer model, or
`eu.aeros-project.llo.ie.error` with an `ErrorBody`. Every answer carries the extension
attribute `statuscode`: the HTTP status the same answer has over HTTP, so both transports are
classified by one rule. No credential ever goes into a subject or a header: the NATS server
authenticates both ends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

DEFAULT_SUBJECT_PREFIX = "llo.ie"
SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
TYPE_PREFIX = "eu.aeros-project.llo.ie"
ERROR_TYPE = f"{TYPE_PREFIX}.error"
HOOKS_SOURCE = "/llo-docker/hooks"
CE = "ce-"
CONTENT_TYPE = "content-type"
STATUS_ATTRIBUTE = "statuscode"
NATS_SCHEMES = ("nats", "tls")
# A subject prefix: dot-separated tokens without wildcards or whitespace.
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class Operation(StrEnum):
    """Every operation of the IE contract; the value is its token on the NATS subject."""

    INFO = "info"
    LIST = "list"
    ENSURE = "ensure"
    GET = "get"
    DELETE = "delete"

    @property
    def takes_name(self) -> bool:
        return self in (Operation.ENSURE, Operation.GET, Operation.DELETE)


def is_nats_url(url: str) -> bool:
    """True for `nats://` and `tls://` URLs: the DIE is reached over NATS."""
    return url.split("://", 1)[0].lower() in NATS_SCHEMES


def is_valid_prefix(prefix: str) -> bool:
    return bool(_PREFIX.match(prefix))


def ie_token(die_name: str) -> str:
    """The subject token of an IE: its DIE name with `.` → `_` (one to one for DNS names)."""
    return die_name.replace(".", "_")


def ie_subjects(prefix: str, die_name: str) -> str:
    """The wildcard that covers every operation of one IE (what its agent subscribes to and
    what its NATS permissions allow)."""
    return f"{prefix}.{ie_token(die_name)}.*"


def subject(prefix: str, die_name: str, operation: Operation) -> str:
    return f"{prefix}.{ie_token(die_name)}.{operation.value}"


def operation_of(subject_: str) -> Operation | None:
    """The operation named by the subject's last token, or None when it names none."""
    try:
        return Operation(subject_.rsplit(".", 1)[-1])
    except ValueError:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_headers(operation: Operation, name: str | None, *,
                    source: str = HOOKS_SOURCE) -> dict[str, str]:
    """The CloudEvents attributes of one request."""
    headers = {
        f"{CE}specversion": SPECVERSION,
        f"{CE}id": uuid.uuid4().hex,
        f"{CE}source": source,
        f"{CE}type": f"{TYPE_PREFIX}.{operation.value}.request",
        f"{CE}time": _now(),
        CONTENT_TYPE: JSON_CONTENT_TYPE,
    }
    if name is not None:
        headers[f"{CE}subject"] = name
    return headers


def reply_headers(operation: Operation | None, status: int, *, source: str,
                  name: str | None = None) -> dict[str, str]:
    """The CloudEvents attributes of one answer (`ERROR_TYPE` for any status >= 400)."""
    event_type = ERROR_TYPE if status >= 400 or operation is None \
        else f"{TYPE_PREFIX}.{operation.value}.response"
    headers = {
        f"{CE}specversion": SPECVERSION,
        f"{CE}id": uuid.uuid4().hex,
        f"{CE}source": source,
        f"{CE}type": event_type,
        f"{CE}time": _now(),
        f"{CE}{STATUS_ATTRIBUTE}": str(status),
        CONTENT_TYPE: JSON_CONTENT_TYPE,
    }
    if name is not None:
        headers[f"{CE}subject"] = name
    return headers


def agent_source(die_name: str) -> str:
    return f"/llo-docker/ie/{ie_token(die_name)}"


@dataclass(frozen=True)
class Answer:
    """An IE's answer whatever the transport: status code, reason phrase, JSON body."""

    status: int
    content: bytes
    reason: str = ""


def answer_of(headers: Mapping[str, str] | None, data: bytes) -> Answer | None:
    """The answer carried by a reply message, or None when it is not one of ours (no
    CloudEvents specversion or no numeric status attribute)."""
    headers = headers or {}
    if headers.get(f"{CE}specversion") != SPECVERSION:
        return None
    raw = headers.get(f"{CE}{STATUS_ATTRIBUTE}", "")
    if not raw.isdigit():
        return None
    return Answer(status=int(raw), content=data)
