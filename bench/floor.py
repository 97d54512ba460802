"""The FLOOR of a steady sync: the same gunicorn/Flask stack as the hooks (same `LLO_*` serving
settings, so the same workers and threads), receiving the same request bodies and making the
same single upstream call, and nothing else.

Per request: parse the JSON body, `PUT` the parent's spec to the container URL its status names
(one pooled `requests.Session`, the IE's bearer token, the same timeouts), parse the IE's JSON
answer, and answer Metacontroller with the old status. No models, no decisions, no broker.
Any implementation of the hooks on this stack pays at least this much.

Run: `python -m bench.floor` (reads the same LLO_* variables as `python -m hooks`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from flask import Flask, Response, jsonify, request
from requests.adapters import HTTPAdapter

from hooks.__main__ import HookServer
from hooks.settings import Settings


def create_floor_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=settings.ie_pool_hosts,
                          pool_maxsize=settings.ie_pool_per_host, max_retries=0)
    session.mount("http://", adapter)
    tokens: dict[str, str] = {}
    if settings.ie_token_dir is not None:
        for path in settings.ie_token_dir.iterdir():
            tokens[path.name] = path.read_text().strip()
    timeout = (settings.ie_connect_timeout_seconds, settings.ie_read_timeout_seconds)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.post("/scd/sync")
    def sync() -> Response:
        body: dict[str, Any] = request.get_json(force=True)
        parent = body["parent"]
        status = parent["status"]
        placement = status["placement"]
        url = placement["apiUrl"] + "/v1/containers/" + quote(placement["container"], safe="")
        headers = {"Accept": "application/json"}
        token = tokens.get(placement.get("tokenKey") or placement["ie"])
        if token:
            headers["Authorization"] = f"Bearer {token}"
        answer = session.put(url, data=json.dumps(parent["spec"]), timeout=timeout,
                             headers={**headers, "Content-Type": "application/json"})
        answer.json()  # what the hooks would read
        return jsonify({"status": status, "children": [],
                        "resyncAfterSeconds": settings.resync_steady_seconds,
                        "finalized": False})

    return app


def main() -> None:
    HookServer(Settings.from_env(), factory=create_floor_app).run()


if __name__ == "__main__":
    main()
