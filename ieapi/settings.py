"""Typed settings of the IE Docker API, read from the environment once at start.

Every variable is documented in `ENV_HELP` (printed by `python -m ieapi --help`). The API refuses
to start without a token unless `IEAPI_INSECURE_NO_AUTH=true` says so explicitly: an open
Docker API on a network is root on the IE.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# dockerd 20.10 speaks at most 1.41, and every newer daemon still accepts it.
DEFAULT_DOCKER_API_VERSION = "1.41"


_Model = TypeVar("_Model", bound=BaseModel)


class SettingsError(ValueError):
    """The environment does not describe a startable IE API; the message says why."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr | None = None
    token_file: Path | None = None
    insecure_no_auth: bool = False
    ie_id: str = Field(default_factory=socket.gethostname, min_length=1)
    hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    instance_id: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="Value of the managed-by label; defaults to ie_id")
    container_prefix: str = Field(default="llo", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,39}$")
    allow_privileged: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    docker_host: str = DEFAULT_DOCKER_HOST
    docker_api_version: str = DEFAULT_DOCKER_API_VERSION
    docker_tls_verify: bool = False
    docker_cert_path: Path | None = None
    docker_timeout_seconds: float = Field(default=30.0, gt=0)
    stop_timeout_seconds: int = Field(default=10, ge=0)
    pull_failure_ttl_seconds: float = Field(default=300.0, ge=0)
    container_init: bool = Field(
        default=True, description="Run an init as PID 1 so SIGTERM stops any workload quickly "
        "and zombies are reaped")
    wireguard: Literal["auto", "kernel", "userspace", "off"] = Field(
        default="auto", description="How overlays are provided: the kernel module when present, "
        "else wireguard-go (auto), only one of them, or off")
    wireguard_go: str = Field(default="wireguard-go", min_length=1,
                              description="The userspace WireGuard binary")
    overlay_handshake_grace_seconds: float = Field(
        default=30.0, gt=0, description="How long a new overlay may wait for its first "
        "handshake before it is reported EndpointUnreachable")
    tls_cert_file: Path | None = Field(
        default=None, description="Serve HTTPS with this certificate (PEM, chain after leaf)")
    tls_key_file: Path | None = Field(default=None, description="Private key of tls_cert_file")
    logs_max_tail_lines: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="Largest `tail` of a logs request, and its default")
    logs_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description="Most bytes one logs answer carries (follow included), and the default "
        "`limitBytes`")
    logs_max_streams: int = Field(
        default=4, ge=1, le=64,
        description="Logs requests streaming at once; more get 429 (each holds a server thread, "
        "which the hooks' calls need too)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case(cls, value: Any) -> Any:
        """`info` and `INFO`, `JSON` and `json` alike (gunicorn takes its level in lower case)."""
        if not isinstance(value, str):
            return value
        return value.upper() if value.lower() in ("debug", "info", "warning", "error",
                                                   "critical") else value.lower()

    @property
    def managed_by(self) -> str:
        """The label value that marks a container as ours."""
        return self.instance_id or self.ie_id

    def check_startable(self) -> None:
        """Raise SettingsError unless authentication is configured or explicitly waived."""
        if self.token is not None and self.token_file is not None:
            raise SettingsError("set only one of IEAPI_TOKEN and IEAPI_TOKEN_FILE")
        if self.token is None and self.token_file is None and not self.insecure_no_auth:
            raise SettingsError(
                "no token: set IEAPI_TOKEN or IEAPI_TOKEN_FILE, or IEAPI_INSECURE_NO_AUTH=true "
                "to run without authentication (only on a trusted, isolated network)")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise SettingsError("IEAPI_TOKEN is empty")
        self._check_tls()
        if self.token_file is not None:
            try:
                content = self.token_file.read_text().strip()
            except OSError as exc:
                raise SettingsError(f"IEAPI_TOKEN_FILE unreadable: {exc}") from exc
            if not content:
                raise SettingsError(f"IEAPI_TOKEN_FILE {self.token_file} is empty")

    def check_identity(self, *, in_container: bool | None = None) -> None:
        """In a container, refuse the host-name defaults of IEAPI_IE_ID and IEAPI_INSTANCE_ID:
        a container's host name is its id, new on every re-create, and with it the
        managed-by label; every container managed so far would be orphaned."""
        if not (running_in_container() if in_container is None else in_container):
            return
        missing = [ENV_VARIABLES[name] for name in ("ie_id", "instance_id")
                   if name not in self.model_fields_set]
        if missing:
            raise SettingsError(
                f"running in a container: set {' and '.join(missing)} explicitly. The "
                "managed-by label (IEAPI_INSTANCE_ID, default IEAPI_IE_ID, default the host "
                "name) marks every container this IE manages; a container's host name is its "
                "id, new whenever it is re-created, which would orphan them all")

    def _check_tls(self) -> None:
        """HTTPS needs both files, readable: a half-configured TLS must not fall back to HTTP."""
        files = {"IEAPI_TLS_CERT_FILE": self.tls_cert_file, "IEAPI_TLS_KEY_FILE": self.tls_key_file}
        given = [name for name, path in files.items() if path is not None]
        if len(given) == 1:
            missing = next(name for name in files if name not in given)
            raise SettingsError(f"{given[0]} is set but {missing} is not: set both for HTTPS")
        for name, path in files.items():
            if path is not None and not os.access(path, os.R_OK):
                raise SettingsError(f"{name} {path} is not a readable file")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: os.environ); empty variables count as unset."""
        return model_from_env(cls, ENV_VARIABLES, env)


def model_from_env(model: type[_Model], variables: Mapping[str, str],
                   env: Mapping[str, str] | None = None) -> _Model:
    """Validate `model` from environment variables (field name -> variable name); empty
    variables count as unset, and a bad value is a SettingsError naming the variable."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field_name, variable in variables.items():
        raw = source.get(variable, "").strip()
        if raw:
            values[field_name] = raw
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{variables.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}"
            for err in exc.errors())
        raise SettingsError(problems) from exc


CONTAINER_MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))  # Docker, Podman


def running_in_container(markers: tuple[Path, ...] = CONTAINER_MARKERS) -> bool:
    """The marker files Docker and Podman put into every container."""
    return any(marker.exists() for marker in markers)


ENV_VARIABLES: dict[str, str] = {
    "token": "IEAPI_TOKEN",
    "token_file": "IEAPI_TOKEN_FILE",
    "insecure_no_auth": "IEAPI_INSECURE_NO_AUTH",
    "ie_id": "IEAPI_IE_ID",
    "hostname": "IEAPI_HOSTNAME",
    "instance_id": "IEAPI_INSTANCE_ID",
    "container_prefix": "IEAPI_CONTAINER_PREFIX",
    "allow_privileged": "IEAPI_ALLOW_PRIVILEGED",
    "max_body_bytes": "IEAPI_MAX_BODY_BYTES",
    "docker_host": "DOCKER_HOST",
    "docker_api_version": "IEAPI_DOCKER_API_VERSION",
    "docker_tls_verify": "DOCKER_TLS_VERIFY",
    "docker_cert_path": "DOCKER_CERT_PATH",
    "docker_timeout_seconds": "IEAPI_DOCKER_TIMEOUT_SECONDS",
    "stop_timeout_seconds": "IEAPI_STOP_TIMEOUT_SECONDS",
    "pull_failure_ttl_seconds": "IEAPI_PULL_FAILURE_TTL_SECONDS",
    "container_init": "IEAPI_CONTAINER_INIT",
    "wireguard": "IEAPI_WIREGUARD",
    "wireguard_go": "IEAPI_WIREGUARD_GO",
    "overlay_handshake_grace_seconds": "IEAPI_OVERLAY_HANDSHAKE_GRACE_SECONDS",
    "tls_cert_file": "IEAPI_TLS_CERT_FILE",
    "tls_key_file": "IEAPI_TLS_KEY_FILE",
    "logs_max_tail_lines": "IEAPI_LOGS_MAX_TAIL_LINES",
    "logs_max_bytes": "IEAPI_LOGS_MAX_BYTES",
    "logs_max_streams": "IEAPI_LOGS_MAX_STREAMS",
    "log_level": "IEAPI_LOG_LEVEL",
    "log_format": "IEAPI_LOG_FORMAT",
}

ENV_HELP = """\
Environment (IE Docker API):
  IEAPI_TOKEN                  bearer token clients must send
  IEAPI_TOKEN_FILE             file holding the token; re-read when it changes (mounted secret)
  IEAPI_INSECURE_NO_AUTH=true  run without a token (trusted, isolated networks only)
  IEAPI_IE_ID                  NGSI-LD id of this IE (default: the host name; in a container
                               this and IEAPI_INSTANCE_ID must be set)
  IEAPI_HOSTNAME               host name reported by /v1/info (default: the host name)
  IEAPI_INSTANCE_ID            managed-by label value (default: IEAPI_IE_ID)
  IEAPI_CONTAINER_PREFIX       container/network name prefix (default: llo)
  IEAPI_ALLOW_PRIVILEGED=true  allow privileged containers (default: refused with 403)
  IEAPI_MAX_BODY_BYTES         request body limit (default: 1048576)
  DOCKER_HOST                  Docker Engine (default: unix:///var/run/docker.sock)
  DOCKER_TLS_VERIFY, DOCKER_CERT_PATH   TLS to a tcp:// engine (ca.pem, cert.pem, key.pem)
  IEAPI_DOCKER_API_VERSION     Engine API version (default: 1.41; "auto" negotiates)
  IEAPI_DOCKER_TIMEOUT_SECONDS Docker call timeout (default: 30)
  IEAPI_STOP_TIMEOUT_SECONDS   grace period before SIGKILL on removal (default: 10)
  IEAPI_PULL_FAILURE_TTL_SECONDS  how long a failed pull is remembered (default: 300)
  IEAPI_CONTAINER_INIT=false   do not run an init as PID 1 in containers (default: true)
  IEAPI_WIREGUARD              overlays: auto (kernel module, else wireguard-go), kernel,
                               userspace or off (default: auto)
  IEAPI_WIREGUARD_GO           the wireguard-go binary (default: wireguard-go on PATH)
  IEAPI_OVERLAY_HANDSHAKE_GRACE_SECONDS  wait for a new overlay's first handshake before
                               reporting EndpointUnreachable (default: 30)
  IEAPI_TLS_CERT_FILE, IEAPI_TLS_KEY_FILE  serve HTTPS with this certificate and key (PEM);
                               clients verify it against their CA (hooks: LLO_IE_CA_BUNDLE)
  IEAPI_LOGS_MAX_TAIL_LINES    largest and default `tail` of GET .../logs (default: 10000)
  IEAPI_LOGS_MAX_BYTES         most bytes in one logs answer, follow too (default: 16777216)
  IEAPI_LOGS_MAX_STREAMS       logs answers streaming at once; more get 429 (default: 4)
  IEAPI_LOG_FORMAT=text        log lines as text (default: json, one object per line)
Server (gunicorn):
  IEAPI_BIND (default 0.0.0.0:8081), IEAPI_THREADS (default 8), IEAPI_LOG_LEVEL (default info)
"""
