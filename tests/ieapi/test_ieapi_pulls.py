"""Background pulls: unit tests of PullManager with a scripted stream, then the real thing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import pytest
import requests

from ieapi import create_app
from ieapi.engine import Engine
from ieapi.pulls import PullingAPI, PullManager, PullPhase
from tests.ieapi.helpers import TOKEN, IEApiClient, SettingsFactory, eventually, sleeper_spec

# --------------------------------------------------------------------------- a scripted daemon


class ScriptedPulls:
    """Stands in for docker.APIClient.pull: records calls, streams given events, and can hold
    the stream at `gate` so a test sees a pull in progress without timing anything."""

    def __init__(self, events: list[dict[str, Any]] | None = None, *,
                 hold_after: int | None = None, fail_at_start: Exception | None = None) -> None:
        self.events = events or []
        self.hold_after = hold_after
        self.fail_at_start = fail_at_start
        self.gate = threading.Event()
        self.held = threading.Event()
        self.calls: list[tuple[str, str | None, dict[str, str] | None]] = []

    def pull(self, repository: str, tag: str | None = None, stream: bool = False,
             auth_config: dict[str, str] | None = None, decode: bool = False,
             ) -> Iterator[dict[str, Any]]:
        assert stream
        assert decode
        self.calls.append((repository, tag, auth_config))
        if self.fail_at_start is not None:
            raise self.fail_at_start
        return self._stream()

    def _stream(self) -> Iterator[dict[str, Any]]:
        for index, event in enumerate(self.events):
            if index == self.hold_after:
                self.held.set()
                assert self.gate.wait(10)
            yield event


LAYER_EVENTS: list[dict[str, Any]] = [
    {"status": "Pulling from library/app", "id": "1"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 50, "total": 100}, "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 10, "total": 200}, "id": "bbb"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    # held here
    {"status": "Downloading", "progressDetail": {"current": 200, "total": 200}, "id": "bbb"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:0123"},
    {"status": "Status: Downloaded newer image for app:1"},
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_aggregated_and_request_does_not_wait() -> None:
    api = ScriptedPulls(LAYER_EVENTS, hold_after=7)
    pulls = PullManager(api, failure_ttl=60)
    first = pulls.request("app:1", None)
    assert first.phase is PullPhase.PULLING  # answered while the stream has not even started
    assert api.held.wait(10)
    view = pulls.view("app:1", None)
    assert view is not None
    progress = view.progress
    assert (progress.layers_total, progress.layers_done) == (2, 1)
    assert (progress.bytes_total, progress.bytes_done) == (300, 110)
    assert progress.message == "aaa: Pull complete"
    assert pulls.request("app:1", None).phase is PullPhase.PULLING
    assert len(api.calls) == 1  # deduplicated
    api.gate.set()
    assert pulls.wait(10)
    assert pulls.view("app:1", None) is None  # success is not remembered: the image is there
    assert api.calls == [("app", "1", None)]


def test_failure_is_remembered_until_ttl_or_explicit_retry() -> None:
    api = ScriptedPulls([{"status": "Pulling from x"}, {"error": "manifest unknown",
                                                         "errorDetail": {"message": "m"}}])
    clock = FakeClock()
    pulls = PullManager(api, failure_ttl=60, clock=clock)
    pulls.request("x:1", None)
    assert pulls.wait(10)
    failed = pulls.request("x:1", None)
    assert (failed.phase, failed.error) == (PullPhase.FAILED, "manifest unknown")
    assert len(api.calls) == 1
    clock.now += 59
    assert pulls.request("x:1", None).phase is PullPhase.FAILED
    assert len(api.calls) == 1
    pulls.request("x:1", None, retry_failed=True)
    assert pulls.wait(10)
    assert len(api.calls) == 2
    clock.now += 61
    pulls.request("x:1", None)
    assert pulls.wait(10)
    assert len(api.calls) == 3


def test_docker_api_error_becomes_failure_and_transport_error_is_forgotten() -> None:
    refused = ScriptedPulls(fail_at_start=docker.errors.APIError(
        "500 Server Error", explanation="Get https://registry/v2/: no such host"))
    pulls = PullManager(refused, failure_ttl=60)
    pulls.request("r/x:2", None)
    assert pulls.wait(10)
    view = pulls.view("r/x:2", None)
    assert view is not None
    assert (view.phase, view.error) == (PullPhase.FAILED, "Get https://registry/v2/: no such host")

    unreachable = ScriptedPulls(fail_at_start=requests.ConnectionError("socket gone"))
    pulls = PullManager(unreachable, failure_ttl=60)
    pulls.request("r/x:2", None)
    assert pulls.wait(10)
    assert pulls.view("r/x:2", None) is None  # temporary: the next ensure tries again


def test_credentials_are_passed_and_distinguish_pulls() -> None:
    api = ScriptedPulls([{"status": "done"}], hold_after=0)
    pulls = PullManager(api, failure_ttl=60)
    alice = {"username": "alice", "password": "pw1", "serveraddress": "reg.example"}
    bob = {"username": "bob", "password": "pw2", "serveraddress": "reg.example"}
    pulls.request("reg.example/app@sha256:" + "a" * 64, alice)
    pulls.request("reg.example/app@sha256:" + "a" * 64, bob)
    api.gate.set()
    assert pulls.wait(10)
    assert api.calls == [("reg.example/app", "sha256:" + "a" * 64, alice),
                         ("reg.example/app", "sha256:" + "a" * 64, bob)]


# --------------------------------------------------------------------------- through the API


class GatedPulls:
    """The real daemon's pull, started only when the test opens the gate; optionally
    'succeeds' by tagging a local image, as a registry pull would leave it."""

    def __init__(self, api: docker.APIClient, succeed_with: str | None = None) -> None:
        self.api = api
        self.succeed_with = succeed_with
        self.gate = threading.Event()
        self.calls = 0

    def pull(self, repository: str, tag: str | None = None, stream: bool = False,
             auth_config: dict[str, str] | None = None, decode: bool = False,
             ) -> Iterator[Mapping[str, Any]]:
        self.calls += 1

        def events() -> Iterator[Mapping[str, Any]]:
            assert self.gate.wait(20)
            if self.succeed_with is not None:
                self.api.tag(self.succeed_with, repository, tag)
                yield {"status": f"Status: Downloaded newer image for {repository}:{tag}"}
                return
            yield from self.api.pull(repository, tag=tag, stream=True, decode=True,
                                     auth_config=auth_config)

        return events()


@pytest.fixture
def gated_ie(make_settings: SettingsFactory, cleanup: None,
             ) -> Iterator[Callable[[GatedPulls | None], IEApiClient]]:
    engines: list[Engine] = []

    def make(pull_api: GatedPulls | None) -> IEApiClient:
        settings = make_settings()
        pulls = None
        if pull_api is not None:
            api: PullingAPI = pull_api
            pulls = PullManager(api, failure_ttl=300)
        engine = Engine(settings, pulls=pulls)
        engines.append(engine)
        return IEApiClient(create_app(settings, engine=engine).test_client(), settings, TOKEN)

    yield make
    for engine in engines:
        engine.pulls.wait(20)
        engine.close()


@pytest.mark.docker
def test_unpullable_image_is_pulling_then_failed_with_dockers_message(
        gated_ie: Callable[[GatedPulls | None], IEApiClient],
        docker_client: docker.DockerClient) -> None:
    image = "llo-test/not-in-any-registry:1"
    with pytest.raises(docker.errors.APIError) as direct:
        docker_client.api.pull("llo-test/not-in-any-registry", tag="1")
    gate = GatedPulls(docker_client.api)
    ie = gated_ie(gate)
    spec = {"image": image, "isJob": True}
    pulling = ie.put("ns.remote", spec)  # returns although the pull cannot even begin yet
    assert pulling.status == 202
    assert pulling.body["state"] == "pulling"
    assert pulling.body["pull"]["layersDone"] == 0
    assert ie.get("ns.remote").body["state"] == "pulling"
    gate.gate.set()
    failed = eventually(lambda: (a := ie.get("ns.remote")).body["state"] == "pullFailed" and a)
    assert failed.body["error"] == direct.value.explanation
    again = ie.put("ns.remote", spec)
    assert (again.status, again.body["state"]) == (200, "pullFailed")
    assert gate.calls == 1  # remembered: no new pull for the same spec
    changed = ie.put("ns.remote", {**spec, "envVars": [{"key": "A", "value": "b"}]})
    assert changed.status == 202
    assert gate.calls == 2  # a changed spec retries at once
    listed = {item["name"]: item["state"] for item in ie.list().body["items"]}
    assert listed["ns.remote"] in ("pulling", "pullFailed")


@pytest.mark.docker
def test_delete_while_pulling_means_no_container_later(
        gated_ie: Callable[[GatedPulls | None], IEApiClient], busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    image = f"llo-test/pulled-later:{uuid.uuid4().hex[:8]}"
    gate = GatedPulls(docker_client.api, succeed_with=busybox_image)
    ie = gated_ie(gate)
    assert ie.put("ns.late", sleeper_spec(image)).status == 202
    assert ie.delete("ns.late").body == {"name": "ns.late", "deleted": True}
    gate.gate.set()
    assert ie.engine.pulls.wait(20)
    assert docker_client.images.get(image).id == docker_client.images.get(busybox_image).id
    assert ie.get("ns.late").status == 404
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(ie.container_name("ns.late"))
    # The image is here now: the next ensure creates the container.
    created = ie.put("ns.late", sleeper_spec(image))
    assert (created.status, created.body["state"]) == (201, "running")
    docker_client.images.remove(image)


@pytest.mark.docker
def test_changed_image_being_pulled_keeps_the_old_container(
        gated_ie: Callable[[GatedPulls | None], IEApiClient], busybox_image: str,
        docker_client: docker.DockerClient) -> None:
    gate = GatedPulls(docker_client.api, succeed_with=busybox_image)
    ie = gated_ie(gate)
    old = ie.put("ns.upgrade", sleeper_spec(busybox_image))
    new_image = f"llo-test/upgrade:{uuid.uuid4().hex[:8]}"
    pulling = ie.put("ns.upgrade", sleeper_spec(new_image))
    assert (pulling.status, pulling.body["state"], pulling.body["id"]) == (
        202, "pulling", old.body["id"])
    assert docker_client.containers.get(old.body["id"]).status == "running"
    gate.gate.set()
    assert ie.engine.pulls.wait(20)
    replaced = ie.put("ns.upgrade", sleeper_spec(new_image))
    assert replaced.status == 201
    assert replaced.body["id"] != old.body["id"]
    assert replaced.body["image"] == new_image
    docker_client.images.remove(new_image)
