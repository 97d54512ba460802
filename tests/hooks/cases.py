"""Runs the JSON decision cases in tests/hooks/fixtures/ through the real `Reconciler` (the
order of its calls included), with scripted IE and broker clients instead of the network.

A fixture file is `{"defaults": {"scd": ..., "die": ..., "settings": ...}, "cases": [...]}`.
A case has `name`, optional `scd`/`die`/`settings` (deep-merged over the defaults) and
`steps`. Each step is one hook call, fed the status the previous step returned, exactly as
Metacontroller would:

- `now`, `hook` (sync | finalize, default sync), `patch` (deep-merged into the object first),
  `die` (the related DIE from now on; `null` for none; a short form `{name, id, ready,
  annotations, deletionTimestamp}` is expanded),
- `observations`: one per IE call (a call without one, or one never asked for, fails the case),
- `broker`: the broker's answers, in order (the runner checks the values asked for match),
- `probe` / `listing` for DIE cases (`{"failure": ...}` for a failed call),
- `expect`: `stage`, `actions` (the IE calls made, in order: ["ensure@ie-a", ...]),
  `brokerRequests`, `status` (subset, `null` = absent), `conditions` ({type: [status, reason,
  lastTransitionTime?]}, exact set of types), `resyncAfterSeconds`, `finalized`, `orphaned`
  ([ie, ...]), `calls` (IE and broker calls together, in order: ["delete@ie-a",
  "broker:Finished"]), `unchanged` (true: the status is byte-identical to the previous
  step's, i.e. Metacontroller would not write it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from hooks import servicecomponent as sc
from hooks.broker import BrokerClient
from hooks.conditions import parse_time
from hooks.errors import Failure, PermanentError, TemporaryError
from hooks.http import Deadline
from hooks.ie import Endpoint, IEClient
from hooks.observations import ActionKind, BrokerObservation, BrokerOutcome, Observation
from hooks.protocol import SyncRequest
from hooks.reconcile import Reconciler
from hooks.resources import (
    API_VERSION,
    DIE,
    DIE_KIND,
    DIE_RELATED_KEY,
    DIEStatus,
    SCDStatus,
    dump,
    read_scd,
)
from hooks.settings import Settings
from ieapi.contract import ContainerList, ContainerSpec, ContainerStatus, DeleteResult, IEInfo
from tests.hooks.helpers import JSON, assert_subset, deep_merge

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    kind: str  # scd | die
    obj: JSON
    die: Any
    settings: Settings
    steps: list[JSON]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        defaults = data.get("defaults", {})
        for raw in data["cases"]:
            kind = raw.get("kind", defaults.get("kind", "scd"))
            settings = Settings.model_validate(
                deep_merge(defaults.get("settings", {}), raw.get("settings", {})))
            base = defaults.get(kind, {})
            obj = deep_merge(base, raw.get(kind, {}))
            die = raw["die"] if "die" in raw else defaults.get("relatedDie")
            cases.append(Case(path.stem, raw["name"], kind, obj, die, settings, raw["steps"]))
    return cases


def expand_die(short: Any) -> DIE | None:
    if short is None:
        return None
    if "spec" in short:
        return DIE.model_validate(short)
    name = short["name"]
    meta: JSON = {"name": name, "generation": 1, "annotations": short.get("annotations", {})}
    if "deletionTimestamp" in short:
        meta["deletionTimestamp"] = short["deletionTimestamp"]
    api: JSON = {"url": short.get("url", f"http://{name}.test:8081")}
    if "tokenKey" in short:
        api["tokenKey"] = short["tokenKey"]
    return DIE.model_validate({
        "apiVersion": API_VERSION, "kind": DIE_KIND, "metadata": meta,
        "spec": {"id": short["id"], "hostname": name, "api": api},
        "status": {"apiReady": short.get("ready", True), "message": short.get("message", "")},
    })


def _now(step: JSON) -> datetime:
    now = parse_time(step["now"])
    assert now is not None, step["now"]
    return now


@dataclass
class Result:
    status: JSON
    resync: float
    finalized: bool
    stage: str | None
    actions: list[str]
    broker_requests: list[str]
    orphaned: list[str]
    calls: list[str]  # IE and broker calls together, in the order made


def _raise(failure: Failure) -> NoReturn:
    """The exception a real client raises for `failure` (its `failure()` gives it back)."""
    error = TemporaryError if failure.temporary else PermanentError
    raise error(failure.reason, failure.message, code=failure.code, field=failure.field,
                http_status=failure.http_status)


class ScriptedIE(IEClient):
    """An IE client that answers from the step's script instead of the network: each planned
    call (kind, IE) has exactly one scripted observation; the calls made are recorded in order
    (`actions`), and a call nothing answers fails the test."""

    def __init__(self, settings: Settings, step: JSON, calls: list[str]) -> None:
        super().__init__(settings)
        self.answers = {o.key: o for o in map(Observation.model_validate,
                                                step.get("observations", []))}
        self.probe: JSON | None = step.get("probe")
        self.listing: JSON | None = step.get("listing")
        self.actions: list[str] = []
        self.calls = calls

    def _answer(self, kind: ActionKind, ep: Endpoint) -> Observation:
        self.actions.append(f"{kind.value}@{ep.ie}")
        self.calls.append(f"{kind.value}@{ep.ie}")
        answer = self.answers.pop((kind.value, ep.ie), None)
        assert answer is not None, f"{kind.value} on IE {ep.ie!r}: no observation scripted"
        if answer.failure is not None:
            _raise(answer.failure)
        return answer

    def ensure(self, ep: Endpoint, name: str, spec: ContainerSpec,
               deadline: Deadline) -> ContainerStatus:
        container = self._answer(ActionKind.ENSURE, ep).container
        assert container is not None
        return container

    def get(self, ep: Endpoint, name: str, deadline: Deadline) -> ContainerStatus | None:
        return self._answer(ActionKind.OBSERVE, ep).container

    def delete(self, ep: Endpoint, name: str, deadline: Deadline) -> DeleteResult:
        deleted = self._answer(ActionKind.DELETE, ep).deleted
        assert deleted is not None
        return DeleteResult(name=name, deleted=deleted)

    @staticmethod
    def _scripted(answer: JSON | None, what: str) -> JSON:
        """A scripted probe or listing: the body, or the failure raised."""
        assert answer is not None, f"{what}: nothing scripted"
        if "failure" in answer:
            _raise(Failure.model_validate(answer["failure"]))
        return answer

    def info(self, ep: Endpoint, deadline: Deadline) -> IEInfo:
        answer, self.probe = self.probe, None
        return IEInfo.model_validate(self._scripted(answer, f"info of IE {ep.ie!r}"))

    def list(self, ep: Endpoint, deadline: Deadline) -> ContainerList:
        answer, self.listing = self.listing, None
        return ContainerList.model_validate(self._scripted(answer, f"list on IE {ep.ie!r}"))

    def done(self) -> None:
        assert not self.answers, f"scripted observations not asked for: {list(self.answers)}"
        assert self.probe is None, "the scripted probe was not asked for"
        assert self.listing is None, "the scripted listing was not asked for"


class ScriptedBroker(BrokerClient):
    """A broker client that hands out the step's scripted answers in order, checking that each
    is for the value (and, when the answer names one, the `entity`) asked for. `queries` are
    the answers to idPattern lookups: `{"pattern": ..., "ids": [...]}` or `{"failure": ...}`."""

    def __init__(self, settings: Settings, step: JSON, calls: list[str]) -> None:
        super().__init__(settings)
        self.answers = [BrokerObservation.model_validate(a) for a in step.get("broker", [])]
        self.queries: list[JSON] = list(step.get("queries", []))
        self.asked: list[str] = []
        self.calls = calls

    def set_status(self, entity: str, value: str, deadline: Deadline) -> BrokerOutcome:
        self.asked.append(value)
        self.calls.append(f"broker:{value}")
        assert self.answers, f"the hook asked the broker for {value!r}; no answer scripted"
        answer = self.answers.pop(0)
        assert answer.value == value, f"broker asked for {value!r}, answer is for {answer.value!r}"
        if answer.entity is not None:
            assert entity == answer.entity, f"written to {entity!r}, expected {answer.entity!r}"
        if answer.failure is not None:
            _raise(answer.failure)
        assert answer.outcome is not None
        return answer.outcome

    def find_entities(self, entity_type: str, pattern: str, deadline: Deadline) -> list[str]:
        self.calls.append(f"broker:query:{pattern}")
        assert self.queries, f"the hook queried idPattern {pattern!r}; no answer scripted"
        answer = self.queries.pop(0)
        assert entity_type == "ServiceComponent"
        if "pattern" in answer:
            assert pattern == answer["pattern"], f"queried {pattern!r}"
        if "failure" in answer:
            _raise(Failure.model_validate(answer["failure"]))
        return list(answer["ids"])

    def done(self) -> None:
        assert not self.answers, f"scripted broker answers not asked for: {self.answers}"
        assert not self.queries, f"scripted queries not asked for: {self.queries}"


def _request(parent: JSON, die: DIE | None, finalizing: bool) -> SyncRequest:
    """The request Metacontroller sends: the related DIE keyed by its name."""
    related = {die.metadata.name: dump(die)} if die is not None else {}
    return SyncRequest(parent=parent, related={DIE_RELATED_KEY: related}, finalizing=finalizing)


def run_step(case: Case, obj: JSON, die: DIE | None, step: JSON) -> Result:
    """One hook call through the real Reconciler, its IE and broker clients scripted."""
    settings = case.settings
    now = _now(step)
    calls: list[str] = []
    ie, broker = ScriptedIE(settings, step, calls), ScriptedBroker(settings, step, calls)
    reconciler = Reconciler(settings, ie, broker, clock=lambda: now)
    finalizing = step.get("hook", "sync") == "finalize"
    request = _request(obj, die, finalizing)
    stage: str | None = None
    orphaned: list[str] = []
    if case.kind == "scd":
        out = reconciler.reconcile_scd(request, finalizing=finalizing)
        status, resync, finalized = out.status_json(), out.resync_after_seconds, out.finalized
        orphaned = [p.ie for p in out.orphaned]
        if not finalizing:  # which stage the plan saw (the calls are checked as made)
            stage = sc.sync_plan(read_scd(obj), die).stage.value
    else:
        answer = reconciler.die(request, finalizing=finalizing)
        status = dict(answer.status or {})
        resync, finalized = answer.resync_after_seconds or 0.0, bool(answer.finalized)
    ie.done()
    broker.done()
    return Result(status, resync, finalized, stage, ie.actions, broker.asked, orphaned, calls)


def check(result: Result, expect: JSON, where: str) -> None:
    if "stage" in expect:
        assert result.stage == expect["stage"], f"{where}: stage {result.stage}"
    if "actions" in expect:
        assert result.actions == expect["actions"], f"{where}: actions {result.actions}"
    assert result.broker_requests == expect.get("brokerRequests", []), \
        f"{where}: broker requests {result.broker_requests}"
    if "status" in expect:
        assert_subset(expect["status"], result.status, f"{where}: status")
    if "conditions" in expect:
        got = {c["type"]: c for c in result.status.get("conditions", [])}
        assert sorted(got) == sorted(expect["conditions"]), \
            f"{where}: condition types {sorted(got)}"
        for type_, want in expect["conditions"].items():
            c = got[type_]
            actual = [c["status"], c["reason"], c["lastTransitionTime"]][:len(want)]
            assert actual == want, f"{where}: condition {type_}: {actual} != {want}"
    if "resyncAfterSeconds" in expect:
        assert result.resync == expect["resyncAfterSeconds"], f"{where}: resync {result.resync}"
    assert result.finalized == expect.get("finalized", False), f"{where}: finalized"
    if "orphaned" in expect:
        assert result.orphaned == expect["orphaned"], f"{where}: orphaned {result.orphaned}"
    if "calls" in expect:
        assert result.calls == expect["calls"], f"{where}: calls {result.calls}"


def run_case(case: Case) -> None:
    """Every step twice (same input → byte-identical output), the status round-trips through
    its model, then feeds the next step like Metacontroller's status write would."""
    obj = case.obj
    die_short = case.die
    previous: str | None = None
    for i, step in enumerate(case.steps):
        where = f"{case.id} step {i}"
        obj = deep_merge(obj, step.get("patch", {}))
        if "die" in step:
            die_short = step["die"]
        die = expand_die(die_short) if case.kind == "scd" else None
        first = run_step(case, obj, die, step)
        again = run_step(case, obj, die, step)
        model: type[SCDStatus] | type[DIEStatus] = SCDStatus if case.kind == "scd" else DIEStatus
        assert json.dumps(first.status) == json.dumps(again.status), f"{where}: not deterministic"
        assert (first.resync, first.actions) == (again.resync, again.actions)
        assert dump(model.model_validate(first.status)) == first.status, f"{where}: round trip"
        check(first, step.get("expect", {}), where)
        if step.get("expect", {}).get("unchanged"):
            assert json.dumps(first.status) == previous, f"{where}: status changed"
        previous = json.dumps(first.status)
        obj = {**obj, "status": {**first.status, "observedGeneration":
                                 obj.get("metadata", {}).get("generation")}}
