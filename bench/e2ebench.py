"""Part 5: apply → Running through the Metacontroller-faithful driver, with the real hooks
(gunicorn), a real ieapi per IE, a private dockerd and a local busybox image, on a real clock.

The hooks record intent first and act on the next sync, after `LLO_RESYNC_INTENT_SECONDS`
(default 0.2 s): that pause is part of the latency and is reported next to it. The driver runs
one sync at a time, so there is no Metacontroller queueing beyond what the hooks ask for.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooks.settings import Settings
from testbed.metacontroller import RealClock
from testbed.stack import Stack


@dataclass(frozen=True)
class Plan:
    applies: int


FULL = Plan(applies=20)
QUICK = Plan(applies=3)


def _running(stack: Stack, name: str) -> bool:
    return stack.phase(name) == "Running"


def run(workdir: Path, docker_host: str, image: str, plan: Plan,
        log: Any = print) -> dict[str, Any]:
    latencies: list[float] = []
    syncs: list[int] = []
    with Stack(workdir, docker_host, clock=RealClock(),
               hooks_env={"LLO_LOG_LEVEL": "INFO"}) as stack:
        ie = stack.add_ie("edge-1")
        stack.driver.apply(ie.die())
        stack.driver.run_until(lambda: bool(
            (stack.driver.get("DockerInfrastructureElement", "edge-1") or {})
            .get("status", {}).get("apiReady")), timeout=30)
        for i in range(plan.applies):
            name = f"bench-{i:02d}"
            before = len(stack.driver.calls())
            started = time.perf_counter()
            stack.driver.apply(Stack.scd(name, ie, image,
                                         cliArgs=[{"key": "sleep"}, {"key": "3600"}]))
            stack.driver.run_until(functools.partial(_running, stack, name), timeout=30)
            latencies.append(time.perf_counter() - started)
            syncs.append(sum(1 for c in stack.driver.calls()[before:]
                             if c.request.get("parent", {}).get("metadata", {}).get("name")
                             == name and c.hook in ("sync", "customize")))
    intent = Settings().resync_intent_seconds
    ms = sorted(round(x * 1e3, 1) for x in latencies)
    out = {"applies": plan.applies, "latencies_ms": ms,
           "p50_ms": round(statistics.median(latencies) * 1e3, 1),
           "max_ms": ms[-1], "min_ms": ms[0],
           "intent_pause_ms": round(intent * 1e3, 1),
           "hook_calls_per_apply": statistics.median(syncs)}
    log(f"  apply → Running: p50 {out['p50_ms']} ms (min {out['min_ms']}, max {out['max_ms']}), "
        f"of which the intent pause {out['intent_pause_ms']} ms; "
        f"{out['hook_calls_per_apply']} hook calls per apply")
    return out
