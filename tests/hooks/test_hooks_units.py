"""Small units: settings from the environment, gunicorn options, conditions, the protocol
models, secret files and log lines."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from hooks import conditions as cond
from hooks.gunicorn_conf import options
from hooks.logs import JsonFormatter, object_logger
from hooks.protocol import SyncRequest, SyncResponse
from hooks.resources import Condition, ConditionStatus, read_scd
from hooks.resync import backoff
from hooks.servicecomponent import coarse_pull, verdict_of_container
from hooks.settings import Settings
from ieapi.contract import ContainerState, ContainerStatus, PullProgress
from ieapi.secretfile import SecretFile

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- settings


def test_settings_from_env() -> None:
    s = Settings.from_env({
        "LLO_BROKER_URL": "http://orion:1026/", "LLO_BROKER_HEADERS": "aeriOS=true, X-A = b",
        "LLO_IE_TOKEN_DIR": "/run/tokens", "LLO_IE_READ_TIMEOUT_SECONDS": "1.5",
        "LLO_RESYNC_STEADY_SECONDS": "90", "LLO_LOG_LEVEL": "debug", "LLO_WORKERS": "3",
        "LLO_HOOK_SECRET_FILE": "", "UNRELATED": "x"})
    assert s.broker_url == "http://orion:1026"
    assert s.broker_headers == {"aeriOS": "true", "X-A": "b"}
    assert s.ie_token_dir == Path("/run/tokens")
    assert s.ie_read_timeout_seconds == 1.5
    assert s.resync_steady_seconds == 90
    assert s.log_level == "DEBUG"
    assert s.hook_secret_file is None
    assert s.broker_enabled
    assert not Settings.from_env({}).broker_enabled


def test_broker_headers_as_json() -> None:
    s = Settings.from_env({"LLO_BROKER_HEADERS": '{"aeriOS": "true"}'})
    assert s.broker_headers == {"aeriOS": "true"}


@pytest.mark.parametrize("env", [
    {"LLO_BROKER_URL": "orion:1026"},
    {"LLO_BROKER_HEADERS": "novalue"},
    {"LLO_IE_READ_TIMEOUT_SECONDS": "-1"},
    {"LLO_LOG_FORMAT": "xml"},
    {"LLO_RESYNC_ERROR_BASE_SECONDS": "60", "LLO_RESYNC_ERROR_MAX_SECONDS": "10"},
])
def test_bad_settings_fail_loudly(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env(env)


def test_every_field_has_an_llo_variable() -> None:
    names = {Settings.env_name(f) for f in Settings.model_fields}
    assert {"LLO_LISTEN", "LLO_WORKERS", "LLO_THREADS", "LLO_IE_TOKEN_DIR", "LLO_IE_CA_BUNDLE",
            "LLO_BROKER_URL", "LLO_BROKER_TOKEN_FILE", "LLO_BROKER_HEADERS",
            "LLO_BROKER_TENANT", "LLO_RESYNC_CONVERGING_SECONDS", "LLO_RESYNC_STEADY_SECONDS",
            "LLO_RESYNC_ERROR_BASE_SECONDS", "LLO_RESYNC_ERROR_MAX_SECONDS",
            "LLO_RESYNC_PERMANENT_SECONDS", "LLO_ORPHAN_GRACE_SECONDS", "LLO_HOOK_SECRET_FILE",
            "LLO_LOG_LEVEL", "LLO_LOG_FORMAT"} <= names


def test_gunicorn_options() -> None:
    opts = options(Settings.from_env({"LLO_LISTEN": "127.0.0.1:9000", "LLO_THREADS": "4",
                                      "LLO_HOOK_BUDGET_SECONDS": "8"}))
    assert opts["bind"] == ["127.0.0.1:9000"]
    assert opts["worker_class"] == "gthread"
    assert opts["threads"] == 4
    assert opts["workers"] == 2
    assert opts["timeout"] > 10  # above Metacontroller's hook timeout and our budget
    assert opts["accesslog"] is None


def test_backoff_grows_and_is_clamped() -> None:
    s = Settings()
    assert [backoff(e, s) for e in (0, 10, 100, 10_000)] == [5.0, 5.0, 50.0, 300.0]


# --------------------------------------------------------------------------- conditions


def test_condition_keeps_its_time_unless_status_flips() -> None:
    conds = cond.set_condition([], "Ready", True, "A", "m", now=NOW, generation=1)
    later = NOW + timedelta(minutes=5)
    same = cond.set_condition(conds, "Ready", True, "B", "other", now=later, generation=2)
    assert same[0].last_transition_time == "2024-05-01T10:00:00Z"
    assert (same[0].reason, same[0].message, same[0].observed_generation) == ("B", "other", 2)
    flipped = cond.set_condition(same, "Ready", ConditionStatus.FALSE, "C", "", now=later,
                                 generation=2)
    assert flipped[0].last_transition_time == "2024-05-01T10:05:00Z"
    assert len(flipped) == 1
    assert cond.seconds_since_transition(flipped, "Ready", later + timedelta(seconds=7)) == 7


def test_conditions_are_ordered_stably() -> None:
    conds: list[Condition] = []
    for t in ("Zed", "BrokerSynced", "Ready", "Alpha"):
        conds = cond.set_condition(conds, t, True, "R", "", now=NOW, generation=None)
    assert [c.type for c in cond.ordered(conds, ("Ready", "BrokerSynced"))] == \
        ["Ready", "BrokerSynced", "Alpha", "Zed"]


def test_parse_time() -> None:
    assert cond.parse_time("2024-05-01T10:00:00Z") == NOW
    assert cond.parse_time("garbage") is None
    assert cond.parse_time(None) is None


# --------------------------------------------------------------------------- protocol, objects


def test_sync_request_nulls_and_related_lookup() -> None:
    die = {"metadata": {"name": "ie-a"}}
    req = SyncRequest.model_validate({"parent": {}, "children": None, "related": {
        "K": {"ie-a": die}, "L": {"/ie-b": die}, "M": {"ns/ie-c": die}}})
    assert req.children == {}
    assert req.related_object("K", "ie-a") == die
    assert req.related_object("L", "ie-b") == die
    assert req.related_object("M", "ie-c") == die
    assert req.related_object("K", "ie-x") is None
    assert req.related_object("missing", "ie-a") is None


def test_sync_response_has_exactly_the_v2_keys() -> None:
    wire = SyncResponse(status={"a": 1}, resync_after_seconds=2).wire()
    assert wire == {"status": {"a": 1}, "children": [], "resyncAfterSeconds": 2.0,
                    "finalized": False}
    with pytest.raises(ValidationError):
        SyncResponse.model_validate({"status": {}, "extra": 1})


def test_a_broken_status_still_yields_the_placements() -> None:
    placement = {"ie": "ie-a", "apiUrl": "http://a", "container": "demo.web"}
    scd = read_scd({"metadata": {"name": "web", "namespace": "demo"},
                    "spec": {"image": "x"},
                    "status": {"phase": "NoSuchPhase", "placement": placement,
                               "pendingCleanups": [placement, {"bad": 1}],
                               "conditions": "garbage"}})
    assert scd.spec is None
    assert scd.spec_error == "spec.selectedIE: Field required"
    assert scd.status.placement is not None
    assert scd.status.placement.ie == "ie-a"
    assert [c.ie for c in scd.status.pending_cleanups] == ["ie-a"]


# --------------------------------------------------------------------------- files, logs


def test_secret_file_rereads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "s"
    secret = SecretFile(path)
    assert secret.read() is None
    path.write_text("one\n")
    assert secret.read() == "one"
    path.write_text("two")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert secret.read() == "two"
    path.write_text("")
    assert secret.read() is None


def test_log_lines_name_the_object(caplog: pytest.LogCaptureFixture) -> None:
    log = object_logger("scd", "demo", "web")
    with caplog.at_level(logging.INFO, logger="hooks"):
        log.info("hello %s", "there")
    record = caplog.records[-1]
    assert record.getMessage() == "scd demo/web: hello there"
    line = json.loads(JsonFormatter().format(record))
    assert (line["object"], line["kind"], line["level"]) == ("demo/web", "scd", "INFO")


def _pulling(layers_done: int, bytes_done: int, message: str) -> ContainerStatus:
    return ContainerStatus(name="demo.web", state=ContainerState.PULLING, image="busybox:test",
                           pull=PullProgress(layers_total=3, layers_done=layers_done,
                                             bytes_total=3000, bytes_done=bytes_done,
                                             message=message))


def test_pull_progress_shows_in_steps() -> None:
    """Docker's byte-by-byte progress reaches the status in steps: syncs within a step give the
    same status (no API write), each tenth of the bytes or layer done gives a new one."""
    first = verdict_of_container(_pulling(1, 1010, "a1: Downloading"), False, "ie-a")
    later = verdict_of_container(_pulling(1, 1190, "b2: Extracting"), False, "ie-a")
    assert first.pull == later.pull
    assert first.message == later.message == "pulling image busybox:test: 1/3 layers, 30%"
    assert first.pull is not None
    assert (first.pull.bytes_done, first.pull.message) == (900, "1/3 layers, 30%")
    next_tenth = verdict_of_container(_pulling(1, 1200, "b2: Extracting"), False, "ie-a")
    next_layer = verdict_of_container(_pulling(2, 1190, "b2: Pull complete"), False, "ie-a")
    assert next_tenth.pull != first.pull
    assert next_layer.pull != first.pull
    done = verdict_of_container(_pulling(3, 3000, "Download complete"), False, "ie-a")
    assert done.pull is not None
    assert (done.pull.bytes_done, done.pull.message) == (3000, "3/3 layers, 100%")
    assert coarse_pull(None).message == "pull requested"
    assert coarse_pull(PullProgress(layers_total=2)).message == "0/2 layers"
