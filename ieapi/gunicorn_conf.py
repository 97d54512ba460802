"""gunicorn settings for the IE API: `gunicorn --config python:ieapi.gunicorn_conf`.

One worker process with threads, on purpose: background pulls, the names waiting for their
image and the per-name locks live in the process. Several processes would still be correct
(Docker's name conflicts are handled) but would pull and report independently.
"""

from __future__ import annotations

import os
import socket
from typing import Any, cast

from ieapi.settings import Settings
from llo_serving.logs import LogFormat, gunicorn_logconfig
from llo_serving.metrics import child_exit, prepare_multiprocess_dir

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
# One format for gunicorn's lines and the app's (JSON unless IEAPI_LOG_FORMAT=text), each
# naming this IE.
_log_format = os.environ.get("IEAPI_LOG_FORMAT", "").strip().lower() or "json"
logconfig_dict = gunicorn_logconfig(
    cast(LogFormat, _log_format if _log_format in ("json", "text") else "json"), loglevel,
    app_logger="ieapi", access=True,
    fields={"ie": os.environ.get("IEAPI_IE_ID", "").strip() or socket.gethostname()})
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
    container the IE id and instance id are not set explicitly; then prepare the directory
    where the worker's metrics are written."""
    try:
        settings = Settings.from_env()
        settings.check_startable()
        settings.check_identity()
    except ValueError as exc:
        server.log.error("ieapi cannot start: %s", exc)
        raise SystemExit(2) from exc
    prepare_multiprocess_dir("ieapi")


__all__ = ["child_exit", "on_starting"]
