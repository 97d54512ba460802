"""What status.broker and the BrokerSynced condition say, free of I/O: which value the broker
should hold for a phase, whether it must be told, and what its answers mean for the status.
`reported` only ever takes a value the broker accepted, so a lost update is retried."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hooks import conditions as cond
from hooks.conditions import ConditionValue
from hooks.observations import BrokerObservation, BrokerOutcome
from hooks.reasons import Reason
from hooks.resources import (
    ANNOTATION_ENTITY_ID,
    BROKER_SYNCED,
    LABEL_INSTANCE,
    BrokerInfo,
    ConditionStatus,
    EntitySource,
    ObjectMeta,
    Phase,
    SCDObject,
)
from hooks.resync import Pace
from hooks.settings import Settings

NGSI_LD_PREFIX = "urn:ngsi-ld:"
_ENCODED_PREFIX = "urn_ngsi-ld_"

# ServiceComponentStatus values (urn:ngsi-ld:ServiceComponentStatus:<value>) aerOS uses.
STARTING, RUNNING, FAILED, MIGRATING = "Starting", "Running", "Failed", "Migrating"
REMOVING, FINISHED = "Removing", "Finished"

# What the broker is told for each phase; phases absent here have no opinion (the IE could not
# be asked, or nothing is placed yet) and leave the broker's value as it is.
BROKER_VALUE: Mapping[Phase, str] = {
    Phase.DEPLOYING: STARTING,
    Phase.RUNNING: RUNNING,
    Phase.SUCCEEDED: FINISHED,
    Phase.FAILED: FAILED,
    Phase.MIGRATING: MIGRATING,
}


def _label_body(label: str) -> str:
    """The instance label without the `urn_ngsi-ld_` prefix of the full-URN encoding."""
    return label[len(_ENCODED_PREFIX):] if label.startswith(_ENCODED_PREFIX) else label


def entity_id(metadata: ObjectMeta) -> str | None:
    """The ServiceComponent URN an SCD names by itself: the exact annotation when present,
    else decoded from the instance label, which the HLO writes as
    `urn_ngsi-ld_Service_1_Component_1` or `Service_1_Component_1` (every `:` of the id became
    `_`). The decoding is a guess when an id part has `_` itself: `entity_target` says what
    to do when the broker has no such entity."""
    exact = metadata.annotations.get(ANNOTATION_ENTITY_ID, "").strip()
    if exact:
        return exact
    label = metadata.labels.get(LABEL_INSTANCE, "").strip()
    if not label:
        return None
    return NGSI_LD_PREFIX + _label_body(label).replace("_", ":")


def encodes_to(entity: str, label: str) -> bool:
    """True when the HLO would write `label` for `entity` (either encoding)."""
    return entity.startswith(NGSI_LD_PREFIX) and \
        entity[len(NGSI_LD_PREFIX):].replace(":", "_") == _label_body(label)


def _ere_escape(char: str) -> str:
    """A literal character in a POSIX/PCRE regular expression (`-` needs no escape outside a
    bracket, and some dialects read `\\-` as an error)."""
    return "\\" + char if char in ".[]()*+?{}|^$\\" else char


def id_pattern(label: str) -> str:
    """The NGSI-LD idPattern of every id the HLO could have encoded as `label`: each `_`
    was a `:` or an `_`; anchored, because the broker's regex search is not."""
    body = _label_body(label)
    return "^" + "".join(map(_ere_escape, NGSI_LD_PREFIX)) + "".join(
        "[:_]" if char == "_" else _ere_escape(char) for char in body) + "$"


@dataclass(frozen=True)
class EntityTarget:
    """Which ServiceComponent entity to write, and how it was found.

    `confirmed`: the annotation, or an id an earlier write (this hook call, or recorded in
    status.broker with its entitySource) proved right; it is written and nothing else is
    tried. Otherwise `entity` is the decoded label, a guess: the broker is asked to write it,
    and when the broker has no such entity and the label has `_`, `pattern` is queried and
    its only match is used (docs/architecture.md "Orion-LD")."""

    entity: str
    source: EntitySource
    confirmed: bool
    label: str = ""
    pattern: str | None = None


def entity_target(scd: SCDObject,
                  earlier: Sequence[BrokerObservation] = ()) -> EntityTarget | None:
    """Resolution order: annotation; an entity found before and still matching the label
    (status.broker.entitySource Label/Query, or an accepted write earlier in this hook call);
    else the decoded label, with an idPattern query as the fallback. None: nothing names one."""
    metadata = scd.metadata
    exact = metadata.annotations.get(ANNOTATION_ENTITY_ID, "").strip()
    if exact:
        return EntityTarget(exact, EntitySource.ANNOTATION, confirmed=True)
    label = metadata.labels.get(LABEL_INSTANCE, "").strip()
    if not label:
        return None
    for attempt in reversed(earlier):
        if attempt.outcome is BrokerOutcome.ACCEPTED and attempt.entity and attempt.source:
            return EntityTarget(attempt.entity, attempt.source, confirmed=True, label=label)
    old = scd.status.broker
    if old is not None and old.entity_id and old.entity_source in (EntitySource.LABEL,
                                                                   EntitySource.QUERY) \
            and encodes_to(old.entity_id, label):
        return EntityTarget(old.entity_id, old.entity_source, confirmed=True, label=label)
    decoded = entity_id(metadata)
    assert decoded is not None
    pattern = id_pattern(label) if "_" in _label_body(label) else None
    return EntityTarget(decoded, EntitySource.LABEL, confirmed=False, label=label,
                        pattern=pattern)


def broker_request(scd: SCDObject, value: str | None, settings: Settings) -> str | None:
    """The value to send to the broker now, or None: disabled, no entity, no opinion, or the
    broker already holds it."""
    if not settings.broker_enabled or value is None or entity_id(scd.metadata) is None:
        return None
    reported = scd.status.broker.reported if scd.status.broker else None
    return None if value == reported else value


@dataclass(frozen=True)
class BrokerReport:
    info: BrokerInfo
    condition: ConditionValue
    pace: Pace


def _named(scd: SCDObject, attempts: Sequence[BrokerObservation]
           ) -> tuple[str | None, EntitySource | None]:
    """status.broker.entityId and entitySource: the entity last written or tried, and how it
    was found once that is certain (annotation, a reused one, or an accepted write); a decoded
    label nobody confirmed yet has no source."""
    target = entity_target(scd)
    if target is None:
        return None, None
    for attempt in reversed(attempts):
        if attempt.outcome is BrokerOutcome.ACCEPTED and attempt.entity:
            return attempt.entity, attempt.source
    if target.confirmed:
        return target.entity, target.source
    return target.entity, None


def broker_report(scd: SCDObject, desired: str | None, attempts: Sequence[BrokerObservation],
                  settings: Settings) -> BrokerReport:
    """status.broker and BrokerSynced after `attempts` (in order) toward `desired`.
    `reported` only ever takes a value the broker accepted."""
    old = scd.status.broker
    eid, source = _named(scd, attempts)
    reported = old.reported if old else None
    if not settings.broker_enabled:
        return BrokerReport(
            BrokerInfo(entity_id=eid, entity_source=source, desired=desired, reported=reported,
                       state="Disabled", message="LLO_BROKER_URL is empty"),
            (ConditionStatus.TRUE, Reason.BROKER_DISABLED, "broker updates are disabled"),
            Pace.STEADY)
    if eid is None:
        msg = "no entity id: set annotation llo.aeros-project.eu/entity-id or label " \
              "app.kubernetes.io/instance"
        return BrokerReport(
            BrokerInfo(desired=desired, reported=reported, state="Failed", message=msg),
            (ConditionStatus.FALSE, Reason.NO_ENTITY_ID, msg), Pace.PERMANENT)
    last: BrokerObservation | None = None
    for attempt in attempts:
        last = attempt
        if attempt.outcome is BrokerOutcome.ACCEPTED:
            reported = attempt.value
    if last is None:
        if desired is not None and desired == reported:
            return _synced(eid, source, desired, reported)
        # Nothing to send now (no opinion): what was known about the broker stays.
        old_cond = cond.find(scd.status.conditions, BROKER_SYNCED)
        carried: ConditionValue = \
            (old_cond.status, old_cond.reason, old_cond.message) if old_cond is not None \
            else (ConditionStatus.UNKNOWN, Reason.BROKER_PENDING, "nothing sent yet")
        state = old.state if old is not None else "Pending"
        return BrokerReport(
            BrokerInfo(entity_id=eid, entity_source=source, desired=desired, reported=reported,
                       state=state, message=old.message if old is not None else ""),
            carried, Pace.STEADY)
    if last.outcome is BrokerOutcome.ACCEPTED:
        return _synced(eid, source, desired, reported)
    if last.outcome in (BrokerOutcome.ENTITY_NOT_FOUND, BrokerOutcome.ENTITY_AMBIGUOUS):
        reason, msg = _not_resolved(last, eid, scd)
        pace = Pace.ERROR if reason is Reason.ENTITY_NOT_FOUND else Pace.PERMANENT
        return BrokerReport(
            BrokerInfo(entity_id=eid, entity_source=source, desired=desired, reported=reported,
                       state="Failed", message=msg),
            (ConditionStatus.FALSE, reason, msg), pace)
    f = last.failure
    assert f is not None
    return BrokerReport(
        BrokerInfo(entity_id=eid, entity_source=source, desired=desired, reported=reported,
                   state="Pending" if f.temporary else "Failed", message=f.message),
        (ConditionStatus.FALSE, f.reason, f.message),
        Pace.ERROR if f.temporary else Pace.PERMANENT)


def _not_resolved(last: BrokerObservation, eid: str, scd: SCDObject) -> tuple[Reason, str]:
    """Why no entity was written: missing, or the label's query found several."""
    label = scd.metadata.labels.get(LABEL_INSTANCE, "")
    fix = f"set annotation {ANNOTATION_ENTITY_ID} to the exact URN"
    if last.outcome is BrokerOutcome.ENTITY_AMBIGUOUS:
        found = ", ".join(last.candidates)
        return Reason.ENTITY_AMBIGUOUS, (
            f"label {LABEL_INSTANCE}={label} matches several ServiceComponent entities "
            f"(idPattern {last.pattern}: {found}); nothing was written: {fix}")
    if last.pattern is not None:
        return Reason.ENTITY_NOT_FOUND, (
            f"no ServiceComponent entity for label {LABEL_INSTANCE}={label}: {eid} does not "
            f"exist and idPattern {last.pattern} matches none")
    return Reason.ENTITY_NOT_FOUND, f"entity {eid} not found in the broker"


def _synced(eid: str, source: EntitySource | None, desired: str | None,
            reported: str | None) -> BrokerReport:
    return BrokerReport(
        BrokerInfo(entity_id=eid, entity_source=source, desired=desired, reported=reported,
                   state="Synced"),
        (ConditionStatus.TRUE, Reason.BROKER_SYNCED, f"ServiceComponentStatus is {reported}"),
        Pace.STEADY)
