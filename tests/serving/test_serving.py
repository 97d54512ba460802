"""llo_serving: the one log format and the metrics plumbing both services share, and the
metrics each service defines (all labelled, bounded label values)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram

from hooks import metrics as hook_metrics
from ieapi import metrics as ieapi_metrics
from ieapi.contract import PullProgress
from llo_serving.logs import (
    ContextFilter,
    Handler,
    JsonFormatter,
    TextFormatter,
    current_object,
    gunicorn_logconfig,
)

ACCESS_ATOMS = {"h": "10.0.0.7", "m": "PUT", "U": "/v1/containers/ns.web", "q": "",
                "s": "201", "b": "403", "B": "403", "M": "12",
                "r": "PUT /v1/containers/ns.web HTTP/1.1"}


def _record(name: str, msg: str, args: Any = (), **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_the_fields_and_the_context() -> None:
    record = _record("hooks", "scd demo/web: %s", ("Running",), kind="scd", object="demo/web",
                     ie="edge-1")
    ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "scd demo/web: Running"
    assert (line["level"], line["logger"], line["kind"], line["object"], line["ie"]) == \
        ("INFO", "hooks", "scd", "demo/web", "edge-1")
    assert "time" in line


def test_access_line_is_structured_without_headers() -> None:
    record = _record("gunicorn.access", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms', ACCESS_ATOMS)
    ContextFilter({"ie": "urn:ngsi-ld:IE:1"}).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["method"] == "PUT"
    assert line["path"] == "/v1/containers/ns.web"
    assert (line["status"], line["bytes"], line["duration_ms"]) == (201, 403, 12)
    assert line["ie"] == "urn:ngsi-ld:IE:1"
    assert "query" not in line  # empty atoms are left out
    assert "Authorization" not in json.dumps(line)


def test_current_object_names_the_request_target() -> None:
    token = current_object.set("ns.web")
    try:
        record = _record("ieapi.engine", "created %s", ("llo-ns.web",))
        ContextFilter({"ie": "urn:ngsi-ld:IE:1"}).filter(record)
    finally:
        current_object.reset(token)
    assert (record.object, record.ie) == ("ns.web", "urn:ngsi-ld:IE:1")  # type: ignore[attr-defined]
    later = _record("ieapi.engine", "idle")
    ContextFilter().filter(later)
    assert not hasattr(later, "object")


def test_text_format_adds_what_the_message_lacks() -> None:
    record = _record("ieapi.engine", "deciding again", object="ns.web", ie="ie-1")
    text = TextFormatter().format(record)
    assert text.endswith("INFO ieapi.engine deciding again [object=ns.web ie=ie-1]")
    said = _record("hooks", "scd ns/web: ok", object="ns/web")
    assert "[" not in TextFormatter().format(said)  # the object is already in the message


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("", "gunicorn.error", "gunicorn.access", "demo")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_gunicorn_config_sends_every_logger_through_one_handler(fmt: str) -> None:
    config = gunicorn_logconfig(fmt, "info", app_logger="demo", access=False,  # type: ignore[arg-type]
                                fields={"ie": "ie-9"})
    logging.config.dictConfig(config)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, Handler)
    stream = io.StringIO()
    handler.setStream(stream)
    logging.getLogger("gunicorn.error").info("Booting worker")
    logging.getLogger("demo").info("hello")
    logging.getLogger("gunicorn.access").info("GET /x")  # access=False: not written
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    if fmt == "json":
        assert [json.loads(x)["logger"] for x in lines] == ["gunicorn.error", "demo"]
        assert {json.loads(x)["ie"] for x in lines} == {"ie-9"}
    else:
        assert all("ie=ie-9" in x for x in lines)


def _metrics(module: Any) -> list[Any]:
    return [v for v in vars(module).values() if isinstance(v, Counter | Gauge | Histogram)]


@pytest.mark.parametrize("module", [hook_metrics, ieapi_metrics])
def test_every_metric_is_labelled(module: Any) -> None:
    """llo_serving.metrics switches prometheus_client to files in gunicorn's master, after the
    app may have imported it: only labelled metrics (no value until `.labels()`) are safe."""
    found = _metrics(module)
    assert found
    assert all(m._labelnames for m in found), [m._name for m in found if not m._labelnames]


@pytest.mark.parametrize(("method", "path", "operation"), [
    ("POST", "/v1.41/containers/create?name=llo-ns.web", "POST containers/create"),
    ("POST", "/v1.41/containers/llo-ns.web/start", "POST containers/{id}/start"),
    ("GET", "/v1.41/containers/0123abcd/json", "GET containers/{id}/json"),
    ("DELETE", "/v1.41/containers/llo-ns.web?v=False&force=True", "DELETE containers/{id}"),
    ("GET", "/v1.41/images/llo-test/busybox:1/json", "GET images/{id}/json"),
    ("POST", "/v1.41/images/create?fromImage=busybox&tag=1", "POST images/create"),
    ("GET", "/v1.41/containers/json?all=1", "GET containers/json"),
    ("GET", "/version", "GET version"),
    ("GET", "/_ping", "GET _ping"),
])
def test_docker_operations_never_carry_names(method: str, path: str, operation: str) -> None:
    assert ieapi_metrics.docker_operation(method, path) == operation


def test_pull_collector_reads_the_running_pulls() -> None:
    class Pulls:
        def running(self) -> list[PullProgress]:
            return [PullProgress(layers_total=2, layers_done=1, bytes_total=100, bytes_done=40),
                    PullProgress(layers_total=1, layers_done=0, bytes_total=50, bytes_done=5)]
    got = {f.name: f.samples[0].value for f in ieapi_metrics.PullCollector(Pulls()).collect()}
    assert got == {"llo_ieapi_pulls_in_progress": 2, "llo_ieapi_pull_bytes_done": 45,
                   "llo_ieapi_pull_bytes_expected": 150}


def test_condition_changes_count_only_changes() -> None:
    def value(**labels: str) -> float:
        return hook_metrics.CONDITION_CHANGES.labels(**labels)._value.get()  # type: ignore[no-any-return]
    running = {"kind": "scd", "type": "Ready", "status": "True", "reason": "ContainerRunning"}
    before = value(**running)
    old = {"conditions": [{"type": "Ready", "status": "False", "reason": "PlacementRecorded"}]}
    new = {"conditions": [{"type": "Ready", "status": "True", "reason": "ContainerRunning"}]}
    hook_metrics.count_condition_changes("scd", old, new)
    hook_metrics.count_condition_changes("scd", new, new)  # a steady resync: no change
    hook_metrics.count_condition_changes("scd", None, {"conditions": "garbage"})
    # whatever a request carried as its old status: never an error (found by the fuzz tier)
    hook_metrics.count_condition_changes(
        "scd", {"conditions": [{"type": ["not", "hashable"]}, {"type": {}}, 7]}, new)
    assert value(**running) == before + 2
