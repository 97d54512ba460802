"""A job's `Complete` condition (what `kubectl wait --for=condition=Complete` waits on): True
once the container exited, whichever way; Unknown while its IE cannot be asked; else False.
The table cases (fixtures/lifecycle.json) check it on whole syncs."""

from __future__ import annotations

import pytest

from hooks.reasons import Reason
from hooks.resources import ConditionStatus, Phase
from hooks.resync import Pace
from hooks.servicecomponent import Assessment, job_completion


def _assessment(phase: Phase, reason: Reason) -> Assessment:
    return Assessment(phase=phase, reason=reason, message=f"{reason} on IE 'ie-a'",
                      container_ready=(ConditionStatus.FALSE, reason, "x"), pace=Pace.STEADY,
                      backoff_condition="ContainerReady")


@pytest.mark.parametrize(("phase", "reason", "status"), [
    (Phase.SUCCEEDED, Reason.JOB_SUCCEEDED, ConditionStatus.TRUE),
    (Phase.FAILED, Reason.JOB_FAILED, ConditionStatus.TRUE),
    (Phase.RUNNING, Reason.CONTAINER_RUNNING, ConditionStatus.FALSE),
    (Phase.DEPLOYING, Reason.IMAGE_PULLING, ConditionStatus.FALSE),
    (Phase.FAILED, Reason.PULL_FAILED, ConditionStatus.FALSE),  # never ran: not complete
    (Phase.PENDING, Reason.IE_NOT_READY, ConditionStatus.FALSE),
    (Phase.UNKNOWN, Reason.CONTAINER_UNKNOWN, ConditionStatus.UNKNOWN),
])
def test_complete_only_when_the_job_exited(phase: Phase, reason: Reason,
                                           status: ConditionStatus) -> None:
    got = job_completion(_assessment(phase, reason))
    assert got[:2] == (status, reason)
    assert got[2] == f"{reason} on IE 'ie-a'"
