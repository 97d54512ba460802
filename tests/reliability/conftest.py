"""Fixtures for the fault and race tests. `stack` (tests/conftest.py) is a whole system per
test, closed by PID afterwards."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack
from tests.reliability.helpers import ready_ie


@pytest.fixture
def ie(stack: Stack) -> IE:
    return ready_ie(stack)
