"""Fixtures for the fault and race tests: a whole Stack per test (gunicorn hooks, one ieapi per
IE, the session's dockerd, the Orion-LD double, the driver), closed by PID afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import ready_ie
from tests.support.stack import IE, Stack


@pytest.fixture
def stack(dockerd: str, busybox_image: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(tmp_path, dockerd) as s:
        yield s


@pytest.fixture
def ie(stack: Stack) -> IE:
    return ready_ie(stack)
