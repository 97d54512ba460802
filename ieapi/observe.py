"""Docker's inspect output → the contract's `ContainerStatus` (pure).

The status must be a deterministic report (the hooks copy it into a CR status, and a status
that changes on every read is a hot loop), so published ports come from the configured
bindings rather than from the live, IPv4/IPv6-duplicated runtime view.
"""

from __future__ import annotations

import re
from typing import Any

from ieapi.contract import (
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_SPEC_HASH,
    ContainerState,
    ContainerStatus,
    Protocol,
    PublishedPort,
)

_NETWORK_ID = re.compile(r"[0-9a-f]{64}")
# Docker's "never happened" timestamp.
_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"
# States in which State.ExitCode describes a finished run (restarting: the run that crashed).
_EXIT_CODE_STATES = {ContainerState.EXITED, ContainerState.DEAD, ContainerState.RESTARTING}


def is_managed(attrs: dict[str, Any], managed_by: str) -> bool:
    """True when the container carries our managed-by label (never touch anything else)."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return bool(labels.get(LABEL_MANAGED) == managed_by)


def labels_of(attrs: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = (attrs.get("Config") or {}).get("Labels") or {}
    return labels


def docker_time(value: str | None) -> str | None:
    """Docker's timestamp, or None for its zero time / absent value."""
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    return value


def state_of(attrs: dict[str, Any]) -> ContainerState:
    raw = str((attrs.get("State") or {}).get("Status", "")).lower()
    try:
        return ContainerState(raw)
    except ValueError:
        return ContainerState.DEAD


def published_ports(attrs: dict[str, Any]) -> list[PublishedPort]:
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    ports: list[PublishedPort] = []
    for key, entries in bindings.items():
        number, _, proto = str(key).partition("/")
        for entry in entries or []:
            host_port = str(entry.get("HostPort") or "")
            ports.append(PublishedPort(
                container_port=int(number),
                protocol=Protocol((proto or "tcp").upper()),
                host_ip=str(entry.get("HostIp") or ""),
                host_port=int(host_port) if host_port.isdigit() else None,
            ))
    return sorted(ports, key=lambda p: (p.container_port, p.protocol.value, p.host_ip))


def network_of(attrs: dict[str, Any]) -> str | None:
    """The network's name (a container joined by ID, after a creation race, is mapped back)."""
    mode = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
    if mode in ("", "default"):
        return "bridge"
    if _NETWORK_ID.fullmatch(mode):
        networks = ((attrs.get("NetworkSettings") or {}).get("Networks") or {})
        for name, endpoint in networks.items():
            if (endpoint or {}).get("NetworkID") == mode:
                return str(name)
    return mode


def is_failure(status: ContainerStatus) -> bool:
    """Failed, the way a person debugging it means: exited with a non-zero code, restarting
    after such an exit (the restart policy only restarts failures), or dead."""
    if status.state in (ContainerState.RESTARTING, ContainerState.DEAD):
        return True
    return status.state is ContainerState.EXITED and status.exit_code not in (None, 0)


def status_from_inspect(attrs: dict[str, Any], prefix: str,
                        warnings: list[str] | None = None) -> ContainerStatus:
    """The contract status of one inspected container."""
    state = state_of(attrs)
    docker_state = attrs.get("State") or {}
    labels = labels_of(attrs)
    policy = ((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    name = labels.get(LABEL_NAME) or str(attrs.get("Name", "")).lstrip("/").removeprefix(
        f"{prefix}-")
    return ContainerStatus(
        name=name,
        state=state,
        id=attrs.get("Id"),
        image=str((attrs.get("Config") or {}).get("Image") or ""),
        image_id=attrs.get("Image"),
        spec_hash=labels.get(LABEL_SPEC_HASH),
        exit_code=int(docker_state.get("ExitCode", 0)) if state in _EXIT_CODE_STATES else None,
        error=docker_state.get("Error") or None,
        started_at=docker_time(docker_state.get("StartedAt")),
        finished_at=docker_time(docker_state.get("FinishedAt")),
        restart_count=int(attrs.get("RestartCount") or 0),
        ports=published_ports(attrs),
        network=network_of(attrs),
        warnings=list(warnings or []),
        is_job=policy == "no",
    )
