"""End-to-end fixtures: a whole Stack (gunicorn hooks, one ieapi per IE, the session's dockerd,
the Orion-LD double, the Metacontroller driver) per test, closed by PID afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import IE, Stack


@pytest.fixture
def stack(dockerd: str, busybox_image: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(tmp_path, dockerd) as s:
        yield s


@pytest.fixture
def ie(stack: Stack) -> IE:
    """One ready IE: its API runs and its DIE is applied (apiReady true)."""
    edge = stack.add_ie("edge-1")
    stack.driver.apply(edge.die())
    stack.driver.run_until(lambda: (stack.driver.get("DockerInfrastructureElement", edge.name)
                                    or {}).get("status", {}).get("apiReady") is True,
                           timeout=30)
    return edge
