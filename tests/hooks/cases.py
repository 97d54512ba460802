"""Runs the JSON decision cases in tests/hooks/fixtures/ through the pure decision code.

A fixture file is `{"defaults": {"scd": ..., "die": ..., "settings": ...}, "cases": [...]}`.
A case has `name`, optional `scd`/`die`/`settings` (deep-merged over the defaults) and
`steps`. Each step is one hook call, fed the status the previous step returned, exactly as
Metacontroller would:

- `now`, `hook` (sync | finalize, default sync), `patch` (deep-merged into the object first),
  `die` (the related DIE from now on; `null` for none; a short form `{name, id, ready,
  annotations, deletionTimestamp}` is expanded),
- `observations`: one per planned IE call (the runner checks they answer exactly the plan),
- `broker`: the broker's answers, in order (the runner checks the values asked for match),
- `probe` / `listing` for DIE cases (`{"failure": ...}` for a failed call),
- `expect`: `stage`, `actions` (["ensure@ie-a", ...]), `brokerRequests`, `status` (subset,
  `null` = absent), `conditions` ({type: [status, reason, lastTransitionTime?]}, exact set of
  types), `resyncAfterSeconds`, `finalized`, `orphaned` ([ie, ...]), `unchanged` (true: the
  status is byte-identical to the previous step's, i.e. Metacontroller would not write it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hooks import brokerstatus, infrastructure, teardown
from hooks import servicecomponent as sc
from hooks.conditions import parse_time
from hooks.errors import Failure
from hooks.observations import ActionKind, BrokerObservation, Observation
from hooks.resources import API_VERSION, DIE, DIE_KIND, DIEStatus, SCDStatus, dump, read_scd
from hooks.settings import Settings
from ieapi.contract import ContainerList, IEInfo
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


class _Broker:
    """Hands out the step's scripted broker answers, checking what was asked for."""

    def __init__(self, answers: list[JSON]) -> None:
        self.answers = [BrokerObservation.model_validate(a) for a in answers]
        self.asked: list[str] = []

    def ask(self, value: str | None) -> list[BrokerObservation]:
        if value is None:
            return []
        self.asked.append(value)
        assert self.answers, f"the decision asked the broker for {value!r}; no answer scripted"
        answer = self.answers.pop(0)
        assert answer.value == value, f"broker asked for {value!r}, answer is for {answer.value!r}"
        return [answer]

    def done(self) -> None:
        assert not self.answers, f"scripted broker answers not asked for: {self.answers}"


def _observations(step: JSON, planned: list[tuple[str, str]]) -> list[Observation]:
    obs = [Observation.model_validate(o) for o in step.get("observations", [])]
    given = sorted(o.key for o in obs)
    assert given == sorted(planned), f"observations {given} do not answer the plan {planned}"
    return obs


def run_scd_step(obj: JSON, die: DIE | None, step: JSON, settings: Settings) -> Result:
    scd = read_scd(obj)
    now = _now(step)
    broker = _Broker(step.get("broker", []))
    if step.get("hook", "sync") == "sync":
        plan = sc.plan(scd, die)
        actions = [f"{a.kind.value}@{a.target.ie}" for a in plan.actions]
        observations = _observations(step, [a.key for a in plan.actions])
        containers = [o for o in observations if o.kind is not ActionKind.DELETE]
        value = sc.assess(scd, plan, containers).broker_value
        attempts = broker.ask(brokerstatus.broker_request(scd, value, settings))
        out = sc.report(scd, plan, observations, attempts, now=now, settings=settings)
        stage: str | None = plan.stage.value
    else:
        fplan = teardown.finalize_plan(scd, die, settings)
        actions = [f"{a.kind.value}@{a.target.ie}" for a in fplan.actions]
        attempts = broker.ask(fplan.removing)
        observations = _observations(step, [a.key for a in fplan.actions])
        decision = teardown.finalize_decision(scd, fplan, observations, now, settings)
        attempts += broker.ask(teardown.finished_request(scd, fplan, decision, attempts, settings))
        out = teardown.finalize_report(scd, decision, attempts, now=now, settings=settings)
        stage = None
    broker.done()
    return Result(dump(out.status), out.resync_after_seconds, out.finalized, stage, actions,
                  broker.asked, [p.ie for p in out.orphaned])


def _call_result(raw: JSON | None, model: type[IEInfo] | type[ContainerList]) -> Any:
    if raw is None:
        return None
    if "failure" in raw:
        return Failure.model_validate(raw["failure"])
    return model.model_validate(raw)


def run_die_step(obj: JSON, step: JSON, settings: Settings) -> Result:
    die = DIE.model_validate(obj)
    now = _now(step)
    if step.get("hook", "sync") == "sync":
        out = infrastructure.report_die(die, _call_result(step["probe"], IEInfo), now, settings)
    else:
        out = infrastructure.finalize_die(die, _call_result(step.get("listing"), ContainerList),
                                          now, settings)
    return Result(dump(out.status), out.resync_after_seconds, out.finalized, None, [], [], [])


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
        if case.kind == "scd":
            die = expand_die(die_short)
            first = run_scd_step(obj, die, step, case.settings)
            again = run_scd_step(obj, die, step, case.settings)
            model: type[SCDStatus] | type[DIEStatus] = SCDStatus
        else:
            first = run_die_step(obj, step, case.settings)
            again = run_die_step(obj, step, case.settings)
            model = DIEStatus
        assert json.dumps(first.status) == json.dumps(again.status), f"{where}: not deterministic"
        assert (first.resync, first.actions) == (again.resync, again.actions)
        assert dump(model.model_validate(first.status)) == first.status, f"{where}: round trip"
        check(first, step.get("expect", {}), where)
        if step.get("expect", {}).get("unchanged"):
            assert json.dumps(first.status) == previous, f"{where}: status changed"
        previous = json.dumps(first.status)
        obj = {**obj, "status": {**first.status, "observedGeneration":
                                 obj.get("metadata", {}).get("generation")}}
