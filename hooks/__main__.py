"""`python -m hooks` / `llo-hooks`: serve the hooks under gunicorn with the embedded config."""

from __future__ import annotations

import sys
from collections.abc import Callable
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


def main() -> None:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        sys.exit(f"invalid LLO_* settings:\n{exc}")
    HookServer(settings).run()


if __name__ == "__main__":
    main()
