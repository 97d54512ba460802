"""llo-docker's pure parts: where an SCD's container is, the token from a Secret, kubectl's
error lines, and the describe screen. The command as a whole runs in tests/k8s/test_cli.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from llocli import describe, kube, locate

PLACEMENT = {"ie": "edge-1", "ieId": "urn:ie:1", "apiUrl": "http://10.0.0.1:8081/",
             "tokenKey": "edge-1-key", "container": "demo.db"}


def _scd(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "db", "namespace": "demo"},
            "spec": {"selectedIE": {"id": "urn:ie:1", "hostname": "edge-1"}, "image": "mongo:7",
                     "isJob": True},
            "status": status or {}}


def _die(url: str, ie_id: str = "urn:ie:1") -> dict[str, Any]:
    return {"metadata": {"name": "edge-1"},
            "spec": {"id": ie_id, "hostname": "edge-1", "api": {"url": url}}}


def test_not_placed_says_why() -> None:
    with pytest.raises(locate.NotPlacedError, match=r"demo/db is not placed on an IE yet "
                       r"\(phase Pending, IENotReady: IE 'edge-1': its API is not ready\)"):
        locate.placement_of(_scd({"phase": "Pending", "reason": "IENotReady",
                                  "message": "IE 'edge-1': its API is not ready"}))


def test_the_die_gives_the_current_url_and_token_key() -> None:
    scd, placement = locate.placement_of(_scd({"placement": PLACEMENT}))
    moved = locate.target(scd, placement, _die("http://10.0.0.9:8081"))
    assert (moved.url, moved.token_key, moved.container) == (
        "http://10.0.0.9:8081", "edge-1", "demo.db")
    gone = locate.target(scd, placement, None)  # DIE deleted: the recorded placement serves
    assert (gone.url, gone.token_key) == ("http://10.0.0.1:8081", "edge-1-key")
    other = locate.target(scd, placement, _die("http://10.0.0.9:8081", ie_id="urn:other"))
    assert other.url == "http://10.0.0.1:8081"  # a DIE now describing another IE is ignored


def test_token_from_secret() -> None:
    secret = {"metadata": {"name": "llo-ie-tokens"},
              "data": {"edge-1": base64.b64encode(b"s3cret\n").decode()}}
    assert locate.token_from_secret(secret, "edge-1") == "s3cret"
    with pytest.raises(locate.TokenError, match="has no key 'edge-2'"):
        locate.token_from_secret(secret, "edge-2")
    with pytest.raises(locate.TokenError, match="not a valid token"):
        locate.token_from_secret({"data": {"edge-1": "%%%"}}, "edge-1")


@pytest.mark.parametrize(("stderr", "kind"), [
    ('Error from server (NotFound): secrets "x" not found', kube.NotFoundError),
    ('Error from server (Forbidden): secrets "x" is forbidden: User "jane" cannot get',
     kube.ForbiddenError),
    ("Unable to connect to the server: dial tcp 127.0.0.1:1: connect: connection refused",
     kube.KubeError),
])
def test_kubectl_errors(stderr: str, kind: type[kube.KubeError]) -> None:
    error = kube._error(stderr + "\n")
    assert type(error) is kind
    assert str(error)


def test_describe_fits_one_screen() -> None:
    text = describe.render(_scd({
        "phase": "Failed", "reason": "JobFailed", "message": "job exited with code 3",
        "placement": PLACEMENT,
        "container": {"state": "exited", "exitCode": 3, "restartCount": 0},
        "pull": {"layersTotal": 4, "layersDone": 4, "bytesTotal": 10, "bytesDone": 10},
        "conditions": [{"type": "Ready", "status": "False", "reason": "JobFailed",
                        "message": "job exited with code 3",
                        "lastTransitionTime": "2026-12-01T23:00:00Z"}],
        "failure": {"exitCode": 3, "finishedAt": "2026-12-01T23:00:01Z", "restartCount": 0,
                    "lastOutput": "boot\nerror: no db\n", "lastOutputTruncated": False}}))
    assert "Phase:       Failed  (JobFailed)" in text
    assert "Placement:   IE edge-1, container demo.db, API http://10.0.0.1:8081/" in text
    assert "Container:   exited, exit code 3, restarts 0" in text
    assert "Pull:        4/4 layers" in text
    assert "  Ready  False    JobFailed" in text
    assert "Last output (exit code 3, finished 2026-12-01T23:00:01Z, restarts 0):" in text
    assert "  | error: no db" in text
    assert "Placement:   none yet" in describe.render(_scd())
