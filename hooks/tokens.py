"""Secrets read from files (Kubernetes Secret volumes), re-read when they change.

A mounted Secret is updated in place by the kubelet (an atomic symlink swap), so the cache is
keyed by the file's stat: a rotated token is picked up on the next call without a restart,
and an unchanged one costs one `stat` instead of a read.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

# A token key names one file in the token directory: no separators, no leading dot (which also
# excludes the kubelet's `..data` bookkeeping entries and any `..` escape).
_TOKEN_KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$")


def is_valid_token_key(key: str) -> bool:
    return bool(_TOKEN_KEY_RE.fullmatch(key))  # not `match`: `$` accepts a final newline


class SecretFile:
    """One secret file; `read()` returns its stripped content, or None when it is absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value: str | None = None

    def read(self) -> str | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._value = self.path.read_text(encoding="utf-8").strip() or None
                except OSError:
                    return None
                self._stamp = stamp
            return self._value


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
