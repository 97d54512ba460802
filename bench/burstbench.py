"""Part 6: bursts under Metacontroller's API rate limit, in one run with the real hooks
(gunicorn, production resync settings), two real IEs (ieapi over the private dockerd) and the
Metacontroller-faithful driver with its client-go token bucket and workers
(tests/support/ratelimit.py), on a real clock.

Two bursts, each applied at once and then deleted at once:
- one service: ``service`` components of one service on one IE (one shared network);
- a burst: ``burst`` SCDs over two IEs (one service per IE).
Each at Metacontroller's default flags and at the flags LLO Docker ships
(metacontroller/upstream/flags.yaml), measured side by side, next to ieapi's own floor for the
same containers (all PUTs at once straight to ieapi, then all DELETEs).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors

from bench import machine
from bench.ieapibench import ViaApi
from hooks.settings import Settings
from testbed.mcflags import DEFAULTS, MetacontrollerFlags, shipped
from testbed.metacontroller import Driver, RealClock
from testbed.ratelimit import ApiRequest
from testbed.stack import FAST_HOOKS_ENV, IE, Stack

SCD = "ServiceComponentDocker"
SLEEP = [{"key": "sleep"}, {"key": "3600"}]


@dataclass(frozen=True)
class Plan:
    service: int        # components of one service on one IE
    burst: int          # SCDs over two IEs
    burst_service: int  # components per service in the burst (services of one IE each)
    timeout: float


FULL = Plan(service=50, burst=200, burst_service=10, timeout=900)
QUICK = Plan(service=4, burst=8, burst_service=2, timeout=120)
FLOOR_TIMEOUT = 600.0


def production_hooks_env() -> dict[str, str]:
    """The hooks' production defaults for everything the test stack speeds up (resync paces,
    timeouts), so the bursts see the syncs a real deployment makes."""
    defaults = Settings()
    env = {name: str(getattr(defaults, name[len("LLO_"):].lower()))
           for name in FAST_HOOKS_ENV if name != "LLO_LOG_LEVEL"}
    env["LLO_LOG_LEVEL"] = "WARNING"
    return env


# --------------------------------------------------------------------------- ieapi's floor


def _floor(ies: list[IE], count: int, *, image: str, prefix: str,
           service_size: int) -> dict[str, Any]:
    """All PUTs at once (one thread each) straight to the IEs' APIs, until every container
    runs; then all DELETEs at once. Same IEs and services as the SCDs of the burst."""
    clients = [ViaApi(ie.url, ie.token, image) for ie in ies]
    names = [f"floor-{prefix}-{i:03d}" for i in range(count)]

    def client(i: int) -> ViaApi:
        return clients[i % len(clients)]

    def service_of(i: int) -> str:
        return f"{i % len(clients)}-{i // (len(clients) * service_size)}"

    def create(i: int) -> float:
        way = client(i)
        spec = {"image": image, "cliArgs": SLEEP, "service": f"floor-{prefix}-{service_of(i)}",
                "alias": names[i]}
        # A long client timeout: the floor is what ieapi can do, however long it queues.
        answer = way.session.put(f"{way.url}/v1/containers/{names[i]}", json=spec,
                                 timeout=FLOOR_TIMEOUT)
        if answer.status_code != 201:
            raise RuntimeError(f"PUT {names[i]}: {answer.status_code} {answer.text}")
        state = answer.json()["state"]
        while state != "running":
            time.sleep(0.05)
            state = way.session.get(f"{way.url}/v1/containers/{names[i]}",
                                    timeout=FLOOR_TIMEOUT).json()["state"]
        return time.perf_counter()

    def remove(i: int) -> None:
        way = client(i)
        answer = way.session.delete(f"{way.url}/v1/containers/{names[i]}",
                                    timeout=FLOOR_TIMEOUT)
        if answer.status_code != 200 or not answer.json().get("deleted"):
            raise RuntimeError(f"DELETE {names[i]}: {answer.status_code} {answer.text}")

    try:
        started_create = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            done = list(pool.map(create, range(count)))
        running = time.perf_counter() - started_create
        started = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(remove, range(count)))
        gone = time.perf_counter() - started
    finally:
        for c in clients:
            c.session.close()
    return {"containers": count, "ies": len(ies), "service_size": service_size,
            "seconds_to_all_running": round(running, 2),
            "seconds_to_all_gone": round(gone, 2),
            "running_over_time": sorted(round(t - started_create, 3) for t in done)}


# --------------------------------------------------------------------------- through the driver


def _per_scd(log: list[ApiRequest], names: list[str]) -> dict[str, float]:
    by_name: dict[str, list[ApiRequest]] = {n: [] for n in names}
    for r in log:
        if r.kind == SCD and r.name in by_name:
            by_name[r.name].append(r)
    requests = [len(v) for v in by_name.values()]
    writes = [sum(1 for r in v if r.write) for v in by_name.values()]
    return {"requests_mean": round(statistics.mean(requests), 2), "requests_max": max(requests),
            "writes_mean": round(statistics.mean(writes), 2), "writes_max": max(writes)}


class _Progress:
    """Which SCDs reached Running / are gone, from the driver's own records (cheap to poll)."""

    def __init__(self, driver: Driver, names: list[str]) -> None:
        self.driver, self.names = driver, set(names)
        self.running_at: dict[str, float] = {}
        self._seen = len(driver.status_writes)

    def all_running(self) -> bool:
        writes = self.driver.status_writes
        for w in writes[self._seen:]:
            if w.kind == SCD and w.name in self.names and w.status.get("phase") == "Running":
                self.running_at.setdefault(w.name, w.at)
        self._seen = len(writes)
        return len(self.running_at) == len(self.names)

    def all_gone(self) -> bool:
        return not any(self.driver.get(SCD, n) for n in self.names)


def _scenario(stack: Stack, driver: Driver, ies: list[IE], count: int, *, image: str,
              prefix: str, service_size: int, timeout: float,
              log: Callable[[str], None]) -> dict[str, Any]:
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    mark, writes_mark = len(driver.api_requests), len(driver.status_writes)
    progress = _Progress(driver, names)
    started_wall, started = time.time(), time.perf_counter()
    assert stack.orion is not None
    for name in names:  # the HLO creates the ServiceComponent entity before the SCD
        stack.orion.create_entity(f"urn:ngsi-ld:Service:1:Component:{name}", "ServiceComponent")
    for i, name in enumerate(names):
        ie = ies[i % len(ies)]
        service = f"urn_ngsi-ld_Service_{prefix}{i % len(ies)}-{i // (len(ies) * service_size)}"
        driver.apply(Stack.scd(name, ie, image, service=service, cliArgs=SLEEP))
    driver.run_until(progress.all_running, timeout=timeout)
    running = time.perf_counter() - started
    applied = driver.api_requests[mark:]
    reasons = Counter(w.status.get("reason") for w in driver.status_writes[writes_mark:]
                      if w.kind == SCD and w.name in progress.names)
    mark = len(driver.api_requests)
    started = time.perf_counter()
    for name in names:
        driver.delete(SCD, name)
    driver.run_until(progress.all_gone, timeout=timeout)
    gone = time.perf_counter() - started
    deleted = driver.api_requests[mark:]
    leaked = sum(len(ie.containers(stack.client)) for ie in ies)
    out: dict[str, Any] = {
           "scds": count, "ies": len(ies), "service_size": service_size,
           "seconds_to_all_running": round(running, 2),
           "seconds_to_all_gone": round(gone, 2),
           "running_over_time": sorted(round(t - started_wall, 3)
                                       for t in progress.running_at.values()),
           "apply": _per_scd(applied, names), "delete": _per_scd(deleted, names),
           "requests_during_apply": len(applied), "requests_during_delete": len(deleted),
           "token_wait_seconds_apply": round(sum(r.waited for r in applied), 1),
           "containers_left": leaked,
           "status_write_reasons_to_running": dict(reasons.most_common())}
    log(f"    {count} SCDs on {len(ies)} IE(s): all Running after {out['seconds_to_all_running']}"
        f" s, all gone after {out['seconds_to_all_gone']} s; per SCD "
        f"{out['apply']['requests_mean']} requests ({out['apply']['writes_mean']} writes) to "
        f"Running, {out['delete']['requests_mean']} ({out['delete']['writes_mean']}) to gone")
    return out


def _with_flags(stack: Stack, ies: list[IE], flags: MetacontrollerFlags, *, image: str,
                plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    driver = Driver(stack.hooks_url, clock=RealClock(), flags=flags,
                    secrets=stack.driver.secrets)  # the hook secret the hooks were given
    try:
        for ie in ies:
            driver.apply(ie.die())
        driver.run_until(lambda: all(
            ((driver.get("DockerInfrastructureElement", ie.name) or {}).get("status") or {})
            .get("apiReady") for ie in ies), timeout=60)
        load = machine.load_average()
        service = _scenario(stack, driver, ies[:1], plan.service, image=image, prefix="svc",
                            service_size=plan.service, timeout=plan.timeout, log=log)
        burst = _scenario(stack, driver, ies, plan.burst, image=image, prefix="burst",
                          service_size=plan.burst_service, timeout=plan.timeout, log=log)
    finally:
        driver.close()
    return {"flags": asdict(flags), "load_average_start": load, "service": service,
            "burst": burst}


def run(workdir: Path, docker_host: str, image: str, plan: Plan,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    out: dict[str, Any] = {"date": machine.describe()["date"],
                           "load_average_start": machine.load_average(),
                           "hooks_env": production_hooks_env()}
    stack = Stack(workdir, docker_host, clock=RealClock(), hooks_env=out["hooks_env"])
    try:
        ies = [stack.add_ie("edge-1"), stack.add_ie("edge-2")]
        floor_service = _floor(ies[:1], plan.service, image=image, prefix="svc",
                               service_size=plan.service)
        floor_burst = _floor(ies, plan.burst, image=image, prefix="burst",
                             service_size=plan.burst_service)
        out["floor"] = {"service": floor_service, "burst": floor_burst}
        log(f"  ieapi floor: {plan.service} containers running after "
            f"{floor_service['seconds_to_all_running']} s (gone after "
            f"{floor_service['seconds_to_all_gone']} s); {plan.burst} over 2 IEs: "
            f"{floor_burst['seconds_to_all_running']} s ({floor_burst['seconds_to_all_gone']} s)")
        out["runs"] = {}
        for label, flags in (("defaults", DEFAULTS), ("shipped", shipped())):
            log(f"  Metacontroller {label}: {flags.describe()}")
            out["runs"][label] = _with_flags(stack, ies, flags, image=image, plan=plan, log=log)
    finally:
        try:
            stack.close()
        except docker.errors.APIError as exc:  # the results stand; say what was left
            log(f"  cleanup: {exc}")
            out["cleanup_error"] = str(exc)
    out["load_average_end"] = machine.load_average()
    return out
