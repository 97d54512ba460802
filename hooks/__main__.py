"""`python -m hooks` / `llo-hooks`: serve the hooks under gunicorn with the embedded config."""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.app.base import BaseApplication
from pydantic import ValidationError

from hooks import create_app
from hooks.gunicorn_conf import options
from hooks.settings import Settings


class HookServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn configured from LLO_* settings; each worker builds its own app (and so its own
    pooled sessions) in `load()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in options(self.settings).items():
            # settings this gunicorn does not know (older versions) are skipped
            if key != "wsgi_app" and value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.settings)


def main() -> None:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        sys.exit(f"invalid LLO_* settings:\n{exc}")
    HookServer(settings).run()


if __name__ == "__main__":
    main()
