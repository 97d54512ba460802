"""gunicorn configuration of the hook service, from the same `LLO_*` settings as the app.

gthread workers: a hook spends its time waiting on IEs and the broker, so threads (not
processes) give the concurrency. The worker timeout sits well above the hook's own time budget
so gunicorn never kills a worker that is about to answer.
"""

from __future__ import annotations

from typing import Any

from hooks.settings import Settings


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
        "wsgi_app": "hooks:create_app()",
        # gunicorn >= 25.1 opens a control socket at a fixed per-user path: two instances on one
        # host would clash, and a read-only home fails. The hooks need no runtime management.
        "control_socket_disable": True,
    }


# Module-level names are what `gunicorn --config python:hooks.gunicorn_conf` reads.
globals().update(options())
