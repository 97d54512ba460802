"""Metrics and logs of the running system, as an operator sees them.

The hooks run under gunicorn with two workers (testbed/stack.py), so each scrape reaches one
of them: the counters below match what the Metacontroller driver, the IE Docker API and the
Orion-LD double saw only if `/metrics` adds up every worker (prometheus_client's multiprocess
mode). The logs are read from the processes' own output.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from testbed.stack import IE, Stack
from tests.reliability.helpers import SLEEP, entity

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, frozenset[
        tuple[str, str]]], float]:
    """Every sample of one `/metrics` answer: (name, labels) -> value."""
    with requests.Session() as http:
        http.trust_env = False
        answer = http.get(f"{url}/metrics", headers=headers or {}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= ls)


def run_one_scd(stack: Stack, ie: IE, busybox_image: str) -> None:
    assert stack.orion is not None
    stack.orion.create_entity(entity("web"), "ServiceComponent")
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
    stack.driver.run_until_steady()


def test_counters_move_with_the_system(stack: Stack, ie: IE, busybox_image: str) -> None:
    before = scrape(stack.hooks_url)
    assert total(before, "llo_hook_requests_total") == len(stack.driver.hook_calls)
    run_one_scd(stack, ie, busybox_image)
    stack.driver.delete("ServiceComponentDocker", "web", "default")
    stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=60)

    calls = stack.driver.hook_calls
    # Several scrapes, each answered by whichever worker accepts it: all must agree.
    seen = [scrape(stack.hooks_url) for _ in range(6)]
    for samples in seen:
        by_hook = Tally({h: int(total(samples, "llo_hook_requests_total", hook=h, outcome="ok"))
                         for h in ("scd/customize", "scd/sync", "scd/finalize", "die/sync")})
        expected = Tally(f"{'scd' if c.controller.endswith('scd') else 'die'}/{c.hook}"
                         for c in calls if c.status_code == 200)
        assert +by_hook == +expected, (by_hook, expected)
        assert total(samples, "llo_hook_requests_total") == len(calls)
        assert total(samples, "llo_hook_duration_seconds_count") == len(calls)

    hooks_side = seen[-1]
    # Every IE call the hooks counted is a request the IE Docker API counted, and vice versa.
    ieapi = scrape(ie.url, {"Authorization": f"Bearer {ie.token}"})
    ie_calls = total(hooks_side, "llo_ie_requests_total", ie=ie.name)
    assert ie_calls > 0
    assert total(hooks_side, "llo_ie_requests_total", ie=ie.name, outcome="2xx") > 0
    served = sum(v for (n, ls), v in ieapi.items() if n == "llo_ieapi_requests_total"
                 and dict(ls)["route"].startswith("/v1/"))
    assert served == ie_calls, (served, ie_calls)
    # Docker operations behind them, timed: the container was created, started and removed.
    for operation in ("POST containers/create", "POST containers/{id}/start",
                      "DELETE containers/{id}"):
        assert total(ieapi, "llo_ieapi_docker_operation_seconds_count",
                     operation=operation) >= 1, operation
    assert total(ieapi, "llo_ieapi_info", ie_id=ie.ie_id, instance_id=ie.instance_id) == 1
    assert total(ieapi, "llo_ieapi_pulls_in_progress") == 0  # the image was there already
    # Broker calls: as many as Orion-LD received.
    assert stack.orion is not None
    assert total(hooks_side, "llo_broker_requests_total") == len(stack.orion.requests)
    assert total(hooks_side, "llo_broker_requests_total", outcome="2xx") >= 2
    # The changes an Event would have announced: placed, running, deleted.
    for reason in ("PlacementRecorded", "ContainerRunning", "Deleted"):
        assert total(hooks_side, "llo_condition_changes_total", kind="scd", reason=reason) >= 1
    assert total(hooks_side, "llo_condition_changes_total", kind="die", type="Reachable",
                 status="True") >= 1


def test_ie_metrics_need_the_token(stack: Stack, ie: IE) -> None:
    with requests.Session() as http:
        http.trust_env = False
        assert http.get(f"{ie.url}/metrics", timeout=10).status_code == 401
        assert http.get(f"{stack.hooks_url}/metrics", timeout=10).status_code == 200


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return parsed


def test_one_json_log_format_with_object_and_ie(stack: Stack, ie: IE,
                                                busybox_image: str) -> None:
    run_one_scd(stack, ie, busybox_image)
    assert stack.hooks is not None
    assert ie.server is not None
    hooks_lines = _json_lines(stack.hooks.log_path.read_text())
    loggers = {line["logger"] for line in hooks_lines}
    assert {"gunicorn.error", "hooks"} <= loggers, loggers
    for line in hooks_lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    about_web = [line for line in hooks_lines if line.get("object") == "default/web"]
    assert about_web, "no line names the SCD"
    assert all(line["kind"] == "scd" and line["ie"] == ie.name for line in about_web)
    ieapi_lines = _json_lines(ie.server.log_path.read_text())
    assert {line["logger"] for line in ieapi_lines} >= {"gunicorn.error", "gunicorn.access"}
    assert all(line.get("ie") == ie.ie_id for line in ieapi_lines), ieapi_lines[:3]
    access = [line for line in ieapi_lines if line["logger"] == "gunicorn.access"]
    assert access
    assert all({"method", "path", "status", "duration_ms"} <= set(line) for line in access)
    created = [line for line in ieapi_lines if "created" in line["message"]]
    assert created
    assert all(line.get("object") == "default.web" for line in created), created
    assert ie.token not in ie.server.log_path.read_text()
