"""An Orion-LD test double: a real HTTP server on loopback that answers like Orion-LD does.

No NGSI-LD broker can be installed here (docs/design.md §2), so tests talk to this double instead.
It reproduces the behaviour listed in docs/design.md §2, as observed in Orion-LD's own functional
tests (FIWARE/context.Orion-LD, test/functionalTest/cases/0000_ngsild, run with -experimental
as aerOS does), response bodies included:

- ``GET /ngsi-ld/v1/entities/{id}``: 200 ``application/json`` with a ``Link`` header naming the
  core context (or ``application/ld+json`` with ``@context`` in the body when the client
  accepts only that); missing entity: 404 ``application/json`` ResourceNotFound
  "Entity Not Found" (ngsild_new_* cases).
- ``PATCH /ngsi-ld/v1/entities/{id}/attrs``: every attribute exists → 204 without body; some
  missing → the existing ones are updated and the answer is 207
  ``{"notUpdated":[{"attributes":[...],"statusCode":404,"title":"Attribute Not Found"}],
  "updated":[...]}`` (ngsild_new_patch_entity_attrs.test); only missing ones → 404
  ``{"attributes":[...],"title":"Attribute Not Found"}`` (ngsild_new_issue_0302.test);
  entity missing → 404 ResourceNotFound "Entity does not exist" (same test).
- ``POST /ngsi-ld/v1/entities/{id}/attrs``: append, creating or overwriting → 204
  (ngsild_new_add_attr.test, ngsild_new_attribute_overwrite.test); entity missing → 404.
- ``PATCH /ngsi-ld/v1/entities/{id}``: merge-patch (experimental mode) → 204; entity missing →
  404.
- ``POST /ngsi-ld/v1/entities``: 201, no body, ``Location: /ngsi-ld/v1/entities/{id}``;
  duplicate → 409 AlreadyExists "Entity already exists" (ngsild_entity_double_creation.test).
- ``DELETE /ngsi-ld/v1/entities/{id}``: 204, or 404 when missing.
- ``GET /ngsi-ld/v1/entities?type=T&idPattern=R``: 200 ``application/json``, a JSON array of
  the matching entities (``[]`` when none) with the ``Link`` header; ``idPattern`` is a regular
  expression searched anywhere in the id (Orion-LD hands it to MongoDB's ``$regex``, so anchor
  it for a whole-id match); ``limit`` (default 20, at most 1000); ``count=true`` adds the
  ``NGSILD-Results-Count`` header. Without type, id, idPattern, attrs, q, geo-query or local
  the query is refused with 400 "Too broad query" (Orion-LD PR #1192); an invalid pattern is 400.
- Content-Type (ngsild_content_type_and_context.test): ``application/json`` (a ``Link`` header
  is optional) or ``application/ld+json`` with ``@context`` in the body; ``application/json``
  with ``@context`` in the body → 400; ``application/ld+json`` without it, or together with a
  ``Link`` header → 400; any other type → 415. A body-carrying request without a Content-Type
  is treated as "any other type" (not covered by Orion-LD's tests; a client must send one).
- Unknown headers (aerOS sends ``aeriOS: true``) are ignored; there is no multi-tenancy.

Beyond Orion-LD itself:

- ``token=...`` makes the double check ``Authorization: Bearer <token>`` like the gateway in
  front of Orion-LD in aerOS; a missing or wrong token gets 401 before Orion-LD's rules apply.
- ``set_fault("error")`` answers every request with 500 (or ``status=``) and an
  InternalError body; ``set_fault("hang")`` accepts requests and never answers (until the
  fault is cleared or the double closes, then the connection is dropped);
  ``set_fault("down")`` closes the listening socket and every open connection (connection
  refused) until ``set_fault(None)`` listens again on the same port. ``times=N`` limits a
  fault to the next N requests (not for "down").
- Every accepted write of ``serviceComponentStatus`` is recorded, in order, per entity:
  ``status_history(id)`` (repeated values included, so tests can see redundant updates).

Attribute names are kept as sent (short names, no JSON-LD expansion): aerOS uses the core
context only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
LINK_HEADER = (
    f'<{CORE_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
)
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
STATUS_ATTR = "serviceComponentStatus"
STATUS_PREFIX = "urn:ngsi-ld:ServiceComponentStatus:"
ENTITIES = "/ngsi-ld/v1/entities"
MAX_LIMIT = 1000
# Query parameters that also make GET /entities specific enough (this double filters by type
# and idPattern only; a query with just these others answers every entity, unfiltered).
_OTHER_FILTERS = frozenset({"id", "attrs", "q", "geoQ", "georel", "local"})

Fault = Literal["error", "hang", "down"]
JSON = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """One request as the double received it (for assertions)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"


def _error(status: int, kind: str, title: str, detail: str) -> _Answer:
    return _Answer(status, {"detail": detail, "title": title, "type": ERRORS + kind})


def _normalize(value: Any) -> JSON:
    """An attribute in normalized form. Orion-LD also accepts the concise forms: a bare value is
    a Property, an object with ``object`` and no ``type`` is a Relationship."""
    if isinstance(value, dict) and "type" in value:
        return dict(value)
    if isinstance(value, dict) and "object" in value:
        return {"type": "Relationship", **value}
    if isinstance(value, dict) and "value" in value:
        return {"type": "Property", **value}
    return {"type": "Property", "value": value}


def _attributes(body: JSON) -> dict[str, JSON]:
    return {k: _normalize(v) for k, v in body.items() if k not in ("@context", "id", "type")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], double: OrionDouble) -> None:
        self.double = double
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Orion-LD (clients pool connections)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.double._dispatch(self.command, self.path, headers, body)
        if answer is None:  # hang released or fault: drop the connection without answering
            self.close_connection = True
            return
        payload = b""
        if answer.body is not None:
            payload = json.dumps(answer.body, indent=None, separators=(",", ":")).encode()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        if answer.status != HTTPStatus.NO_CONTENT:
            if answer.body is not None and answer.content_type:
                self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle  # noqa: N815


class OrionDouble:
    """Orion-LD on ``127.0.0.1:<free port>``. Use as a context manager::

        with OrionDouble() as orion:
            orion.create_entity("urn:ngsi-ld:Service:1:Component:1", "ServiceComponent")
            ...  # point the hooks at orion.url
            assert orion.status_history("urn:ngsi-ld:Service:1:Component:1") == ["Running"]
    """

    def __init__(self, *, token: str | None = None, port: int = 0) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._entities: dict[str, JSON] = {}
        self._history: dict[str, list[str]] = {}
        self._requests: list[Request] = []
        self._fault: Fault | None = None
        self._fault_status = 500
        self._fault_times: int | None = None
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = port
        self._host = "127.0.0.1"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OrionDouble:
        self._listen()
        return self

    def close(self) -> None:
        self._release.set()
        self._stop_listening()

    def __enter__(self) -> OrionDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Base URL of the broker, e.g. ``http://127.0.0.1:40123`` (NGSI-LD paths below it)."""
        return f"http://{self._host}:{self._port}"

    def _listen(self) -> None:
        server = _Server((self._host, self._port), self)
        self._port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"orion-double:{self._port}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def _stop_listening(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    # ------------------------------------------------------------------ faults

    def set_fault(self, fault: Fault | None, *, status: int = 500,
                  times: int | None = None) -> None:
        """Inject a fault (see module docstring); ``None`` restores normal service."""
        if fault == "down" and times is not None:
            raise ValueError("'down' lasts until cleared")
        with self._lock:
            previous = self._fault
            self._fault, self._fault_status, self._fault_times = fault, status, times
            if fault != "hang":
                self._release.set()  # let hanging requests go (their connections drop)
            else:
                self._release.clear()
        if fault == "down" and self._server is not None:
            self._stop_listening()
        elif previous == "down" and fault != "down" and self._server is None:
            self._listen()

    def clear_fault(self) -> None:
        self.set_fault(None)

    # ------------------------------------------------------------------ state, for tests

    def create_entity(self, entity_id: str, entity_type: str, attrs: JSON | None = None) -> None:
        """Seed an entity directly (no HTTP). ``attrs`` may use concise forms."""
        with self._lock:
            self._entities[entity_id] = {"id": entity_id, "type": entity_type}
            self._write_attrs(entity_id, _attributes(attrs or {}))

    def delete_entity(self, entity_id: str) -> None:
        with self._lock:
            self._entities.pop(entity_id, None)

    def entity(self, entity_id: str) -> JSON | None:
        """The entity in normalized form, or None."""
        with self._lock:
            found = self._entities.get(entity_id)
            return copy.deepcopy(found) if found is not None else None

    def status_history(self, entity_id: str, *, raw: bool = False) -> list[str]:
        """Every accepted write of ``serviceComponentStatus`` on the entity, oldest first.
        Values are the part after ``urn:ngsi-ld:ServiceComponentStatus:`` (``raw=True``: the
        relationship object as written)."""
        with self._lock:
            history = list(self._history.get(entity_id, []))
        if raw:
            return history
        return [h.removeprefix(STATUS_PREFIX) for h in history]

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def iter_requests(self, method: str | None = None) -> Iterator[Request]:
        return (r for r in self.requests if method is None or r.method == method)

    # ------------------------------------------------------------------ request handling

    def _write_attrs(self, entity_id: str, attrs: dict[str, JSON]) -> None:
        entity = self._entities[entity_id]
        for name, attr in attrs.items():
            entity[name] = attr
            if name == STATUS_ATTR:
                value = attr.get("object", attr.get("value"))
                self._history.setdefault(entity_id, []).append(str(value))

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str],
                  body: bytes) -> _Answer | None:
        with self._lock:
            fault, status = self._fault, self._fault_status
            if fault is not None and self._fault_times is not None:
                self._fault_times -= 1
                if self._fault_times <= 0:
                    self._fault, self._fault_times = None, None
        if fault == "hang":
            self._release.wait()
            answer = None
        elif fault == "error":
            answer = _error(status, "InternalError", "Internal Error", "injected fault")
        elif fault == "down":  # a request that slipped in while going down
            answer = None
        else:
            with self._lock:
                answer = self._serve(method, raw_path, headers, body)
        with self._lock:
            self._requests.append(Request(method, raw_path, headers, body,
                                          answer.status if answer else None))
        return answer

    def _serve(self, method: str, raw_path: str, headers: dict[str, str],
               body: bytes) -> _Answer:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return _Answer(401, {"error": "Unauthorized", "message": "missing or invalid token"})
        path = urllib.parse.urlsplit(raw_path).path
        if path != ENTITIES and not path.startswith(ENTITIES + "/"):
            return _error(404, "ResourceNotFound", "Service Not Found", path)
        rest = path[len(ENTITIES):].lstrip("/")
        parts = [urllib.parse.unquote(p) for p in rest.split("/")] if rest else []

        parsed: JSON | None = None
        if method in ("POST", "PATCH", "PUT"):
            parsed_or_error = self._parse_body(headers, body)
            if isinstance(parsed_or_error, _Answer):
                return parsed_or_error
            parsed = parsed_or_error

        if not parts:
            if method == "POST" and parsed is not None:
                return self._create(parsed)
            if method == "GET":
                return self._query(urllib.parse.parse_qs(urllib.parse.urlsplit(raw_path).query))
            return _error(405, "BadRequestData", "Method not allowed", f"{method} {path}")
        entity_id = parts[0]
        if ":" not in entity_id:
            return _error(400, "BadRequestData", "Invalid Entity ID", f"Not a URI: {entity_id}")
        if len(parts) == 1:
            if method == "GET":
                return self._get(entity_id, headers)
            if method == "DELETE":
                return self._delete(entity_id)
            if method == "PATCH" and parsed is not None:
                return self._merge(entity_id, parsed)
        elif len(parts) == 2 and parts[1] == "attrs" and parsed is not None:
            if method == "PATCH":
                return self._update_attrs(entity_id, parsed)
            if method == "POST":
                return self._append_attrs(entity_id, parsed)
        return _error(405, "BadRequestData", "Method not allowed", f"{method} {path}")

    @staticmethod
    def _parse_body(headers: dict[str, str], body: bytes) -> JSON | _Answer:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/ld+json"):
            return _error(415, "BadRequestData", "unsupported format of payload",
                          "only application/json and application/ld+json are supported")
        try:
            parsed = json.loads(body or b"null")
        except ValueError as exc:
            return _error(400, "InvalidRequest", "JSON Parse Error", str(exc))
        if not isinstance(parsed, dict):
            return _error(400, "BadRequestData", "Invalid payload body",
                          "the payload body must be a JSON object")
        if content_type == "application/json" and "@context" in parsed:
            return _error(
                400, "BadRequestData",
                "Mismatch between /Content-Type/ and contents of the request payload body",
                "Content-Type is application/json, yet a '@context' item was present in the "
                "payload body")
        if content_type == "application/ld+json":
            if "link" in headers:
                return _error(
                    400, "BadRequestData",
                    "invalid combination of HTTP headers Content-Type and Link",
                    "Content-Type is 'application/ld+json' AND Link header is present - not "
                    "allowed")
            if "@context" not in parsed:
                return _error(
                    400, "BadRequestData", "@context missing in JSON payload",
                    "For application/ld+json, the @context must be present in the JSON payload")
        return parsed

    def _not_found(self, entity_id: str, title: str = "Entity Not Found") -> _Answer:
        return _error(404, "ResourceNotFound", title, entity_id)

    def _create(self, body: JSON) -> _Answer:
        entity_id, entity_type = body.get("id"), body.get("type")
        if not isinstance(entity_id, str) or ":" not in entity_id:
            return _error(400, "BadRequestData", "Invalid Entity ID", str(entity_id))
        if not isinstance(entity_type, str) or not entity_type:
            return _error(400, "BadRequestData", "Invalid Entity Type", str(entity_type))
        if entity_id in self._entities:
            return _error(409, "AlreadyExists", "Entity already exists", entity_id)
        self._entities[entity_id] = {"id": entity_id, "type": entity_type}
        self._write_attrs(entity_id, _attributes(body))
        return _Answer(201, headers={"Location": f"{ENTITIES}/{entity_id}"}, content_type=None)

    def _get(self, entity_id: str, headers: dict[str, str]) -> _Answer:
        entity = self._entities.get(entity_id)
        if entity is None:
            return self._not_found(entity_id)
        accept = headers.get("accept", "")
        if "application/ld+json" in accept and "application/json" not in accept:
            return _Answer(200, {**copy.deepcopy(entity), "@context": CORE_CONTEXT},
                           content_type="application/ld+json")
        return _Answer(200, copy.deepcopy(entity), headers={"Link": LINK_HEADER})

    def _query(self, query: dict[str, list[str]]) -> _Answer:
        """GET /entities: filter by `type` (comma-separated list) and `idPattern` (a regular
        expression searched in the id, unanchored like MongoDB's $regex), at most `limit`
        (default 20, at most 1000) in creation order; `count=true` adds NGSILD-Results-Count.
        Without any filter the query is refused as too broad."""
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        types, pattern = one("type"), one("idPattern")
        if types is None and pattern is None and not (set(query) & _OTHER_FILTERS):
            return _error(400, "BadRequestData", "Too broad query",
                          "Need at least one of: type, id, idPattern, attrs, q, geoQ, local")
        try:
            limit = int(one("limit") or 20)
        except ValueError:
            return _error(400, "BadRequestData", "Invalid value for URI parameter /limit/",
                          str(one("limit")))
        if not 0 <= limit <= MAX_LIMIT:
            return _error(400, "BadRequestData", "Invalid value for URI parameter /limit/",
                          f"must be 0..{MAX_LIMIT}")
        try:
            regex = re.compile(pattern) if pattern is not None else None
        except re.error as exc:
            return _error(400, "BadRequestData", "Invalid regular expression for idPattern",
                          str(exc))
        wanted = set(types.split(",")) if types is not None else None
        found = [copy.deepcopy(e) for e in self._entities.values()
                 if (wanted is None or e["type"] in wanted)
                 and (regex is None or regex.search(e["id"]))]
        headers = {"Link": LINK_HEADER}
        if one("count") == "true":
            headers["NGSILD-Results-Count"] = str(len(found))
        return _Answer(200, found[:limit], headers=headers)

    def _delete(self, entity_id: str) -> _Answer:
        if self._entities.pop(entity_id, None) is None:
            return self._not_found(entity_id)
        return _Answer(204, content_type=None)

    def _update_attrs(self, entity_id: str, body: JSON) -> _Answer:
        entity = self._entities.get(entity_id)
        if entity is None:
            return self._not_found(entity_id, "Entity does not exist")
        attrs = _attributes(body)
        updated = {k: v for k, v in attrs.items() if k in entity}
        missing = [k for k in attrs if k not in entity]
        self._write_attrs(entity_id, updated)
        if not missing:
            return _Answer(204, content_type=None)
        if not updated:
            return _Answer(404, {"attributes": missing, "title": "Attribute Not Found"},
                           headers={"Link": LINK_HEADER})
        return _Answer(
            207,
            {"notUpdated": [{"attributes": missing, "statusCode": 404,
                             "title": "Attribute Not Found"}],
             "updated": list(updated)},
            headers={"Link": LINK_HEADER})

    def _append_attrs(self, entity_id: str, body: JSON) -> _Answer:
        if entity_id not in self._entities:
            return self._not_found(entity_id, "Entity does not exist")
        self._write_attrs(entity_id, _attributes(body))
        return _Answer(204, content_type=None)

    def _merge(self, entity_id: str, body: JSON) -> _Answer:
        entity = self._entities.get(entity_id)
        if entity is None:
            return self._not_found(entity_id, "Entity does not exist")
        merged: dict[str, JSON] = {}
        for name, attr in _attributes(body).items():
            if attr.get("value") == "urn:ngsi-ld:null":
                entity.pop(name, None)
                continue
            old = entity.get(name)
            merged[name] = {**old, **attr} if isinstance(old, dict) else attr
        self._write_attrs(entity_id, merged)
        return _Answer(204, content_type=None)
