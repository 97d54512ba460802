"""The Docker Engine of an IE restarts while managed containers run (a dedicated private dockerd,
so the session's engine is never disturbed). While it is down the IE API answers 503 and the
hooks say so; when it is back the same containers run again, none duplicated."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from testbed.dockerd import (
    DOCKER_API_VERSION,
    Dockerd,
    restart_dockerd,
)
from testbed.images import ensure_busybox
from testbed.stack import Stack
from tests.reliability.helpers import (
    SLEEP,
    assert_exactly,
    assert_hooks_answered,
    condition_history,
    entity,
    ready_ie,
    report,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]


def test_dockerd_restart_keeps_one_container_each(own_dockerd: Dockerd, tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=own_dockerd.url, version=DOCKER_API_VERSION, timeout=30)
    image = ensure_busybox(client)
    client.close()
    with Stack(tmp_path / "stack", own_dockerd.url) as stack:
        assert stack.orion is not None
        ie = ready_ie(stack)
        for name in ("web", "db"):
            stack.orion.create_entity(entity(name), "ServiceComponent")
            stack.driver.apply(Stack.scd(name, ie, image, cliArgs=SLEEP))
        stack.driver.run_until(
            lambda: stack.phase("web") == "Running" and stack.phase("db") == "Running",
            timeout=60)
        ids_before = sorted(c.id for c in ie.containers(stack.client))

        def while_down() -> None:
            stack.driver.run_for(15)

        restart_dockerd(own_dockerd, while_down=while_down)
        history = condition_history(stack.driver, "web", "IEReady")
        down = [(r, m) for s, r, m in history if s == "False"]
        assert down, history
        assert all(r in {"IEError", "IENotReady"} for r, _ in down), down
        assert any("Docker" in m for _, m in down), down

        stack.driver.run_for(30)
        stack.driver.run_until(
            lambda: stack.phase("web") == "Running" and stack.phase("db") == "Running"
            and (stack.condition("web", "IEReady") or {}).get("status") == "True",
            timeout=60)
        slowest = assert_hooks_answered(stack.driver)
        assert_exactly(stack, {ie.name: ["web", "db"]})
        assert sorted(c.id for c in ie.containers(stack.client)) == ids_before  # not recreated
        report("dockerd restart", slowest_hook_s=round(slowest, 2), ie_ready_while_down=down[:2],
               phases=[stack.phase("web"), stack.phase("db")])
