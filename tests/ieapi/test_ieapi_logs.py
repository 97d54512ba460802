"""`GET /v1/containers/{name}/logs` and the failure tail, on a real gunicorn-served ieapi over
the session's real dockerd, with busybox containers that print, crash, flood and go quiet.

Leaks are measured, not assumed: threads and open file descriptors of the gunicorn worker
(/proc/<pid>/task and /proc/<pid>/fd) are counted after a warm-up, during a follow and after
it ended; memory by the worker's VmHWM (peak RSS) around a flood.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from ieapi import tail
from testbed.dockerd import remove_managed
from testbed.procs import ServerProcess, free_port, python_module_argv, running_server
from tests.ieapi.helpers import TOKEN, eventually

pytestmark = pytest.mark.docker

MAX_STREAMS = 3
CYCLES = 4  # disconnects per leak test: a leak of one per answer would show as +4
MAX_BYTES = 24 * 1024 * 1024  # above the memory bound asserted below


@pytest.fixture(scope="module")
def instance() -> str:
    return f"logs-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(dockerd: str, instance: str, docker_client: docker.DockerClient,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "IEAPI_BIND": "127.0.0.1:{port}",
        "IEAPI_TOKEN": TOKEN,
        "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:logs",
        "IEAPI_INSTANCE_ID": instance,
        "IEAPI_CONTAINER_PREFIX": f"l{instance[-8:]}",
        "IEAPI_STOP_TIMEOUT_SECONDS": "1",
        "IEAPI_LOGS_MAX_STREAMS": str(MAX_STREAMS),
        # One more thread than streams: filling the slots plus one refused request grows
        # gunicorn's pool to its maximum, so pool growth cannot pass for a leak (or hide one).
        "IEAPI_THREADS": str(MAX_STREAMS + 1),
        "IEAPI_LOGS_MAX_BYTES": str(MAX_BYTES),
        "DOCKER_HOST": dockerd,
    }
    log_path = tmp_path_factory.mktemp("ieapi-logs") / "gunicorn.log"
    with running_server(python_module_argv("ieapi"), env=env, log_path=log_path,
                        port=free_port(), name="ieapi") as process:
        yield process
    remove_managed(docker_client, instance)


@pytest.fixture
def api(server: ServerProcess) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session


def _name() -> str:
    return f"ns.c{uuid.uuid4().hex[:8]}"


def _run(api: requests.Session, server: ServerProcess, name: str, image: str, script: str,
         **extra: Any) -> dict[str, Any]:
    spec = {"image": image, "cliArgs": [{"key": "sh"}, {"key": "-c", "value": script}], **extra}
    answer = api.put(f"{server.url}/v1/containers/{name}", json=spec, timeout=30)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _state(api: requests.Session, server: ServerProcess, name: str) -> dict[str, Any]:
    answer = api.get(f"{server.url}/v1/containers/{name}", timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _logs_url(server: ServerProcess, name: str) -> str:
    return f"{server.url}/v1/containers/{name}/logs"


def _worker_pid(server: ServerProcess) -> int:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    assert len(children) == 1, children  # ieapi runs one gunicorn worker (gunicorn_conf)
    return int(children[0])


def _counts(pid: int) -> tuple[int, int]:
    """(threads, open file descriptors) of a process."""
    return (len(list(Path(f"/proc/{pid}/task").iterdir())),
            len(list(Path(f"/proc/{pid}/fd").iterdir())))


def _settled_counts(pid: int) -> tuple[int, int]:
    """The counts once they held still for 3 s (answers closed just before may still be
    winding down: their readers notice within logstream.POLL_SECONDS)."""
    samples: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples.append(_counts(pid))
        if len(samples) >= 7 and len(set(samples[-7:])) == 1:
            return samples[-1]
        time.sleep(0.5)
    raise AssertionError(f"thread and fd counts never settled: {samples[-7:]}")


def _no_more_than(pid: int, limit: tuple[int, int]) -> bool:
    now = _counts(pid)
    assert now[0] <= limit[0], f"(threads, fds) {now} > {limit}"
    assert now[1] <= limit[1], f"(threads, fds) {now} > {limit}"
    return True


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# --------------------------------------------------------------------------- plain reads


def test_tail_timestamps_since_and_exit(api: requests.Session, server: ServerProcess,
                                        busybox_image: str) -> None:
    name = _name()
    _run(api, server, name, busybox_image, "for i in $(seq 1 50); do echo line $i; done",
         isJob=True)
    eventually(lambda: _state(api, server, name)["state"] == "exited")
    url = _logs_url(server, name)
    whole = api.get(url, timeout=30)
    assert whole.status_code == 200
    assert whole.headers["Content-Type"].startswith("text/plain")
    assert whole.content.decode().splitlines() == [f"line {i}" for i in range(1, 51)]
    last = api.get(url, params={"tail": "3"}, timeout=30)
    assert last.content == b"line 48\nline 49\nline 50\n"
    stamped = api.get(url, params={"tail": "1", "timestamps": "true"}, timeout=30).text
    stamp, _, text = stamped.rstrip("\n").partition(" ")
    assert text == "line 50"
    assert stamp.startswith("20")
    assert stamp.endswith("Z")
    # Everything was written before this point: a later `since` gives nothing.
    assert api.get(url, params={"since": "2999-01-01T00:00:00Z"}, timeout=30).content == b""
    assert api.get(url, params={"since": "1h", "tail": "1"}, timeout=30).content == b"line 50\n"
    # A successful job is not a failure: no tail in its status.
    assert "lastOutput" not in _state(api, server, name)
    limited = api.get(url, params={"limitBytes": "10"}, timeout=30)
    assert limited.content == b"line 1\nlin"


def test_bad_queries_are_400_naming_the_parameter(api: requests.Session,
                                                  server: ServerProcess) -> None:
    url = _logs_url(server, "ns.whatever")
    for params, field in (({"tail": "-1"}, "tail"), ({"tail": "10001"}, "tail"),
                          ({"since": "yesterday"}, "since"), ({"follow": "maybe"}, "follow"),
                          ({"limitBytes": str(MAX_BYTES + 1)}, "limitBytes"),
                          ({"color": "true"}, "color")):
        answer = api.get(url, params=params, timeout=10)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]["field"] == field, answer.json()
    assert api.get(_logs_url(server, "-bad"), timeout=10).status_code == 400


def test_auth_and_unmanaged_containers(api: requests.Session, server: ServerProcess,
                                       busybox_image: str, docker_client: docker.DockerClient,
                                       instance: str) -> None:
    with requests.Session() as anonymous:
        anonymous.trust_env = False
        assert anonymous.get(_logs_url(server, "ns.x"), timeout=10).status_code == 401
    # A container of the right name but without our managed-by label: invisible.
    prefix = f"l{instance[-8:]}"
    foreign = docker_client.containers.run(busybox_image, ["echo", "secret of someone else"],
                                           name=f"{prefix}-ns.foreign", detach=True)
    try:
        answer = api.get(_logs_url(server, "ns.foreign"), timeout=10)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "NotFound"
        assert b"secret" not in answer.content
    finally:
        foreign.remove(force=True)
    assert api.get(_logs_url(server, "ns.absent"), timeout=10).status_code == 404


def test_binary_output_passes_unchanged_and_tail_is_clean_text(
        api: requests.Session, server: ServerProcess, busybox_image: str,
        docker_client: docker.DockerClient, instance: str) -> None:
    """The route serves Docker's bytes as Docker serves them (its json-file driver keeps
    control bytes but stores invalid UTF-8 as U+FFFD); the tail in status is clean text."""
    name = _name()
    script = r"printf 'bin\000\001\033[31m\377\376 end\n'; exit 3"
    _run(api, server, name, busybox_image, script, isJob=True)
    state = eventually(lambda: (s := _state(api, server, name))["state"] == "exited" and s)
    assert isinstance(state, dict)
    assert state["exitCode"] == 3
    raw = api.get(_logs_url(server, name), timeout=30).content
    assert raw == docker_client.containers.get(f"l{instance[-8:]}-{name}").logs()
    assert raw == "bin\x00\x01\x1b[31m\ufffd\ufffd end\n".encode()
    assert state["lastOutput"] == {
        "text": "bin\ufffd\ufffd\ufffd[31m\ufffd\ufffd end\n", "truncated": False}


# --------------------------------------------------------------------------- failure tail


def test_failure_tail_of_a_crash_loop_is_bounded_newest_kept(
        api: requests.Session, server: ServerProcess, busybox_image: str) -> None:
    """A non-job that prints 300 lines and exits 7: Docker restarts it (on-failure); the
    status carries the last 80 lines at most and 2,048 bytes at most, the newest kept."""
    name = _name()
    _run(api, server, name, busybox_image,
         "for i in $(seq 1 300); do echo \"crash line $i\"; done; exit 7")

    def failed() -> dict[str, Any] | None:
        s = _state(api, server, name)
        return s if "lastOutput" in s else None

    state = eventually(failed, timeout=30)
    assert state["state"] in ("restarting", "exited")
    assert state["exitCode"] == 7
    text = state["lastOutput"]["text"]
    assert state["lastOutput"]["truncated"] is True
    assert len(text.encode()) <= tail.MAX_BYTES
    lines = text.splitlines()
    assert len(lines) <= tail.MAX_LINES
    assert lines[-1] == "crash line 300"
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines[1:]]  # the first may be cut
    assert numbers == list(range(301 - len(numbers), 301))


def test_running_container_has_no_tail(api: requests.Session, server: ServerProcess,
                                       busybox_image: str) -> None:
    name = _name()
    created = _run(api, server, name, busybox_image, "echo hello; exec sleep 600")
    assert created["state"] == "running"
    assert "lastOutput" not in created
    assert "lastOutput" not in _state(api, server, name)
    api.delete(f"{server.url}/v1/containers/{name}", timeout=30)


# --------------------------------------------------------------------------- follow


def test_follow_ends_when_the_container_stops(api: requests.Session, server: ServerProcess,
                                              busybox_image: str) -> None:
    name = _name()
    _run(api, server, name, busybox_image,
         "for i in 1 2 3; do echo tick $i; sleep 1; done", isJob=True)
    with api.get(_logs_url(server, name), params={"follow": "true"}, stream=True,
                 timeout=(5, 30)) as answer:
        assert answer.status_code == 200
        assert answer.headers.get("Transfer-Encoding") == "chunked"
        body = b"".join(answer.iter_content(chunk_size=None))
    assert body == b"tick 1\ntick 2\ntick 3\n"


def _fill_the_slots(api: requests.Session, server: ServerProcess, name: str) -> None:
    """MAX_STREAMS follows at once fit, one more is refused with 429, and closing them frees
    the slots. Run once before counting, it also grows gunicorn's thread pool to the size the
    test needs (pool threads stay, and are not a leak)."""
    answers = [api.get(_logs_url(server, name), params={"follow": "true"}, stream=True,
                       timeout=(5, 30)) for _ in range(MAX_STREAMS)]
    try:
        assert [a.status_code for a in answers] == [200] * MAX_STREAMS
        refused = api.get(_logs_url(server, name), params={"follow": "true"}, timeout=10)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"]
        assert refused.json()["error"]["code"] == "TooManyRequests"
    finally:
        for answer in answers:
            answer.close()
    eventually(lambda: api.get(_logs_url(server, name), params={"tail": "1"},
                               timeout=10).status_code == 200)


@pytest.mark.parametrize(("script", "how"), [
    ("echo start; exec sleep 600", "client gone"),
    ("while true; do echo tick; sleep 0.05; done", "closed by the server"),
], ids=["quiet", "chatty"])
def test_client_that_leaves_mid_follow_leaves_nothing_behind(
        api: requests.Session, server: ServerProcess, busybox_image: str, script: str,
        how: str) -> None:
    """A quiet container gives nothing to write, so only watching the client's socket can
    notice that it left; a chatty one makes the server's write fail. Either way the reader
    thread and Docker's connection must go."""
    name = _name()
    _run(api, server, name, busybox_image, script)
    _fill_the_slots(api, server, name)
    pid = _worker_pid(server)
    before = _settled_counts(pid)
    for _ in range(CYCLES):
        # A raw socket: closing it is a real disconnect, not a pooled connection kept open.
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(f"GET /v1/containers/{name}/logs?follow=true HTTP/1.1\r\n"
                     f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head or (b"start" not in head and b"tick" not in head):
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        during = _counts(pid)
        assert during[0] >= before[0] + 1, (before, during)  # the reader thread is visible
        sock.close()
        limit = (before[0], during[1])
        eventually(lambda: _no_more_than(pid, limit), timeout=20)  # noqa: B023
    # CYCLES disconnects later, not one thread or descriptor more than before them.
    after = _settled_counts(pid)
    print(f"[measured] {how}: (threads, fds) before {before}, during a follow {during}, "
          f"after {CYCLES} disconnects {after}")
    assert after[0] <= before[0], (before, after)
    assert after[1] <= before[1], (before, after)
    assert server.log_tail(400).count(f"logs of {name}: answer ended ({how})") >= CYCLES
    _fill_the_slots(api, server, name)  # the slots they held are free again
    api.delete(f"{server.url}/v1/containers/{name}", timeout=30)


def test_huge_output_is_bounded_in_memory_and_bytes(
        api: requests.Session, server: ServerProcess, busybox_image: str) -> None:
    """40 MB in one line without a newline, then a crash: the answer stops at
    IEAPI_LOGS_MAX_BYTES, the worker's peak memory barely moves, the tail stays small."""
    name = _name()
    _run(api, server, name, busybox_image,
         "head -c 40000000 /dev/zero | tr '\\000' x; echo; echo last words; exit 9", isJob=True)
    eventually(lambda: _state(api, server, name)["state"] == "exited", timeout=120)
    pid = _worker_pid(server)
    peak_before = _vm_hwm_kib(pid)
    received = 0
    with api.get(_logs_url(server, name), params={"tail": "10000"}, stream=True,
                 timeout=(5, 60)) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_content(chunk_size=65536):
            received += len(chunk)
    assert received == MAX_BYTES
    state = _state(api, server, name)
    assert state["exitCode"] == 9
    last = state["lastOutput"]
    assert last["truncated"] is True
    assert last["text"].endswith("x\nlast words\n")
    assert len(last["text"].encode()) <= tail.MAX_BYTES
    growth_mib = (_vm_hwm_kib(pid) - peak_before) / 1024
    print(f"[measured] streamed {received} bytes of a 40 MB log: worker peak RSS grew "
          f"{growth_mib:.1f} MiB")
    assert growth_mib < 16, f"peak RSS grew by {growth_mib:.1f} MiB"
