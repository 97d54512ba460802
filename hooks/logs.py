"""Logging: every line about an object names it (`scd ns/name`, `die name`) and, where there is
one, its IE; the format (JSON by default, or text) is llo_serving.logs', shared with gunicorn's
own lines and with ieapi.

Many hook threads interleave; without the object on each line a log cannot be followed.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from llo_serving.logs import JsonFormatter, LogFormat, install

LOGGER_NAME = "hooks"


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds `kind`, `object` (and `ie` when known) to every record and prefixes the message
    with the object."""

    def process(self, msg: Any,
                kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{extra.get('kind', '?')} {extra.get('object', '?')}: {msg}", kwargs


def object_logger(kind: str, namespace: str | None, name: str,
                  ie: str | None = None) -> ObjectLogger:
    obj = f"{namespace}/{name}" if namespace else name
    extra = {"kind": kind, "object": obj}
    if ie:
        extra["ie"] = ie
    return ObjectLogger(logging.getLogger(LOGGER_NAME), extra)


def configure(level: str, fmt: LogFormat) -> None:
    """The hooks' lines through the one handler (idempotent: the app factory may run often)."""
    install(fmt, level, app_logger=LOGGER_NAME)


__all__ = ["JsonFormatter", "ObjectLogger", "configure", "object_logger"]
