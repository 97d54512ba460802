"""Prometheus metrics for a Flask app under gunicorn with several worker processes.

Each gunicorn worker is a process with its own counters; a scrape reaches one of them. So
prometheus_client runs in multiprocess mode: every worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR and `/metrics` adds up the files of all workers. The gunicorn master
prepares that directory before it forks a worker (`prepare_multiprocess_dir`) and tells
prometheus_client when a worker is gone (`child_exit`), so that the live gauges of a dead
worker stop counting.

prometheus_client picks its storage (memory or files) when it is imported; the app may import
it before the master has set the directory, so `prepare_multiprocess_dir` makes it choose again.
That is safe because every metric of this project has labels: a labelled metric stores nothing
until its first `.labels()`, which only a worker calls.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; hooks must answer within Metacontroller's 10 s, IE and Docker calls within ~30 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 8.0, 10.0, 30.0)


def prepare_multiprocess_dir(service: str) -> Path:
    """In the gunicorn master, before the first worker: the directory the workers write to
    (PROMETHEUS_MULTIPROC_DIR if set, else a new temporary one), emptied of a previous run's
    files (a restarted container keeps its emptyDir)."""
    given = os.environ.get(ENV, "").strip()
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix=f"llo-{service}-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # module doc
    return path


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: a worker exited; its live gauges no longer count."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def status_class(code: int) -> str:
    """`2xx`, `4xx`...: the outcome of an HTTP call that got an answer."""
    return f"{code // 100}xx"


def exposition(extra: Iterable[Collector] = ()) -> Response:
    """The `/metrics` answer: every worker's values in multiprocess mode, else this process's,
    plus `extra` collectors that read this process's state at scrape time."""
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Everything())
    for collector in extra:
        registry.register(collector)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _Everything(Collector):
    """The default registry's metrics, inside a registry of our own (for `extra`)."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()
