"""How one end (the agent or the hooks) authenticates to the NATS server and verifies it.

Secrets are read from files at connect time and handed to the client library only: they never
appear in a subject, a header, a log line or the process environment.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys


@dataclass(frozen=True)
class NatsIdentity:
    """One NATS identity: at most one of password (with user), nkey seed or creds file."""

    user: str | None = None
    password_file: Path | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    ca_file: Path | None = None

    def connect_options(self, url: str) -> dict[str, Any]:
        """Keyword arguments for `nats.connect` (credentials and TLS) for `url`."""
        options: dict[str, Any] = {}
        if self.password_file is not None:
            options["user"] = self.user
            options["password"] = self.password_file.read_text().strip()
        elif self.user:
            options["user"] = self.user
        if self.nkey_seed_file is not None:
            options["nkeys_seed_str"] = self.nkey_seed_file.read_text().strip()
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if url.lower().startswith("tls://") or self.ca_file is not None:
            options["tls"] = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None)
        return options


@dataclass(frozen=True)
class UserNkey:
    """A NATS user nkey: the seed stays with its owner, the public key goes in the server's
    configuration."""

    seed: str
    public_key: str


def new_user_nkey() -> UserNkey:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    public = pair.public_key
    return UserNkey(seed=seed.decode(), public_key=public.decode())
