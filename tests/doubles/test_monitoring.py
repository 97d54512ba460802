"""metacontroller/monitoring/: the kube-state-metrics configuration names fields the CRDs
really have, the example alerts use series that exist (from that configuration or the hooks'
/metrics), and the alerts fire when they should (`promtool test rules`, Prometheus's own
rule engine, on alerts.test.yaml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from hooks import metrics as hook_metrics
from hooks.resources import Phase

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "metacontroller" / "monitoring"
KSM = yaml.safe_load((MONITORING / "kube-state-metrics.yaml").read_text())
ALERTS = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
CRDS = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"]: yaml.safe_load(p.read_text())
        for p in (ROOT / "crds").glob("*.yaml")}


def _schema_has(schema: dict[str, Any], path: list[str]) -> bool:
    node = schema
    for key in path:
        if node.get("type") == "array":
            node = node["items"]
        props = node.get("properties") or {}
        if key not in props:
            return False
        node = props[key]
    return True


def _paths(metric: dict[str, Any]) -> list[list[str]]:
    """Every object path of one metric, relative to the resource (array items flattened)."""
    each = metric["each"]
    spec = each[each["type"][0].lower() + each["type"][1:]]
    base = list(spec.get("path", []))
    found = [base] if base else []
    found += [base + list(p) for p in (spec.get("labelsFromPath") or {}).values()]
    if "valueFrom" in spec:
        found.append(base + list(spec["valueFrom"]))
    return found


def _ksm_names() -> set[str]:
    return {f"{r['metricNamePrefix']}_{m['name']}" for r in KSM["spec"]["resources"]
            for m in r["metrics"]}


def test_kube_state_metrics_reads_real_fields() -> None:
    for resource in KSM["spec"]["resources"]:
        kind = resource["groupVersionKind"]["kind"]
        crd = CRDS[kind]
        assert resource["groupVersionKind"]["group"] == crd["spec"]["group"]
        (version,) = crd["spec"]["versions"]
        assert resource["groupVersionKind"]["version"] == version["name"]
        schema = version["schema"]["openAPIV3Schema"]
        for metric in resource["metrics"]:
            for path in _paths(metric):
                if path[0] in ("status", "spec"):
                    assert _schema_has(schema, path), (kind, metric["name"], path)


def test_phase_states_are_the_hooks_phases() -> None:
    (scd,) = [r for r in KSM["spec"]["resources"]
              if r["groupVersionKind"]["kind"] == "ServiceComponentDocker"]
    (phase,) = [m for m in scd["metrics"] if m["name"] == "scd_phase"]
    assert phase["each"]["stateSet"]["list"] == [p.value for p in Phase]


def test_alerts_use_series_that_exist() -> None:
    hooks_names = {m._name for m in vars(hook_metrics).values()
                   if isinstance(m, Counter | Gauge | Histogram)}
    known = _ksm_names() | hooks_names
    rules = [r for g in ALERTS["groups"] for r in g["rules"]]
    assert any(r["alert"] == "LLODockerIEUnreachable" and r["for"] == "5m" for r in rules)
    for rule in rules:
        used = set(re.findall(r"\b(llo_[a-z_]+)\b", rule["expr"]))
        assert used, rule
        # counters are exposed as <name>_total; prometheus_client's _name drops the suffix
        assert {u.removesuffix("_total") for u in used} <= known, (rule["alert"], used)


def test_promtool_checks_and_fires_the_alerts() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    for args in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]):
        done = subprocess.run([promtool, *args], cwd=MONITORING, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout
