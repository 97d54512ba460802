"""The Metacontroller hook routes: parse → decide and act (`Reconciler`) → respond.

Only HTTP 200 counts for Metacontroller, and any other answer leaves the status as it was. So
every foreseeable failure (invalid spec, IE or broker down) is a 200 whose status says what is
wrong. A body that is not a hook request at all gets a 400 naming the field. An unexpected
exception (a bug) still answers 200, carrying the old status over unchanged but for a Ready
condition saying so: an empty status would lose the record of where containers live.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from hooks import conditions as cond
from hooks import metrics
from hooks.logs import object_logger
from hooks.protocol import CustomizeRequest, SyncRequest, SyncResponse
from hooks.reasons import Reason
from hooks.reconcile import Reconciler
from hooks.resources import Condition, ConditionStatus, ObjectMeta, first_error
from hooks.settings import Settings
from ieapi.secretfile import SecretFile
from llo_serving.metrics import exposition

EXTENSION = "llo_hooks"
# Kubelet probes and Prometheus need no hook secret (the NetworkPolicy still applies).
_PUBLIC_ENDPOINTS = frozenset({"hooks.healthz", "hooks.prometheus_metrics"})
log = logging.getLogger("hooks.api")
bp = Blueprint("hooks", __name__)


@dataclass
class HookContext:
    settings: Settings
    reconciler: Reconciler
    secret: SecretFile | None


class BadHookRequestError(Exception):
    """The body is not a Metacontroller request: answered 400, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _ctx() -> HookContext:
    ctx: HookContext = current_app.extensions[EXTENSION]
    return ctx


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify({"error": body})
    response.status_code = status
    return response


@bp.before_request
def _authenticate() -> Response | None:
    """Shared secret (LLO_HOOK_SECRET_FILE; the shipped Deployment sets it): `Authorization:
    Bearer <secret>`, which Metacontroller v4.16+ sends from the Secret its CompositeControllers'
    `webhook.authorization` names. HTTP Basic with the secret as password (`webhook.basicAuth`)
    is accepted too."""
    secret = _ctx().secret
    if secret is None or request.endpoint in _PUBLIC_ENDPOINTS:
        return None
    expected = secret.read()
    if expected is None:
        log.error("LLO_HOOK_SECRET_FILE %s is missing or empty: refusing hook calls",
                  secret.path)
        return _error(401, "Unauthorized", "hook secret not available")
    if not _presents(expected):
        return _error(401, "Unauthorized", "missing or wrong hook secret")
    return None


def _presents(expected: str) -> bool:
    """The request carries `expected` as a Bearer token or as a Basic password."""
    given = request.headers.get("Authorization", "")
    bearer = hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())
    basic = request.authorization
    password = (basic.password or "") if basic is not None and basic.type == "basic" else ""
    return bearer | hmac.compare_digest(password.encode(), expected.encode())


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _error(exc.code or 500, type(exc).__name__, exc.description or exc.name)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Every worker's counters (llo_serving.metrics); hooks/metrics.py lists them."""
    return exposition()


def _json_body() -> dict[str, Any]:
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # `silent` covers ValueError only; ~1000 nested arrays reach here
        raise BadHookRequestError("body", "JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise BadHookRequestError("body", "expected a JSON object")
    parent = body.get("parent")
    if not isinstance(parent, dict):
        raise BadHookRequestError("parent", "missing or not an object")
    try:
        ObjectMeta.model_validate(parent.get("metadata"))
    except ValidationError as exc:
        raise _bad("parent.metadata", exc) from exc
    return body


def _bad(prefix: str, exc: ValidationError) -> BadHookRequestError:
    return BadHookRequestError(*first_error(exc, prefix))


def _hook(kind: str, run: Callable[[Reconciler, SyncRequest], SyncResponse]) -> Response:
    try:
        body = _json_body()
        try:
            req = SyncRequest.model_validate(body)
        except ValidationError as exc:
            raise _bad("", exc) from exc
    except BadHookRequestError as exc:
        log.warning("%s hook: bad request: %s", kind, exc)
        return _error(400, "BadRequest", exc.message, exc.field.lstrip("."))
    try:
        answer = run(_ctx().reconciler, req)
    except Exception:
        metrics.mark_internal_error()
        return jsonify(_fallback(kind, req))
    wire = answer.wire()
    metrics.count_condition_changes(kind, req.parent.get("status"), wire.get("status") or {})
    return jsonify(wire)


def _fallback(kind: str, req: SyncRequest) -> dict[str, Any]:
    """The answer after a bug: old status kept, Ready=False InternalError, retried soon."""
    meta = req.parent.get("metadata") or {}
    object_logger(kind, meta.get("namespace"), str(meta.get("name"))).exception(
        "hook failed unexpectedly; status carried over")
    ctx = _ctx()
    status = req.parent.get("status")
    status = dict(status) if isinstance(status, dict) else {}
    try:
        conds = [Condition.model_validate(c) for c in status.get("conditions") or []]
        generation = meta.get("generation")
        conds = cond.set_condition(
            conds, "Ready", ConditionStatus.FALSE, Reason.INTERNAL_ERROR,
            "the hook failed unexpectedly; see the hook service's log",
            now=ctx.reconciler.clock(),
            generation=generation if isinstance(generation, int) else None)
        status["conditions"] = [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                                for c in conds]
    except (ValidationError, TypeError, ValueError):
        pass  # conditions unreadable: carry the status exactly as it was
    return SyncResponse(status=status,
                        resync_after_seconds=ctx.settings.resync_error_base_seconds).wire()


@bp.post("/scd/customize")
def scd_customize() -> Response:
    try:
        body = _json_body()
        req = CustomizeRequest.model_validate(body)
    except BadHookRequestError as exc:
        return _error(400, "BadRequest", exc.message, exc.field)
    except ValidationError as exc:
        bad = _bad("", exc)
        return _error(400, "BadRequest", bad.message, bad.field.lstrip("."))
    return jsonify(Reconciler.customize_scd(req).wire())


@bp.post("/scd/sync")
def scd_sync() -> Response:
    return _hook("scd", lambda r, req: r.scd(req, finalizing=False))


@bp.post("/scd/finalize")
def scd_finalize() -> Response:
    return _hook("scd", lambda r, req: r.scd(req, finalizing=True))


@bp.post("/die/sync")
def die_sync() -> Response:
    return _hook("die", lambda r, req: r.die(req, finalizing=False))


@bp.post("/die/finalize")
def die_finalize() -> Response:
    return _hook("die", lambda r, req: r.die(req, finalizing=True))
