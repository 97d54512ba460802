"""ServiceComponentDocker decisions, free of I/O: plan → (the I/O layer acts) → report.

`sync_plan()` decides which IE calls to make from the SCD, its old status and the related DIE.
`assess()` turns what the IEs answered into the phase (and so the broker value), and `report()`
builds the new status and resyncAfterSeconds. Deletion is `hooks.teardown`; what the broker
part of the status says is `hooks.brokerstatus`. The rules are docs/architecture.md "Hooks: the
ServiceComponentDocker lifecycle"; the key one is the invariant that a call only ever goes to
an IE that the *old* status already names: a new IE is first recorded (intent), then used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum

from pydantic import ValidationError

from hooks import conditions as cond
from hooks import names
from hooks.brokerstatus import BROKER_VALUE, broker_report
from hooks.errors import Failure
from hooks.observations import (
    Action,
    ActionKind,
    BrokerObservation,
    Observation,
)
from hooks.reasons import Reason
from hooks.resources import (
    BROKER_SYNCED,
    CLEANED_UP,
    COMPLETE,
    CONTAINER_READY,
    DIE,
    IE_READY,
    LABEL_INSTANCE,
    LABEL_PART_OF,
    MIGRATED,
    OVERLAY_READY,
    READY,
    SCD_CONDITION_ORDER,
    Cleanup,
    ConditionStatus,
    ContainerInfo,
    FailureInfo,
    Migration,
    Names,
    OverlayInfo,
    Phase,
    Placement,
    PullInfo,
    SCDObject,
    SCDStatus,
    dump,
    error_text,
)
from hooks.resync import Pace
from hooks.resync import seconds as pace_seconds
from hooks.settings import Settings
from ieapi import tail
from ieapi.contract import (
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    OverlayReason,
    OverlayState,
    Owner,
    PullProgress,
    is_valid_container_name,
)
from ieapi.overlayspec import OverlayInputError, handshake_age_bucket
from ieapi.overlayspec import parse as parse_overlay

# Gate reasons that end a migration in flight (docs/migration.md): the target IE is leaving.
TARGET_WITHDRAWN = frozenset({Reason.IE_TERMINATING, Reason.IE_NOT_FOUND})

# Failures that say something about the IE (or our access to it) rather than the container.
IE_FAILURES = frozenset({
    Reason.IE_UNREACHABLE, Reason.IE_ERROR, Reason.IE_UNAUTHORIZED, Reason.IE_TLS_ERROR,
    Reason.TOKEN_MISSING, Reason.DEADLINE_EXCEEDED,
})

# Input an overlay cannot be built from: its own OverlayReady reason (else InvalidSpec).
OVERLAY_INPUT_REASONS = {
    OverlayReason.BAD_KEY: Reason.BAD_KEY,
    OverlayReason.BAD_ADDRESS: Reason.BAD_ADDRESS,
    OverlayReason.BAD_ENDPOINT: Reason.BAD_ENDPOINT,
}


def container_name(scd: SCDObject) -> str:
    """`<namespace>.<name>`, cut with a hash when too long (hooks/names.py)."""
    return names.container_key(scd.namespace, scd.metadata.name)


def ie_names(scd: SCDObject) -> Names:
    """What status.names shows: the container name and the DNS alias on the IE."""
    return Names(container=container_name(scd),
                 alias=names.dns_alias(scd.namespace, scd.metadata.name))


def build_container_spec(scd: SCDObject) -> ContainerSpec:
    """The ieapi request for this SCD. Raises ValueError when it cannot be expressed."""
    spec = scd.spec
    if spec is None:
        raise ValueError(scd.spec_error or "spec: missing")
    name = container_name(scd)
    if not is_valid_container_name(name):
        raise ValueError(f"metadata.name: container name {name!r} is not valid on Docker "
                         "(at most 200 characters of [a-zA-Z0-9_.-])")
    labels = scd.metadata.labels
    try:
        return ContainerSpec(
            image=spec.image, registry_auth=spec.image_registry, ports=spec.ports,
            expose_ports=spec.expose_ports, env_vars=spec.env_vars, cli_args=spec.cli_args,
            privileged=spec.privileged, is_job=spec.is_job,
            service=labels.get(LABEL_PART_OF) or None,
            alias=names.dns_alias(scd.namespace, scd.metadata.name),
            component=labels.get(LABEL_INSTANCE) or None,
            owner=Owner(namespace=scd.namespace, name=scd.metadata.name, uid=scd.metadata.uid),
            network_overlay=spec.network_overlay)
    except ValidationError as exc:
        raise ValueError(error_text(exc, "spec")) from exc


# =========================================================================== gate


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Whether the selected IE may be used. `open`: for a new placement; `existing_ok`: for a
    container already placed there (a cordon stops new placements only)."""

    open: bool
    existing_ok: bool
    reason: Reason
    message: str
    target: Placement | None  # the selected IE as a placement, when its DIE exists


def gate(scd: SCDObject, die: DIE | None) -> Gate:
    assert scd.spec is not None
    sel = scd.spec.selected_ie
    if die is None:
        return Gate(open=False, existing_ok=False, reason=Reason.IE_NOT_FOUND,
                    message=f"no DockerInfrastructureElement named {sel.hostname!r}",
                    target=None)
    target = die.placement(container_name(scd))
    if die.spec.id != sel.id:
        return Gate(open=False, existing_ok=False, reason=Reason.IE_ID_MISMATCH,
                    message=f"IE {sel.hostname!r} has id {die.spec.id!r}, selectedIE.id is "
                    f"{sel.id!r}", target=target)
    status = die.status
    if status is None or not status.api_ready:
        detail = f": {status.message}" if status is not None and status.message else ""
        return Gate(open=False, existing_ok=False, reason=Reason.IE_NOT_READY,
                    message=f"IE {sel.hostname!r}: its API is not ready{detail}", target=target)
    if die.metadata.deletion_timestamp:
        return Gate(open=False, existing_ok=True, reason=Reason.IE_TERMINATING,
                    message=f"IE {sel.hostname!r} is being deleted: no new placements",
                    target=target)
    if die.cordoned:
        return Gate(open=False, existing_ok=True, reason=Reason.IE_CORDONED,
                    message=f"IE {sel.hostname!r} is cordoned (annotation apiReady: \"false\"): "
                    "no new placements", target=target)
    return Gate(open=True, existing_ok=True, reason=Reason.IE_READY,
                message=f"IE {sel.hostname!r} is ready", target=target)


# =========================================================================== plan


class Stage(StrEnum):
    """Where an SCD stands before any call is made."""

    INVALID_SPEC = "InvalidSpec"              # cannot build a container spec: only cleanups
    NOT_PLACED = "NotPlaced"                  # nothing placed, selected IE not usable
    PLACEMENT_INTENT = "PlacementIntent"      # recording the selected IE; no call yet
    PLACED = "Placed"                         # ensure on the placement
    PLACED_GATE_CLOSED = "PlacedGateClosed"   # placed on an IE that cannot be used now
    MIGRATION_INTENT = "MigrationIntent"      # recording the new IE; observe the old one
    MIGRATING = "Migrating"                   # ensure on the new IE; observe the old one
    MIGRATION_BLOCKED = "MigrationBlocked"    # new IE not usable; observe the old one


@dataclass(frozen=True, kw_only=True)
class SyncPlan:
    stage: Stage
    gate: Gate | None
    placement: Placement | None
    migration: Placement | None
    cleanups: tuple[Cleanup, ...]
    actions: tuple[Action, ...]
    spec: ContainerSpec | None = None
    spec_error: str | None = None
    abandoned: tuple[Placement, ...] = ()  # migration targets given up in this plan
    spec_reason: Reason = Reason.INVALID_SPEC  # why spec is None (an overlay has its own)

    def action(self, kind: ActionKind, ie: str) -> Action | None:
        return next((a for a in self.actions if a.kind is kind and a.target.ie == ie), None)


def as_cleanup(p: Placement, reason: Reason | str) -> Cleanup:
    """`p` as a cleanup entry (whatever its own type), with why it is queued."""
    return Cleanup.model_validate({**Placement.model_validate(p.model_dump()).model_dump(),
                                   "reason": str(reason)})


def _refreshed(recorded: Placement, current: Placement | None) -> Placement:
    """The recorded placement with the endpoint its DIE gives now (a DIE may move its URL)."""
    if current is None or not current.same_target(recorded):
        return recorded
    return current


def sync_plan(scd: SCDObject, die: DIE | None) -> SyncPlan:
    """Decide the IE calls of one sync. `die` is the related DIE named by selectedIE."""
    old = scd.status
    placement = old.placement
    migration = old.migration.to if old.migration is not None else None
    if placement is None and migration is not None:  # not written by us; keep it reachable
        placement, migration = migration, None
    cleanups: list[Cleanup] = list(old.pending_cleanups)
    abandoned: list[Placement] = []

    def abandon(target: Placement) -> None:
        abandoned.append(target)
        cleanups.append(as_cleanup(target, Reason.MIGRATION_ABANDONED))

    spec: ContainerSpec | None = None
    spec_error: str | None = None
    spec_reason = Reason.INVALID_SPEC
    try:
        spec = build_container_spec(scd)
        if spec.network_overlay is not None:  # the IE would refuse it: say why before a call
            parse_overlay(spec.network_overlay)
    except OverlayInputError as exc:
        spec, spec_error = None, f"spec.{exc.field}: {exc.message}"
        spec_reason = OVERLAY_INPUT_REASONS.get(exc.reason, Reason.INVALID_SPEC)
    except ValueError as exc:
        spec_error = str(exc)

    g: Gate | None = None
    actions: list[Action] = []
    if spec is None or scd.spec is None:
        stage = Stage.INVALID_SPEC
    else:
        g = gate(scd, die)
        selected = scd.spec.selected_ie.hostname
        if placement is None:
            if g.open:
                assert g.target is not None
                placement, stage = g.target, Stage.PLACEMENT_INTENT
            else:
                stage = Stage.NOT_PLACED
        elif placement.ie == selected:
            if migration is not None:  # selectedIE went back: give the target up
                abandon(migration)
                migration = None
            if g.existing_ok:
                placement = _refreshed(placement, g.target)
                stage = Stage.PLACED
                actions.append(Action(ActionKind.ENSURE, placement))
            else:
                stage = Stage.PLACED_GATE_CLOSED
        else:
            if migration is not None and migration.ie != selected:  # changed again mid-way
                abandon(migration)
                migration = None
            if migration is not None and g.reason in TARGET_WITHDRAWN:
                # The target's DIE is going or gone before the new container started: give the
                # move up (its container, if any, is deleted, which also lets a DIE held by its
                # finalizer go); the old one keeps serving until selectedIE names a usable IE.
                abandon(migration)
                migration = None
            if migration is not None:
                if g.existing_ok:
                    migration = _refreshed(migration, g.target)
                    stage = Stage.MIGRATING
                    actions.append(Action(ActionKind.ENSURE, migration))
                else:
                    stage = Stage.MIGRATION_BLOCKED
            elif g.open:
                assert g.target is not None
                migration, stage = g.target, Stage.MIGRATION_INTENT
            else:
                stage = Stage.MIGRATION_BLOCKED
            actions.append(Action(ActionKind.OBSERVE, placement))

    # A cleanup of the container we now want (e.g. back to an abandoned target) is void: the
    # ensure takes the container over. Duplicates collapse.
    kept: list[Cleanup] = []
    for c in cleanups:
        if any(p is not None and c.same_target(p) for p in (placement, migration)):
            continue
        if any(c.same_target(k) for k in kept):
            continue
        kept.append(c)
    actions.extend(Action(ActionKind.DELETE, c) for c in kept)
    return SyncPlan(stage=stage, gate=g, placement=placement, migration=migration,
                    cleanups=tuple(kept), actions=tuple(actions), spec=spec,
                    spec_error=spec_error, abandoned=tuple(abandoned), spec_reason=spec_reason)


# =========================================================================== assess


@dataclass(frozen=True)
class Verdict:
    """What one container observation means."""

    phase: Phase
    reason: Reason
    message: str
    ready: ConditionStatus          # ContainerReady
    pace: Pace
    _: KW_ONLY
    started: bool = False           # counts as running for a migration (a job: ran at all)
    ie_failure: Failure | None = None  # the IE could not be used (IEReady False)
    container: ContainerInfo | None = None
    pull: PullInfo | None = None
    failure: FailureInfo | None = None
    overlay: tuple[ConditionStatus, Reason, str] | None = None  # OverlayReady, when it has one


def _failure(c: ContainerStatus) -> FailureInfo | None:
    """The failure the IE reported with the tail of its output (ieapi.observe.is_failure), cut
    again by the same rule: the IE API's answer is not trusted to be small."""
    if c.last_output is None:
        return None
    cut = tail.bound(c.last_output.text, more_before=c.last_output.truncated)
    return FailureInfo(exit_code=c.exit_code, finished_at=c.finished_at,
                       restart_count=c.restart_count, last_output=cut.text,
                       last_output_truncated=cut.truncated)


def _info(c: ContainerStatus) -> ContainerInfo:
    o = c.overlay
    overlay = None if o is None else OverlayInfo(
        interface=o.interface, address=o.address, mode=o.mode, state=o.state.value,
        last_handshake=handshake_age_bucket(o.handshake_age_seconds))
    return ContainerInfo(
        id=c.id, state=c.state.value, image=c.image, image_id=c.image_id, exit_code=c.exit_code,
        restart_count=c.restart_count, started_at=c.started_at, finished_at=c.finished_at,
        ports=c.ports, network=c.network, overlay=overlay)


# An overlay that is not up keeps a running container out of Running: phase and pace by reason.
_OVERLAY_NOT_UP: dict[Reason, tuple[Phase, Pace]] = {
    Reason.HANDSHAKE_PENDING: (Phase.DEPLOYING, Pace.CONVERGING),
    Reason.CONTAINER_NOT_RUNNING: (Phase.DEPLOYING, Pace.CONVERGING),
    Reason.ENDPOINT_UNREACHABLE: (Phase.DEPLOYING, Pace.ERROR),
    Reason.OVERLAY_SETUP_FAILED: (Phase.FAILED, Pace.ERROR),
    Reason.WIREGUARD_UNSUPPORTED: (Phase.FAILED, Pace.PERMANENT),
}


def _running(c: ContainerStatus, info: ContainerInfo, ie: str, overlay_wanted: bool) -> Verdict:
    """A running container is Running only once its overlay (if it has one) is up."""
    running = f"running on IE {ie!r}"
    if not overlay_wanted:
        return Verdict(Phase.RUNNING, Reason.CONTAINER_RUNNING, running, ConditionStatus.TRUE,
                       Pace.STEADY, started=True, container=info)
    o = c.overlay
    if o is None:
        msg = f"IE {ie!r} reports no overlay: its IE API predates networkOverlay support"
        reason = Reason.WIREGUARD_UNSUPPORTED
    elif o.state is OverlayState.UP:
        return Verdict(Phase.RUNNING, Reason.CONTAINER_RUNNING, running, ConditionStatus.TRUE,
                       Pace.STEADY, started=True, container=info,
                       overlay=(ConditionStatus.TRUE, Reason.OVERLAY_UP,
                                f"{o.interface} {o.address} ({o.mode}): {o.message}"))
    else:
        msg = f"overlay {o.address} on IE {ie!r}: {o.message}"
        reason = Reason(o.reason.value) if o.reason.value in set(Reason) \
            else Reason.OVERLAY_SETUP_FAILED
    phase, pace = _OVERLAY_NOT_UP.get(reason, (Phase.FAILED, Pace.ERROR))
    return Verdict(phase, reason, f"{running}; {msg}", ConditionStatus.FALSE, pace,
                   container=info, overlay=(ConditionStatus.FALSE, reason, msg))


UNKNOWN_CONTAINER = ContainerInfo(state="Unknown")


PULL_STEPS = 10  # status shows bytes in tenths of the total


def coarse_pull(p: PullProgress | None) -> PullInfo:
    """Pull progress as the status shows it: in steps (a layer done, a tenth of the bytes).

    The IE reports Docker's progress byte by byte, with a message naming the layer it is on,
    so copied as is it differs on every sync while a pull lasts, and every such status is an
    API write that spends from Metacontroller's rate limit (docs/architecture.md
    "Metacontroller's API budget"): a 50-component service pulling a new image would write 25
    statuses a second. In steps, a pull costs a few writes and still shows how far it got."""
    if p is None:
        return PullInfo(message="pull requested")
    if p.bytes_total > 0:
        tenths = min(p.bytes_done * PULL_STEPS // p.bytes_total, PULL_STEPS)
        bytes_done = p.bytes_total * tenths // PULL_STEPS
        detail = f"{p.layers_done}/{p.layers_total} layers, {tenths * 100 // PULL_STEPS}%"
    else:
        bytes_done = 0
        detail = f"{p.layers_done}/{p.layers_total} layers"
    return PullInfo(layers_total=p.layers_total, layers_done=p.layers_done,
                    bytes_total=p.bytes_total, bytes_done=bytes_done, message=detail)


def verdict_of_container(c: ContainerStatus | None, is_job: bool, ie: str,
                         overlay_wanted: bool = False) -> Verdict:
    """Map an IE's ContainerStatus to phase, reason and pace (docs/architecture.md)."""
    if c is None:
        return Verdict(Phase.DEPLOYING, Reason.CONTAINER_MISSING,
                       f"IE {ie!r} has no such container", ConditionStatus.FALSE, Pace.ERROR)
    v = _verdict_of_state(c, is_job, ie, overlay_wanted)
    failure = _failure(c)
    return dataclasses.replace(v, failure=failure) if failure is not None else v


def _verdict_of_state(c: ContainerStatus, is_job: bool, ie: str,
                      overlay_wanted: bool) -> Verdict:
    info = _info(c)
    false = ConditionStatus.FALSE
    s = c.state
    if s is ContainerState.PULLING:
        pull = coarse_pull(c.pull)
        return Verdict(Phase.DEPLOYING, Reason.IMAGE_PULLING,
                       f"pulling image {c.image}: {pull.message}", false, Pace.CONVERGING,
                       container=info, pull=pull)
    if s is ContainerState.PULL_FAILED:
        return Verdict(Phase.FAILED, Reason.PULL_FAILED,
                       f"cannot pull image {c.image}: {c.error or 'unknown error'}", false,
                       Pace.PERMANENT, container=info)
    if s is ContainerState.CREATED:
        return Verdict(Phase.DEPLOYING, Reason.CONTAINER_CREATED, f"created on IE {ie!r}",
                       false, Pace.CONVERGING, container=info)
    if s is ContainerState.RUNNING:
        return _running(c, info, ie, overlay_wanted)
    if s is ContainerState.PAUSED:
        return Verdict(Phase.RUNNING, Reason.CONTAINER_PAUSED, f"paused on IE {ie!r}", false,
                       Pace.STEADY, started=True, container=info)
    if s is ContainerState.RESTARTING:
        return Verdict(Phase.DEPLOYING, Reason.CONTAINER_RESTARTING,
                       f"restarting on IE {ie!r} (restarts: {c.restart_count})", false,
                       Pace.ERROR, container=info)
    if s is ContainerState.EXITED:
        code = c.exit_code
        if is_job and code == 0:
            return Verdict(Phase.SUCCEEDED, Reason.JOB_SUCCEEDED,
                           f"job completed on IE {ie!r}", ConditionStatus.TRUE, Pace.STEADY,
                           started=True, container=info)
        if is_job:
            return Verdict(Phase.FAILED, Reason.JOB_FAILED,
                           f"job exited with code {code} on IE {ie!r}", false, Pace.PERMANENT,
                           started=True, container=info)
        return Verdict(Phase.DEPLOYING, Reason.CONTAINER_EXITED,
                       f"exited with code {code} on IE {ie!r}; started again on next sync",
                       false, Pace.ERROR, container=info)
    if s is ContainerState.DEAD:
        return Verdict(Phase.FAILED, Reason.CONTAINER_DEAD,
                       f"dead on IE {ie!r}: {c.error or 'no detail'}", false, Pace.ERROR,
                       container=info)
    return Verdict(Phase.DEPLOYING, Reason.CONTAINER_REMOVING, f"being removed on IE {ie!r}",
                   false, Pace.CONVERGING, container=info)


def verdict_of(obs: Observation, is_job: bool, overlay_wanted: bool = False) -> Verdict:
    f = obs.failure
    if f is None:
        return verdict_of_container(obs.container, is_job, obs.ie, overlay_wanted)
    if f.reason in IE_FAILURES:
        return Verdict(Phase.UNKNOWN, f.reason, f.message, ConditionStatus.UNKNOWN,
                       Pace.ERROR if f.temporary else Pace.PERMANENT, ie_failure=f,
                       container=UNKNOWN_CONTAINER)
    # The IE answered and refused this container: nothing to retry until something changes.
    return Verdict(Phase.FAILED, f.reason, f.message, ConditionStatus.FALSE,
                   Pace.ERROR if f.temporary else Pace.PERMANENT)


@dataclass(frozen=True, kw_only=True)
class Assessment:
    """The outcome of the container calls: everything but cleanups and the broker."""

    phase: Phase
    reason: Reason
    message: str
    container_ready: tuple[ConditionStatus, Reason, str]
    pace: Pace
    backoff_condition: str  # whose lastTransitionTime measures a temporary failure
    placement: Placement | None = None
    migration: Placement | None = None
    promoted_from: Placement | None = None  # old placement, when a migration completed just now
    container: ContainerInfo | None = None
    failure: FailureInfo | None = None  # of `container`
    pull: PullInfo | None = None
    ie_ready: tuple[ConditionStatus, Reason, str] | None = None
    migrated: tuple[ConditionStatus, Reason, str] | None = None
    overlay_ready: tuple[ConditionStatus, Reason, str] | None = None  # of the serving container

    @property
    def broker_value(self) -> str | None:
        return BROKER_VALUE.get(self.phase)


def _observation(observations: Mapping[tuple[str, str], Observation],
                 action: Action | None) -> Observation:
    assert action is not None
    return observations.get(action.key) or Observation.not_attempted(action)


def index(observations: Iterable[Observation]) -> dict[tuple[str, str], Observation]:
    return {o.key: o for o in observations}


def assess(scd: SCDObject, plan: SyncPlan, observations: Iterable[Observation]) -> Assessment:
    """Phase, container and conditions (but cleanups/broker) from the placement calls."""
    obs = index(observations)
    is_job = scd.spec.is_job if scd.spec is not None else False
    wanted = plan.spec is not None and plan.spec.network_overlay is not None
    g = plan.gate
    p, m = plan.placement, plan.migration

    def ie_cond(v: Verdict) -> tuple[ConditionStatus, Reason, str]:
        if v.ie_failure is not None:
            return (ConditionStatus.FALSE, v.ie_failure.reason, v.ie_failure.message)
        assert g is not None
        return (ConditionStatus.TRUE, g.reason, g.message)

    if plan.stage is Stage.INVALID_SPEC:
        msg = plan.spec_error or "invalid spec"
        why = plan.spec_reason
        return Assessment(phase=Phase.FAILED, reason=why, message=msg,
                          placement=p, migration=m,
                          container_ready=(ConditionStatus.FALSE, why, msg),
                          pace=Pace.PERMANENT, backoff_condition=READY,
                          overlay_ready=None if why is Reason.INVALID_SPEC
                          else (ConditionStatus.FALSE, why, msg))
    assert g is not None
    gate_false = (ConditionStatus.FALSE, g.reason, g.message)
    gate_pace = Pace.PERMANENT if g.reason is Reason.IE_ID_MISMATCH else Pace.ERROR

    if plan.stage is Stage.NOT_PLACED:
        return Assessment(phase=Phase.PENDING, reason=g.reason, message=g.message,
                          ie_ready=gate_false,
                          container_ready=(ConditionStatus.FALSE, Reason.NOT_PLACED,
                                           "no container yet: " + g.message),
                          pace=gate_pace, backoff_condition=READY)
    assert p is not None
    if plan.stage is Stage.PLACEMENT_INTENT:
        msg = f"placing on IE {p.ie!r}"
        return Assessment(phase=Phase.DEPLOYING, reason=Reason.PLACEMENT_RECORDED, message=msg,
                          placement=p, ie_ready=(ConditionStatus.TRUE, g.reason, g.message),
                          container_ready=(ConditionStatus.FALSE, Reason.PLACEMENT_RECORDED,
                                           msg),
                          pace=Pace.INTENT, backoff_condition=READY)
    if plan.stage is Stage.PLACED_GATE_CLOSED:
        return Assessment(phase=Phase.UNKNOWN, reason=g.reason, message=g.message,
                          placement=p, container=UNKNOWN_CONTAINER, ie_ready=gate_false,
                          container_ready=(ConditionStatus.UNKNOWN, g.reason, g.message),
                          pace=gate_pace, backoff_condition=READY)
    if plan.stage is Stage.PLACED:
        v = verdict_of(_observation(obs, plan.action(ActionKind.ENSURE, p.ie)), is_job, wanted)
        return Assessment(phase=v.phase, reason=v.reason, message=v.message, placement=p,
                          container=v.container, failure=v.failure, pull=v.pull,
                          ie_ready=ie_cond(v),
                          container_ready=(v.ready, v.reason, v.message), pace=v.pace,
                          backoff_condition=READY, overlay_ready=v.overlay)

    # ---- migration stages: the old container keeps serving and is only observed
    old = verdict_of(_observation(obs, plan.action(ActionKind.OBSERVE, p.ie)), is_job, wanted)
    old_ready = (old.ready, old.reason, old.message)
    selected = scd.spec.selected_ie.hostname if scd.spec is not None else "?"
    moving = f"moving from IE {p.ie!r} to IE {selected!r}"
    # The old IE failing to answer hurries the pace; its health alone does not (a target that
    # fails permanently is retried at the permanent pace, not on every steady resync).
    old_pace = Pace.ERROR if old.ie_failure is not None else Pace.PERMANENT
    if plan.stage is Stage.MIGRATION_INTENT:
        return Assessment(phase=Phase.MIGRATING, reason=Reason.MIGRATION_PENDING,
                          message=moving, placement=p, migration=m, container=old.container,
                          failure=old.failure,
                          ie_ready=(ConditionStatus.TRUE, g.reason, g.message),
                          container_ready=old_ready,
                          migrated=(ConditionStatus.FALSE, Reason.MIGRATION_PENDING, moving),
                          pace=Pace.INTENT, backoff_condition=MIGRATED,
                          overlay_ready=old.overlay)
    if plan.stage is Stage.MIGRATION_BLOCKED:
        msg = f"{moving}: {g.message}"
        return Assessment(phase=Phase.MIGRATING, reason=g.reason, message=msg, placement=p,
                          migration=m, container=old.container, failure=old.failure,
                          ie_ready=gate_false,
                          container_ready=old_ready,
                          migrated=(ConditionStatus.FALSE, g.reason, msg),
                          pace=min(gate_pace, old_pace), backoff_condition=MIGRATED,
                          overlay_ready=old.overlay)
    assert m is not None
    new = verdict_of(_observation(obs, plan.action(ActionKind.ENSURE, m.ie)), is_job, wanted)
    if new.started:  # make-before-break done: the new one is the placement now
        msg = f"moved from IE {p.ie!r} to IE {m.ie!r}"
        return Assessment(phase=new.phase, reason=new.reason, message=new.message,
                          placement=m, promoted_from=p,  # the old container: a new cleanup
                          container=new.container, failure=new.failure, pull=new.pull,
                          ie_ready=ie_cond(new),
                          container_ready=(new.ready, new.reason, new.message),
                          migrated=(ConditionStatus.TRUE, Reason.MIGRATION_COMPLETED, msg),
                          pace=Pace.INTENT, backoff_condition=READY, overlay_ready=new.overlay)
    msg = f"{moving}: {new.message}"
    return Assessment(phase=Phase.MIGRATING, reason=new.reason, message=msg, placement=p,
                      migration=m, container=old.container, failure=old.failure, pull=new.pull,
                      ie_ready=ie_cond(new),
                      container_ready=old_ready, migrated=(ConditionStatus.FALSE, new.reason, msg),
                      pace=min(new.pace, old_pace), backoff_condition=MIGRATED,
                      overlay_ready=old.overlay)


# =========================================================================== report


@dataclass(frozen=True)
class SCDReport:
    status: SCDStatus
    resync_after_seconds: float
    finalized: bool = False
    orphaned: tuple[Placement, ...] = field(default=())  # released without a confirmed delete

    def status_json(self) -> dict[str, object]:
        return dump(self.status)


def _cleanup_message(remaining: Sequence[Cleanup], failures: Mapping[str, Failure]) -> str:
    parts = []
    for c in remaining:
        f = failures.get(c.ie)
        parts.append(f"IE {c.ie!r}: {f.message}" if f else f"IE {c.ie!r}: delete queued")
    return "old containers not yet deleted: " + "; ".join(parts)


def _failure_to_report(old: FailureInfo | None, a: Assessment) -> FailureInfo | None:
    """What the IE said now; the last known failure while the container cannot be asked (the
    container did not run again, we just cannot see it)."""
    if a.container is not None and a.container.state == UNKNOWN_CONTAINER.state:
        return old
    return a.failure


def job_completion(a: Assessment) -> tuple[ConditionStatus, Reason, str]:
    """A job's `Complete` condition: True once its container exited, whether it succeeded or
    failed (the reason and `status.phase` say which), so `kubectl wait --for=condition=Complete`
    returns on either; Unknown while its IE cannot be asked; False before."""
    if a.reason in (Reason.JOB_SUCCEEDED, Reason.JOB_FAILED):
        return ConditionStatus.TRUE, a.reason, a.message
    if a.phase is Phase.UNKNOWN:
        return ConditionStatus.UNKNOWN, a.reason, a.message
    return ConditionStatus.FALSE, a.reason, a.message


def report(scd: SCDObject, plan: SyncPlan, a: Assessment, observations: Sequence[Observation],
           broker: Sequence[BrokerObservation], *, now: datetime, settings: Settings) -> SCDReport:
    """The new status and resyncAfterSeconds, from the container calls' assessment `a` (the
    one whose broker value was sent) and every observation (cleanups included). Deterministic:
    `now` only reaches status as the lastTransitionTime of a condition whose status flipped."""
    obs = index(observations)
    old = scd.status
    cs = cond.ConditionSet(old.conditions, now, scd.metadata.generation,
                           SCD_CONDITION_ORDER)

    # ---- cleanups: confirmed deletes leave the list; a completed migration adds the old IE
    failures: dict[str, Failure] = {}
    remaining: list[Cleanup] = []
    for c in plan.cleanups:
        o = obs.get((ActionKind.DELETE.value, c.ie))
        if o is not None and o.confirmed_gone:
            continue
        if o is not None and o.failure is not None:
            failures[c.ie] = o.failure
        remaining.append(c)
    if a.promoted_from is not None:
        remaining.append(as_cleanup(a.promoted_from, Reason.MIGRATION_COMPLETED))
    cleanup_pace = Pace.STEADY
    if remaining or plan.cleanups or cond.find(old.conditions, CLEANED_UP) is not None:
        if remaining:
            cs.set(CLEANED_UP, (ConditionStatus.FALSE, Reason.CLEANUP_PENDING,
                                _cleanup_message(remaining, failures)))
            cleanup_pace = Pace.ERROR if failures else Pace.CONVERGING
        else:
            cs.set(CLEANED_UP, (ConditionStatus.TRUE, Reason.CLEANUP_DONE,
                                "no old containers left"))

    # ---- conditions about the container
    if a.ie_ready is not None:
        cs.set(IE_READY, a.ie_ready)
    cs.set(CONTAINER_READY, a.container_ready)
    if a.overlay_ready is not None:
        cs.set(OVERLAY_READY, a.overlay_ready)
    elif plan.spec is not None and plan.spec.network_overlay is not None:
        if a.phase is Phase.UNKNOWN:
            cs.carry(OVERLAY_READY)  # the IE could not be asked: no news about the overlay
        else:
            cs.set(OVERLAY_READY, (ConditionStatus.FALSE, Reason.CONTAINER_NOT_RUNNING,
                                   "the overlay is set up once the container runs"))
    ready_status = a.container_ready[0]
    cs.set(READY, (ready_status, a.container_ready[1] if ready_status is ConditionStatus.TRUE
                   else a.reason, a.message))
    if scd.spec is not None and scd.spec.is_job:
        cs.set(COMPLETE, job_completion(a))
    if a.migrated is not None:
        cs.set(MIGRATED, a.migrated)
    elif plan.abandoned:
        cs.set(MIGRATED, (ConditionStatus.TRUE, Reason.MIGRATION_ABANDONED,
                          "selectedIE is back on the IE the container runs on"))
    else:
        cs.carry(MIGRATED)

    # ---- broker
    b = broker_report(scd, a.broker_value, broker, settings)
    cs.set(BROKER_SYNCED, b.condition)

    status = SCDStatus(
        phase=a.phase, reason=str(a.reason), message=a.message,
        ie=a.placement.ie if a.placement else None, names=ie_names(scd),
        placement=a.placement,
        migration=Migration(to=a.migration) if a.migration else None,
        pending_cleanups=remaining, container=a.container,
        failure=_failure_to_report(old.failure, a), pull=a.pull, broker=b.info,
        conditions=cs.result())
    # The container decides the pace; cleanups and the broker only hurry it when they have
    # work left (a permanent broker problem must not turn a failed job into a fast loop).
    resync = pace_seconds(a.pace, settings, error_elapsed=cs.elapsed(a.backoff_condition))
    for pace, type_ in ((cleanup_pace, CLEANED_UP), (b.pace, BROKER_SYNCED)):
        if pace in (Pace.INTENT, Pace.CONVERGING, Pace.ERROR):
            resync = min(resync, pace_seconds(pace, settings, error_elapsed=cs.elapsed(type_)))
    return SCDReport(status=status, resync_after_seconds=resync)


