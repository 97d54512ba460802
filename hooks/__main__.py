"""`python -m hooks` / `llo-hooks`: serve the hooks under gunicorn with the embedded config."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from pydantic import ValidationError

from hooks import create_app
from hooks.gunicorn_conf import options
from hooks.settings import Settings


class HookServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn configured from LLO_* settings; each worker builds its own app (and so its own
    pooled sessions) in `load()`. `factory` is `create_app` but for the benchmarks' floor, which
    must run on exactly the same server configuration."""

    def __init__(self, settings: Settings,
                 factory: Callable[[Settings], Flask] = create_app) -> None:
        self.settings = settings
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in options(self.settings).items():
            # settings this gunicorn does not know (older versions) are skipped
            if key != "wsgi_app" and value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.factory(self.settings)


USAGE = """\
usage: llo-hooks [--help]     (or: python -m hooks)

Serves the LLO Docker hooks for Metacontroller under gunicorn. Every setting is an
environment variable (README "Configuration" says what each means):
{variables}
Example: LLO_LISTEN=127.0.0.1:8080 LLO_LOG_FORMAT=text llo-hooks
"""


def usage() -> str:
    defaults = Settings()
    rows = []
    for field in Settings.model_fields:
        value = getattr(defaults, field)
        shown = ("unset" if value is None else "empty" if value in ("", {})
                 else str(value).lower() if isinstance(value, bool) else str(value))
        rows.append(f"  {Settings.env_name(field):<36} default: {shown}")
    return USAGE.format(variables="\n".join(rows))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if args:
        print(f"llo-hooks: unexpected arguments {' '.join(args)!r}\n\n{usage()}",
              file=sys.stderr)
        sys.exit(2)
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        sys.exit(f"invalid LLO_* settings:\n{exc}")
    HookServer(settings).run()


if __name__ == "__main__":
    main()
