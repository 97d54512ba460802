"""What Docker should be told for a `ContainerSpec`: names, labels, ports, policy (pure).

Kept free of Docker calls so the translation rules read in one place and test without a daemon.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ieapi.contract import (
    IMAGE_REFERENCE_MAX_LENGTH,
    LABEL_COMPONENT,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_OVERLAY_ADDRESS,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
    LABEL_OWNER_UID,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    ContainerSpec,
    RegistryAuth,
    is_valid_image_reference,
)
from ieapi.errors import InvalidRequestError, PrivilegedNotAllowedError
from ieapi.overlayspec import OverlayConfig, OverlayInputError
from ieapi.overlayspec import parse as parse_overlay
from ieapi.settings import Settings

_NETWORK_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")

WARNING_ALIAS_WITHOUT_SERVICE = (
    "alias is ignored without a service: only a service network resolves aliases")


def container_name(prefix: str, name: str) -> str:
    return f"{prefix}-{name}"


def network_name(prefix: str, service: str) -> str:
    """`<prefix>-net-<service>`; a service id with characters Docker would not like is
    sanitized and suffixed with a hash, so two distinct services never share a network."""
    safe = _NETWORK_SAFE.sub("-", service)
    if safe != service:
        safe = f"{safe}-{hashlib.sha256(service.encode()).hexdigest()[:8]}"
    return f"{prefix}-net-{safe}"


def auth_config(auth: RegistryAuth | None) -> dict[str, str] | None:
    """The docker SDK `auth_config` for a pull, or None for an anonymous pull."""
    if auth is None or not (auth.username or auth.password.get_secret_value()):
        return None
    config = {"username": auth.username, "password": auth.password.get_secret_value()}
    if auth.url:
        config["serveraddress"] = auth.url
    return config


@dataclass(frozen=True, kw_only=True)
class DesiredContainer:
    """Everything needed to create the container for one spec on this IE."""

    name: str
    container_name: str
    image: str
    spec_hash: str
    is_job: bool
    command: list[str] | None
    environment: list[str]
    labels: dict[str, str]
    port_bindings: dict[str, int]
    privileged: bool
    init: bool
    network: str | None
    aliases: list[str]
    auth: dict[str, str] | None = field(repr=False)
    warnings: list[str]
    overlay: OverlayConfig | None = None
    dns: list[str] = field(default_factory=list)

    @property
    def restart_policy(self) -> dict[str, Any]:
        """Jobs run once; services come back after a crash (not after a clean exit)."""
        return {"Name": "no"} if self.is_job else {"Name": "on-failure", "MaximumRetryCount": 0}


def desired_container(name: str, spec: ContainerSpec, settings: Settings) -> DesiredContainer:
    """Validate what pydantic cannot and translate the spec; raises InvalidRequestError/403."""
    if spec.privileged and not settings.allow_privileged:
        raise PrivilegedNotAllowedError(
            "privileged containers are not allowed on this IE (IEAPI_ALLOW_PRIVILEGED)",
            field="privileged")
    if not is_valid_image_reference(spec.image):
        raise InvalidRequestError(
            f"image {spec.image!r} is not a valid Docker image reference "
            "([registry/]path[:tag][@digest], lowercase path, at most "
            f"{IMAGE_REFERENCE_MAX_LENGTH} characters)", field="image")
    environment = []
    for index, var in enumerate(spec.env_vars):
        if "=" in var.key or "\0" in var.key:
            raise InvalidRequestError("an environment variable name cannot contain '=' or NUL",
                                      field=f"envVars.{index}.key")
        if "\0" in var.value:
            raise InvalidRequestError("a value cannot contain NUL", field=f"envVars.{index}.value")
        environment.append(f"{var.key}={var.value}")
    for index, arg in enumerate(spec.cli_args):
        for part, text in (("key", arg.key), ("value", arg.value or "")):
            if "\0" in text:
                raise InvalidRequestError("an argument cannot contain NUL",
                                          field=f"cliArgs.{index}.{part}")
    # A port listed twice is published once (Docker keys bindings by port/protocol).
    bindings = {f"{port.number}/{port.protocol.value.lower()}": port.number
                for port in spec.ports}
    overlay = None
    if spec.network_overlay is not None:
        try:
            overlay = parse_overlay(spec.network_overlay)
        except OverlayInputError as exc:
            raise InvalidRequestError(exc.message, field=exc.field) from None
    warnings = []
    if spec.alias and not spec.service:
        warnings.append(WARNING_ALIAS_WITHOUT_SERVICE)
    spec_hash = spec.spec_hash()
    labels = {
        LABEL_MANAGED: settings.managed_by,
        LABEL_NAME: name,
        LABEL_SPEC_HASH: spec_hash,
        LABEL_OWNER_NAMESPACE: spec.owner.namespace,
        LABEL_OWNER_NAME: spec.owner.name,
        LABEL_OWNER_UID: spec.owner.uid,
    }
    if spec.service:
        labels[LABEL_SERVICE] = spec.service
    if spec.component:
        labels[LABEL_COMPONENT] = spec.component
    if overlay is not None:
        labels[LABEL_OVERLAY_ADDRESS] = str(overlay.address)
    return DesiredContainer(
        name=name,
        container_name=container_name(settings.container_prefix, name),
        image=spec.image,
        spec_hash=spec_hash,
        is_job=spec.is_job,
        command=spec.command_args() or None,
        environment=environment,
        labels=labels,
        port_bindings=bindings if spec.expose_ports else {},
        privileged=spec.privileged,
        init=settings.container_init,
        network=network_name(settings.container_prefix, spec.service) if spec.service else None,
        aliases=[spec.alias] if spec.alias and spec.service else [],
        auth=auth_config(spec.registry_auth),
        warnings=warnings,
        overlay=overlay,
        # Docker's embedded DNS answers the service network's names and forwards the rest to
        # the overlay's DNS, through the container's routes, i.e. over wg0 (no image change).
        dns=[str(overlay.dns)] if overlay is not None and overlay.dns is not None else [],
    )
