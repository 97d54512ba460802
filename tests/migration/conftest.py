"""Migration fixtures: a whole Stack with three IEs (ie-a, ie-b, ie-c), each with its own ieapi
process over the session's dockerd and its DIE applied and ready. Every test starts its
component on ie-a and moves it; ie-c is the 'third IE' and the witness that nothing leaks
onto an IE that was never selected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.migration.helpers import DIE_KIND
from tests.support.stack import IE, Stack

IE_NAMES = ("ie-a", "ie-b", "ie-c")


@pytest.fixture
def stack(dockerd: str, busybox_image: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(tmp_path, dockerd) as s:
        for name in IE_NAMES:
            s.driver.apply(s.add_ie(name).die())
        s.driver.run_until(lambda: all(
            ((s.driver.get(DIE_KIND, name) or {}).get("status") or {}).get("apiReady") is True
            for name in IE_NAMES), timeout=30)
        yield s


@pytest.fixture
def ie_a(stack: Stack) -> IE:
    return stack.ies["ie-a"]


@pytest.fixture
def ie_b(stack: Stack) -> IE:
    return stack.ies["ie-b"]


@pytest.fixture
def ie_c(stack: Stack) -> IE:
    return stack.ies["ie-c"]
