"""Test helpers for the hooks: loopback HTTP stand-ins for the IE API, and small JSON tools."""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

JSON = dict[str, Any]
TOKEN = "ie-secret-token"


# --------------------------------------------------------------------------- JSON tools


def deep_merge(base: Any, patch: Any) -> Any:
    """`patch` over `base`: objects merge recursively, a null deletes, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = deep_merge(out.get(key), value)
    return out


def assert_subset(expected: Any, actual: Any, path: str = "status") -> None:
    """Every key of `expected` matches in `actual` (recursively); `null` means absent; lists
    must have the same length and match item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            if value is None:
                assert actual.get(key) is None, f"{path}.{key}: expected absent, got " \
                    f"{actual.get(key)!r}"
            else:
                assert key in actual, f"{path}.{key}: missing (have {sorted(actual)})"
                assert_subset(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(expected) == len(actual), f"{path}: expected {len(expected)} items, got " \
            f"{len(actual)}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(e, a, f"{path}[{i}]")
    else:
        assert expected == actual, f"{path}: expected {expected!r}, got {actual!r}"


# --------------------------------------------------------------------------- loopback peers


class FakeServer:
    """A threaded WSGI server on 127.0.0.1 with a replaceable handler; records requests."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.requests.append((request.method, request.path, dict(request.headers),
                                  request.get_data()))
        response: Iterable[bytes] = self.handler(request)(environ, start_response)
        return response

    def calls(self) -> list[str]:
        with self._lock:
            return [f"{m} {p}" for m, p, _, _ in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    error: JSON = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return json_response({"error": error}, status)


@dataclass
class FakeIE:
    """Just enough of the IE Docker API: containers by name, a scripted ensure answer, an
    optional forced error, bearer-token check. State lives here so tests can inspect it."""

    ie_id: str = "urn:ngsi-ld:InfrastructureElement:A"
    hostname: str = "ie-a"
    token: str | None = TOKEN
    ensure_state: JSON = field(default_factory=lambda: {"state": "running"})
    fail: tuple[int, str, str] | None = None  # (status, code, message) for every route
    containers: dict[str, JSON] = field(default_factory=dict)

    def handle(self, request: Request) -> Response:
        if self.token is not None and \
                request.headers.get("Authorization") != f"Bearer {self.token}":
            return error_response(401, "Unauthorized", "missing or wrong bearer token")
        if self.fail is not None:
            return error_response(*self.fail)
        path = request.path
        if path == "/v1/info":
            return json_response({
                "ieId": self.ie_id, "hostname": self.hostname, "dockerVersion": "20.10.24",
                "dockerApiVersion": "1.41", "os": "linux", "architecture": "x86_64",
                "cpus": 2, "memoryBytes": 4 * 2**30, "managedContainers": len(self.containers),
                "allowPrivileged": False})
        if path == "/v1/containers":
            return json_response({"items": list(self.containers.values())})
        name = path.removeprefix("/v1/containers/")
        if request.method == "PUT":
            body = request.get_json()
            status = {"name": name, "image": body["image"], "isJob": body.get("isJob", False),
                      "id": f"id-{name}", **self.ensure_state}
            created = name not in self.containers
            self.containers[name] = status
            return json_response(status, 201 if created else 200)
        if request.method == "GET":
            found = self.containers.get(name)
            return json_response(found) if found else error_response(404, "NotFound", name)
        if request.method == "DELETE":
            existed = self.containers.pop(name, None) is not None
            return json_response({"name": name, "deleted": existed})
        return error_response(405, "InvalidRequest", "method")


@contextmanager
def fake_ie(**kwargs: Any) -> Iterator[tuple[FakeIE, FakeServer]]:
    ie = FakeIE(**kwargs)
    server = FakeServer(ie.handle)
    try:
        yield ie, server
    finally:
        server.close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel completes the handshake) and never
    answers: the client's read timeout is what ends the call."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def refused_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
