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


def entity_id(metadata: ObjectMeta) -> str | None:
    """The ServiceComponent URN of an SCD: the exact annotation when present (the label's
    encoding is lossy when an id part has `_`), else decoded from the instance label, which the
    HLO writes as `urn_ngsi-ld_Service_1_Component_1` or `Service_1_Component_1`."""
    exact = metadata.annotations.get(ANNOTATION_ENTITY_ID, "").strip()
    if exact:
        return exact
    label = metadata.labels.get(LABEL_INSTANCE, "").strip()
    if not label:
        return None
    if label.startswith(_ENCODED_PREFIX):
        label = label[len(_ENCODED_PREFIX):]
    return NGSI_LD_PREFIX + label.replace("_", ":")


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


def broker_report(scd: SCDObject, desired: str | None, attempts: Sequence[BrokerObservation],
                  settings: Settings) -> BrokerReport:
    """status.broker and BrokerSynced after `attempts` (in order) toward `desired`.
    `reported` only ever takes a value the broker accepted."""
    old = scd.status.broker
    eid = entity_id(scd.metadata)
    reported = old.reported if old else None
    if not settings.broker_enabled:
        return BrokerReport(
            BrokerInfo(entity_id=eid, desired=desired, reported=reported, state="Disabled",
                       message="LLO_BROKER_URL is empty"),
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
            return _synced(eid, desired, reported)
        # Nothing to send now (no opinion): what was known about the broker stays.
        old_cond = cond.find(scd.status.conditions, BROKER_SYNCED)
        carried: ConditionValue = \
            (old_cond.status, old_cond.reason, old_cond.message) if old_cond is not None \
            else (ConditionStatus.UNKNOWN, Reason.BROKER_PENDING, "nothing sent yet")
        state = old.state if old is not None else "Pending"
        return BrokerReport(
            BrokerInfo(entity_id=eid, desired=desired, reported=reported, state=state,
                       message=old.message if old is not None else ""),
            carried, Pace.STEADY)
    if last.outcome is BrokerOutcome.ACCEPTED:
        return _synced(eid, desired, reported)
    if last.outcome is BrokerOutcome.ENTITY_NOT_FOUND:
        msg = f"entity {eid} not found in the broker"
        return BrokerReport(
            BrokerInfo(entity_id=eid, desired=desired, reported=reported, state="Failed",
                       message=msg),
            (ConditionStatus.FALSE, Reason.ENTITY_NOT_FOUND, msg), Pace.ERROR)
    f = last.failure
    assert f is not None
    return BrokerReport(
        BrokerInfo(entity_id=eid, desired=desired, reported=reported,
                   state="Pending" if f.temporary else "Failed", message=f.message),
        (ConditionStatus.FALSE, f.reason, f.message),
        Pace.ERROR if f.temporary else Pace.PERMANENT)


def _synced(eid: str, desired: str | None, reported: str | None) -> BrokerReport:
    return BrokerReport(
        BrokerInfo(entity_id=eid, desired=desired, reported=reported, state="Synced"),
        (ConditionStatus.TRUE, Reason.BROKER_SYNCED, f"ServiceComponentStatus is {reported}"),
        Pace.STEADY)
