"""The IE tokens: one secret file per DIE in a directory (a Kubernetes Secret volume), each
read through `ieapi.secretfile.SecretFile` (re-read when it changes)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from ieapi.secretfile import SecretFile

# A token key names one file in the token directory: no separators, no leading dot (which also
# excludes the kubelet's `..data` bookkeeping entries and any `..` escape).
_TOKEN_KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$")


def is_valid_token_key(key: str) -> bool:
    return bool(_TOKEN_KEY_RE.fullmatch(key))  # not `match`: `$` accepts a final newline


class TokenDir:
    """Bearer tokens of the IE APIs, one file per DIE (named by spec.api.tokenKey or the DIE
    name). Without a directory no token is sent."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._files: dict[str, SecretFile] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.directory is not None

    def get(self, key: str) -> str | None:
        """The token for `key`, or None when there is no such file (or the key is unsafe)."""
        if self.directory is None or not is_valid_token_key(key):
            return None
        with self._lock:
            secret = self._files.get(key)
            if secret is None:
                secret = self._files[key] = SecretFile(self.directory / key)
        return secret.read()
