"""The I/O layer of the hooks: run a plan's calls against the IEs and the broker, collect the
observations, and hand them to the pure decision modules. Nothing here decides anything:
`servicecomponent` and `infrastructure` do; this module only knows the order of the calls.

Order within one sync: container calls (ensure/observe) → broker → cleanups (deletes). The
broker goes before the deletes so that a dead IE in the cleanup list cannot starve the broker
update of the time budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from hooks import brokerstatus, infrastructure, servicecomponent, teardown
from hooks.broker import SERVICE_COMPONENT, BrokerClient
from hooks.errors import PeerError
from hooks.http import Deadline
from hooks.ie import Endpoint, IEClient
from hooks.logs import ObjectLogger, object_logger
from hooks.observations import (
    Action,
    ActionKind,
    BrokerObservation,
    BrokerOutcome,
    Observation,
)
from hooks.protocol import (
    CustomizeRequest,
    CustomizeResponse,
    RelatedResourceRule,
    SyncRequest,
    SyncResponse,
)
from hooks.resources import (
    API_VERSION,
    DIE,
    DIE_RELATED_KEY,
    DIE_RESOURCE,
    DIEStatus,
    EntitySource,
    ObjectMeta,
    SCDObject,
    dump,
    error_text,
    read_die,
    read_scd,
)
from hooks.settings import Settings
from ieapi.contract import ContainerList, ContainerSpec, IEInfo

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    settings: Settings
    ie: IEClient
    broker: BrokerClient
    clock: Clock = utc_now

    # ------------------------------------------------------------------ SCD

    @staticmethod
    def customize_scd(req: CustomizeRequest) -> CustomizeResponse:
        """Relate the DIE named by spec.selectedIE.hostname. Depends on the parent's spec only
        (Metacontroller caches the answer per uid and generation)."""
        spec = req.parent.get("spec")
        selected = spec.get("selectedIE") if isinstance(spec, dict) else None
        hostname = selected.get("hostname") if isinstance(selected, dict) else None
        if not isinstance(hostname, str) or not hostname:
            return CustomizeResponse(related_resources=[])  # empty names would select all
        return CustomizeResponse(related_resources=[RelatedResourceRule(
            api_version=API_VERSION, resource=DIE_RESOURCE, names=[hostname])])

    def scd(self, req: SyncRequest, *, finalizing: bool) -> SyncResponse:
        report = self.reconcile_scd(req, finalizing=finalizing)
        return SyncResponse(status=report.status_json(),
                            resync_after_seconds=report.resync_after_seconds,
                            finalized=report.finalized)

    def reconcile_scd(self, req: SyncRequest, *, finalizing: bool) -> servicecomponent.SCDReport:
        """One SCD sync (or finalize): the calls in their order, then the report, including
        what only the log hears of (containers released without a confirmed delete)."""
        scd = read_scd(req.parent)
        log = object_logger("scd", scd.metadata.namespace, scd.metadata.name,
                            ie=scd.spec.selected_ie.hostname if scd.spec else None)
        die = self._selected_die(req, scd)
        deadline = Deadline(self.settings.hook_budget_seconds)
        if not self.broker.enabled:
            self.broker.log_disabled_once()
        if finalizing or req.finalizing:
            report = self._finalize_scd(scd, die, deadline, log)
        else:
            report = self._sync_scd(scd, die, deadline, log)
        self._log_change(log, (scd.status.phase, scd.status.reason),
                         (report.status.phase, report.status.reason), report.status.message)
        return report

    @staticmethod
    def _selected_die(req: SyncRequest, scd: SCDObject) -> DIE | None:
        if scd.spec is None:
            return None
        return read_die(req.related_object(DIE_RELATED_KEY, scd.spec.selected_ie.hostname))

    def _sync_scd(self, scd: SCDObject, die: DIE | None, deadline: Deadline,
                  log: ObjectLogger) -> servicecomponent.SCDReport:
        plan = servicecomponent.sync_plan(scd, die)
        log.debug("stage %s, actions %s", plan.stage.value,
                  [f"{a.kind.value}@{a.target.ie}" for a in plan.actions])
        container_calls = [a for a in plan.actions if a.kind is not ActionKind.DELETE]
        observations = self.execute(container_calls, plan.spec, deadline, log)
        assessment = servicecomponent.assess(scd, plan, observations)
        request = brokerstatus.broker_request(scd, assessment.broker_value, self.settings)
        attempts = self._broker_call(scd, request, deadline, log)
        deletes = [a for a in plan.actions if a.kind is ActionKind.DELETE]
        observations += self.execute(deletes, None, deadline, log)
        return servicecomponent.report(scd, plan, assessment, observations, attempts,
                                       now=self.clock(), settings=self.settings)

    def _finalize_scd(self, scd: SCDObject, die: DIE | None, deadline: Deadline,
                      log: ObjectLogger) -> servicecomponent.SCDReport:
        now = self.clock()
        fplan = teardown.finalize_plan(scd, die, self.settings)
        attempts = self._broker_call(scd, fplan.removing, deadline, log)
        observations = self.execute(fplan.actions, None, deadline, log)
        decision = teardown.finalize_decision(scd, fplan, observations, now, self.settings)
        finished = teardown.finished_request(scd, fplan, decision, attempts, self.settings)
        attempts += self._broker_call(scd, finished, deadline, log, attempts)
        report = teardown.finalize_report(scd, decision, attempts, now=now,
                                          settings=self.settings)
        for p in report.orphaned:
            log.warning("finalizer released (%s) without a confirmed delete: container %r may "
                        "be left on IE %r (%s)", decision.reason.value, p.container, p.ie,
                        p.api_url)
        return report

    # ------------------------------------------------------------------ DIE

    def die(self, req: SyncRequest, *, finalizing: bool) -> SyncResponse:
        now = self.clock()
        deadline = Deadline(self.settings.hook_budget_seconds)
        try:
            die = DIE.model_validate(req.parent)
        except ValidationError as exc:
            meta = ObjectMeta.model_validate(req.parent.get("metadata"))
            raw = req.parent.get("status")
            try:
                old = DIEStatus.model_validate(raw) if isinstance(raw, dict) else DIEStatus()
            except ValidationError:
                old = DIEStatus()
            message = error_text(exc)
            object_logger("die", None, meta.name).warning("invalid object: %s", message)
            out = infrastructure.report_invalid(meta, old, message, now, self.settings,
                                                finalizing=finalizing or req.finalizing)
            return self._die_response(out)
        log = object_logger("die", None, die.metadata.name, ie=die.metadata.name)
        ep = Endpoint.of_die(die)
        if finalizing or req.finalizing:
            listing: ContainerList | None = None
            failure = None
            if not die.force_delete:
                try:
                    listing = self.ie.list(ep, deadline)
                except PeerError as exc:
                    failure = exc.failure()
            out = infrastructure.finalize_die(die, listing or failure, now, self.settings)
            if out.finalized and die.force_delete:
                log.warning("released by annotation force-delete; its containers were not "
                            "checked")
        else:
            probe: IEInfo | None = None
            try:
                probe = self.ie.info(ep, deadline)
            except PeerError as exc:
                out = infrastructure.report_die(die, exc.failure(), now, self.settings)
            else:
                out = infrastructure.report_die(die, probe, now, self.settings)
        old = die.status or DIEStatus()
        self._log_change(log, (old.reason, old.api_ready),
                         (out.status.reason, out.status.api_ready), out.status.message)
        return self._die_response(out)

    @staticmethod
    def _die_response(out: infrastructure.DIEReport) -> SyncResponse:
        return SyncResponse(status=dump(out.status),
                            resync_after_seconds=out.resync_after_seconds,
                            finalized=out.finalized)

    # ------------------------------------------------------------------ calls

    def execute(self, actions: Sequence[Action], spec: ContainerSpec | None,
                deadline: Deadline, log: ObjectLogger) -> list[Observation]:
        """Run IE calls in order; every action gets an observation (a failure at worst)."""
        out: list[Observation] = []
        for action in actions:
            target = action.target
            ep = Endpoint.of_placement(target)
            try:
                if action.kind is ActionKind.ENSURE:
                    assert spec is not None
                    status = self.ie.ensure(ep, target.container, spec, deadline)
                    out.append(Observation(kind=action.kind, ie=target.ie, container=status))
                elif action.kind is ActionKind.OBSERVE:
                    found = self.ie.get(ep, target.container, deadline)
                    out.append(Observation(kind=action.kind, ie=target.ie, container=found))
                else:
                    result = self.ie.delete(ep, target.container, deadline)
                    out.append(Observation(kind=action.kind, ie=target.ie,
                                           deleted=result.deleted))
            except PeerError as exc:
                level = logging.INFO if exc.temporary else logging.WARNING
                log.log(level, "%s", exc.message)
                out.append(Observation(kind=action.kind, ie=target.ie, failure=exc.failure()))
        return out

    def _broker_call(self, scd: SCDObject, value: str | None, deadline: Deadline,
                     log: ObjectLogger, earlier: Sequence[BrokerObservation] = (),
                     ) -> list[BrokerObservation]:
        """Set `value` on the SCD's entity (brokerstatus.entity_target says which). A decoded
        label the broker does not have is looked up once by idPattern; only a single match
        is written, so a wrong entity never is."""
        target = brokerstatus.entity_target(scd, earlier)
        if value is None or target is None:
            return []
        entity, source, pattern = target.entity, target.source, None
        try:
            outcome = self.broker.set_status(entity, value, deadline)
            if outcome is BrokerOutcome.ENTITY_NOT_FOUND and target.pattern is not None:
                pattern = target.pattern
                found = self.broker.find_entities(SERVICE_COMPONENT, pattern, deadline)
                if len(found) > 1:
                    log.warning("broker: label %s matches several entities (%s): nothing "
                                "written", target.label, ", ".join(found))
                    return [BrokerObservation(
                        value=value, outcome=BrokerOutcome.ENTITY_AMBIGUOUS, entity=entity,
                        pattern=pattern, candidates=tuple(found))]
                if found:
                    entity, source = found[0], EntitySource.QUERY
                    outcome = self.broker.set_status(entity, value, deadline)
        except PeerError as exc:
            log.info("%s", exc.message)
            return [BrokerObservation(value=value, failure=exc.failure(), entity=entity,
                                      pattern=pattern)]
        log.info("broker: %s serviceComponentStatus=%s: %s", entity, value, outcome.value)
        return [BrokerObservation(value=value, outcome=outcome, entity=entity, source=source,
                                  pattern=pattern)]

    @staticmethod
    def _log_change(log: ObjectLogger, old: tuple[object, object], new: tuple[object, object],
                    message: str) -> None:
        """INFO when the summary changes; quiet on the steady resyncs."""
        if old != new:
            log.info("%s %s: %s", *new, message)
