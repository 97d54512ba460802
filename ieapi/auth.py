"""Bearer-token checking, with a token file that may rotate under a running server.

A Kubernetes or Docker secret mounted as a file is replaced atomically (symlink swap), so the
file's identity (inode, size, mtime) is checked on every request and the token re-read when it
changed: one `stat` per request, no restart to rotate. If the file is briefly unreadable
during a swap, the last good token stays in force.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_BEARER = "bearer"


class TokenSource:
    """The currently valid token: fixed, or read from a file that may change."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        self._fixed = token.strip().encode() if token else None
        self._file = token_file
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int, int] | None = None
        self._from_file: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self._fixed is not None or self._file is not None

    def current(self) -> bytes | None:
        """The token to compare with; None means no request can pass."""
        if self._file is None:
            return self._fixed
        try:
            stat = os.stat(self._file)
        except OSError as exc:
            log.warning("token file %s unreadable, keeping the last token: %s", self._file, exc)
            return self._from_file
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if identity != self._identity:
                try:
                    token = self._file.read_bytes().strip()
                except OSError as exc:
                    log.warning("token file %s unreadable, keeping the last token: %s",
                                self._file, exc)
                    return self._from_file
                self._from_file = token or None
                self._identity = identity
                log.info("token loaded from %s", self._file)
            return self._from_file

    def accepts(self, authorization_header: str | None) -> bool:
        """True when the header is `Bearer <current token>` (constant-time comparison)."""
        expected = self.current()
        if expected is None or not authorization_header:
            return False
        scheme, _, presented = authorization_header.partition(" ")
        if scheme.lower() != _BEARER:
            return False
        return hmac.compare_digest(presented.strip().encode(), expected)
