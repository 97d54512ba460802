"""What the end-to-end tests check again and again: which containers exist for which SCD, how
often an IE API was called, and a deploy-and-wait shortcut. Everything reads the real systems
(dockerd, the ieapi access log, the driver's store); nothing here is a double."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ieapi.contract import LABEL_OWNER_NAME
from testbed.stack import IE, NAMESPACE, Stack

SCD_KIND = "ServiceComponentDocker"
DIE_KIND = "DockerInfrastructureElement"


def entity(name: str) -> str:
    """The ServiceComponent entity id Stack.scd's instance label decodes to."""
    return f"urn:ngsi-ld:Service:1:Component:{name}"


def owners(stack: Stack) -> Counter[str]:
    """How many managed containers each SCD name has, over every IE of the stack."""
    return Counter(c.labels.get(LABEL_OWNER_NAME, "?")
                   for found in stack.all_managed().values() for c in found)


def assert_one_container_per(stack: Stack, live: Iterable[str]) -> None:
    """Exactly one container for each live SCD, and none for anything else (no leak)."""
    assert owners(stack) == Counter(dict.fromkeys(live, 1))


def container_of(stack: Stack, name: str) -> Any:
    """The one managed container of SCD `name` (a docker SDK Container, reloaded)."""
    found = [c for cs in stack.all_managed().values() for c in cs
             if c.labels.get(LABEL_OWNER_NAME) == name]
    assert len(found) == 1, f"{name}: {len(found)} containers"
    found[0].reload()
    return found[0]


def ieapi_requests(ie: IE, method: str, scd_name: str) -> int:
    """How many `method` requests for SCD `scd_name`'s container the IE API served, counted in
    its gunicorn access log (`127.0.0.1 "PUT /v1/containers/default.web HTTP/1.1" 201 ...`)."""
    needle = f'"{method} /v1/containers/{NAMESPACE}.{scd_name} '
    return sum(needle in line for line in ie.log_path.read_text().splitlines())


def deploy(stack: Stack, ie: IE, name: str, image: str, *, entity_exists: bool = True,
           timeout: float = 60, **spec: Any) -> dict[str, Any]:
    """Apply an SCD (and its broker entity) and wait until it runs; returns its status."""
    if entity_exists and stack.orion is not None:
        stack.orion.create_entity(entity(name), "ServiceComponent")
    stack.driver.apply(Stack.scd(name, ie, image, **spec))
    stack.driver.run_until(lambda: stack.phase(name) == "Running", timeout=timeout)
    return stack.scd_status(name)


def finish_job(stack: Stack, name: str, timeout: float = 60) -> dict[str, Any]:
    """Wait for job `name` to end and be reported; returns its status. A job runs in real
    time while the driver's clock is simulated, so wait for the container itself first."""
    started = ("Running", "Succeeded", "Failed")
    stack.driver.run_until(lambda: stack.phase(name) in started, timeout=timeout)
    container_of(stack, name).wait(timeout=timeout)
    stack.driver.run_until(lambda: stack.phase(name) in started[1:], timeout=timeout)
    return stack.scd_status(name)


def delete_and_wait(stack: Stack, name: str, timeout: float = 60) -> None:
    stack.driver.delete(SCD_KIND, name, NAMESPACE)
    stack.driver.run_until(lambda: stack.get_scd(name) is None, timeout=timeout)


def reason(stack: Stack, name: str, type_: str) -> str | None:
    condition = stack.condition(name, type_)
    return None if condition is None else str(condition.get("reason"))
