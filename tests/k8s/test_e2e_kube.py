"""End to end on a real Kubernetes API: kubectl → API server → (Metacontroller driver) → hooks
under gunicorn → ieapi under gunicorn → the private dockerd, with the Orion-LD double.

The only stand-in is Metacontroller itself (no binary can be had here, docs/design.md §1):
tests/support/kube.py watches the real objects, calls the hooks over HTTP, writes status
through ``/status`` and manages its finalizer on the real object, as Metacontroller does.
Everything the user sees goes through kubectl: the samples are applied with it, the printer
columns and the stored status are read with it, and a real ``kubectl delete`` waits until the
finalize flow has removed the container.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml

from ieapi.contract import LABEL_MANAGED
from testbed.dockerd import remove_managed
from testbed.images import INDEX_HTML
from testbed.metacontroller import CRDS_DIR, FINALIZER_PREFIX, HookCall
from testbed.orion import OrionDouble
from testbed.procs import ServerProcess, free_port, running_server
from testbed.stack import HOOK_SECRET
from tests.support.crdserver import CrdApiServer
from tests.support.kube import KubeDriver

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.docker]

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "local"
TOKEN = "e2e-kube-token"
SCD_FINALIZER = FINALIZER_PREFIX + "llo-docker-scd"


def load_sample(name: str) -> JSON:
    doc: JSON = yaml.safe_load((SAMPLES / name).read_text())
    return doc


SCD = load_sample("scd-local.yaml")
DIE = load_sample("die-local.yaml")
IE_ID = DIE["spec"]["id"]
ENTITY = "urn:ngsi-ld:Service:Local:Component:1"  # from the SCD's instance label


@dataclass
class Stack:
    api: CrdApiServer
    hooks: ServerProcess
    ieapi: ServerProcess
    orion: OrionDouble
    instance: str          # the ieapi's managed-by label value
    hook_secret: str       # Secret llo-hook-secret's token: the driver sends it, hooks check it


@pytest.fixture(scope="module")
def stack(dockerd: str, docker_client: docker.DockerClient, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert SCD["spec"]["image"] == busybox_image, "the local sample must use the test image"
    tmp = tmp_path_factory.mktemp("e2e-kube")
    instance = f"k8s-e2e-{uuid.uuid4().hex[:8]}"
    (tmp / "ieapi-token").write_text(TOKEN + "\n")
    tokens = tmp / "tokens"
    tokens.mkdir()
    (tokens / DIE["spec"]["api"]["tokenKey"]).write_text(TOKEN + "\n")
    hook_secret = uuid.uuid4().hex
    (tmp / "hook-secret").write_text(hook_secret + "\n")
    ieapi_env = {
        "IEAPI_TOKEN_FILE": str(tmp / "ieapi-token"),
        "IEAPI_IE_ID": IE_ID, "IEAPI_HOSTNAME": "localhost", "IEAPI_INSTANCE_ID": instance,
        "IEAPI_CONTAINER_PREFIX": f"k{instance[-8:]}", "IEAPI_STOP_TIMEOUT_SECONDS": "2",
        "DOCKER_HOST": dockerd,
    }
    gunicorn = [sys.executable, "-m", "gunicorn"]  # the venv's
    with CrdApiServer() as api, OrionDouble() as orion:
        orion.create_entity(ENTITY, "ServiceComponent")
        api.kubectl("apply", "-f", str(CRDS_DIR))
        api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
        ieapi_port = free_port()
        ieapi_env["IEAPI_BIND"] = f"127.0.0.1:{ieapi_port}"
        hooks_port = free_port()
        hooks_env = {
            "LLO_LISTEN": f"127.0.0.1:{hooks_port}", "LLO_WORKERS": "2", "LLO_THREADS": "4",
            "LLO_IE_TOKEN_DIR": str(tokens), "LLO_BROKER_URL": orion.url,
            "LLO_RESYNC_CONVERGING_SECONDS": "0.5", "LLO_LOG_LEVEL": "INFO",
            "LLO_HOOK_SECRET_FILE": str(tmp / "hook-secret"),
        }
        try:
            with running_server([*gunicorn, "--config", "python:ieapi.gunicorn_conf"],
                                env=ieapi_env, port=ieapi_port, name="ieapi",
                                log_path=tmp / "ieapi.log", cwd=ROOT) as ieapi, \
                 running_server([*gunicorn, "--config", "python:hooks.gunicorn_conf",
                                 "hooks:create_app()"],
                                env=hooks_env, port=hooks_port, name="hooks",
                                log_path=tmp / "hooks.log", cwd=ROOT) as hooks:
                yield Stack(api, hooks, ieapi, orion, instance, hook_secret)
        finally:
            remove_managed(docker_client, instance)


@pytest.fixture
def driver(stack: Stack) -> Iterator[KubeDriver]:
    secrets = {HOOK_SECRET[:2]: {HOOK_SECRET[2]: stack.hook_secret}}
    with KubeDriver(stack.hooks.url, stack.api, secrets=secrets) as d:
        yield d


def kubectl_json(api: CrdApiServer, *args: str) -> JSON:
    out: JSON = json.loads(api.kubectl("get", *args, "-o", "json").stdout)
    return out


def columns(api: CrdApiServer, *args: str) -> dict[str, str]:
    """One object's row of ``kubectl get`` as {column: value}."""
    header, row = api.kubectl("get", *args).stdout.splitlines()[:2]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    ends = [*starts[1:], None]
    return {header[s:e].strip(): row[s:e].strip() for s, e in zip(starts, ends, strict=True)}


def last_answer(driver: KubeDriver, controller: str, hook: str) -> HookCall:
    return [c for c in driver.calls(hook, controller) if c.error is None][-1]


def managed(docker_client: docker.DockerClient, instance: str) -> list[Any]:
    return list(docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_MANAGED}={instance}"}))


def test_scd_lifecycle_through_kubectl(stack: Stack, driver: KubeDriver,
                                       docker_client: docker.DockerClient) -> None:
    api = stack.api
    port = free_port()
    die = json.loads(json.dumps(DIE))
    die["spec"]["api"]["url"] = stack.ieapi.url
    scd = json.loads(json.dumps(SCD))
    # The sample's port, moved to a free one (published ports keep their number on the IE).
    scd["spec"]["ports"][0]["number"] = port
    scd["spec"]["cliArgs"] = [{"key": a["key"], **({"value": str(port)} if a["key"] == "-p"
                                                   else {"value": a["value"]} if "value" in a
                                                   else {})}
                              for a in scd["spec"]["cliArgs"]]
    name = scd["metadata"]["name"]
    api.kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump(die))
    api.kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump(scd))

    # ---- up: Metacontroller's loop until the SCD runs
    driver.run_until(lambda: (driver.cached("scd", name) or {}).get("status", {})
                     .get("phase") == "Running", timeout=60)
    driver.run_until_steady()

    row = columns(api, "scd", name)
    assert row["PHASE"] == "Running"
    assert row["READY"] == "True"
    assert row["IE"] == die["metadata"]["name"]
    assert row["IMAGE"] == scd["spec"]["image"]
    assert columns(api, "die", die["metadata"]["name"])["API-READY"] == "true"
    with requests.Session() as http:
        http.trust_env = False
        assert http.get(f"http://127.0.0.1:{port}/", timeout=5).content == INDEX_HTML

    # ---- status: everything the hooks returned is stored (nothing pruned)
    stored = yaml.safe_load(api.kubectl("get", "scd", name, "-o", "yaml").stdout)
    answer = last_answer(driver, "llo-docker-scd", "sync").response
    assert stored["status"] == {**answer["status"],
                                "observedGeneration": stored["metadata"]["generation"]}
    for field in ("placement", "container", "broker", "conditions"):
        assert stored["status"][field], field
    assert stored["status"]["container"]["ports"][0]["hostPort"] == port
    stored_die = yaml.safe_load(api.kubectl("get", "die", die["metadata"]["name"],
                                            "-o", "yaml").stdout)
    die_answer = last_answer(driver, "llo-docker-die", "sync").response
    assert stored_die["status"] == {**die_answer["status"],
                                    "observedGeneration": stored_die["metadata"]["generation"]}
    assert driver.pruned == []
    assert stored["metadata"]["finalizers"] == [SCD_FINALIZER]
    assert [c.name for c in managed(docker_client, stack.instance)] == \
        [f"k{stack.instance[-8:]}-default.{name}"]
    assert stack.orion.status_history(ENTITY)[-1] == "Running"

    # ---- down: a real `kubectl delete` (it waits until the object is gone)
    result: list[Any] = []
    deleting = threading.Thread(target=lambda: result.append(api.kubectl(
        "delete", "scd", name, "--timeout=90s", check=False, timeout=120)))
    deleting.start()
    try:
        driver.wait_for_cache(lambda: bool((driver.cached("scd", name) or {})
                                           .get("metadata", {}).get("deletionTimestamp")))
        held = kubectl_json(api, "scd", name)  # finalizer holds it: container still there
        assert held["metadata"]["finalizers"] == [SCD_FINALIZER]
        assert managed(docker_client, stack.instance)
        driver.run_until(lambda: not deleting.is_alive(), timeout=90)
    finally:
        deleting.join(timeout=120)
    assert result[0].returncode == 0, result[0].stderr
    assert f'"{name}" deleted' in result[0].stdout
    finalize = driver.calls("finalize", "llo-docker-scd")
    assert finalize
    assert all(c.request["parent"]["metadata"].get("deletionTimestamp") for c in finalize)
    assert finalize[-1].response["finalized"] is True
    assert managed(docker_client, stack.instance) == []
    gone = api.kubectl("get", "scd", name, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    assert stack.orion.status_history(ENTITY)[-1] == "Finished"

    # ---- the DIE goes too, now that its IE runs nothing of ours
    api.kubectl("delete", "die", die["metadata"]["name"], "--wait=false")
    driver.run_until(lambda: api.kubectl("get", "die", die["metadata"]["name"],
                                         check=False).returncode != 0, timeout=30)


def _kubectl_in_background(api: CrdApiServer, *args: str) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(api.kubectl(
        *args, check=False, timeout=150)))
    thread.start()
    return thread, result


def _waited(driver: KubeDriver, api: CrdApiServer, *args: str) -> Any:
    """Run `kubectl wait ...` while the Metacontroller loop runs; its finished process."""
    thread, result = _kubectl_in_background(api, "wait", *args, "--timeout=120s")
    try:
        driver.run_until(lambda: not thread.is_alive(), timeout=130)
    finally:
        thread.join(timeout=150)
    return result[0]


def test_kubectl_wait_for_a_service_and_a_job(stack: Stack, driver: KubeDriver) -> None:
    """README's `kubectl wait` lines, against the real API server: Ready for a service,
    Complete for a job (True once it exited, whether it succeeded or failed)."""
    api = stack.api
    die = json.loads(json.dumps(DIE))
    die["spec"]["api"]["url"] = stack.ieapi.url
    api.kubectl("apply", "-f", "-", input=yaml.safe_dump(die))
    die_name = die["metadata"]["name"]
    done = _waited(driver, api, "--for=jsonpath={.status.apiReady}=true", f"die/{die_name}")
    assert done.returncode == 0, done.stderr

    def scd(name: str, **spec: Any) -> JSON:
        doc: JSON = json.loads(json.dumps(SCD))
        doc["metadata"]["name"] = name
        doc["spec"] = {"selectedIE": SCD["spec"]["selectedIE"], "image": SCD["spec"]["image"],
                       **spec}
        return doc

    def shell(script: str) -> list[JSON]:
        return [{"key": "sh"}, {"key": "-c", "value": script}]

    docs = [scd("wait-web", cliArgs=[{"key": "sleep"}, {"key": "3600"}]),
            scd("wait-job-ok", isJob=True, cliArgs=shell("exit 0")),
            scd("wait-job-bad", isJob=True, cliArgs=shell("exit 3"))]
    api.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        done = _waited(driver, api, "--for=condition=Ready", "scd/wait-web")
        assert done.returncode == 0, done.stderr
        assert "condition met" in done.stdout
        done = _waited(driver, api, "--for=condition=Complete", "scd/wait-job-ok",
                       "scd/wait-job-bad")
        assert done.returncode == 0, done.stderr
        phases = {n: kubectl_json(api, "scd", n)["status"]["phase"]
                  for n in ("wait-job-ok", "wait-job-bad")}
        assert phases == {"wait-job-ok": "Succeeded", "wait-job-bad": "Failed"}
        # A service never gets Complete, and a job's Complete is not Ready's business.
        web = kubectl_json(api, "scd", "wait-web")["status"]
        assert "Complete" not in {c["type"] for c in web["conditions"]}
        bad = {c["type"]: c for c in kubectl_json(api, "scd", "wait-job-bad")["status"]
               ["conditions"]}
        assert (bad["Complete"]["status"], bad["Complete"]["reason"]) == ("True", "JobFailed")
        assert bad["Ready"]["status"] == "False"
    finally:
        thread, _ = _kubectl_in_background(api, "delete", "scd", "wait-web", "wait-job-ok",
                                           "wait-job-bad", "--timeout=120s")
        driver.run_until(lambda: not thread.is_alive(), timeout=130)
        thread.join(timeout=150)
        api.kubectl("delete", "die", die_name, "--wait=false")
        driver.run_until(lambda: api.kubectl("get", "die", die_name,
                                             check=False).returncode != 0, timeout=60)
