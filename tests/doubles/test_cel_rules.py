"""The Metacontroller driver's store evaluates the CRDs' CEL rules (issue 10, point 6).

testbed/crdschema.py evaluates ``x-kubernetes-validations`` with cel-python after defaulting,
as the API server does; rules cel-python cannot evaluate like the API server (Kubernetes CEL
library functions, transition rules) are skipped, never refused by mistake, and named here:
``UNEVALUATED`` is the explicit list for the project's CRDs. tests/k8s/test_schema_agreement.py
checks the verdicts against the real API server.
"""

from __future__ import annotations

from typing import Any

import pytest

from testbed.crdschema import CelRule, InvalidError, StructuralSchema, unevaluable_rules
from testbed.manifests import load_crds

CRDS = load_crds()

# Every CEL rule of crds/*.yaml the driver cannot evaluate, by kind. Empty: it evaluates all.
UNEVALUATED: dict[str, dict[CelRule, str]] = {kind: {} for kind in CRDS}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_the_driver_evaluates_every_rule_of_the_crds(kind: str) -> None:
    assert unevaluable_rules(CRDS[kind].schema) == UNEVALUATED[kind]


def _scd(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "llo.aeros-project.eu/v1alpha1", "kind": "ServiceComponentDocker",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {"selectedIE": {"id": "urn:x:1", "hostname": "h"}, "image": "busybox:1",
                     **spec}}


def test_the_port_rule_is_evaluated_after_defaulting() -> None:
    checker = CRDS["ServiceComponentDocker"].checker
    # {"number": 80} is defaulted to TCP first, then the two entries are the same pair.
    with pytest.raises(InvalidError) as refused:
        checker.check_object(_scd(ports=[{"number": 80, "protocol": "TCP"}, {"number": 80}]))
    assert any("spec.ports" in e and "may appear only once" in e
               for e in refused.value.errors), refused.value.errors
    kept = checker.check_object(_scd(ports=[{"number": 80}, {"number": 80,
                                                              "protocol": "UDP"}]))
    assert kept["spec"]["ports"] == [{"number": 80, "protocol": "TCP"},
                                     {"number": 80, "protocol": "UDP"}]


SCHEMA = {"type": "object", "properties": {"name": {
    "type": "string",
    "x-kubernetes-validations": [
        {"rule": "self.lowerAscii() == self", "message": "lower case"},
        {"rule": "self == oldSelf", "message": "immutable"},
        {"rule": "self.size() <= 5", "message": "short"},
    ]}}}


def test_rules_cel_python_cannot_evaluate_are_named_and_skipped() -> None:
    skipped = unevaluable_rules(SCHEMA)
    assert {r.rule: why.split(":")[0] for r, why in skipped.items()} == {
        "self.lowerAscii() == self": "calls Kubernetes CEL library functions cel-python lacks",
        "self == oldSelf": "a transition rule (oldSelf)",
    }
    assert all(r.path == ".name" for r in skipped)
    checker = StructuralSchema(SCHEMA)
    _, errors = checker.apply({"name": "UPPER"})
    assert errors == []  # the lowerAscii rule is skipped, not guessed
    _, errors = checker.apply({"name": "toolong"})
    assert errors == ["<root>.name: Invalid value: str: short"]


def test_a_rule_that_fails_at_runtime_refuses() -> None:
    """Kubernetes refuses when a rule errors (e.g. a missing field); so does the driver."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}},
              "x-kubernetes-validations": [{"rule": "self.a > 1", "message": "a > 1"}]}
    _, errors = StructuralSchema(schema).apply({})
    assert len(errors) == 1
    assert errors[0].startswith("<root>: Invalid value: dict: a > 1 (")
