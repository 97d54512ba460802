"""The failure part of an SCD status (hooks.servicecomponent), pure: from the IE's
ContainerStatus to `status.failure`, cut again by the Kubernetes rule, kept while the IE cannot
be asked, gone when the container runs."""

from __future__ import annotations

from hooks import servicecomponent as sc
from hooks.reasons import Reason
from hooks.resources import ConditionStatus, FailureInfo, Phase
from hooks.resync import Pace
from ieapi import tail
from ieapi.contract import ContainerState, ContainerStatus, LastOutput


def _status(state: ContainerState, text: str | None, exit_code: int | None = 3) -> ContainerStatus:
    return ContainerStatus(
        name="ns.x", state=state, id="abc", image="busybox", exit_code=exit_code,
        finished_at="2026-12-01T23:00:00Z", restart_count=4,
        last_output=LastOutput(text=text, truncated=False) if text is not None else None)


def test_a_reported_failure_becomes_status_failure() -> None:
    v = sc.verdict_of_container(_status(ContainerState.RESTARTING, "boom\n"), False, "ie-1")
    assert v.failure == FailureInfo(exit_code=3, finished_at="2026-12-01T23:00:00Z",
                                    restart_count=4, last_output="boom\n",
                                    last_output_truncated=False)
    assert "boom" not in v.message  # the text goes to status.failure only


def test_an_oversized_tail_from_the_ie_is_cut_again() -> None:
    huge = "".join(f"line {i}\n" for i in range(5000))
    v = sc.verdict_of_container(_status(ContainerState.EXITED, huge), True, "ie-1")
    assert v.failure is not None
    assert v.failure.last_output_truncated is True
    assert len(v.failure.last_output.encode()) <= tail.MAX_BYTES
    assert len(v.failure.last_output.splitlines()) <= tail.MAX_LINES
    assert v.failure.last_output.endswith("line 4999\n")


def test_no_failure_without_a_tail() -> None:
    running = _status(ContainerState.RUNNING, None, exit_code=None)
    assert sc.verdict_of_container(running, False, "ie-1").failure is None


def test_unknown_container_keeps_the_last_failure_known_one_replaces_it() -> None:
    old = FailureInfo(exit_code=3, last_output="old\n")
    unknown = sc.Assessment(phase=Phase.UNKNOWN, reason=Reason.IE_UNREACHABLE,
                            message="", container_ready=(ConditionStatus.UNKNOWN,
                                                         Reason.IE_UNREACHABLE, ""),
                            pace=Pace.ERROR, backoff_condition="Ready",
                            container=sc.UNKNOWN_CONTAINER)
    assert sc._failure_to_report(old, unknown) == old
    running = sc.verdict_of_container(_status(ContainerState.RUNNING, None, None), False, "i")
    known = sc.Assessment(phase=Phase.RUNNING, reason=Reason.CONTAINER_RUNNING,
                          message="", container_ready=(ConditionStatus.TRUE,
                                                       Reason.CONTAINER_RUNNING, ""),
                          pace=Pace.STEADY, backoff_condition="Ready",
                          container=running.container, failure=running.failure)
    assert sc._failure_to_report(old, known) is None
