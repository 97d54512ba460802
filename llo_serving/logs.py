"""One log format for gunicorn's error and access lines and the application's own lines.

Everything goes through one handler on the root logger: JSON (one object per line, the default,
for log collectors) or text (for people). Context fields (`kind` and `object` of the Kubernetes
object, `ie` of the Infrastructure Element) are added to every line that has them: from the
record's `extra`, from the request being served (`current_object`), or fixed for the process
(ieapi serves exactly one IE). Access lines carry the request as fields, never its headers (an
Authorization header must not reach a log).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

LogFormat = Literal["json", "text"]
CONTEXT_FIELDS = ("kind", "object", "ie")
ACCESS_LOGGER = "gunicorn.access"
# The object a request is about (set per request by the app; gunicorn threads, so a ContextVar).
current_object: ContextVar[str | None] = ContextVar("llo_current_object", default=None)

# gunicorn's access-log atoms (glogging.Logger.atoms) that become fields of an access line.
_ACCESS_ATOMS = {"h": "remote", "m": "method", "U": "path", "q": "query", "s": "status",
                 "B": "bytes", "M": "duration_ms"}
_INTEGER_FIELDS = {"status", "bytes", "duration_ms"}


class ContextFilter(logging.Filter):
    """Adds the context fields a record lacks: fixed ones, then the current request's object."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.fields = {k: v for k, v in (fields or {}).items() if v}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, fixed in self.fields.items():
            if not getattr(record, key, None):
                setattr(record, key, fixed)
        obj = current_object.get()
        if obj and not getattr(record, "object", None):
            record.object = obj
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            for atom, field in _ACCESS_ATOMS.items():
                raw = record.args.get(atom)
                if raw in (None, "-", ""):
                    continue
                value: object = raw
                if field in _INTEGER_FIELDS:
                    try:
                        value = int(str(raw))
                    except ValueError:
                        continue
                setattr(record, field, value)
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """`{"time", "level", "logger", "message", ...context and access fields}` per line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"},
                         datefmt="%Y-%m-%dT%H:%M:%S%z", json_ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message [ie=...]`; the object is already in the message
    (hooks.logs.ObjectLogger) or added here."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{key}={getattr(record, key)}" for key in ("object", "ie")
                 if getattr(record, key, None) and str(getattr(record, key)) not in line]
        return f"{line} [{' '.join(extra)}]" if extra else line


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


class Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler (a class of its own, so installing again replaces it)."""

    def __init__(self, fmt: LogFormat = "json", fields: Mapping[str, str] | None = None,
                 stream: Any = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.setFormatter(formatter(fmt))
        self.addFilter(ContextFilter(fields))


def install(fmt: LogFormat, level: str, *, app_logger: str,
            fields: Mapping[str, str] | None = None) -> None:
    """Route `app_logger` (and everything else that propagates) through one Handler on the
    root logger. Idempotent: an app factory may run several times in one process."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, Handler)]:
        root.removeHandler(old)
    root.addHandler(Handler(fmt, fields))
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)  # libraries: warnings and worse
    app = logging.getLogger(app_logger)
    app.setLevel(level.upper())
    app.propagate = True
    for old in [h for h in app.handlers if isinstance(h, Handler)]:
        app.removeHandler(old)


def gunicorn_logconfig(fmt: LogFormat, level: str, *, app_logger: str, access: bool,
                       fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access loggers and the app's logger all go
    to the one Handler, from the master's first line on."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "WARNING", "handlers": ["llo"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": "INFO" if access else "WARNING", "handlers": [],
                            "propagate": True},
            app_logger: {"level": level.upper(), "handlers": [], "propagate": True},
        },
        "handlers": {"llo": {"()": Handler, "fmt": fmt, "fields": dict(fields or {})}},
        "formatters": {},
    }
