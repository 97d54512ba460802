"""LLO Docker hook service: Metacontroller hooks for ServiceComponentDocker and
DockerInfrastructureElement (see docs/architecture.md)."""

from __future__ import annotations

from flask import Flask

from hooks import logs, metrics
from hooks.api import EXTENSION, HookContext, bp
from hooks.broker import BrokerClient
from hooks.ie import IEClient
from hooks.reconcile import Clock, Reconciler, utc_now
from hooks.settings import Settings
from ieapi.secretfile import SecretFile


def create_app(settings: Settings | None = None, *, ie_client: IEClient | None = None,
               broker_client: BrokerClient | None = None, clock: Clock | None = None) -> Flask:
    """The WSGI app gunicorn serves. Each worker process builds its own clients (one pooled
    Session per peer kind). Tests may inject clients and a clock."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the models' field order
    reconciler = Reconciler(settings=settings, ie=ie_client or IEClient(settings),
                            broker=broker_client or BrokerClient(settings),
                            clock=clock or utc_now)
    secret = SecretFile(settings.hook_secret_file) if settings.hook_secret_file else None
    app.extensions[EXTENSION] = HookContext(settings, reconciler, secret)
    app.register_blueprint(bp)
    metrics.instrument(app)
    return app


__all__ = ["Settings", "create_app"]
