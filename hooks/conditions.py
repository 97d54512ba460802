"""metav1.Condition helpers.

`lastTransitionTime` changes only when a condition's status flips: a status that changed on
every call would be written on every call, and each write triggers another sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from hooks.reasons import Reason
from hooks.resources import Condition, ConditionStatus

ConditionValue = tuple[ConditionStatus | bool, Reason | str, str]  # status, reason, message


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serializes."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(conditions: Sequence[Condition], type_: str, status: ConditionStatus | bool,
                  reason: Reason | str, message: str, *, now: datetime,
                  generation: int | None) -> list[Condition]:
    """Return `conditions` with `type_` set; its lastTransitionTime is kept unless the status
    flips (or it is new). Other conditions keep their place; a new one is appended."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    old = find(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == status \
        else timestamp(now)
    new = Condition(type=type_, status=status, reason=str(reason), message=message,
                    last_transition_time=since, observed_generation=generation)
    out = [new if c.type == type_ else c for c in conditions]
    if old is None:
        out.append(new)
    return out


def seconds_since_transition(conditions: Iterable[Condition], type_: str,
                             now: datetime) -> float:
    """How long `type_` has had its current status (0 when unknown): the base of backoff."""
    cond = find(conditions, type_)
    since = parse_time(cond.last_transition_time) if cond else None
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def ordered(conditions: Iterable[Condition], order: Sequence[str]) -> list[Condition]:
    """Conditions in a fixed type order (unknown types last, by name): byte-stable output."""
    rank = {t: i for i, t in enumerate(order)}
    return sorted(conditions, key=lambda c: (rank.get(c.type, len(rank)), c.type))


class ConditionSet:
    """Builds a status's condition list from scratch: each `set` takes its lastTransitionTime
    from the old list (kept unless the status flips); `result` is in a fixed type order."""

    def __init__(self, old: Sequence[Condition], now: datetime, generation: int | None,
                 order: Sequence[str]) -> None:
        self.old, self.now, self.generation, self.order = list(old), now, generation, order
        self.out: list[Condition] = []

    def set(self, type_: str, value: ConditionValue) -> None:
        status, reason, message = value
        merged = set_condition(self.old, type_, status, reason, message, now=self.now,
                               generation=self.generation)
        new = find(merged, type_)
        assert new is not None
        self.out = [c for c in self.out if c.type != type_] + [new]

    def carry(self, type_: str) -> None:
        """Keep an old condition as it was (with the current observedGeneration)."""
        old = find(self.old, type_)
        if old is not None:
            self.set(type_, (old.status, old.reason, old.message))

    def elapsed(self, type_: str) -> float:
        return seconds_since_transition(self.out, type_, self.now)

    def result(self) -> list[Condition]:
        return ordered(self.out, self.order)
