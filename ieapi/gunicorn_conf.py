"""gunicorn settings for the IE API: `gunicorn --config python:ieapi.gunicorn_conf`.

One worker process with threads, on purpose: background pulls, the names waiting for their
image and the per-name locks live in the process. Several processes would still be correct
(Docker's name conflicts are handled) but would pull and report independently.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ieapi.settings import Settings

wsgi_app = "ieapi:create_app()"
bind = os.environ.get("IEAPI_BIND", "0.0.0.0:8081")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("IEAPI_THREADS", "8"))
timeout = 60
graceful_timeout = 30
keepalive = 5
loglevel = os.environ.get("IEAPI_LOG_LEVEL", "info")
accesslog = "-"
errorlog = "-"
# gunicorn >= 24's control socket defaults to one path per user ($HOME/.gunicorn): several
# servers on one host would fight over it, and nothing here needs runtime control.
control_socket_disable = True
# HTTPS when both are set (Settings.check_startable refuses only one of them).
certfile = os.environ.get("IEAPI_TLS_CERT_FILE", "").strip() or None
keyfile = os.environ.get("IEAPI_TLS_KEY_FILE", "").strip() or None
# No headers in the access log: the Authorization header must never be written anywhere.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def on_starting(server: Any) -> None:
    """Refuse to start (exit 2, before any worker) when the settings are unusable, or when in a
    container the IE id and instance id are not set explicitly."""
    try:
        settings = Settings.from_env()
        settings.check_startable()
        settings.check_identity()
    except ValueError as exc:
        server.log.error("ieapi cannot start: %s", exc)
        raise SystemExit(2) from exc


def post_worker_init(worker: Any) -> None:
    """Send the app's logs where gunicorn's go."""
    gunicorn_log = logging.getLogger("gunicorn.error")
    app_log = logging.getLogger("ieapi")
    app_log.handlers = list(gunicorn_log.handlers)
    app_log.setLevel(gunicorn_log.level)
    app_log.propagate = False
