"""The tail of a failure in the SCD's status, through the real system (gunicorn hooks, ieapi,
dockerd, the Orion-LD double, the Metacontroller driver): bounded like Kubernetes' pod status,
written once per failure, told to nobody else, cleared when the container runs again."""

from __future__ import annotations

import pytest

from ieapi import tail
from testbed.stack import IE, Stack
from tests.e2e.helpers import entity, finish_job

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

MARKER = "fatal-db-password-wrong-7f3a"  # must reach status and nothing else
CRASH = [{"key": "sh"}, {"key": "-c", "value":
          f'for i in $(seq 1 150); do echo "boot line $i"; done; echo "{MARKER}"; exit 3'}]
SLEEP = [{"key": "sleep"}, {"key": "3600"}]


def test_failed_job_tail_in_status_once_and_cleared_when_it_runs(
        stack: Stack, ie: IE, busybox_image: str) -> None:
    assert stack.orion is not None
    assert stack.hooks is not None
    stack.orion.create_entity(entity("crash"), "ServiceComponent")
    stack.driver.apply(Stack.scd("crash", ie, busybox_image, isJob=True, cliArgs=CRASH))
    status = finish_job(stack, "crash")
    assert status["phase"] == "Failed"
    failure = status["failure"]
    assert failure["exitCode"] == 3
    assert failure["finishedAt"] == status["container"]["finishedAt"]
    assert failure["lastOutputTruncated"] is True
    text = failure["lastOutput"]
    assert text.endswith(f"boot line 150\n{MARKER}\n")
    assert len(text.splitlines()) <= tail.MAX_LINES
    assert len(text.encode()) <= tail.MAX_BYTES

    # Written once: later syncs of the same failure change nothing, so nothing is written.
    writes = len([w for w in stack.driver.status_writes if w.name == "crash"])
    syncs = len(stack.driver.calls("sync", "llo-docker-scd"))
    stack.driver.run_for(600)
    assert len(stack.driver.calls("sync", "llo-docker-scd")) > syncs  # it was synced again
    assert len([w for w in stack.driver.status_writes if w.name == "crash"]) == writes
    assert stack.scd_status("crash")["failure"] == failure

    # Nowhere else: not to the broker, not to the hooks' log.
    assert all(MARKER.encode() not in r.body for r in stack.orion.requests)
    assert MARKER not in stack.hooks.log_path.read_text()

    # Runs again (a spec change): the failure is gone from status.
    stack.driver.apply(Stack.scd("crash", ie, busybox_image, cliArgs=SLEEP))
    stack.driver.run_until(lambda: stack.phase("crash") == "Running", timeout=60)
    assert "failure" not in stack.scd_status("crash")


def test_crash_loop_shows_the_tail_while_restarting(stack: Stack, ie: IE,
                                                    busybox_image: str) -> None:
    """A non-job that keeps crashing: Docker restarts it (on-failure), the phase is
    Deploying/ContainerRestarting, and the status carries the crash's output and exit code."""
    stack.driver.apply(Stack.scd("loop", ie, busybox_image, cliArgs=CRASH))
    stack.driver.run_until(lambda: "failure" in stack.scd_status("loop"), timeout=90)
    status = stack.scd_status("loop")
    assert status["failure"]["exitCode"] == 3
    assert status["failure"]["lastOutput"].endswith(f"{MARKER}\n")
    assert status["reason"] in ("ContainerRestarting", "ContainerExited")
    assert MARKER not in status["message"]
