"""Part 4: the IE Docker API (real gunicorn, real private dockerd, local busybox image) against
the docker SDK doing the same Docker work directly, in one run on the same dockerd.

- cycle: create+start+inspect (ieapi: PUT), inspect (GET), stop+remove (DELETE) of one container,
  alternating ieapi and SDK so that both see the same daemon state and machine load;
- burst: 50 containers of one service (a shared user-defined network, DNS aliases) created at
  once, time until all run; then all deleted at once. The SDK baseline uses as many threads as
  ieapi serves (8), which is what ieapi can do in parallel.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests

from testbed.procs import ServerProcess, free_port, python_module_argv, start_server

STOP_TIMEOUT = 2
IEAPI_THREADS = 8  # ieapi/gunicorn_conf.py default


@dataclass(frozen=True)
class Plan:
    cycles: int
    burst: int


FULL = Plan(cycles=20, burst=50)
QUICK = Plan(cycles=3, burst=8)


def start_ieapi(workdir: Path, docker_host: str, token: str, instance: str) -> ServerProcess:
    env = {"IEAPI_BIND": "127.0.0.1:{port}", "IEAPI_TOKEN": token,
           "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:bench",
           "IEAPI_HOSTNAME": "bench", "IEAPI_INSTANCE_ID": instance,
           "IEAPI_CONTAINER_PREFIX": instance, "IEAPI_STOP_TIMEOUT_SECONDS": str(STOP_TIMEOUT),
           "IEAPI_LOG_LEVEL": "warning", "DOCKER_HOST": docker_host}
    return start_server(python_module_argv("ieapi"), env=env, port=free_port(),
                        log_path=workdir / "ieapi.log", name="ieapi")


class Direct:
    """The same Docker work through the docker SDK's low-level client, as ieapi does it."""

    def __init__(self, client: docker.DockerClient, image: str, prefix: str) -> None:
        self.api: docker.APIClient = client.api
        self.image, self.prefix = image, prefix

    def create(self, name: str, network: str | None = None) -> dict[str, Any]:
        api = self.api
        host_config = api.create_host_config(
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 0}, init=True,
            network_mode=network)
        networking = None
        if network:
            networking = api.create_networking_config(
                {network: api.create_endpoint_config(aliases=[name])})
        created = api.create_container(
            image=self.image, command=["sleep", "3600"], name=f"{self.prefix}-{name}",
            labels={"llo.aeros-project.eu/managed-by": self.prefix}, host_config=host_config,
            networking_config=networking, detach=True)
        api.start(created["Id"])
        attrs: dict[str, Any] = api.inspect_container(created["Id"])
        return attrs

    def inspect(self, name: str) -> dict[str, Any]:
        attrs: dict[str, Any] = self.api.inspect_container(f"{self.prefix}-{name}")
        return attrs

    def remove(self, name: str) -> None:
        self.api.stop(f"{self.prefix}-{name}", timeout=STOP_TIMEOUT)
        self.api.remove_container(f"{self.prefix}-{name}", force=True, v=True)


class ViaApi:
    def __init__(self, url: str, token: str, image: str) -> None:
        self.url, self.image = url, image
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {token}"

    def create(self, name: str, service: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"image": self.image,
                                "cliArgs": [{"key": "sleep"}, {"key": "3600"}]}
        if service:
            spec.update(service=service, alias=name)
        answer = self.session.put(f"{self.url}/v1/containers/{name}", json=spec, timeout=60)
        if answer.status_code != 201:
            raise RuntimeError(f"PUT {name}: {answer.status_code} {answer.text}")
        body: dict[str, Any] = answer.json()
        return body

    def inspect(self, name: str) -> dict[str, Any]:
        answer = self.session.get(f"{self.url}/v1/containers/{name}", timeout=60)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def remove(self, name: str) -> None:
        answer = self.session.delete(f"{self.url}/v1/containers/{name}", timeout=60)
        if answer.status_code != 200 or not answer.json().get("deleted"):
            raise RuntimeError(f"DELETE {name}: {answer.status_code} {answer.text}")


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _cycle(way: Direct | ViaApi, name: str) -> dict[str, float]:
    out = {"create_start": _timed(lambda: way.create(name)),
           "inspect": _timed(lambda: way.inspect(name)),
           "stop_remove": _timed(lambda: way.remove(name))}
    out["total"] = sum(out.values())
    return out


def _median(rows: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows) * 1e3, 1)


def _burst(create: Callable[[str], dict[str, Any]], remove: Callable[[str], Any],
           names: list[str], threads: int, *, runs: Callable[[dict[str, Any]], bool],
           read: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Create all at once (`threads` in parallel), wait until every one runs; then remove.
    The create's own answer says whether it runs; only when not is it read again."""
    started = time.perf_counter()
    done_at: list[float] = []

    def one(name: str) -> None:
        answer = create(name)
        while not runs(answer):
            time.sleep(0.02)
            answer = read(name)
        done_at.append(time.perf_counter() - started)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    all_running = time.perf_counter() - started
    started_rm = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(remove, names))
    return {"containers": len(names), "threads": threads,
            "seconds_to_all_running": round(all_running, 2),
            "first_running_seconds": round(min(done_at), 2),
            "running_over_time": sorted(round(t, 3) for t in done_at),
            "seconds_to_all_removed": round(time.perf_counter() - started_rm, 2)}


def run(workdir: Path, docker_host: str, image: str, plan: Plan,
        log: Any = print) -> dict[str, Any]:
    token = secrets.token_hex(16)
    instance = f"bench{secrets.token_hex(3)}"
    client = docker.DockerClient(base_url=docker_host, version="1.41", timeout=60)
    client.api.trust_env = False
    server = start_ieapi(workdir, docker_host, token, instance)
    direct = Direct(client, image, f"{instance}d")
    via = ViaApi(server.url, token, image)
    try:
        # one untimed warm-up each (image layers and the SDK/gunicorn code paths)
        _cycle(direct, "warm")
        _cycle(via, "warm")
        sdk_rows, api_rows = [], []
        for i in range(plan.cycles):
            sdk_rows.append(_cycle(direct, f"c{i}"))
            api_rows.append(_cycle(via, f"c{i}"))
        sdk_ms = {k: _median(sdk_rows, k) for k in sdk_rows[0]}
        api_ms = {k: _median(api_rows, k) for k in api_rows[0]}
        cycle: dict[str, Any] = {
            "cycles": plan.cycles, "sdk_ms": sdk_ms, "ieapi_ms": api_ms,
            "sdk_totals_ms": [round(r["total"] * 1e3, 1) for r in sdk_rows],
            "ieapi_totals_ms": [round(r["total"] * 1e3, 1) for r in api_rows],
            "ratio": round(api_ms["total"] / sdk_ms["total"], 3)}
        log(f"  cycle: SDK {sdk_ms['total']} ms, ieapi {api_ms['total']} ms "
            f"(ratio {cycle['ratio']}) {api_ms}")

        names = [f"b{i:02d}" for i in range(plan.burst)]
        service = "urn_ngsi-ld_Service_bench"
        api_burst = _burst(lambda n: via.create(n, service), via.remove, names, plan.burst,
                           runs=lambda a: a["state"] == "running", read=via.inspect)
        network = f"{instance}d-net"
        client.api.create_network(network, driver="bridge")
        try:
            sdk_burst = _burst(lambda n: direct.create(n, network), direct.remove, names,
                               IEAPI_THREADS, runs=lambda a: a["State"]["Status"] == "running",
                               read=direct.inspect)
        finally:
            client.api.remove_network(network)
        burst = {"ieapi": api_burst, "sdk": sdk_burst,
                 "ratio": round(api_burst["seconds_to_all_running"]
                                / sdk_burst["seconds_to_all_running"], 3)}
        log(f"  burst of {plan.burst}: ieapi all running after "
            f"{api_burst['seconds_to_all_running']} s (removed in "
            f"{api_burst['seconds_to_all_removed']} s), SDK with {IEAPI_THREADS} threads "
            f"{sdk_burst['seconds_to_all_running']} s")
    finally:
        server.stop()
        for c in client.containers.list(all=True, filters={"label": "llo.aeros-project.eu/"
                                                                     f"managed-by={instance}"}):
            c.remove(force=True)
        for c in client.containers.list(all=True, filters={"name": f"{instance}d-"}):
            c.remove(force=True)
        for net in client.networks.list(names=[f"{instance}"]):
            net.remove()
        client.close()
    return {"cycle": cycle, "burst": burst}
