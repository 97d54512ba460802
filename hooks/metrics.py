"""The hooks' Prometheus metrics (served at `/metrics`, summed over gunicorn's workers by
llo_serving.metrics). README "Monitoring" lists them with example queries.

The hooks have no rights on the Kubernetes API (metacontroller/rbac.yaml), so they post no
Events: what an operator must notice (a placement, a failed container, a finished migration,
a lost IE) is counted here as condition changes, and kube-state-metrics reports the current
phases and conditions (metacontroller/monitoring/).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

from hooks.errors import PeerError
from llo_serving.metrics import LATENCY_BUCKETS, status_class

HOOK_REQUESTS = Counter(
    "llo_hook_requests_total", "Hook calls answered, by hook and outcome: ok, internal_error "
    "(a bug: status carried over), bad_request, unauthorized, or another HTTP status",
    ["hook", "outcome"])
HOOK_DURATION = Histogram(
    "llo_hook_duration_seconds", "Time to answer one hook call", ["hook"],
    buckets=LATENCY_BUCKETS)
IE_REQUESTS = Counter(
    "llo_ie_requests_total", "Calls to IE Docker APIs, by IE (DIE name) and outcome: the "
    "answer's status class (2xx, 4xx, 5xx) or why there was none (IEUnreachable, IETLSError, "
    "DeadlineExceeded, TokenMissing)", ["ie", "outcome"])
IE_DURATION = Histogram(
    "llo_ie_request_duration_seconds", "Duration of one call to an IE Docker API", ["ie"],
    buckets=LATENCY_BUCKETS)
BROKER_REQUESTS = Counter(
    "llo_broker_requests_total", "Calls to Orion-LD, by outcome (status class, or "
    "BrokerUnreachable / DeadlineExceeded)", ["outcome"])
BROKER_DURATION = Histogram(
    "llo_broker_request_duration_seconds", "Duration of one call to Orion-LD, by outcome",
    ["outcome"], buckets=LATENCY_BUCKETS)
CONDITION_CHANGES = Counter(
    "llo_condition_changes_total", "Conditions the hooks changed (what an Event would say): "
    "kind (scd, die), condition type, new status and reason",
    ["kind", "type", "status", "reason"])

HOOK_NAMES = {"hooks.scd_customize": "scd/customize", "hooks.scd_sync": "scd/sync",
              "hooks.scd_finalize": "scd/finalize", "hooks.die_sync": "die/sync",
              "hooks.die_finalize": "die/finalize"}


def instrument(app: Flask) -> None:
    """Count and time every hook call, whatever answered it (route, auth check, error
    handler): Flask runs `after_request` for all of them."""
    @app.before_request
    def _start() -> None:
        g.llo_started = time.monotonic()

    @app.after_request
    def _count(response: Response) -> Response:
        hook = HOOK_NAMES.get(request.endpoint or "")
        if hook is not None:
            outcome = hook_outcome(response.status_code, bool(g.get("llo_internal_error")))
            HOOK_REQUESTS.labels(hook=hook, outcome=outcome).inc()
            HOOK_DURATION.labels(hook=hook).observe(
                time.monotonic() - g.get("llo_started", time.monotonic()))
        return response


def mark_internal_error() -> None:
    """This request's answer is the fallback after a bug (still a 200 for Metacontroller)."""
    g.llo_internal_error = True


def hook_outcome(code: int, internal_error: bool) -> str:
    if internal_error:
        return "internal_error"
    return {200: "ok", 400: "bad_request", 401: "unauthorized"}.get(code, str(code))


@contextmanager
def peer_call(record: Callable[[str, float], None]) -> Iterator[Callable[[int], None]]:
    """Times one call and records (outcome, seconds): the class of the answer's status, given
    to the callback the block receives, or, when it raised, the PeerError's reason."""
    started = time.monotonic()
    outcome = "unknown"

    def answered(status: int) -> None:
        nonlocal outcome
        outcome = status_class(status)
    try:
        yield answered
    except PeerError as exc:
        outcome = str(exc.reason)
        raise
    finally:
        record(outcome, time.monotonic() - started)


def _record_ie(ie: str) -> Callable[[str, float], None]:
    def record(outcome: str, seconds: float) -> None:
        IE_REQUESTS.labels(ie=ie, outcome=outcome).inc()
        IE_DURATION.labels(ie=ie).observe(seconds)
    return record


def _record_broker(outcome: str, seconds: float) -> None:
    BROKER_REQUESTS.labels(outcome=outcome).inc()
    BROKER_DURATION.labels(outcome=outcome).observe(seconds)


def ie_call(ie: str) -> AbstractContextManager[Callable[[int], None]]:
    return peer_call(_record_ie(ie))


def broker_call() -> AbstractContextManager[Callable[[int], None]]:
    return peer_call(_record_broker)


def count_condition_changes(kind: str, old_status: Any, new_status: Mapping[str, Any]) -> None:
    """Count every condition whose (status, reason) differs from the one in the old status.
    The old status comes from the request as it is (anything at all): only strings are used."""
    old = {str(c.get("type")): (str(c.get("status")), str(c.get("reason")))
           for c in _conditions(old_status)}
    for c in _conditions(new_status):
        type_, now = str(c.get("type")), (str(c.get("status")), str(c.get("reason")))
        if old.get(type_) != now:
            CONDITION_CHANGES.labels(kind=kind, type=type_, status=now[0], reason=now[1]).inc()


def _conditions(status: Any) -> list[dict[str, Any]]:
    if not isinstance(status, Mapping):
        return []
    found = status.get("conditions")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
