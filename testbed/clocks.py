"""The test driver's clocks: simulated time that jumps to the next scheduled item, or real
time that sleeps."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SimulatedClock:
    """Starts at the real time (so timestamps look real) and jumps when told to."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        self._now = max(self._now, when)

    def advance(self, seconds: float) -> None:
        self._now += seconds


class RealClock:
    def now(self) -> float:
        return time.time()

    def advance_to(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            time.sleep(delay)

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


Clock = SimulatedClock | RealClock


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
