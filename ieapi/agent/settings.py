"""Settings of the NATS agent, from the environment (documented in `AGENT_ENV_HELP`).

The agent needs no listening port and no bearer token: it dials out to the NATS server, which
authenticates it (user/password, nkey seed or a credentials file, read from files so the
secret never sits in the environment or a process list) and restricts it to its own subjects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ieapi.natswire import DEFAULT_SUBJECT_PREFIX, is_nats_url, is_valid_prefix
from ieapi.settings import Settings, SettingsError, model_from_env


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nats_url: str = Field(min_length=1)
    ie_name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$",
                         description="The DIE's metadata.name: the agent's subject token")
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    user: str | None = None
    password_file: Path | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    ca_file: Path | None = None
    threads: int = Field(default=8, ge=1, le=64)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    reconnect_wait_seconds: float = Field(default=1.0, gt=0)

    def check_startable(self) -> None:
        if not is_nats_url(self.nats_url):
            raise SettingsError(f"IEAPI_NATS_URL {self.nats_url!r}: use nats:// or tls://")
        if not is_valid_prefix(self.subject_prefix):
            raise SettingsError(f"IEAPI_NATS_SUBJECT_PREFIX {self.subject_prefix!r}: "
                                "dot-separated tokens of [A-Za-z0-9_-]")
        ways = [w for w in (self.password_file, self.nkey_seed_file, self.creds_file) if w]
        if len(ways) > 1:
            raise SettingsError("set only one of IEAPI_NATS_PASSWORD_FILE, "
                                "IEAPI_NATS_NKEY_SEED_FILE and IEAPI_NATS_CREDS_FILE")
        if self.password_file is not None and not self.user:
            raise SettingsError("IEAPI_NATS_PASSWORD_FILE needs IEAPI_NATS_USER")
        for name, path in (("IEAPI_NATS_PASSWORD_FILE", self.password_file),
                           ("IEAPI_NATS_NKEY_SEED_FILE", self.nkey_seed_file),
                           ("IEAPI_NATS_CREDS_FILE", self.creds_file),
                           ("IEAPI_NATS_CA_FILE", self.ca_file)):
            if path is not None and not os.access(path, os.R_OK):
                raise SettingsError(f"{name} {path} is not a readable file")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        return model_from_env(cls, AGENT_ENV_VARIABLES, env)


def engine_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The engine's settings (IE id, prefix, Docker, ...) from the same variables as the HTTP
    server. No bearer token is needed: over NATS the server authenticates."""
    source = dict(os.environ if env is None else env)
    source.setdefault("IEAPI_INSECURE_NO_AUTH", "true")
    return Settings.from_env(source)


AGENT_ENV_VARIABLES: dict[str, str] = {
    "nats_url": "IEAPI_NATS_URL",
    "ie_name": "IEAPI_NATS_IE",
    "subject_prefix": "IEAPI_NATS_SUBJECT_PREFIX",
    "user": "IEAPI_NATS_USER",
    "password_file": "IEAPI_NATS_PASSWORD_FILE",
    "nkey_seed_file": "IEAPI_NATS_NKEY_SEED_FILE",
    "creds_file": "IEAPI_NATS_CREDS_FILE",
    "ca_file": "IEAPI_NATS_CA_FILE",
    "threads": "IEAPI_NATS_THREADS",
    "connect_timeout_seconds": "IEAPI_NATS_CONNECT_TIMEOUT_SECONDS",
    "reconnect_wait_seconds": "IEAPI_NATS_RECONNECT_WAIT_SECONDS",
}

AGENT_ENV_HELP = """\
Environment (NATS agent; the IE Docker API's engine variables apply too, IEAPI_TOKEN does not):
  IEAPI_NATS_URL               NATS server, nats://host:4222 or tls://host:4222 (required)
  IEAPI_NATS_IE                this IE's DIE name (metadata.name): its subject token (required)
  IEAPI_NATS_SUBJECT_PREFIX    subject prefix (default: llo.ie); subjects <prefix>.<ie>.<op>
  IEAPI_NATS_USER              user name, with IEAPI_NATS_PASSWORD_FILE (file holding the password)
  IEAPI_NATS_NKEY_SEED_FILE    nkey seed file (user nkey, SU...), instead of user/password
  IEAPI_NATS_CREDS_FILE        decentralised-auth credentials file (JWT + seed), instead
  IEAPI_NATS_CA_FILE           CA bundle to verify a TLS NATS server (default: system CAs)
  IEAPI_NATS_THREADS           operations run at once (default: 8)
  IEAPI_NATS_CONNECT_TIMEOUT_SECONDS (default 5), IEAPI_NATS_RECONNECT_WAIT_SECONDS (default 1)
"""
