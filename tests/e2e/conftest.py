"""End-to-end fixtures. `stack` (tests/conftest.py) is a whole system per test: gunicorn hooks,
one ieapi per IE over the session's dockerd, the Orion-LD double and the Metacontroller driver."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack


@pytest.fixture
def ie(stack: Stack) -> IE:
    """One ready IE: its API runs and its DIE is applied (apiReady true)."""
    return stack.add_ready_ie("edge-1")
