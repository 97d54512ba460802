"""Hardening visible in the shipped files (building the images is another tier's job): both
images end as a numeric non-root user, the hooks Deployment runs with a restrictive
securityContext, and only Metacontroller's namespace may call the hooks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "metacontroller"


def _final_stage(dockerfile: Path) -> str:
    text = dockerfile.read_text()
    stages = re.split(r"^FROM\s", text, flags=re.M)
    assert len(stages) >= 2, f"{dockerfile.name}: no FROM"
    return stages[-1]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.ieapi"])
def test_image_runs_as_numeric_non_root(name: str) -> None:
    users = re.findall(r"^USER\s+(\S+)\s*$", _final_stage(ROOT / name), flags=re.M)
    assert users, f"{name}: the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"{name}: USER {users[-1]} is not numeric (runAsNonRoot needs a uid)"
    assert int(uid) != 0, f"{name}: runs as root"
    assert not gid or int(gid) != 0, f"{name}: runs with group root"


def _deployment() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    return doc


def test_deployment_security_context() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc.get("capabilities", {}).get("add")
        assert sc.get("privileged", False) is False
        assert container["resources"]["limits"]["memory"]
    for volume in pod.get("volumes", []):
        assert "hostPath" not in volume, volume
    secrets = [v for v in pod.get("volumes", []) if "secret" in v]
    assert secrets
    assert all(int(str(v["secret"]["defaultMode"]), 0) & 0o007 == 0 for v in secrets)


def test_only_metacontroller_may_call_the_hooks() -> None:
    policy = yaml.safe_load((MANIFESTS / "networkpolicy.yaml").read_text())
    deployment = _deployment()
    assert policy["spec"]["podSelector"]["matchLabels"] == \
        deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    sources = [source for rule in policy["spec"]["ingress"] for source in rule["from"]]
    assert sources == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "metacontroller"}}}]
