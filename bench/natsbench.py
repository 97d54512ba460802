"""Part 6: the IE contract over NATS against the same over direct HTTP, side by side in one run.

One private dockerd, one local busybox image, two IEs on it: `ie-000` is the real ieapi under
gunicorn (HTTP), `ie-001` the real NATS agent behind a real nats-server (testbed/natsbus.py).
The same hooks (gunicorn, production settings) serve both, with the Orion-LD fake of bench.fakes.

1. steady sync: N SCDs per IE, converged (placed, running, broker told Running), then
   closed-loop syncs at Metacontroller's default 5 workers; each sync is one ensure to its IE.
   Windows alternate HTTP / NATS. Reported: p50, p99, syncs/s, CPU per sync of the hooks and of
   the IE side (ieapi; or agent + nats-server);
2. ensure: the hooks' IE client (`hooks.ie.IEClient`) in this process ensures an existing
   container (answer 200, unchanged), HTTP and NATS calls interleaved one by one; then the
   same with 5 threads for throughput.
"""

from __future__ import annotations

import copy
import secrets
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from bench.bodies import JSON, check_steady, converge, ie_name, render, sync_bodies
from bench.loadgen import closed_loop, percentile
from bench.servers import cpu_seconds, hooks_env, own_cpu_seconds, serving, upstreams
from hooks.http import Deadline
from hooks.ie import Endpoint, IEClient
from hooks.settings import Settings
from ieapi.contract import ContainerSpec
from testbed.dockerd import DOCKER_API_VERSION, remove_managed
from testbed.natsbus import NatsServer, start_agent
from testbed.procs import ServerProcess, python_module_argv, start_server

WORKERS = 5  # Metacontroller's default number of sync workers per controller
SLEEP = [{"key": "sleep"}, {"key": "3600"}]


@dataclass(frozen=True)
class Plan:
    scds: int
    window: float
    warmup: float
    repeats: int
    ensures: int


FULL = Plan(scds=20, window=6.0, warmup=1.0, repeats=3, ensures=400)
QUICK = Plan(scds=3, window=1.0, warmup=0.2, repeats=1, ensures=40)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def _bodies(n: int, url: str, first: int, ie_index: int, image: str) -> list[JSON]:
    bodies = sync_bodies(n, [url], first=first, first_ie=ie_index)
    for body in bodies:
        spec = body["parent"]["spec"]
        spec.update({"image": image, "cliArgs": copy.deepcopy(SLEEP), "ports": []})
        spec.pop("exposePorts", None)
    return bodies


def _window(hooks: ServerProcess, ie_side: list[int], reqs: list[bytes],
            duration: float) -> dict[str, Any]:
    cpu_h0, cpu_ie0 = cpu_seconds(hooks.pid), sum(cpu_seconds(p) for p in ie_side)
    result = closed_loop("127.0.0.1", hooks.port, reqs, concurrency=WORKERS, duration=duration)
    cpu_h1, cpu_ie1 = cpu_seconds(hooks.pid), sum(cpu_seconds(p) for p in ie_side)
    if result.errors or result.non_200():
        raise RuntimeError(f"{result.errors} errors, {result.non_200()} non-200")
    n = max(1, result.count)
    return {"syncs": result.count, "rate": round(result.rate, 1),
            "p50_ms": _ms(percentile(result.latencies, 50)),
            "p99_ms": _ms(percentile(result.latencies, 99)),
            "hooks_cpu_ms_per_sync": round((cpu_h1 - cpu_h0) / n * 1e3, 3),
            "ie_cpu_ms_per_sync": round((cpu_ie1 - cpu_ie0) / n * 1e3, 3)}


def _median(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda r: r[key])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["windows"] = len(rows)
    row["p50_all"] = [r["p50_ms"] for r in rows]
    return row


def _ensure_latencies(client: IEClient, eps: dict[str, Endpoint], spec: ContainerSpec,
                      count: int) -> dict[str, list[float]]:
    """Sequential ensures of an existing container, HTTP and NATS interleaved call by call."""
    out: dict[str, list[float]] = {name: [] for name in eps}
    for _ in range(count):
        for name, ep in eps.items():
            started = time.perf_counter()
            client.ensure(ep, "bench.ensure", spec, Deadline(8.0))
            out[name].append(time.perf_counter() - started)
    return out


def _ensure_throughput(client: IEClient, ep: Endpoint, spec: ContainerSpec,
                       duration: float) -> dict[str, Any]:
    stop = time.monotonic() + duration
    counts: list[int] = []
    lock = threading.Lock()
    cpu0 = own_cpu_seconds()

    def worker() -> None:
        done = 0
        while time.monotonic() < stop:
            client.ensure(ep, "bench.ensure", spec, Deadline(8.0))
            done += 1
        with lock:
            counts.append(done)

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in range(WORKERS):
            pool.submit(worker)
    elapsed = time.perf_counter() - started
    total = sum(counts)
    return {"ensures": total, "rate": round(total / elapsed, 1),
            "client_cpu_ms_per_ensure": round((own_cpu_seconds() - cpu0) / max(1, total) * 1e3,
                                              3)}


def run(workdir: Path, docker_host: str, image: str, plan: Plan,
        log: Any = print) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    instances = {"http": f"bh-{secrets.token_hex(3)}", "nats": f"bn-{secrets.token_hex(3)}"}
    engine = {"DOCKER_HOST": docker_host, "IEAPI_STOP_TIMEOUT_SECONDS": "1",
              "IEAPI_LOG_LEVEL": "warning"}
    client = docker.DockerClient(base_url=docker_host, version=DOCKER_API_VERSION, timeout=60)
    try:
        with upstreams(workdir, 1) as up, NatsServer(workdir / "nats") as bus:
            token = (up.token_dir / ie_name(0)).read_text().strip()
            http = start_server(python_module_argv("ieapi"), log_path=workdir / "ieapi.log",
                                name="ieapi", env={
                                    **engine, "IEAPI_TOKEN": token,
                                    "IEAPI_BIND": "127.0.0.1:{port}",
                                    "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:0",
                                    "IEAPI_INSTANCE_ID": instances["http"],
                                    "IEAPI_CONTAINER_PREFIX": instances["http"]})
            agent = start_agent(nats=bus, die_name=ie_name(1), identity=bus.add_ie(ie_name(1)),
                                log_path=workdir / "agent.log", env={
                                    **engine, "IEAPI_IE_ID": "urn:ngsi-ld:InfrastructureElement:1",
                                    "IEAPI_INSTANCE_ID": instances["nats"],
                                    "IEAPI_CONTAINER_PREFIX": instances["nats"],
                                    "IEAPI_LOG_LEVEL": "warning"})
            assert bus.process is not None
            try:
                env = hooks_env(up.token_dir, up.fakes.broker_url, extra=bus.hooks_env())
                with serving(workdir, env) as hooks:
                    result = _measure(plan, hooks, http=http, agent=agent, bus=bus,
                                      token_dir=up.token_dir, image=image, log=log)
            finally:
                agent.stop()
                http.stop()
    finally:
        for instance in instances.values():
            remove_managed(client, instance)
        client.close()
    return result


def _measure(plan: Plan, hooks: ServerProcess, *, http: ServerProcess, agent: ServerProcess,
             bus: NatsServer, token_dir: Path, image: str, log: Any) -> dict[str, Any]:
    assert bus.process is not None
    sides = {"http": [http.pid], "nats": [agent.pid, bus.process.pid]}
    bodies = {"http": _bodies(plan.scds, http.url, 0, 0, image),
              "nats": _bodies(plan.scds, bus.url, plan.scds, 1, image)}
    for name, these in bodies.items():
        started = time.monotonic()
        converge(these, hooks.port, concurrency=WORKERS)
        check_steady(these)
        log(f"  {name}: {plan.scds} SCDs steady in {time.monotonic() - started:.1f}s")
    reqs = {name: render(these, hooks.port) for name, these in bodies.items()}
    windows: dict[str, list[dict[str, Any]]] = {"http": [], "nats": []}
    for _ in range(plan.repeats):
        for name in ("http", "nats"):
            closed_loop("127.0.0.1", hooks.port, reqs[name], concurrency=WORKERS,
                        duration=plan.warmup)
            windows[name].append(_window(hooks, sides[name], reqs[name], plan.window))
    sync = {name: _median(rows, "p50_ms") for name, rows in windows.items()}
    for name, row in sync.items():
        log(f"  sync {name:4s} {row['rate']:7.1f} syncs/s  p50 {row['p50_ms']:6.2f} ms  "
            f"p99 {row['p99_ms']:6.2f} ms  hooks cpu {row['hooks_cpu_ms_per_sync']:.2f} "
            f"ms/sync  IE side {row['ie_cpu_ms_per_sync']:.2f} ms/sync")

    settings = Settings(ie_token_dir=token_dir, nats_nkey_seed_file=bus.hooks_identity
                        .nkey_seed_file)
    ie = IEClient(settings)
    eps = {"http": Endpoint(ie=ie_name(0), url=http.url, token_key=ie_name(0)),
           "nats": Endpoint(ie=ie_name(1), url=bus.url, token_key=ie_name(1))}
    spec = ContainerSpec.model_validate({"image": image, "cliArgs": SLEEP})
    try:
        _ensure_latencies(ie, eps, spec, 3)  # create, then warm both paths
        lat = _ensure_latencies(ie, eps, spec, plan.ensures)
        ensure: dict[str, Any] = {}
        for name, values in lat.items():
            ensure[name] = {"calls": len(values), "p50_ms": _ms(percentile(values, 50)),
                            "p99_ms": _ms(percentile(values, 99)),
                            "mean_ms": _ms(statistics.fmean(values)),
                            **_ensure_throughput(ie, eps[name], spec, plan.window)}
            log(f"  ensure {name:4s} p50 {ensure[name]['p50_ms']:6.2f} ms  p99 "
                f"{ensure[name]['p99_ms']:6.2f} ms  {ensure[name]['rate']:7.1f}/s at "
                f"{WORKERS} threads")
    finally:
        ie.nats.close()
    return {"scds_per_ie": plan.scds, "workers": WORKERS, "window_seconds": plan.window,
            "windows_per_point": plan.repeats, "sync": sync, "sync_windows": windows,
            "ensure": ensure,
            "sync_p50_ratio": round(sync["nats"]["p50_ms"] / sync["http"]["p50_ms"], 3),
            "ensure_p50_ratio": round(ensure["nats"]["p50_ms"] / ensure["http"]["p50_ms"], 3)}
