"""The IE Docker API's Prometheus metrics, served at `/metrics` (token required, like every
route but `/healthz` and `/openapi.json`). README "Monitoring" lists them.

Docker operations are timed where every one of them passes: the docker SDK's HTTP session
(a response hook), so no engine call can be missed. Pulls run in this process's threads; their
progress is read at scrape time (`PullCollector`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

import requests
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ieapi.contract import PullProgress
from llo_serving.metrics import LATENCY_BUCKETS

REQUESTS = Counter(
    "llo_ieapi_requests_total", "Requests answered, by method, route template and status",
    ["method", "route", "status"])
REQUEST_DURATION = Histogram(
    "llo_ieapi_request_duration_seconds", "Time to answer one request", ["method", "route"],
    buckets=LATENCY_BUCKETS)
DOCKER_DURATION = Histogram(
    "llo_ieapi_docker_operation_seconds", "Docker Engine API calls until the answer's headers "
    "(a pull's stream continues after that), by operation", ["operation"],
    buckets=LATENCY_BUCKETS)
DOCKER_ERRORS = Counter(
    "llo_ieapi_docker_errors_total", "Docker Engine API calls answered 5xx, by operation",
    ["operation"])
PULLS = Counter(
    "llo_ieapi_pulls_total", "Image pulls finished, by outcome (done, failed, interrupted: "
    "the Docker Engine went away)", ["outcome"])
PULLED_BYTES = Counter(
    "llo_ieapi_pulled_bytes_total", "Bytes of image layers downloaded by finished pulls",
    ["outcome"])
INFO = Gauge(
    "llo_ieapi_info", "Always 1: the IE this API serves", ["ie_id", "instance_id"],
    multiprocess_mode="max")

_API_VERSION = re.compile(r"^/v\d+(\.\d+)?")
# The last path segment of these endpoints is an action; anything else there is a name or id.
_ACTIONS = {"create", "json", "start", "stop", "restart", "kill", "wait", "logs", "prune",
            "connect", "disconnect", "pause", "unpause", "attach", "exec", "archive", "top",
            "stats", "rename", "update", "changes", "export", "history", "push", "tag", "get"}


def docker_operation(method: str, path: str) -> str:
    """`POST containers/{id}/start` from `POST /v1.41/containers/llo-ns.web/start`: bounded
    label values, never a container or image name."""
    parts = [p for p in _API_VERSION.sub("", path).split("?")[0].split("/") if p]
    if not parts:
        return f"{method} /"
    head, rest = parts[0], parts[1:]
    if not rest:
        return f"{method} {head}"
    if len(rest) == 1:
        return f"{method} {head}/{rest[0] if rest[0] in _ACTIONS else '{id}'}"
    action = rest[-1] if rest[-1] in _ACTIONS else None
    return f"{method} {head}/{{id}}" + (f"/{action}" if action else "")


def on_docker_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests response hook on the docker SDK's session."""
    request = response.request
    operation = docker_operation(request.method or "?", request.path_url)
    DOCKER_DURATION.labels(operation=operation).observe(response.elapsed.total_seconds())
    if response.status_code >= 500:
        DOCKER_ERRORS.labels(operation=operation).inc()


def pull_finished(outcome: str, progress: PullProgress) -> None:
    PULLS.labels(outcome=outcome).inc()
    PULLED_BYTES.labels(outcome=outcome).inc(progress.bytes_done)


class RunningPulls(Protocol):
    def running(self) -> list[PullProgress]: ...


class PullCollector(Collector):
    """Pulls in progress in this process and their bytes, read when scraped."""

    def __init__(self, pulls: RunningPulls) -> None:
        self._pulls = pulls

    def collect(self) -> Iterable[GaugeMetricFamily]:
        running = self._pulls.running()
        yield GaugeMetricFamily("llo_ieapi_pulls_in_progress", "Image pulls in progress",
                                value=len(running))
        yield GaugeMetricFamily("llo_ieapi_pull_bytes_done",
                                "Bytes downloaded so far by the pulls in progress",
                                value=sum(p.bytes_done for p in running))
        yield GaugeMetricFamily("llo_ieapi_pull_bytes_expected",
                                "Bytes the pulls in progress download in all (as far as known)",
                                value=sum(p.bytes_total for p in running))
