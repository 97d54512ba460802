"""Races: two hooks replicas syncing one SCD at once, a delete while the image is still being
pulled, a spec change during a pull. Pulls are held midway for real (a gated relay in front of
a real registry) and released when the test says so."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from testbed.procs import free_port, python_module_argv, running_server
from testbed.stack import FAST_HOOKS_ENV, IE, MANAGED_LABEL, NAMESPACE, Stack
from tests.reliability.helpers import (
    DIE_KIND,
    SCD_KIND,
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    report,
)
from tests.support.registry import gated_image

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

CONCURRENT_SYNCS = 50


@pytest.fixture
def second_replica(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """Another gunicorn hooks process with the same configuration (another Deployment pod)."""
    assert stack.orion is not None
    env = {"LLO_LISTEN": "127.0.0.1:{port}", "LLO_IE_TOKEN_DIR": str(stack.token_dir),
           "LLO_HOOK_SECRET_FILE": str(stack.hook_secret_file), **FAST_HOOKS_ENV,
           "LLO_BROKER_URL": stack.orion.url}
    with running_server(python_module_argv("hooks"), env=env, port=free_port(),
                        log_path=tmp_path / "hooks-2.log", name="hooks-2") as server:
        yield server.url


def _sync_body(stack: Stack, name: str, ie: IE) -> dict[str, Any]:
    """The sync request Metacontroller would send now (placement already in the status)."""
    ctl = stack.driver.controller_for(SCD_KIND)
    return {"controller": ctl.manifest, "parent": stack.get_scd(name), "children": {},
            "related": {f"{DIE_KIND}.llo.aeros-project.eu/v1alpha1":
                        {ie.name: stack.driver.get(DIE_KIND, ie.name)}},
            "finalizing": False}


def test_two_replicas_sync_one_scd_concurrently(stack: Stack, ie: IE, busybox_image: str,
                                                second_replica: str) -> None:
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: bool(stack.scd_status("web").get("placement")), timeout=30)
    assert ie.containers(stack.client) == []  # intent recorded, nothing created yet
    body = _sync_body(stack, "web", ie)
    urls = [stack.hooks_url, second_replica]
    barrier = threading.Barrier(CONCURRENT_SYNCS)

    def fire(index: int) -> tuple[int, float, dict[str, Any]]:
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait(30)
            started = time.monotonic()
            answer = session.post(urls[index % 2] + "/scd/sync", json=body, timeout=15,
                                  headers=stack.hook_auth)
            return answer.status_code, time.monotonic() - started, answer.json()

    with ThreadPoolExecutor(CONCURRENT_SYNCS) as pool:
        results = list(pool.map(fire, range(CONCURRENT_SYNCS)))

    codes = [code for code, _, _ in results]
    slowest = max(seconds for _, seconds, _ in results)
    assert codes == [200] * CONCURRENT_SYNCS, codes
    assert slowest < 10, slowest
    (container,) = ie.containers(stack.client)
    reported = [(r["status"].get("container") or {}).get("id") for _, _, r in results]
    assert {i for i in reported if i} == {container.id}, set(reported)
    stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=30)
    assert_exactly(stack, {ie.name: ["web"]})
    report("50 concurrent syncs on 2 replicas", slowest_s=round(slowest, 2),
           answered_with_container=sum(1 for i in reported if i), containers=1)


def _container_events(client: docker.DockerClient, ie: IE, since: float) -> list[str]:
    """Docker's container events of this IE since `since` (create, start, destroy, ...)."""
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container",
                                    "label": f"{MANAGED_LABEL}={ie.instance_id}"})
    return [f"{e['Action']} {e['Actor']['Attributes'].get('image', '')}" for e in events]


def _wait_for_image(client: docker.DockerClient, image: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            time.sleep(0.2)
    raise TimeoutError(f"{image} not pulled within {timeout}s")


def _pulling(stack: Stack, name: str) -> bool:
    return (stack.condition(name, "ContainerReady") or {}).get("reason") == "ImagePulling"


def test_delete_while_pulling(stack: Stack, ie: IE, docker_client: docker.DockerClient,
                              busybox_image: str, tmp_path: Path) -> None:
    since = time.time() - 1
    with gated_image(docker_client, busybox_image, tmp_path / "registry") as (image, relay):
        stack.driver.apply(Stack.scd("web", ie, image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: _pulling(stack, "web"), timeout=30)
        relay.wait_until_holding(1)
        stack.driver.delete(SCD_KIND, "web", NAMESPACE)
        stack.driver.run_until(lambda: stack.get_scd("web") is None, timeout=60)
        relay.release()
        _wait_for_image(docker_client, image)  # the pull finished after the delete
        stack.driver.run_for(30)
        time.sleep(1)  # a create racing the end of the pull would show up by now
        events = _container_events(docker_client, ie, since)
    assert events == [], events  # never created, never started
    slowest = assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: []})
    report("delete while pulling", slowest_hook_s=round(slowest, 2), container_events=events)


def test_spec_change_during_pull_newest_wins(stack: Stack, ie: IE,
                                             docker_client: docker.DockerClient,
                                             busybox_image: str, tmp_path: Path) -> None:
    since = time.time() - 1
    with gated_image(docker_client, busybox_image, tmp_path / "registry") as (image, relay):
        stack.driver.apply(Stack.scd("web", ie, image, cliArgs=SLEEP))
        stack.driver.run_until(lambda: _pulling(stack, "web"), timeout=30)
        relay.wait_until_holding(1)
        newest = [{"key": "sleep"}, {"key": "3602"}]
        stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=newest))
        stack.driver.run_until(lambda: stack.phase("web") == "Running", timeout=60)
        relay.release()
        _wait_for_image(docker_client, image)  # the abandoned pull completes
        stack.driver.run_for(60)
        events = _container_events(docker_client, ie, since)
    assert_exactly(stack, {ie.name: ["web"]})
    (container,) = ie.containers(stack.client)
    assert container.attrs["Config"]["Image"] == busybox_image
    assert container.attrs["Config"]["Cmd"] == ["sleep", "3602"]
    assert stack.scd_status("web")["observedGeneration"] == 2
    assert not [e for e in events if image in e], events  # the old spec never got a container
    slowest = assert_hooks_answered(stack.driver)
    report("spec change during pull", slowest_hook_s=round(slowest, 2), container_events=events)
