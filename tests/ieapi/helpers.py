"""Helpers shared by the IE API tests: a token-carrying client, polling, typical specs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from flask.testing import FlaskClient

from ieapi.api import Runtime
from ieapi.engine import Engine
from ieapi.settings import Settings

TOKEN = "test-token-0123456789"

SettingsFactory = Callable[..., Settings]


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class IEApiClient:
    """The IE API under test, through Flask's test client, with the bearer token set."""

    flask: FlaskClient
    settings: Settings
    token: str

    @property
    def engine(self) -> Engine:
        runtime: Runtime = self.flask.application.extensions["ieapi"]
        return runtime.engine

    def _call(self, method: str, path: str, **kwargs: Any) -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        response = self.flask.open(path, method=method, headers=headers, **kwargs)
        return Answer(response.status_code, response.get_json(silent=True))

    def put(self, name: str, spec: dict[str, Any]) -> Answer:
        return self._call("PUT", f"/v1/containers/{name}", json=spec)

    def get(self, name: str) -> Answer:
        return self._call("GET", f"/v1/containers/{name}")

    def delete(self, name: str) -> Answer:
        return self._call("DELETE", f"/v1/containers/{name}")

    def list(self) -> Answer:
        return self._call("GET", "/v1/containers")

    def info(self) -> Answer:
        return self._call("GET", "/v1/info")

    def container_name(self, name: str) -> str:
        return f"{self.settings.container_prefix}-{name}"


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll `check` until it returns a truthy value (state that Docker reaches on its own);
    re-raises the last assertion when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (AssertionError, requests.RequestException):
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not reached within {timeout}s: {result!r}")
        time.sleep(interval)


def httpd_spec(image: str, port: int, **extra: Any) -> dict[str, Any]:
    """busybox httpd serving /www; a port is published on the IE with its own number, so
    the container listens on the (free) host port itself."""
    spec: dict[str, Any] = {
        "image": image,
        "cliArgs": [{"key": "httpd"}, {"key": "-f"}, {"key": "-p", "value": str(port)},
                    {"key": "-h", "value": "/www"}],
        "ports": [{"number": port, "protocol": "TCP"}],
        "exposePorts": True,
    }
    spec.update(extra)
    return spec


def sleeper_spec(image: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "cliArgs": [{"key": "sleep"}, {"key": "600"}]}
    spec.update(extra)
    return spec


def job_spec(image: str, exit_code: int, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": image, "isJob": True,
        "cliArgs": [{"key": "sh"}, {"key": "-c", "value": f"exit {exit_code}"}]}
    spec.update(extra)
    return spec
