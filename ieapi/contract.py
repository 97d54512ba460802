"""The wire contract of the IE Docker API, shared by the server (`ieapi`) and its client
(`hooks.ie`): one source of truth, so the two cannot drift apart.

Field names are camelCase on the wire (like the CRDs) and snake_case in Python.
Every request model forbids unknown fields, so a typo is a 400 naming the field instead of a
silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SecretStr,
    StringConstraints,
    field_serializer,
    field_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION = "v1"

# What Docker accepts as a container name (daemon/names.go), kept shorter so that the
# configured prefix still fits.
CONTAINER_NAME_MAX_LENGTH = 200
CONTAINER_NAME_PATTERN = rf"^[a-zA-Z0-9][a-zA-Z0-9_.-]{{0,{CONTAINER_NAME_MAX_LENGTH - 1}}}$"
_CONTAINER_NAME_RE = re.compile(CONTAINER_NAME_PATTERN)
# A network alias is a DNS name: dot-separated labels of at most 63 characters, 253 in all
# (Docker's embedded DNS answers for the whole dotted name). The hooks send the CR name when it
# fits, else one derived from it (hooks/names.py).
DNS_NAME_MAX_LENGTH = 253
DNS_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}(\.[a-zA-Z0-9_-]{1,63})*$"

# Labels on every container and network the IE API creates. It never touches a container
# without LABEL_MANAGED set to its own instance id.
LABEL_PREFIX = "llo.aeros-project.eu"
LABEL_MANAGED = f"{LABEL_PREFIX}/managed-by"
LABEL_NAME = f"{LABEL_PREFIX}/name"
LABEL_SPEC_HASH = f"{LABEL_PREFIX}/spec-hash"
LABEL_OWNER_NAMESPACE = f"{LABEL_PREFIX}/owner-namespace"
LABEL_OWNER_NAME = f"{LABEL_PREFIX}/owner-name"
LABEL_OWNER_UID = f"{LABEL_PREFIX}/owner-uid"
LABEL_SERVICE = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/instance"
# The overlay address of a container that has a WireGuard overlay (never its keys): lets a GET,
# which has no spec, report the overlay.
LABEL_OVERLAY_ADDRESS = f"{LABEL_PREFIX}/overlay-address"

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
DnsName = Annotated[str, StringConstraints(max_length=DNS_NAME_MAX_LENGTH,
                                           pattern=DNS_NAME_PATTERN)]


def is_valid_container_name(name: str) -> bool:
    """True when Docker would accept `name` (after the IE's prefix) as a container name."""
    return bool(_CONTAINER_NAME_RE.fullmatch(name))  # `$` alone would accept a final "\n"


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python, both accepted when parsing."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        frozen=True,
    )


class _Request(_Wire):
    model_config = ConfigDict(extra="forbid")


REVEAL_SECRETS = "revealSecrets"


def _secret_out(value: SecretStr | None, info: FieldSerializationInfo) -> str | None:
    """Secrets serialize masked, except for the one call that must send them to the IE."""
    if value is None:
        return None
    context = info.context or {}
    return value.get_secret_value() if context.get(REVEAL_SECRETS) else str(value)


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Port(_Request):
    number: int = Field(ge=1, le=65535, description="Container port, published on the IE "
                        "with the same number when exposePorts is true.")
    protocol: Protocol = Protocol.TCP


class KeyValue(_Request):
    key: NonEmpty
    value: str = ""


class CliArg(_Request):
    """One command-line argument: `key`, then `value` when present (`-forwarding` is a bare
    flag)."""

    key: NonEmpty
    value: str | None = None


class RegistryAuth(_Request):
    url: str = Field(default="", max_length=1024,
                     description="Registry host, e.g. 'registry.example:5000'")
    username: str = Field(default="", max_length=1024)
    password: SecretStr = Field(default=SecretStr(""),
                                description="Never logged, hashed or labelled")

    @field_serializer("password")
    def _password(self, value: SecretStr, info: FieldSerializationInfo) -> str | None:
        return _secret_out(value, info)

    def is_empty(self) -> bool:
        """`imageRegistry: {}`: what the aerOS LLO API writes when the HLO set no registry
        (Go's omitempty keeps an empty struct). It means "no registry": pull anonymously."""
        return not (self.url or self.username or self.password.get_secret_value())


class NetworkOverlay(_Request):
    """WireGuard client settings from the SCD (as the aerOS HLO fills them). Applied by the IE
    as interface `wg0` in the container's network namespace; `{}` means no overlay. The rules
    (keys, addresses, endpoint) are checked by `ieapi.overlayspec.parse`, not here, so that
    building a spec never fails on the client side."""

    internal_ip: str | None = None
    dns: str | None = None
    public_key: str | None = None
    private_key: SecretStr | None = None
    endpoint: str | None = None
    mtu: int | None = None
    allowed_ips: str | None = None
    persistent_keepalive: int | None = None

    @field_serializer("private_key")
    def _private_key(self, value: SecretStr | None, info: FieldSerializationInfo) -> str | None:
        return _secret_out(value, info)

    def is_empty(self) -> bool:
        """`networkOverlay: {}`: what the aerOS LLO API writes when the HLO set no overlay.
        It means "no overlay" (no warning)."""
        return all(value is None for value in self.__dict__.values())


_Optional = TypeVar("_Optional", RegistryAuth, NetworkOverlay)


def none_if_empty(value: _Optional | None) -> _Optional | None:
    """An empty registry or overlay object is the same as none (see their `is_empty`)."""
    return None if value is None or value.is_empty() else value


class Owner(_Request):
    """The Kubernetes object this container belongs to, written into labels for operators."""

    namespace: str = Field(default="", max_length=253)
    name: str = Field(default="", max_length=253)
    uid: str = Field(default="", max_length=64)


class ContainerSpec(_Request):
    """Body of `PUT /v1/containers/{name}`: everything a ServiceComponentDocker can say."""

    image: NonEmpty
    registry_auth: RegistryAuth | None = None
    ports: list[Port] = Field(default_factory=list, max_length=256)
    expose_ports: bool = Field(
        default=False, description="Publish the ports on the IE (same numbers). Default false, "
        "as in the aerOS model: an edge host opens no port nobody asked for.")
    env_vars: list[KeyValue] = Field(default_factory=list, max_length=1024)
    cli_args: list[CliArg] = Field(default_factory=list, max_length=1024)
    privileged: bool = False
    is_job: bool = False
    service: str | None = Field(
        default=None, max_length=200,
        description="Service id (label app.kubernetes.io/part-of). Containers of one service "
        "share a network on which each is reachable by its alias.")
    alias: DnsName | None = Field(
        default=None, description="DNS name on the service network: the CR name when DNS can "
        "carry it (labels of at most 63 characters), else one derived from it.")
    component: str | None = Field(default=None, max_length=253,
                                  description="ServiceComponent id, written to a label")
    owner: Owner = Field(default_factory=Owner)
    network_overlay: NetworkOverlay | None = None

    @field_validator("registry_auth", "network_overlay")
    @classmethod
    def _empty_is_absent(cls, value: _Optional | None) -> _Optional | None:
        return none_if_empty(value)

    def command_args(self) -> list[str]:
        """CLI args in order: key, then value when present."""
        args: list[str] = []
        for arg in self.cli_args:
            args.append(arg.key)
            if arg.value is not None:
                args.append(arg.value)
        return args

    def spec_hash(self) -> str:
        """Stable hash of what shapes the container. Credentials and owner are left out: a
        rotated password must not restart a workload, and secrets never reach a label. The
        overlay counts without its private key (a rotated key is applied in place)."""
        shaping = self.model_dump(
            mode="json", by_alias=True, exclude={"registry_auth", "owner", "network_overlay"})
        if self.network_overlay is not None:
            shaping["networkOverlay"] = self.network_overlay.model_dump(
                mode="json", by_alias=True, exclude_none=True, exclude={"private_key"})
        canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ContainerState(StrEnum):
    """Where a managed container is in its life, as the IE API reports it."""

    PULLING = "pulling"          # image pull under way in the background
    PULL_FAILED = "pullFailed"   # the image cannot be had; see `error`
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"            # see `exitCode`
    DEAD = "dead"
    REMOVING = "removing"


class OverlayReason(StrEnum):
    """Why an overlay is (not) up. The hooks use the same words as `OverlayReady` reasons."""

    UP = "OverlayUp"                            # configured; handshake fresh (or no keepalive)
    HANDSHAKE_PENDING = "HandshakePending"      # configured; no handshake yet
    ENDPOINT_UNREACHABLE = "EndpointUnreachable"  # no (fresh) handshake, or name not resolved
    CONTAINER_NOT_RUNNING = "ContainerNotRunning"  # no network namespace to put it in
    UNSUPPORTED = "WireGuardUnsupported"        # the IE has neither the module nor wireguard-go
    BAD_KEY = "BadKey"                          # a key is not 32 bytes of base64
    BAD_ADDRESS = "BadAddress"                  # internalIp, dns or allowedIps does not parse
    BAD_ENDPOINT = "BadEndpoint"                # endpoint is not host:port
    SETUP_FAILED = "OverlaySetupFailed"         # the IE could not create or configure it


class OverlayState(StrEnum):
    UP = "up"            # packets flow (see reason)
    PENDING = "pending"  # being set up or waiting for the first handshake
    DOWN = "down"        # cannot be set up, or the hub stopped answering


class OverlayStatus(_Wire):
    """The WireGuard interface of a container, as observed on the IE (never a key)."""

    interface: str = "wg0"
    mode: str = Field(description="kernel, userspace or none (see IEInfo.wireguard)")
    address: str = Field(description="Overlay address of the container (internalIp)")
    state: OverlayState
    reason: OverlayReason
    message: str = ""
    endpoint: str | None = None
    latest_handshake: str | None = Field(
        default=None, description="RFC 3339 time of the latest handshake (IE clock)")
    handshake_age_seconds: int | None = Field(
        default=None, description="Age of the latest handshake when this answer was made")


class PullProgress(_Wire):
    layers_total: int = 0
    layers_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    message: str = ""


class PublishedPort(_Wire):
    container_port: int
    protocol: Protocol
    host_ip: str = ""
    host_port: int | None = None


class LastOutput(_Wire):
    """The end of a failed container's output (ieapi.tail: at most 80 lines and 2,048 bytes,
    the newest kept, cleaned to printable UTF-8)."""

    text: str = Field(description="Last lines of stdout and stderr, interleaved")
    truncated: bool = Field(description="True when older output was left out")


class ContainerStatus(_Wire):
    """Body of `GET`/`PUT /v1/containers/{name}`: what the IE observed."""

    name: str
    state: ContainerState
    id: str | None = None
    image: str = ""
    image_id: str | None = None
    spec_hash: str | None = None
    exit_code: int | None = None
    error: str | None = Field(
        default=None, description="Docker's message when failed or pulling failed")
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    ports: list[PublishedPort] = Field(default_factory=list)
    network: str | None = None
    pull: PullProgress | None = None
    warnings: list[str] = Field(default_factory=list)
    is_job: bool = False
    overlay: OverlayStatus | None = Field(
        default=None, description="Present when the container has a networkOverlay")
    last_output: LastOutput | None = Field(
        default=None, description="Only while the container has failed: exited with a non-zero "
        "code, restarting after such an exit, or dead. Not in list answers.")


class ContainerList(_Wire):
    items: list[ContainerStatus]


class DeleteResult(_Wire):
    name: str
    deleted: bool = Field(description="False when there was nothing to delete (still a success)")


class IEInfo(_Wire):
    """Body of `GET /v1/info`: identity and slow-changing facts about the IE."""

    api_version: str = API_VERSION
    ie_id: str
    hostname: str
    docker_version: str
    docker_api_version: str
    os: str
    architecture: str
    cpus: int
    memory_bytes: int
    managed_containers: int
    allow_privileged: bool
    wireguard: str = Field(default="none", description="How this IE provides overlays: kernel, "
                           "userspace (wireguard-go) or none")


LOGS_CONTENT_TYPE = "text/plain"
# A duration before now (`90s`, `5m`, `2h`) or an RFC 3339 time.
LOGS_SINCE_PATTERN = (r"^(\d{1,9}[smh]|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?"
                      r"(Z|[+-]\d\d:\d\d))$")


class LogsQuery(_Request):
    """Query of `GET /v1/containers/{name}/logs`. The server bounds `tail` and `limitBytes`
    (IEAPI_LOGS_MAX_TAIL_LINES, IEAPI_LOGS_MAX_BYTES) and answers 400 above them."""

    tail: int | None = Field(
        default=None, ge=0, description="Lines from the end of the log (default: the server's "
        "maximum, 10000 unless configured)")
    since: str | None = Field(
        default=None, max_length=64, pattern=LOGS_SINCE_PATTERN,
        description="Only output after this point: a duration before now on the IE's clock "
        "(`90s`, `5m`, `2h`) or an RFC 3339 time (`2026-12-01T23:00:00Z`)")
    timestamps: bool = Field(default=False, description="Prefix every line with Docker's "
                             "RFC 3339 timestamp")
    follow: bool = Field(default=False, description="Keep the answer open and stream new "
                         "output until the container stops or the client goes away")
    limit_bytes: int | None = Field(
        default=None, ge=1, description="End the answer after this many bytes (default: the "
        "server's maximum, 16 MiB unless configured)")


class ErrorCode(StrEnum):
    INVALID_REQUEST = "InvalidRequest"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    PRIVILEGED_NOT_ALLOWED = "PrivilegedNotAllowed"
    NOT_FOUND = "NotFound"
    CONFLICT = "Conflict"
    PORT_IN_USE = "PortInUse"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    TOO_MANY_REQUESTS = "TooManyRequests"
    DOCKER_UNAVAILABLE = "DockerUnavailable"
    DOCKER_ERROR = "DockerError"
    INTERNAL = "Internal"


class ErrorDetail(_Wire):
    code: ErrorCode
    message: str
    field: str | None = Field(default=None, description="Dotted path of the offending field")


class ErrorBody(_Wire):
    error: ErrorDetail

    @classmethod
    def of(cls, code: ErrorCode, message: str, field: str | None = None) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message, field=field))


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as wire JSON (camelCase, secrets masked): safe for logs and responses."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def dump_for_ie(spec: ContainerSpec) -> dict[str, Any]:
    """The request body the hooks send to the IE: the only serialization that reveals secrets."""
    return spec.model_dump(
        mode="json", by_alias=True, exclude_none=True, context={REVEAL_SECRETS: True})


# --------------------------------------------------------------------------- added by ieapi
# Rules the IE API enforces beyond the models above (with a 400 naming the field), published
# in its OpenAPI document so clients and fuzzers know them. Kept out of the models' types so
# that building a ContainerSpec never fails on the client side: the IE is the judge.

# Docker's image reference grammar (distribution/reference): [domain/]path[:tag][@digest].
# The first component counts as a domain only with a dot, a port, or as `localhost` (else it
# is a lowercase path component, as Docker decides).
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = (rf"(?:localhost(?::[0-9]+)?|{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})+(?::[0-9]+)?"
           rf"|{_DOMAIN_COMPONENT}:[0-9]+)")
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# Docker accepts only the registered digest algorithms, lowercase hex of the exact length.
_DIGEST = r"(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})"
IMAGE_REFERENCE_PATTERN = (
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$")
IMAGE_REFERENCE_MAX_LENGTH = 255  # Docker's limit for the name; applied to the whole reference
_IMAGE_REFERENCE_RE = re.compile(IMAGE_REFERENCE_PATTERN)

# An environment variable name cannot hold '=' (it would split differently) nor NUL; no
# argument or value can hold NUL (the kernel's exec strings end there).
ENV_KEY_PATTERN = r"^[^=\u0000]+$"
NO_NUL_PATTERN = r"^[^\u0000]*$"


def is_valid_image_reference(image: str) -> bool:
    """True when Docker would parse `image` as a reference (checked before calling Docker)."""
    return len(image) <= IMAGE_REFERENCE_MAX_LENGTH and bool(_IMAGE_REFERENCE_RE.fullmatch(image))
