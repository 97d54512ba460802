"""Migration fixtures: a whole Stack with three IEs (ie-a, ie-b, ie-c), each with its own ieapi
process over the session's dockerd and its DIE applied and ready. Every test starts its
component on ie-a and moves it; ie-c is the 'third IE' and the witness that nothing leaks
onto an IE that was never selected."""

from __future__ import annotations

import pytest

from testbed.stack import IE, Stack

IE_NAMES = ("ie-a", "ie-b", "ie-c")


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The session-wide `stack` fixture (tests/conftest.py), with the three IEs ready."""
    for name in IE_NAMES:
        stack.driver.apply(stack.add_ie(name).die())
    stack.driver.run_until(lambda: all(stack.die_ready(name) for name in IE_NAMES), timeout=30)
    return stack


@pytest.fixture
def ie_a(stack: Stack) -> IE:
    return stack.ies["ie-a"]


@pytest.fixture
def ie_b(stack: Stack) -> IE:
    return stack.ies["ie-b"]


@pytest.fixture
def ie_c(stack: Stack) -> IE:
    return stack.ies["ie-c"]
