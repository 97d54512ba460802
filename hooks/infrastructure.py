"""DockerInfrastructureElement decisions, free of I/O: probe result → status; container list →
whether the DIE may go.

A DIE's status changes wake every SCD that relates to it (docs/design.md §1), so it holds only
slow-changing facts: identity, versions, OS, capacity — never counts of containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hooks import conditions as cond
from hooks.errors import Failure
from hooks.reasons import Reason
from hooks.resources import (
    ANNOTATION_FORCE_DELETE,
    DIE,
    ConditionStatus,
    DIEStatus,
    ObjectMeta,
    is_cordoned,
    is_force_delete,
)
from hooks.resync import backoff
from hooks.settings import Settings
from ieapi.contract import ContainerList, IEInfo

# DIE condition types, in the order they appear in status.
READY = "Ready"                        # apiReady: reachable and the expected IE
REACHABLE = "Reachable"                # the IE API answered at all
IDENTITY_MATCHES = "IdentityMatches"   # it reports spec.id
CORDONED = "Cordoned"                  # annotation apiReady: "false"
TERMINATING = "Terminating"            # being deleted: what holds it
CONDITION_ORDER = (READY, REACHABLE, IDENTITY_MATCHES, CORDONED, TERMINATING)

# Failures after which the IE did answer (so it is reachable, just not usable).
_ANSWERED = frozenset({Reason.IE_UNAUTHORIZED, Reason.IE_ERROR, Reason.IE_REJECTED})
_MAX_NAMES = 10
_FORCE_HINT = f"delete their ServiceComponentDockers, or set annotation " \
    f"{ANNOTATION_FORCE_DELETE}: \"true\""


@dataclass(frozen=True)
class DIEReport:
    status: DIEStatus
    resync_after_seconds: float
    finalized: bool = False


def _conditions(old: DIEStatus | None, meta: ObjectMeta, now: datetime) -> cond.ConditionSet:
    """The condition set, with Cordoned (always reported) already in it."""
    cs = cond.ConditionSet(old.conditions if old else [], now, meta.generation,
                           CONDITION_ORDER)
    if is_cordoned(meta):
        cs.set(CORDONED, (True, Reason.CORDONED,
                          "annotation apiReady: \"false\": no new placements; "
                          "running containers stay"))
    else:
        cs.set(CORDONED, (False, Reason.NOT_CORDONED, ""))
    return cs


def _not_ready_resync(status: DIEStatus, now: datetime, settings: Settings) -> float:
    """Backoff, but never slower than a ready DIE's probe: a probe is cheap, and every SCD
    waiting on this IE only moves once its DIE turns ready."""
    elapsed = cond.seconds_since_transition(status.conditions, READY, now)
    return min(backoff(elapsed, settings), settings.die_resync_seconds)


def report_die(die: DIE, probe: IEInfo | Failure, now: datetime,
               settings: Settings) -> DIEReport:
    """Status from one `GET /v1/info`. apiReady: answered, and with the expected IE id."""
    old = die.status or DIEStatus()
    cs = _conditions(die.status, die.metadata, now)
    if isinstance(probe, Failure):
        answered = probe.reason in _ANSWERED
        cs.set(REACHABLE, (answered, Reason.REACHABLE if answered else probe.reason,
                           "the IE API answered" if answered else probe.message))
        cs.set(IDENTITY_MATCHES, (ConditionStatus.UNKNOWN, Reason.IDENTITY_UNKNOWN,
                                  "the IE API could not be asked"))
        cs.set(READY, (False, probe.reason, probe.message))
        # Facts from the last good probe stay: they are slow-changing and still the best known.
        status = old.model_copy(update={
            "api_ready": False, "reason": str(probe.reason), "message": probe.message,
            "conditions": cs.result(), "observed_generation": None})
        return DIEReport(status, _not_ready_resync(status, now, settings))
    matches = probe.ie_id == die.spec.id
    cs.set(REACHABLE, (True, Reason.REACHABLE, "the IE API answered"))
    if matches:
        reason, message = Reason.API_READY, f"IE API {probe.api_version} ready"
        cs.set(IDENTITY_MATCHES, (True, Reason.IDENTITY_MATCHES,
                                  f"the IE reports {probe.ie_id}"))
    else:
        reason = Reason.IDENTITY_MISMATCH
        message = f"the IE reports id {probe.ie_id!r}, spec.id is {die.spec.id!r}: wrong URL?"
        cs.set(IDENTITY_MATCHES, (False, reason, message))
    cs.set(READY, (matches, reason, message))
    status = DIEStatus(
        api_ready=matches, reason=str(reason), message=message, ie_id=probe.ie_id,
        docker_version=probe.docker_version, docker_api_version=probe.docker_api_version,
        os=probe.os, architecture=probe.architecture, cpus=probe.cpus,
        memory_bytes=probe.memory_bytes, allow_privileged=probe.allow_privileged,
        conditions=cs.result())
    if matches:
        return DIEReport(status, settings.die_resync_seconds)
    return DIEReport(status, _not_ready_resync(status, now, settings))


def finalize_die(die: DIE, listing: ContainerList | Failure | None, now: datetime,
                 settings: Settings) -> DIEReport:
    """Hold the DIE while its IE still runs managed containers (or cannot be asked), unless
    annotation force-delete: "true". `listing` is None when it was not asked (forced)."""
    old = die.status or DIEStatus()
    cs = _conditions(die.status, die.metadata, now)
    for type_ in (READY, REACHABLE, IDENTITY_MATCHES):
        cs.carry(type_)  # not re-probed while deleting
    finalized = False
    if die.force_delete:
        finalized, reason = True, Reason.FORCE_DELETED
        message = f"released by annotation {ANNOTATION_FORCE_DELETE}; containers on the IE " \
            "are left as they are"
    elif isinstance(listing, ContainerList) and not listing.items:
        finalized, reason, message = True, Reason.NO_MANAGED_CONTAINERS, "no managed containers"
    elif isinstance(listing, ContainerList):
        names = sorted(c.name for c in listing.items)
        shown = ", ".join(names[:_MAX_NAMES]) + (", ..." if len(names) > _MAX_NAMES else "")
        reason = Reason.MANAGED_CONTAINERS_REMAIN
        message = f"{len(names)} managed container(s) remain on the IE ({shown}): {_FORCE_HINT}"
    else:
        reason = listing.reason if listing is not None else Reason.IE_UNREACHABLE
        detail = listing.message if listing is not None else "not asked"
        message = f"cannot list the IE's containers ({detail}): {_FORCE_HINT}"
    cs.set(TERMINATING, (True, reason, message))
    status = old.model_copy(update={"reason": str(reason), "message": message,
                                    "conditions": cs.result(), "observed_generation": None})
    if finalized:
        return DIEReport(status, 0.0, finalized=True)
    if reason is Reason.MANAGED_CONTAINERS_REMAIN:  # waiting for SCD deletions: poll steadily
        return DIEReport(status, settings.die_resync_seconds)
    deleted_at = cond.parse_time(die.metadata.deletion_timestamp) or now
    return DIEReport(status, backoff(max(0.0, (now - deleted_at).total_seconds()), settings))


def report_invalid(meta: ObjectMeta, old: DIEStatus, message: str, now: datetime,
                   settings: Settings, *, finalizing: bool) -> DIEReport:
    """A DIE whose spec cannot be read: never usable; deletion held unless forced (its IE
    cannot be asked whether containers remain)."""
    cs = _conditions(old, meta, now)
    cs.set(READY, (False, Reason.INVALID_SPEC, message))
    forced = finalizing and is_force_delete(meta)
    if finalizing:
        cs.set(TERMINATING, (True, Reason.FORCE_DELETED, "released by annotation") if forced
               else (True, Reason.INVALID_SPEC,
                     f"invalid spec; set annotation {ANNOTATION_FORCE_DELETE}: \"true\" to "
                     "delete"))
    status = old.model_copy(update={"api_ready": False, "reason": str(Reason.INVALID_SPEC),
                                    "message": message, "conditions": cs.result(),
                                    "observed_generation": None})
    return DIEReport(status, 0.0 if forced else settings.resync_permanent_seconds,
                      finalized=forced)
