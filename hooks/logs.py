"""Logging: every line about an object names it (`scd ns/name`, `die name`), as text or JSON.

Many hook threads interleave; without the object on each line a log cannot be followed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

LOGGER_NAME = "hooks"
_HANDLER_MARK = "_llo_hooks_handler"


class ObjectLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds `kind` and `object` to every record and prefixes the text message with them."""

    def process(self, msg: Any,
                kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{extra.get('kind', '?')} {extra.get('object', '?')}: {msg}", kwargs


def object_logger(kind: str, namespace: str | None, name: str) -> ObjectLogger:
    obj = f"{namespace}/{name}" if namespace else name
    return ObjectLogger(logging.getLogger(LOGGER_NAME), {"kind": kind, "object": obj})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("kind", "object"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, sort_keys=True)


def configure(level: str, fmt: str) -> None:
    """Install one handler on the `hooks` logger (idempotent: the app factory may run often)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for handler in logger.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
