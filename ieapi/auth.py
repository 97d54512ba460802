"""Bearer-token checking, with a token file that may rotate under a running server.

The file is read through `ieapi.secretfile.SecretFile`: one `stat` per request, re-read when it
changed, no restart to rotate. If the file is briefly unreadable during a swap, the last good
token stays in force.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from ieapi.secretfile import SecretFile

_BEARER = "bearer"


class TokenSource:
    """The currently valid token: fixed, or read from a file that may change."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        self._fixed = token.strip().encode() if token else None
        self._file = SecretFile(token_file, keep_last=True) if token_file is not None else None

    @property
    def enabled(self) -> bool:
        return self._fixed is not None or self._file is not None

    def current(self) -> bytes | None:
        """The token to compare with; None means no request can pass."""
        if self._file is None:
            return self._fixed
        token = self._file.read()
        return token.encode() if token is not None else None

    def accepts(self, authorization_header: str | None) -> bool:
        """True when the header is `Bearer <current token>` (constant-time comparison)."""
        expected = self.current()
        if expected is None or not authorization_header:
            return False
        scheme, _, presented = authorization_header.partition(" ")
        if scheme.lower() != _BEARER:
            return False
        return hmac.compare_digest(presented.strip().encode(), expected)
