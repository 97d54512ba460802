"""A front for the real CRD API server that adds the one core object it cannot serve: Secrets.

Why a double: the CRD API server (apiextensions-apiserver) serves CRDs and custom resources
only; no core/v1 Secret and no RBAC exist here. The CLI reads SCDs and DIEs from the real
server through this front (every path but Secrets is forwarded unchanged, with the admin client
certificate), and Secrets from this double, which answers exactly what kube-apiserver answers:
the Secret object (200, `data` in base64), or a `Status` with reason `Forbidden` (403, the text
of RBAC's denial) or `NotFound` (404). The real `kubectl` talks to it over plain HTTP with a
kubeconfig of its own, so kubectl's error reporting is exercised for real.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.support.crdserver import CrdApiServer

_SECRET_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets/(?P<name>[^/?]+)$")


@dataclass
class SecretRule:
    """What the double answers for one Secret: its data, or that the user may not read it."""

    data: dict[str, str] = field(default_factory=dict)  # plain text; served base64
    forbidden_for: str | None = None  # user name in the 403 text


@dataclass
class CoreFront:
    url: str
    kubeconfig: Path
    secrets: dict[tuple[str, str], SecretRule]
    requests_seen: list[str]


def _status(code: int, reason: str, message: str, name: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": {"name": name, "kind": "secrets"},
            "code": code}


@contextmanager
def core_front(api: CrdApiServer, workdir: Path) -> Iterator[CoreFront]:
    """Serve the front on a free loopback port until the block ends (stopped by us)."""
    secrets: dict[tuple[str, str], SecretRule] = {}
    seen: list[str] = []
    upstream = requests.Session()
    upstream.trust_env = False
    upstream.verify = str(api.workdir / "ca.crt")
    upstream.cert = (str(api.workdir / "admin.crt"), str(api.workdir / "admin.key"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            found = _SECRET_PATH.match(self.path.split("?", 1)[0])
            if found is None:
                answer = upstream.get(api.url + self.path, timeout=(5, 30))
                self._send(answer.status_code, answer.content,
                           answer.headers.get("Content-Type", "application/json"))
                return
            ns, name = found.group("ns"), found.group("name")
            rule = secrets.get((ns, name))
            if rule is None:
                body = _status(404, "NotFound", f'secrets "{name}" not found', name)
            elif rule.forbidden_for is not None:
                body = _status(403, "Forbidden", (
                    f'secrets "{name}" is forbidden: User "{rule.forbidden_for}" cannot get '
                    f'resource "secrets" in API group "" in the namespace "{ns}"'), name)
            else:
                body = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
                        "metadata": {"name": name, "namespace": ns},
                        "data": {k: base64.b64encode(v.encode()).decode()
                                 for k, v in rule.data.items()}}
            self._send(int(body.get("code", 200)), json.dumps(body).encode(), "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="core-front", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig = workdir / "front.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "front",
        "clusters": [{"name": "front", "cluster": {"server": url}}],
        "users": [{"name": "jane", "user": {}}],
        "contexts": [{"name": "front", "context": {"cluster": "front", "user": "jane",
                                                     "namespace": "default"}}]}))
    try:
        yield CoreFront(url=url, kubeconfig=kubeconfig, secrets=secrets, requests_seen=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        upstream.close()
