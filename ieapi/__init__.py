"""The IE Docker API: a small authenticated REST service over the local Docker Engine.

`create_app()` is the Flask app factory gunicorn calls (see `ieapi.gunicorn_conf`).
The docker SDK is imported only when the app is built: the hooks import `ieapi.contract` and
must not need the SDK (the hooks image does not install it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from ieapi.engine import Engine
    from ieapi.settings import Settings


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> Flask:
    """The IE API app; raises SettingsError when it must not start (e.g. no token)."""
    from ieapi import api  # noqa: PLC0415  (keeps the docker SDK out of `import ieapi.contract`)
    from ieapi.auth import TokenSource  # noqa: PLC0415
    from ieapi.engine import Engine  # noqa: PLC0415
    from ieapi.settings import Settings  # noqa: PLC0415
    from llo_serving.logs import install  # noqa: PLC0415

    settings = settings if settings is not None else Settings.from_env()
    settings.check_startable()
    install(settings.log_format, settings.log_level, app_logger="ieapi",
            fields={"ie": settings.ie_id})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the contract's field order
    tokens = TokenSource(
        settings.token.get_secret_value() if settings.token else None, settings.token_file)
    app.extensions[api.EXTENSION] = api.Runtime(
        settings=settings, engine=engine if engine is not None else Engine(settings),
        tokens=tokens)
    app.register_blueprint(api.blueprint)
    api.register_error_handlers(app)
    api.instrument(app)
    return app
