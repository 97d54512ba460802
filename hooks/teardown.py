"""Deletion of a ServiceComponentDocker, free of I/O: which containers to delete, when the
finalizer may go, and the status meanwhile. Rules: docs/architecture.md ("Finalize")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hooks import conditions as cond
from hooks.brokerstatus import FINISHED, REMOVING, broker_report, entity_id
from hooks.observations import Action, ActionKind, BrokerObservation, BrokerOutcome, Observation
from hooks.reasons import Reason
from hooks.resources import (
    ANNOTATION_ABANDON,
    BROKER_SYNCED,
    CONTAINER_READY,
    DIE,
    READY,
    SCD_CONDITION_ORDER,
    Cleanup,
    ConditionStatus,
    Migration,
    Phase,
    Placement,
    SCDObject,
    SCDStatus,
)
from hooks.resync import backoff
from hooks.servicecomponent import SCDReport, as_cleanup, ie_names, index
from hooks.settings import Settings


@dataclass(frozen=True)
class FinalizeTarget:
    placement: Placement
    role: str              # placement | migration | cleanup
    die_exists: bool       # its DIE is the related one and exists: never released by grace


@dataclass(frozen=True)
class FinalizePlan:
    targets: tuple[FinalizeTarget, ...]
    actions: tuple[Action, ...]
    removing: str | None   # broker value to send before deleting (Removing), if any


def finalize_plan(scd: SCDObject, die: DIE | None, settings: Settings) -> FinalizePlan:
    """Every container the status names gets a DELETE; the broker hears Removing once."""
    old = scd.status
    named: list[tuple[Placement, str]] = []
    if old.placement is not None:
        named.append((old.placement, "placement"))
    if old.migration is not None:
        named.append((old.migration.to, "migration"))
    named.extend((c, "cleanup") for c in old.pending_cleanups)
    targets: list[FinalizeTarget] = []
    for recorded, role in named:
        if any(t.placement.same_target(recorded) for t in targets):
            continue
        p = recorded
        visible = die is not None and die.metadata.name == p.ie
        if die is not None and visible:
            p = p.model_copy(update={
                "api_url": die.spec.api.url,
                "token_key": die.token_key,
                "insecure_skip_tls_verify": die.spec.api.insecure_skip_tls_verify})
        targets.append(FinalizeTarget(p, role, visible))
    reported = old.broker.reported if old.broker else None
    removing = REMOVING if targets and settings.broker_enabled \
        and entity_id(scd.metadata) is not None and reported not in (REMOVING, FINISHED) \
        else None
    return FinalizePlan(targets=tuple(targets),
                        actions=tuple(Action(ActionKind.DELETE, t.placement) for t in targets),
                        removing=removing)


@dataclass(frozen=True, kw_only=True)
class FinalizeDecision:
    finalized: bool
    reason: Reason
    message: str
    remaining: tuple[FinalizeTarget, ...]
    resync_after_seconds: float


def finalize_decision(scd: SCDObject, fplan: FinalizePlan, observations: Sequence[Observation],
                      now: datetime, settings: Settings) -> FinalizeDecision:
    """Release the finalizer when every IE confirmed, or when the containers are given up:
    annotation abandon-containers: "true", or the orphan grace after deletionTimestamp passed
    and no remaining one sits on an IE whose DIE still exists."""
    obs = index(observations)
    remaining: list[FinalizeTarget] = []
    problems: list[str] = []
    for t in fplan.targets:
        o = obs.get((ActionKind.DELETE.value, t.placement.ie))
        if o is not None and o.confirmed_gone:
            continue
        remaining.append(t)
        why = o.failure.message if o is not None and o.failure is not None else "not attempted"
        problems.append(f"IE {t.placement.ie!r}: {why}")
    if not remaining:
        msg = "every container is deleted" if fplan.targets else "nothing was ever placed"
        return FinalizeDecision(finalized=True, reason=Reason.DELETED, message=msg, remaining=(),
                                resync_after_seconds=0.0)
    detail = "; ".join(problems)
    if scd.metadata.annotations.get(ANNOTATION_ABANDON, "").strip().lower() == "true":
        return FinalizeDecision(
            finalized=True, reason=Reason.CONTAINERS_ABANDONED,
            message=f"released by annotation {ANNOTATION_ABANDON}: {detail}",
            remaining=tuple(remaining), resync_after_seconds=0.0)
    deleted_at = cond.parse_time(scd.metadata.deletion_timestamp) or now
    elapsed = max(0.0, (now - deleted_at).total_seconds())
    grace_end = deleted_at + timedelta(seconds=settings.orphan_grace_seconds)
    held_by_die = any(t.die_exists for t in remaining)
    if not held_by_die and now >= grace_end:
        return FinalizeDecision(
            finalized=True, reason=Reason.ORPHAN_GRACE_EXPIRED,
            message=f"released after {settings.orphan_grace_seconds:g}s: {detail}",
            remaining=tuple(remaining), resync_after_seconds=0.0)
    resync = backoff(elapsed, settings)
    if not held_by_die:
        resync = min(resync, max(1.0, (grace_end - now).total_seconds()))
    hint = "" if held_by_die else f" (released {settings.orphan_grace_seconds:g}s after " \
        "deletion if it stays unreachable)"
    return FinalizeDecision(
        finalized=False, reason=Reason.DELETE_PENDING,
        message=f"waiting for the IE to confirm the delete{hint}; set annotation "
        f"{ANNOTATION_ABANDON}: \"true\" to give the container up: {detail}",
        remaining=tuple(remaining), resync_after_seconds=resync)


def finished_request(scd: SCDObject, fplan: FinalizePlan, decision: FinalizeDecision,
                     removing: Sequence[BrokerObservation], settings: Settings) -> str | None:
    """Finished goes to the broker once the SCD is released, unless it already has it."""
    if not decision.finalized or not settings.broker_enabled \
            or entity_id(scd.metadata) is None:
        return None
    reported = scd.status.broker.reported if scd.status.broker else None
    for attempt in removing:
        if attempt.outcome is BrokerOutcome.ACCEPTED:
            reported = attempt.value
    if reported == FINISHED or (not fplan.targets and reported is None):
        return None
    return FINISHED


def finalize_report(scd: SCDObject, decision: FinalizeDecision,
                    broker: Sequence[BrokerObservation], *, now: datetime,
                    settings: Settings) -> SCDReport:
    """The status while (or when) finalizing: what is left to delete stays named in it."""
    left = {(t.placement.ie, t.placement.container): t for t in decision.remaining}
    old = scd.status

    def kept(p: Placement | None) -> Placement | None:
        if p is None or decision.finalized:
            return None
        t = left.get((p.ie, p.container))
        return t.placement if t is not None else None

    placement = kept(old.placement)
    migration = kept(old.migration.to) if old.migration else None
    cleanups: list[Cleanup] = []
    for c in [] if decision.finalized else old.pending_cleanups:
        t = left.get((c.ie, c.container))
        if t is None or any(p is not None and c.same_target(p) for p in (placement, migration)):
            continue
        if not any(c.same_target(k) for k in cleanups):
            cleanups.append(as_cleanup(t.placement, c.reason))
    desired = FINISHED if decision.finalized else REMOVING
    b = broker_report(scd, desired, broker, settings)
    cs = cond.ConditionSet(old.conditions, now, scd.metadata.generation,
                           SCD_CONDITION_ORDER)
    cs.set(READY, (ConditionStatus.FALSE, Reason.TERMINATING, decision.message))
    cs.set(CONTAINER_READY, (ConditionStatus.FALSE, decision.reason, decision.message))
    cs.set(BROKER_SYNCED, b.condition)
    status = SCDStatus(
        phase=Phase.TERMINATING, reason=str(decision.reason), message=decision.message,
        ie=placement.ie if placement else None, names=ie_names(scd), placement=placement,
        migration=Migration(to=migration) if migration else None, pending_cleanups=cleanups,
        broker=b.info, conditions=cs.result())
    return SCDReport(status=status, resync_after_seconds=decision.resync_after_seconds,
                   finalized=decision.finalized,
                   orphaned=tuple(t.placement for t in decision.remaining)
                   if decision.finalized else ())
