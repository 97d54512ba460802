"""HTTP routes of the IE Docker API: auth, JSON in/out, errors. The work is in `service`.

Every answer that is not a 2xx is a contract `ErrorBody` naming the offending field when
there is one; foreseeable failures never become a blanket 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ieapi import openapi
from ieapi.auth import TokenSource
from ieapi.contract import API_VERSION, ErrorBody, ErrorCode, dump
from ieapi.engine import Engine
from ieapi.errors import DockerUnavailableError, IEApiError, UnauthorizedError
from ieapi.service import Reply, Service, check_name
from ieapi.settings import Settings

log = logging.getLogger(__name__)

blueprint = Blueprint("ieapi", __name__)
EXTENSION = "ieapi"
_PUBLIC_ENDPOINTS = {"ieapi.healthz", "ieapi.openapi_document"}
_RETRY_AFTER_SECONDS = "5"


@dataclass(frozen=True)
class Runtime:
    """What the routes need, stored on the app (one per app, shared by its threads)."""

    settings: Settings
    engine: Engine
    tokens: TokenSource

    @property
    def service(self) -> Service:
        """The transport-neutral operations (shared with the NATS agent)."""
        return Service(self.engine)


def runtime() -> Runtime:
    value: Runtime = current_app.extensions[EXTENSION]
    return value


def _reply(reply: Reply) -> tuple[Response, int]:
    return jsonify(dump(reply.body)), reply.status


# --------------------------------------------------------------------------- auth


@blueprint.before_request
def _authenticate() -> None:
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return
    tokens = runtime().tokens
    if tokens.enabled and not tokens.accepts(request.headers.get("Authorization")):
        raise UnauthorizedError("missing or invalid bearer token")


# --------------------------------------------------------------------------- routes


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Liveness only: answers without Docker, so a daemon restart does not kill the API."""
    return jsonify({"status": "ok"}), 200


@blueprint.get("/openapi.json")
def openapi_document() -> tuple[Response, int]:
    return jsonify(openapi.document()), 200


@blueprint.get(f"/{API_VERSION}/info")
def info() -> tuple[Response, int]:
    return _reply(runtime().service.info())


@blueprint.get(f"/{API_VERSION}/containers")
def list_containers() -> tuple[Response, int]:
    return _reply(runtime().service.list())


@blueprint.put(f"/{API_VERSION}/containers/<name>")
def ensure_container(name: str) -> tuple[Response, int]:
    check_name(name)  # before reading the body: a bad name is named even with a bad body
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH → 413
    return _reply(runtime().service.ensure(name, body))


@blueprint.get(f"/{API_VERSION}/containers/<name>")
def get_container(name: str) -> tuple[Response, int]:
    return _reply(runtime().service.get(name))


@blueprint.delete(f"/{API_VERSION}/containers/<name>")
def delete_container(name: str) -> tuple[Response, int]:
    return _reply(runtime().service.delete(name))


# --------------------------------------------------------------------------- errors


def _error_response(body: ErrorBody, status: int,
                    headers: dict[str, str] | None = None) -> Response:
    response = jsonify(dump(body))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _on_api_error(error: IEApiError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, UnauthorizedError):
        headers["WWW-Authenticate"] = 'Bearer realm="ieapi"'
    if isinstance(error, DockerUnavailableError):
        headers["Retry-After"] = _RETRY_AFTER_SECONDS
    if error.http_status >= 500:
        log.warning("%s %s: %s", request.method, request.path, error.message)
    return _error_response(error.body(), error.http_status, headers)


_HTTP_CODES: dict[int, ErrorCode] = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def _on_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    default = ErrorCode.INVALID_REQUEST if status < 500 else ErrorCode.INTERNAL
    code = _HTTP_CODES.get(status, default)
    headers: dict[str, str] = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return _error_response(ErrorBody.of(code, error.description or error.name), status, headers)


def _on_unexpected(error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error_response(ErrorBody.of(ErrorCode.INTERNAL, "internal error"), 500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(IEApiError, _on_api_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)
