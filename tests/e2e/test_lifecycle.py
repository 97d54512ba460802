"""An SCD's life through the real system: create, change, run to completion, delete."""

from __future__ import annotations

import docker.errors
import pytest

from testbed.stack import IE, Stack
from tests.e2e.helpers import (
    assert_one_container_per,
    container_of,
    delete_and_wait,
    deploy,
    entity,
    finish_job,
    reason,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SLEEP = [{"key": "sleep"}, {"key": "3600"}]


def test_apply_runs_and_reports(stack: Stack, ie: IE, busybox_image: str) -> None:
    start = stack.driver.clock.now()
    status = deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
    # Intent first, then the create one intent pace later (status writes trigger nothing).
    syncs = stack.driver.calls("sync", "llo-docker-scd")
    assert [c.response["status"]["reason"] for c in syncs] == ["PlacementRecorded",
                                                               "ContainerRunning"]
    assert syncs[0].response["resyncAfterSeconds"] == 0.2
    assert stack.driver.clock.now() - start == pytest.approx(0.2)
    assert stack.orion is not None
    assert stack.orion.status_history(entity("web")) == ["Starting", "Running"]
    assert status["placement"]["ie"] == ie.name
    assert status["broker"]["reported"] == "Running"
    assert reason(stack, "web", "Ready") == "ContainerRunning"
    assert reason(stack, "web", "BrokerSynced") == "BrokerSynced"
    running = container_of(stack, "web")
    assert running.status == "running"
    assert running.id == status["container"]["id"]
    assert stack.driver.warnings() == []
    assert_one_container_per(stack, ["web"])


def test_spec_change_replaces_the_container(stack: Stack, ie: IE, busybox_image: str) -> None:
    before = deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP,
                    envVars=[{"key": "COLOUR", "value": "red"}])["container"]["id"]
    stack.driver.apply(Stack.scd("web", ie, busybox_image, cliArgs=SLEEP,
                                 envVars=[{"key": "COLOUR", "value": "blue"}]))
    stack.driver.run_until(lambda: stack.phase("web") == "Running"
                           and stack.scd_status("web")["container"]["id"] != before,
                           timeout=60)
    after = container_of(stack, "web")
    assert after.id == stack.scd_status("web")["container"]["id"]
    assert "COLOUR=blue" in after.attrs["Config"]["Env"]
    with pytest.raises(docker.errors.NotFound):
        stack.client.containers.get(before)
    assert stack.scd_status("web")["observedGeneration"] == 2
    assert_one_container_per(stack, ["web"])


@pytest.mark.parametrize(("code", "phase", "reported"), [
    (0, "Succeeded", "Finished"),
    (1, "Failed", "Failed"),
])
def test_job_outcome(stack: Stack, ie: IE, busybox_image: str, *, code: int, phase: str,
                     reported: str) -> None:
    assert stack.orion is not None
    stack.orion.create_entity(entity("job"), "ServiceComponent")
    stack.driver.apply(Stack.scd("job", ie, busybox_image, isJob=True,
                                 cliArgs=[{"key": "sh"}, {"key": "-c", "value": f"exit {code}"}]))
    status = finish_job(stack, "job")
    assert status["phase"] == phase
    assert status["container"]["exitCode"] == code
    assert status["reason"] == ("JobSucceeded" if code == 0 else "JobFailed")
    stack.driver.run_until(lambda: stack.scd_status("job")["broker"]["reported"] == reported,
                           timeout=30)
    assert stack.orion.status_history(entity("job"))[-1] == reported
    exited = container_of(stack, "job")
    assert exited.status == "exited"
    assert exited.attrs["State"]["ExitCode"] == code
    stack.driver.run_for(120)  # a job is never run again: still the same exited container
    assert container_of(stack, "job").id == exited.id
    assert_one_container_per(stack, ["job"])


def test_delete_removes_the_container_and_tells_the_broker(stack: Stack, ie: IE,
                                                           busybox_image: str) -> None:
    deploy(stack, ie, "web", busybox_image, cliArgs=SLEEP)
    deploy(stack, ie, "other", busybox_image, cliArgs=SLEEP)
    gone = container_of(stack, "web").id
    delete_and_wait(stack, "web")
    assert stack.orion is not None
    assert stack.orion.status_history(entity("web")) == ["Starting", "Running", "Removing",
                                                         "Finished"]
    with pytest.raises(docker.errors.NotFound):
        stack.client.containers.get(gone)
    finalize = stack.driver.calls("finalize", "llo-docker-scd")
    assert finalize
    assert finalize[-1].response["finalized"] is True
    assert stack.phase("other") == "Running"
    assert_one_container_per(stack, ["other"])
