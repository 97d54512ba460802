"""Specs the CRD schema accepts but Docker cannot run: an image name Docker rejects, one host
port wanted by two SCDs on one IE, a port already taken on the IE by a process or by a container
the LLO does not manage. Each ends in a clear condition, touches nothing it does not own, and
runs once the obstacle is gone."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import docker
import pytest

from testbed.procs import free_port
from testbed.stack import FAST_HOOKS_ENV, IE, NAMESPACE, Stack
from tests.reliability.helpers import (
    SCD_KIND,
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    report,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

PERMANENT_SECONDS = float(FAST_HOOKS_ENV["LLO_RESYNC_PERMANENT_SECONDS"])


def _failed(stack: Stack, name: str) -> tuple[str | None, str]:
    status = stack.scd_status(name)
    return status.get("reason"), status.get("message", "")


def test_image_docker_rejects_and_duplicate_port(stack: Stack, ie: IE, busybox_image: str) -> None:
    bad = "Library/BusyBox:Latest"  # passes the CRD's pattern; uppercase repository: invalid
    stack.driver.apply(Stack.scd("badimage", ie, bad, cliArgs=SLEEP))
    port = free_port("0.0.0.0")
    ports = [{"number": port, "protocol": "TCP"}]
    stack.driver.apply(Stack.scd("first", ie, busybox_image, cliArgs=SLEEP, ports=ports,
                                 exposePorts=True))
    stack.driver.run_until(lambda: stack.phase("first") == "Running", timeout=60)
    stack.driver.apply(Stack.scd("second", ie, busybox_image, cliArgs=SLEEP, ports=ports,
                                 exposePorts=True))
    stack.driver.run_until(lambda: stack.phase("badimage") == "Failed"
                           and stack.phase("second") == "Failed", timeout=60)

    reason, message = _failed(stack, "badimage")
    assert reason == "InvalidSpec", (reason, message)
    assert "image" in message, message
    assert bad in message, message
    reason, message = _failed(stack, "second")
    assert reason == "PortInUse", (reason, message)
    assert str(port) in message, message
    assert_exactly(stack, {ie.name: ["first"]})

    # The obstacles go: a corrected image, the first SCD deleted.
    stack.driver.apply(Stack.scd("badimage", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.delete(SCD_KIND, "first", NAMESPACE)
    stack.driver.run_for(PERMANENT_SECONDS + 5)
    stack.driver.run_until(lambda: stack.phase("second") == "Running"
                           and stack.phase("badimage") == "Running", timeout=60)
    assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["badimage", "second"]})


@contextlib.contextmanager
def _listening(port: int) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("0.0.0.0", port))  # where Docker would publish
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()


def test_port_taken_by_foreign_process_or_container(stack: Stack, ie: IE, busybox_image: str,
                                                     docker_client: docker.DockerClient) -> None:
    by_process, by_container = free_port("0.0.0.0"), free_port("0.0.0.0")
    foreign = docker_client.containers.run(
        busybox_image, ["sleep", "3600"], detach=True, init=True,
        ports={f"{by_container}/tcp": by_container}, name=f"foreign-{by_container}")
    try:
        with _listening(by_process):
            for name, port in (("p1", by_process), ("p2", by_container)):
                stack.driver.apply(Stack.scd(name, ie, busybox_image, cliArgs=SLEEP,
                                             ports=[{"number": port, "protocol": "TCP"}],
                                             exposePorts=True))
            stack.driver.run_until(lambda: stack.phase("p1") == "Failed"
                                   and stack.phase("p2") == "Failed", timeout=60)
            for name, port in (("p1", by_process), ("p2", by_container)):
                reason, message = _failed(stack, name)
                assert reason == "PortInUse", (name, reason, message)
                assert str(port) in message, message
            assert_exactly(stack, {ie.name: []})
            foreign.reload()
            assert foreign.status == "running"  # a container the LLO does not own is untouched
            blocked = {n: _failed(stack, n) for n in ("p1", "p2")}
        foreign.remove(force=True)
        stack.driver.run_for(PERMANENT_SECONDS + 5)
        stack.driver.run_until(lambda: stack.phase("p1") == "Running"
                               and stack.phase("p2") == "Running", timeout=60)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            foreign.remove(force=True)
    slowest = assert_hooks_answered(stack.driver)
    assert_exactly(stack, {ie.name: ["p1", "p2"]})
    report("port taken", slowest_hook_s=round(slowest, 2), blocked=blocked)
