"""Secrets read from files (Kubernetes or Docker secrets), re-read when they change.

Shared by the hooks (IE tokens, broker token, hook secret) and the IE API (its bearer token):
this module imports nothing else of the project, so both images have it.

A mounted secret is replaced atomically by the kubelet (a symlink swap), so the cached content
is keyed by the file's identity (device, inode, size, mtime): a rotated secret is picked up on
the next read without a restart, and an unchanged one costs one `stat` instead of a read.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class SecretFile:
    """One secret file. `read()` returns its stripped content, or None when it is empty or
    cannot be read; with `keep_last=True` a file that is briefly unreadable (during a swap)
    keeps the last content in force instead, and says so in the log."""

    def __init__(self, path: Path, *, keep_last: bool = False) -> None:
        self.path = path
        self.keep_last = keep_last
        self._lock = threading.Lock()
        self._identity: tuple[int, int, int, int] | None = None
        self._value: str | None = None

    def read(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            return self._unreadable(exc)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if identity != self._identity:
                try:
                    content = self.path.read_bytes()
                except OSError as exc:
                    return self._unreadable(exc)
                self._value = content.decode("utf-8", errors="replace").strip() or None
                self._identity = identity
                if self.keep_last:
                    log.info("secret loaded from %s", self.path)
            return self._value

    def _unreadable(self, exc: OSError) -> str | None:
        if not self.keep_last:
            return None
        log.warning("secret file %s unreadable, keeping the last content: %s", self.path, exc)
        return self._value
