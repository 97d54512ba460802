"""gunicorn configuration of the hook service, from the same `LLO_*` settings as the app.

gthread workers: a hook spends its time waiting on IEs and the broker, so threads (not
processes) give the concurrency. The worker timeout sits well above the hook's own time budget
so gunicorn never kills a worker that is about to answer. gunicorn's error and access lines go
through the same handler as the app's (llo_serving.logs), and the master prepares the directory
where the workers' metrics meet (llo_serving.metrics).
"""

from __future__ import annotations

from typing import Any

from hooks.settings import Settings
from llo_serving.logs import gunicorn_logconfig
from llo_serving.metrics import child_exit, prepare_multiprocess_dir

# No headers: an Authorization header must never reach a log.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def on_starting(server: Any) -> None:
    """In the master, before any worker exists."""
    prepare_multiprocess_dir("hooks")


def options(settings: Settings | None = None) -> dict[str, Any]:
    s = settings or Settings.from_env()
    return {
        "bind": [s.listen],
        "workers": s.workers,
        "worker_class": "gthread",
        "threads": s.threads,
        "timeout": max(30, int(s.hook_budget_seconds * 3)),
        "graceful_timeout": max(15, int(s.hook_budget_seconds * 2)),
        "keepalive": 75,  # Metacontroller reuses connections; outlive its idle timeout
        "accesslog": "-" if s.access_log else None,
        "errorlog": "-",
        "loglevel": s.log_level.lower(),
        "access_log_format": ACCESS_LOG_FORMAT,
        "logconfig_dict": gunicorn_logconfig(s.log_format, s.log_level, app_logger="hooks",
                                             access=s.access_log),
        "on_starting": on_starting,
        "child_exit": child_exit,
        "wsgi_app": "hooks:create_app()",
        # gunicorn >= 25.1 opens a control socket at a fixed per-user path: two instances on one
        # host would clash, and a read-only home fails. The hooks need no runtime management.
        "control_socket_disable": True,
    }


# Module-level names are what `gunicorn --config python:hooks.gunicorn_conf` reads.
globals().update(options())
