"""The one Kubernetes client of the CLI: `kubectl get --raw`, as a kubectl plugin would do.

kubectl brings the user's kubeconfig, context, credentials and auth plugins; `--raw` needs no
API discovery, so a plain path is all the CLI asks for. kubectl reports a failed request as
`Error from server (<Reason>): <message>`, the API's own StatusReason, which is what the CLI
turns into NotFound and Forbidden.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

_SERVER_ERROR = re.compile(r"Error from server \((?P<reason>[A-Za-z]+)\): (?P<message>.*)")
REQUEST_TIMEOUT_SECONDS = 15


class KubeError(Exception):
    """kubectl could not get the object; the message says why, in kubectl's words."""


class NotFoundError(KubeError):
    pass


class ForbiddenError(KubeError):
    pass


@dataclass(frozen=True)
class Kubectl:
    """`kubectl` with the user's global flags (kubeconfig, context)."""

    binary: str = "kubectl"
    flags: Sequence[str] = field(default_factory=tuple)

    def get(self, path: str) -> JSON:
        """GET an API path (e.g. /apis/g/v1/namespaces/ns/things/name) as JSON."""
        argv = [self.binary, *self.flags, f"--request-timeout={REQUEST_TIMEOUT_SECONDS}s",
                "get", "--raw", path]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=REQUEST_TIMEOUT_SECONDS + 10)
        except FileNotFoundError as exc:
            raise KubeError(f"{self.binary} not found: the CLI uses kubectl to reach "
                            "Kubernetes") from exc
        except subprocess.TimeoutExpired as exc:
            raise KubeError(f"kubectl did not answer within {REQUEST_TIMEOUT_SECONDS}s") from exc
        if done.returncode != 0:
            raise _error(done.stderr)
        try:
            value = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise KubeError(f"kubectl get --raw {path}: not JSON") from exc
        if not isinstance(value, dict):
            raise KubeError(f"kubectl get --raw {path}: not an object")
        return value

    def current_namespace(self) -> str:
        """The namespace of the current context, `default` when it names none."""
        argv = [self.binary, *self.flags, "config", "view", "--minify",
                "-o", "jsonpath={.contexts[0].context.namespace}"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return "default"
        return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "default"


def _error(stderr: str) -> KubeError:
    text = " ".join(stderr.split())
    found = _SERVER_ERROR.search(text)
    if found is None:
        return KubeError(text or "kubectl failed")
    reason, message = found.group("reason"), found.group("message")
    if reason == "NotFound":
        return NotFoundError(message)
    if reason == "Forbidden":
        return ForbiddenError(message)
    return KubeError(f"{reason}: {message}")
