"""`python -m ieapi` (or `llo-ieapi`): run the IE API under gunicorn, configured by env."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication

from ieapi import create_app, gunicorn_conf
from ieapi.settings import ENV_HELP, Settings, SettingsError

USAGE = f"""\
usage: python -m ieapi [--help]

Serves the IE Docker API under gunicorn (settings in ieapi/gunicorn_conf.py).
Example: IEAPI_TOKEN=$(openssl rand -hex 32) IEAPI_IE_ID=urn:ngsi-ld:IE:1 \\
  IEAPI_INSTANCE_ID=ie-1 python -m ieapi

{ENV_HELP}"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        settings.check_startable()
        settings.check_identity()
    except SettingsError as exc:
        print(f"ieapi: cannot start: {exc}", file=sys.stderr)
        return 2
    _serve()
    return 0


class _IEApiServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with the settings of ieapi.gunicorn_conf, serving create_app()."""

    def load_config(self) -> None:
        for key in dir(gunicorn_conf):
            if key in self.cfg.settings and key != "wsgi_app":
                self.cfg.set(key, getattr(gunicorn_conf, key))

    def load(self) -> Any:
        return create_app()


def _serve() -> None:
    _IEApiServer().run()


if __name__ == "__main__":
    sys.exit(main())
