"""The reasons users read about are the ones the hooks set: every reason named in a CRD
description (what `kubectl explain` shows) or in README is a member of hooks/reasons.py, the
only place a reason can come from. README's full table is generated from that file
(tests/e2e/test_readme.py); this covers the prose around it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooks import infrastructure, resources
from hooks.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
REASONS = {r.value for r in Reason}
CONDITION_TYPES = {*resources.SCD_CONDITION_ORDER, infrastructure.READY,
                   infrastructure.REACHABLE, infrastructure.IDENTITY_MATCHES,
                   infrastructure.CORDONED, infrastructure.TERMINATING}
KINDS = {"ServiceComponentDocker", "DockerInfrastructureElement", "ServiceComponent",
         "InfrastructureElement", "CompositeController", "ServiceComponentStatus"}
_CAMEL = r"[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*"


def _descriptions(node: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """(property name, description) of every schema node."""
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            yield field, node["description"]
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _descriptions(sub, name)
            elif key != "description":
                yield from _descriptions(value, field)
    elif isinstance(node, list):
        for value in node:
            yield from _descriptions(value, field)


CRD_TEXTS = [(p.name, field, text) for p in sorted((ROOT / "crds").glob("*.yaml"))
             for field, text in _descriptions(yaml.safe_load(p.read_text()))]


def _named_reasons(field: str, text: str) -> set[str]:
    """Reasons a description names: the examples of a `reason` field, and `reason X`."""
    named = set(re.findall(rf"\breasons? `?({_CAMEL})", text))
    if field == "reason" and "e.g." in text:
        named |= set(re.findall(rf"\b({_CAMEL})\b", text.split("e.g.", 1)[1]))
    return named


def test_the_checks_find_something() -> None:
    named = set().union(*(_named_reasons(f, t) for _, f, t in CRD_TEXTS))
    assert {"PullFailed", "PrivilegedNotAllowed", "IEUnreachable"} <= named


@pytest.mark.parametrize(("crd", "field", "text"), CRD_TEXTS,
                         ids=[f"{c}:{f}" for c, f, _ in CRD_TEXTS])
def test_crd_descriptions_name_real_reasons(crd: str, field: str, text: str) -> None:
    assert _named_reasons(field, text) <= REASONS


def test_readme_names_real_reasons() -> None:
    """Every backticked CamelCase word in README is a reason, a condition type or a kind."""
    text = (ROOT / "README.md").read_text()
    words = set(re.findall(r"`([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)`", text))
    assert words & REASONS
    assert words <= REASONS | CONDITION_TYPES | KINDS, words - REASONS - CONDITION_TYPES - KINDS
    for match in re.finditer(rf"\breasons? `({_CAMEL})`", text):
        assert match.group(1) in REASONS, match.group(0)


def test_a_wrong_reason_would_be_caught() -> None:
    assert not _named_reasons("reason", "CamelCase reason, e.g. ImagePullFailed") <= REASONS
