"""The tail of a failed container's output, bounded the way Kubernetes bounds it (pure).

Kubernetes' `terminationMessagePolicy: FallbackToLogsOnError` puts at most the last 80 lines and
2,048 bytes of a failed container's log into the pod status, the newest kept. We do the same
for the SCD status: the IE API cuts the tail (reading at most `RAW_WINDOW_BYTES` of Docker's
output, whatever its size), and the hooks cut again with the same rule (an older or foreign IE
API cannot make a status larger).

The text must be a valid, stable JSON string in a Kubernetes object: invalid UTF-8 becomes
U+FFFD, control characters other than newline and tab become U+FFFD too (terminal escapes,
NULs and carriage returns from binary output cannot reach `kubectl describe`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LINES = 80
MAX_BYTES = 2048
# Every byte of Docker's output becomes at least one byte of the cleaned text, so the last
# MAX_BYTES raw bytes hold everything the result can keep (plus a few for a cut character).
RAW_WINDOW_BYTES = MAX_BYTES + 4

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Tail:
    text: str
    truncated: bool  # older output was left out


def clean(text: str) -> str:
    """Control characters but newline and tab replaced (see the module docstring)."""
    return _CONTROL.sub(_REPLACEMENT, text)


def bound(text: str, *, more_before: bool = False) -> Tail:
    """`text` cut to the last MAX_LINES lines and MAX_BYTES UTF-8 bytes (newest kept)."""
    text = clean(text)
    truncated = more_before
    lines = text.splitlines(keepends=True)
    if len(lines) > MAX_LINES:
        lines, truncated = lines[-MAX_LINES:], True
    kept = "".join(lines)
    encoded = kept.encode("utf-8")
    if len(encoded) > MAX_BYTES:
        # Cut on a character boundary: skip continuation bytes at the cut.
        start = len(encoded) - MAX_BYTES
        while start < len(encoded) and (encoded[start] & 0xC0) == 0x80:
            start += 1
        kept, truncated = encoded[start:].decode("utf-8"), True
    return Tail(kept, truncated)


class TailCollector:
    """Keeps the newest RAW_WINDOW_BYTES of a byte stream: bounded memory for any output."""

    def __init__(self) -> None:
        self._window = bytearray()
        self._dropped = False

    def feed(self, chunks: Iterable[bytes]) -> TailCollector:
        for chunk in chunks:
            self._window += chunk
            excess = len(self._window) - RAW_WINDOW_BYTES
            if excess > 0:
                del self._window[:excess]
                self._dropped = True
        return self

    def result(self) -> Tail:
        raw = bytes(self._window)
        start = 0
        if self._dropped:  # the window may start inside a UTF-8 sequence
            while start < min(len(raw), 3) and (raw[start] & 0xC0) == 0x80:
                start += 1
        text = raw[start:].decode("utf-8", errors="replace")
        return bound(text, more_before=self._dropped)
