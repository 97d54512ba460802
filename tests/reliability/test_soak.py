"""A bounded soak: SCDs come and go on two IEs (apply, spec change, delete) for LLO_SOAK_SECONDS
(default 90) through the whole Stack. Checked: no hook answer other than 200, no Failed phase, no
Warning event; the gunicorn workers of the hooks and of each IE API keep their PIDs (no crash or
timeout kill), their RSS stays within 5 % of its post-warm-up level, and their file descriptors
and threads do not grow; at the end no container or network is left behind.

Longer runs: `LLO_SOAK_SECONDS=1800 pytest tests/reliability/test_soak.py -rP`.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from testbed.procs import ServerProcess
from testbed.stack import IE, MANAGED_LABEL, NAMESPACE, Stack
from tests.reliability.helpers import (
    SCD_KIND,
    assert_exactly,
    assert_hooks_answered,
    entity,
    ready_ie,
    report,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

SOAK_SECONDS = float(os.environ.get("LLO_SOAK_SECONDS", "90"))
WARMUP_FRACTION = 0.3
RSS_GROWTH_LIMIT = 0.05
FD_SLACK = 4       # keep-alive connections come and go with load
THREAD_SLACK = 2   # a background pull thread may be alive at the end
NAMES = [f"soak-{i}" for i in range(6)]


@dataclass
class Sample:
    rss: int
    fds: int
    threads: int


@dataclass
class Worker:
    """One gunicorn worker process and what it looked like over time."""

    label: str
    process: psutil.Process
    samples: list[tuple[float, Sample]] = field(default_factory=list)

    def sample(self, at: float) -> None:
        with self.process.oneshot():
            self.samples.append((at, Sample(self.process.memory_info().rss,
                                            self.process.num_fds(),
                                            self.process.num_threads())))


def _workers(server: ServerProcess, label: str) -> list[Worker]:
    children = psutil.Process(server.pid).children()
    assert children, f"{label}: no gunicorn worker"
    return [Worker(f"{label}[{child.pid}]", child) for child in children]


def _converged(stack: Stack, live: dict[str, IE]) -> bool:
    for name in NAMES:
        if name in live:
            if stack.phase(name) != "Running":
                return False
        elif stack.get_scd(name) is not None:
            return False
    return True


@dataclass
class Churn:
    """What the soak has applied so far, and how it picks the next change."""

    stack: Stack
    ies: list[IE]
    image: str
    rng: random.Random
    live: dict[str, IE] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"create": 0, "delete": 0, "change": 0})

    def step(self) -> None:
        """One change: create a missing SCD, delete a live one, or change a live one's spec."""
        name = self.rng.choice(NAMES)
        driver = self.stack.driver
        if name not in self.live:
            self.live[name] = self.rng.choice(self.ies)
            self.versions[name] = 0
            kind = "create"
        elif self.rng.random() < 0.5:
            del self.live[name]
            driver.delete(SCD_KIND, name, NAMESPACE)
            self.counts["delete"] += 1
            return
        else:
            self.versions[name] += 1
            kind = "change"
        args = [{"key": "sleep"}, {"key": str(3600 + self.versions[name])}]
        driver.apply(Stack.scd(name, self.live[name], self.image, cliArgs=args))
        self.counts[kind] += 1


def _assert_flat(worker: Worker, warm_from: float) -> dict[str, object]:
    warm = [s for at, s in worker.samples if at >= warm_from]
    assert len(warm) >= 6, f"{worker.label}: too few samples after warm-up"
    head, tail = warm[: len(warm) // 3], warm[-max(3, len(warm) // 6):]
    base_rss = statistics.median(s.rss for s in head)
    end_rss = statistics.median(s.rss for s in tail)
    growth = (end_rss - base_rss) / base_rss
    assert growth <= RSS_GROWTH_LIMIT, f"{worker.label}: RSS grew {growth:.1%}"
    base_fds, base_threads = max(s.fds for s in head), max(s.threads for s in head)
    end = warm[-1]
    assert end.fds <= base_fds + FD_SLACK, f"{worker.label}: fds {base_fds} -> {end.fds}"
    assert end.threads <= base_threads + THREAD_SLACK, \
        f"{worker.label}: threads {base_threads} -> {end.threads}"
    return {"rss_mib": f"{base_rss / 2**20:.1f}->{end_rss / 2**20:.1f}",
            "growth": f"{growth:+.1%}", "fds": f"{base_fds}->{end.fds}",
            "threads": f"{base_threads}->{end.threads}"}


def test_soak(dockerd: str, busybox_image: str, tmp_path: Path) -> None:
    rng = random.Random(6)
    with Stack(tmp_path, dockerd, hooks_env={"LLO_LOG_LEVEL": "INFO"}) as stack:
        assert stack.orion is not None
        for name in NAMES:
            stack.orion.create_entity(entity(name), "ServiceComponent")
        ies = [ready_ie(stack, "edge-1"), ready_ie(stack, "edge-2")]
        assert stack.hooks is not None
        workers = _workers(stack.hooks, "hooks")
        for ie in ies:
            assert ie.server is not None
            workers += _workers(ie.server, f"ieapi-{ie.name}")
        churn = Churn(stack, ies, busybox_image, rng)
        live = churn.live
        started = time.monotonic()
        warm_from = started + SOAK_SECONDS * WARMUP_FRACTION
        while time.monotonic() - started < SOAK_SECONDS:
            churn.step()
            stack.driver.run_until(lambda: _converged(stack, live), timeout=120)
            now = time.monotonic()
            for worker in workers:
                worker.sample(now)

        for name in list(live):
            stack.driver.delete(SCD_KIND, name, NAMESPACE)
        live.clear()
        stack.driver.run_until(lambda: _converged(stack, live), timeout=120)
        for worker in workers:
            assert worker.process.is_running(), f"{worker.label} died or was replaced"
        failed = [w for w in stack.driver.status_writes if w.status.get("phase") == "Failed"]
        assert not failed, failed[:3]
        assert not stack.driver.warnings(), stack.driver.warnings()[:3]
        slowest = assert_hooks_answered(stack.driver)
        assert_exactly(stack, {ie.name: [] for ie in ies})
        for ie in ies:
            assert stack.client.networks.list(
                filters={"label": f"{MANAGED_LABEL}={ie.instance_id}"}) == []
        flat = {w.label: _assert_flat(w, warm_from) for w in workers}
        report("soak", seconds=SOAK_SECONDS, changes=churn.counts, hook_calls=len(
            stack.driver.hook_calls), slowest_hook_s=round(slowest, 2), workers=flat)
