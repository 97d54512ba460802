"""resyncAfterSeconds policy: the only place backoff lives (never in status).

A temporary failure is retried after a delay that grows with how long it has lasted (the
failing condition's lastTransitionTime, or the deletion timestamp): half the elapsed time,
clamped to [base, max]. Successive retries are thus about 1.5x apart, with no counter to store.
"""

from __future__ import annotations

from enum import IntEnum

from hooks.settings import Settings


class Pace(IntEnum):
    """How soon an object wants its next sync; the most urgent part of a status wins."""

    INTENT = 0       # a new IE was just recorded in status; the calls happen on the next sync
    CONVERGING = 1   # something is in motion (pull, start)
    ERROR = 2        # a temporary failure: backoff
    STEADY = 3       # nothing to do but watch
    PERMANENT = 4    # waiting for a spec or config change


def backoff(elapsed_seconds: float, settings: Settings) -> float:
    return min(settings.resync_error_max_seconds,
               max(settings.resync_error_base_seconds, elapsed_seconds / 2.0))


def seconds(pace: Pace, settings: Settings, *, error_elapsed: float = 0.0) -> float:
    """resyncAfterSeconds for `pace`; `error_elapsed` feeds the backoff.

    INTENT has its own short pace because the CompositeControllers ignore status-only updates
    (`ignoreStatusChanges: true`): the sync that acts on a just-recorded intent comes only from
    resyncAfterSeconds."""
    if pace is Pace.INTENT:
        return settings.resync_intent_seconds
    if pace is Pace.CONVERGING:
        return settings.resync_converging_seconds
    if pace is Pace.ERROR:
        return backoff(error_elapsed, settings)
    if pace is Pace.STEADY:
        return settings.resync_steady_seconds
    return settings.resync_permanent_seconds
