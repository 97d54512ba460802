"""Typed settings of the hook service, read from `LLO_*` environment variables.

Each field `foo_bar` is read from `LLO_FOO_BAR`; durations end in `_seconds`. Settings are
validated once at start-up, so a typo in a deployment fails loudly instead of running with a
default nobody chose.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "LLO_"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # ---- serving (read by hooks.gunicorn_conf)
    listen: str = "0.0.0.0:8080"  # the hooks serve Metacontroller over the pod network
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=8, ge=1, le=256)
    access_log: bool = False
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    hook_secret_file: Path | None = None
    hook_budget_seconds: float = Field(
        default=8.0, gt=0, le=60,
        description="Time one hook call may spend on peers; below Metacontroller's 10 s timeout")

    # ---- IE Docker API (ieapi)
    ie_token_dir: Path | None = None
    ie_ca_bundle: Path | None = None
    ie_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    ie_read_timeout_seconds: float = Field(default=5.0, gt=0)
    ie_retries: int = Field(default=1, ge=0, le=5)
    ie_pool_hosts: int = Field(default=100, ge=1, description="IEs kept in the connection pool")
    ie_pool_per_host: int = Field(default=8, ge=1, description="Connections kept per IE")

    # ---- IEs behind NAT: the same contract over NATS (DIE spec.api.url nats:// or tls://)
    nats_user: str | None = None
    nats_password_file: Path | None = None
    nats_nkey_seed_file: Path | None = None
    nats_creds_file: Path | None = None
    nats_ca_bundle: Path | None = None
    nats_subject_prefix: str = Field(default="llo.ie",
                                     pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

    # ---- Orion-LD
    broker_url: str = ""
    broker_token_file: Path | None = None
    broker_headers: dict[str, str] = Field(default_factory=dict)
    broker_tenant: str = ""
    broker_ca_bundle: Path | None = None
    broker_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    broker_read_timeout_seconds: float = Field(default=3.0, gt=0)
    broker_retries: int = Field(default=1, ge=0, le=5)

    # ---- resync (resyncAfterSeconds) and deletion
    resync_intent_seconds: float = Field(
        default=0.2, gt=0,
        description="After recording a new IE in status (placement, migration target, "
                    "cleanup): the next sync acts on it; status writes do not trigger syncs")
    resync_converging_seconds: float = Field(default=2.0, gt=0)
    resync_steady_seconds: float = Field(default=60.0, gt=0)
    resync_error_base_seconds: float = Field(default=5.0, gt=0)
    resync_error_max_seconds: float = Field(default=300.0, gt=0)
    resync_permanent_seconds: float = Field(default=600.0, gt=0)
    die_resync_seconds: float = Field(default=30.0, gt=0)
    orphan_grace_seconds: float = Field(default=900.0, ge=0)

    # ---- logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @property
    def broker_enabled(self) -> bool:
        return bool(self.broker_url)

    @field_validator("broker_headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        """Accept a JSON object or `k=v,k2=v2` (what fits in one env var comfortably)."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text)
        headers: dict[str, str] = {}
        for part in text.split(","):
            key, sep, val = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected key=value, got {part!r}")
            headers[key.strip()] = val.strip()
        return headers

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("broker_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> Settings:
        if self.resync_error_max_seconds < self.resync_error_base_seconds:
            raise ValueError("resync_error_max_seconds must be >= resync_error_base_seconds")
        return self

    @classmethod
    def env_name(cls, field: str) -> str:
        return ENV_PREFIX + field.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from its `LLO_*` variable; unset or empty means the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in cls.model_fields:
            raw = env.get(cls.env_name(field))
            if raw is None or raw.strip() == "":
                continue
            values[field] = raw.strip()
        return cls.model_validate(values)
