"""What every fault and race test checks: hooks answered 200 within Metacontroller's timeout,
conditions named the fault while it lasted, and the IEs hold exactly the right containers."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from testbed.metacontroller import Driver, HookCall
from testbed.stack import IE, NAMESPACE, Stack

SCD_KIND = "ServiceComponentDocker"
DIE_KIND = "DockerInfrastructureElement"
HOOK_TIMEOUT_SECONDS = 10.0  # Metacontroller's default (docs/design.md §1)
SLEEP = [{"key": "sleep"}, {"key": "3600"}]
NAME_LABEL = "llo.aeros-project.eu/name"


def entity(name: str) -> str:
    """The ServiceComponent URN Stack.scd derives from an SCD name."""
    return f"urn:ngsi-ld:Service:1:Component:{name}"


def die_ready(stack: Stack, name: str) -> bool:
    return stack.die_ready(name)


def die_condition(stack: Stack, name: str, type_: str) -> dict[str, str]:
    for cond in (stack.driver.get(DIE_KIND, name) or {}).get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return {}


def ready_ie(stack: Stack, name: str = "edge-1", **env: str) -> IE:
    """An IE whose API runs (with extra IEAPI_* `env`) and whose DIE is applied and ready."""
    return stack.add_ready_ie(name, env=env)


def kill_ieapi(ie: IE) -> None:
    """SIGKILL the IE API's whole process group (gunicorn master and worker): a crash, not a
    shutdown. Its port is closed afterwards until `ie.start()`."""
    assert ie.server is not None, "IE API not running"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(ie.server.pid, signal.SIGKILL)
    ie.server.process.wait(10)
    ie.stop()  # bookkeeping only: the process is gone


def hook_calls_since(driver: Driver, start: int) -> list[HookCall]:
    return driver.hook_calls[start:]


def assert_hooks_answered(driver: Driver, start: int = 0,
                          limit: float = HOOK_TIMEOUT_SECONDS) -> float:
    """Every hook call from index `start` on got a 200 within `limit` real seconds; returns the
    slowest duration seen (for the report)."""
    calls = hook_calls_since(driver, start)
    assert calls, "no hook call was made"
    bad = [(c.hook, c.status_code, c.error) for c in calls if c.status_code != 200 or c.error]
    assert not bad, f"hook calls that Metacontroller counts as failed: {bad[:5]}"
    slowest = max(c.seconds for c in calls)
    assert slowest < limit, f"a hook took {slowest:.2f}s (limit {limit}s)"
    return slowest


def condition_history(driver: Driver, name: str, type_: str) -> list[tuple[str, str, str]]:
    """(status, reason, message) of condition `type_` in every status written for SCD `name`,
    consecutive duplicates dropped: what an operator watching `kubectl get -w` saw."""
    seen: list[tuple[str, str, str]] = []
    for write in driver.status_writes:
        if write.kind != SCD_KIND or write.name != name:
            continue
        for cond in write.status.get("conditions") or []:
            if cond.get("type") == type_:
                item = (cond["status"], cond["reason"], cond.get("message", ""))
                if not seen or seen[-1] != item:
                    seen.append(item)
    return seen


def reasons_seen(driver: Driver, name: str, type_: str) -> set[str]:
    return {reason for _, reason, _ in condition_history(driver, name, type_)}


def phases_seen(driver: Driver, name: str) -> list[str]:
    phases: list[str] = []
    for write in driver.status_writes:
        if write.kind == SCD_KIND and write.name == name:
            phase = write.status.get("phase")
            if phase and (not phases or phases[-1] != phase):
                phases.append(phase)
    return phases


def managed_names(stack: Stack) -> dict[str, Counter[str]]:
    """Per IE: how many managed containers carry each `<namespace>.<scd>` name."""
    return {ie_name: Counter(c.labels.get(NAME_LABEL, "?") for c in containers)
            for ie_name, containers in stack.all_managed().items()}


def assert_exactly(stack: Stack, live: Mapping[str, Iterable[str]]) -> None:
    """Each IE holds exactly one container per live SCD placed on it (and it runs), nothing
    else: no duplicate, no leftover of a deleted SCD."""
    want = {ie_name: Counter(f"{NAMESPACE}.{scd}" for scd in scds)
            for ie_name, scds in live.items()}
    have = managed_names(stack)
    for ie_name in stack.ies:
        assert have.get(ie_name, Counter()) == want.get(ie_name, Counter()), \
            f"IE {ie_name}: containers {dict(have.get(ie_name, {}))}, expected " \
            f"{dict(want.get(ie_name, {}))}"
    for ie_name, containers in stack.all_managed().items():
        for container in containers:
            assert container.status == "running", \
                f"{ie_name}: {container.name} is {container.status}"


def container_labels(stack: Stack, ie: IE, scd: str) -> dict[str, Any]:
    (container,) = [c for c in ie.containers(stack.client)
                    if c.labels.get(NAME_LABEL) == f"{NAMESPACE}.{scd}"]
    return dict(container.labels)


def report(what: str, **numbers: object) -> None:
    """Print measured numbers (shown with `pytest -rP`; docs/reliability.md quotes them)."""
    print(f"[measured] {what}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
