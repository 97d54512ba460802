"""HTTP routes of the IE Docker API: auth, JSON in/out, errors. The work is in `service`.

Every answer that is not a 2xx is a contract `ErrorBody` naming the offending field when
there is one; foreseeable failures never become a blanket 500.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ieapi import metrics, openapi
from ieapi.auth import TokenSource
from ieapi.contract import API_VERSION, LOGS_CONTENT_TYPE, ErrorBody, ErrorCode, LogsQuery, dump
from ieapi.engine import Engine
from ieapi.errors import (
    DockerUnavailableError,
    IEApiError,
    InvalidRequestError,
    TooManyRequestsError,
    UnauthorizedError,
)
from ieapi.logstream import LogStream, client_gone_probe
from ieapi.service import Reply, Service, check_name, invalid_request_from
from ieapi.settings import Settings
from llo_serving.logs import current_object
from llo_serving.metrics import exposition

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
    log_streams: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_streams",
                           threading.BoundedSemaphore(self.settings.logs_max_streams))

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


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    """Requests, Docker operation latency, pulls (ieapi/metrics.py); bearer token required."""
    return exposition([metrics.PullCollector(runtime().engine.pulls)])


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


@blueprint.get(f"/{API_VERSION}/containers/<name>/logs")
def container_logs(name: str) -> Response:
    """The container's output as Docker keeps it (stdout and stderr interleaved, the bytes
    unchanged), bounded by IEAPI_LOGS_MAX_TAIL_LINES and IEAPI_LOGS_MAX_BYTES; with
    `follow=true` a chunked stream (ieapi.logstream says how it ends)."""
    check_name(name)
    rt = runtime()
    query = _parse_logs_query(rt.settings)
    if not rt.log_streams.acquire(blocking=False):
        raise TooManyRequestsError(
            f"{rt.settings.logs_max_streams} logs answers are streaming already "
            "(IEAPI_LOGS_MAX_STREAMS); retry later")
    try:
        source = rt.engine.logs(
            name, tail_lines=query.tail if query.tail is not None
            else rt.settings.logs_max_tail_lines,
            since=_since_timestamp(query.since), timestamps=query.timestamps,
            follow=query.follow)
    except BaseException:
        rt.log_streams.release()
        raise
    body = LogStream(source, limit_bytes=query.limit_bytes or rt.settings.logs_max_bytes,
                     client_gone=client_gone_probe(request.environ),
                     on_close=rt.log_streams.release, what=f"logs of {name}")
    response = Response(body, status=200, mimetype=LOGS_CONTENT_TYPE, direct_passthrough=True)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --------------------------------------------------------------------------- input

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
_DURATION = re.compile(r"^(\d+)([smh])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _parse_logs_query(settings: Settings) -> LogsQuery:
    """The query string as a LogsQuery, bounded by the settings; 400 naming the parameter."""
    raw: dict[str, object] = {}
    for key, value in request.args.items():
        if key in ("timestamps", "follow"):
            lowered = value.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise InvalidRequestError(f"{key}: expected true or false", field=key)
            raw[key] = lowered in _TRUE
        else:
            raw[key] = value
    try:
        query = LogsQuery.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request_from(exc) from exc
    if query.tail is not None and query.tail > settings.logs_max_tail_lines:
        raise InvalidRequestError(
            f"tail: at most {settings.logs_max_tail_lines} lines (IEAPI_LOGS_MAX_TAIL_LINES)",
            field="tail")
    if query.limit_bytes is not None and query.limit_bytes > settings.logs_max_bytes:
        raise InvalidRequestError(
            f"limitBytes: at most {settings.logs_max_bytes} (IEAPI_LOGS_MAX_BYTES)",
            field="limitBytes")
    return query


def _since_timestamp(since: str | None) -> float | None:
    """`since` (LOGS_SINCE_PATTERN) as a Unix time for Docker."""
    if since is None:
        return None
    duration = _DURATION.fullmatch(since)
    if duration is not None:
        return max(time.time() - int(duration.group(1)) * _SECONDS[duration.group(2)], 1.0)
    whole, dot, rest = since.partition(".")
    if dot:  # Python reads at most 6 fraction digits; Docker prints 9
        digits = "".join(ch for ch in rest if ch.isdigit())
        rest = digits[:6] + rest[len(digits):]
        since = f"{whole}.{rest}"
    try:
        return max(datetime.fromisoformat(since).timestamp(), 1.0)
    except ValueError as exc:
        raise InvalidRequestError(f"since: not a valid time: {exc}", field="since") from exc


# --------------------------------------------------------------------------- input (bodies)




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
    if isinstance(error, DockerUnavailableError | TooManyRequestsError):
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


def instrument(app: Flask) -> None:
    """Count and time every request (errors and refusals included: Flask runs `after_request`
    for them too), and name the container a request is about on its log lines."""
    metrics.INFO.labels(ie_id=runtime_of(app).settings.ie_id,
                        instance_id=runtime_of(app).settings.managed_by).set(1)

    @app.before_request
    def _start() -> None:
        g.llo_started = time.monotonic()
        name = (request.view_args or {}).get("name")
        g.llo_object = current_object.set(name if isinstance(name, str) else None)

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.REQUESTS.labels(method=request.method, route=route,
                                status=str(response.status_code)).inc()
        metrics.REQUEST_DURATION.labels(method=request.method, route=route).observe(
            time.monotonic() - g.get("llo_started", time.monotonic()))
        return response

    @app.teardown_request
    def _forget(exc: BaseException | None) -> None:
        token = g.pop("llo_object", None)
        if token is not None:
            current_object.reset(token)


def runtime_of(app: Flask) -> Runtime:
    value: Runtime = app.extensions[EXTENSION]
    return value


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(IEApiError, _on_api_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)
