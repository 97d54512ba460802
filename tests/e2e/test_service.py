"""The seed's two-component service (samples/scd-orion-ld.yaml + samples/scd-mongo.yaml) with
the local busybox image standing in: the "Orion-LD" component reaches its "MongoDB" by the
CR name `service-1-mongo`, as `-dbhost service-1-mongo` does in the original."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.stack import IE, NAMESPACE, Stack
from tests.e2e.helpers import (
    assert_one_container_per,
    container_of,
    delete_and_wait,
    finish_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MONGO_PORT = 27017


def from_sample(file: str, ie: IE, **spec: Any) -> dict[str, Any]:
    """The sample SCD with its labels and name, placed on `ie`, with `spec` overriding."""
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / file).read_text())
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"]["selectedIE"] = {"id": ie.ie_id, "hostname": ie.name}
    doc["spec"].update(spec)
    return doc


def fetch_job(url: str, tries: int) -> list[dict[str, str]]:
    """cliArgs of a shell that fetches `url`, retrying a little; exits 0 only on success.
    (No `wget -T`: it segfaults in Debian's static busybox 1.35.)"""
    script = f"for i in $(seq {tries}); do wget -q -O- {url} && exit 0; sleep 1; done; exit 1"
    return [{"key": "sh"}, {"key": "-c", "value": script}]


def test_components_reach_each_other_by_cr_name(stack: Stack, ie: IE,
                                                busybox_image: str) -> None:
    mongo = from_sample("scd-mongo.yaml", ie, image=busybox_image, cliArgs=[
        {"key": "httpd"}, {"key": "-f"}, {"key": "-p", "value": str(MONGO_PORT)},
        {"key": "-h", "value": "/www"}])
    orion = from_sample("scd-orion-ld.yaml", ie, image=busybox_image, isJob=True, ports=[],
                        cliArgs=fetch_job(f"http://service-1-mongo:{MONGO_PORT}/", 10))
    assert mongo["metadata"]["name"] == "service-1-mongo"
    assert orion["metadata"]["name"] == "service-1-orion-ld"
    part_of = "app.kubernetes.io/part-of"
    assert mongo["metadata"]["labels"][part_of] == orion["metadata"]["labels"][part_of]
    assert stack.orion is not None
    for doc in (mongo, orion):
        component = doc["metadata"]["labels"]["app.kubernetes.io/instance"]
        stack.orion.create_entity(component.replace("_", ":"), "ServiceComponent")

    stack.driver.apply(mongo)
    stack.driver.run_until(lambda: stack.phase("service-1-mongo") == "Running", timeout=60)
    stack.driver.apply(orion)
    status = finish_job(stack, "service-1-orion-ld")
    assert (status["phase"], status["container"]["exitCode"]) == ("Succeeded", 0)
    db = container_of(stack, "service-1-mongo")
    assert db.attrs["HostConfig"]["PortBindings"] in ({}, None)  # exposePorts: false
    network = status["container"]["network"]
    assert network == stack.scd_status("service-1-mongo")["container"]["network"]

    # Another service's component is on another network: the name does not resolve there.
    outsider = from_sample("scd-orion-ld.yaml", ie, image=busybox_image, isJob=True, ports=[],
                           cliArgs=fetch_job(f"http://service-1-mongo:{MONGO_PORT}/", 2))
    outsider["metadata"]["name"] = "service-2-probe"
    outsider["metadata"]["labels"][part_of] = "urn_ngsi-ld_Service_2"
    stack.driver.apply(outsider)
    assert finish_job(stack, "service-2-probe")["container"]["exitCode"] == 1
    assert_one_container_per(stack, ["service-1-mongo", "service-1-orion-ld", "service-2-probe"])

    for name in ("service-2-probe", "service-1-orion-ld", "service-1-mongo"):
        delete_and_wait(stack, name)
    assert_one_container_per(stack, [])
    assert stack.client.networks.list(names=[network]) == []  # gone with its last container
