"""Streaming a container's log to an HTTP client, with nothing left behind.

Docker's log stream is a blocking socket read; a follow of a quiet container may block for
hours. A client that goes away is only noticed by a server when it writes, and a quiet
container gives nothing to write. So one reader thread per answer moves Docker's chunks into a
small queue, and the serving thread waits on that queue with a timeout, checking between
chunks whether the client hung up (poll for POLLRDHUP on the client's socket, which gunicorn
hands to the app as `gunicorn.socket`). Whatever ends the answer (the container stops, the byte
limit, the client goes, the server's write fails), `LogStream.close()` closes Docker's stream,
which unblocks the reader, and joins the reader: no thread and no file descriptor outlive the
answer. WSGI servers call `close()` on the answer's iterable even when it was never iterated.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0        # how often a quiet stream checks whether the client is still there
JOIN_SECONDS = 10.0       # closing Docker's stream ends the reader at once; this is a safety net
_QUEUE_CHUNKS = 16        # chunks of Docker's output held between reader and client (≤16 KiB each)
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


class Source(Protocol):
    """Docker's log stream (`ieapi.engine.DockerLog`): iterated by one thread; `close()` from
    any thread unblocks that iteration; `release()` frees the connection once nobody reads."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def release(self) -> None: ...


_END = object()


def client_gone_probe(environ: dict[str, Any]) -> Callable[[], bool]:
    """A check whether the HTTP client closed its connection; never true without a socket to
    look at (e.g. Flask's test client)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return lambda: False
    poller = select.poll()
    poller.register(sock.fileno(), _GONE)

    def gone() -> bool:
        try:
            return any(events & _GONE for _, events in poller.poll(0))
        except (OSError, ValueError):
            return True

    return gone


class LogStream:
    """The WSGI answer body of one logs request (see the module docstring)."""

    def __init__(self, source: Source, *, limit_bytes: int, client_gone: Callable[[], bool],
                 on_close: Callable[[], None] = lambda: None, what: str = "logs") -> None:
        self._source = source
        self._limit = limit_bytes
        self._client_gone = client_gone
        self._on_close = on_close
        self._what = what
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.sent = 0
        self.ended_by = "open"

    def __iter__(self) -> Iterator[bytes]:
        with self._lock:
            if self._closed:
                return
            self._reader = threading.Thread(target=self._read, name="ieapi-logs-reader",
                                            daemon=True)
            self._reader.start()
        while True:
            try:
                item = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._client_gone():
                    self.ended_by = "client gone"
                    return
                continue
            if item is _END:
                self.ended_by = "end of log"
                return
            assert isinstance(item, bytes)
            room = self._limit - self.sent
            if len(item) >= room:
                self.sent += room
                self.ended_by = "byte limit"
                yield item[:room]
                return
            self.sent += len(item)
            yield item

    def _read(self) -> None:
        try:
            for chunk in self._source:
                if not chunk:
                    continue
                if not self._put(chunk):
                    return
        except Exception as exc:  # closed under us, or Docker went away
            if not self._stop.is_set():
                log.info("log stream ended early: %s", type(exc).__name__)
        finally:
            self._release()
            self._put(_END)

    def _release(self) -> None:
        try:
            self._source.release()
        except Exception as exc:
            log.debug("releasing a log stream: %s", exc)

    def _put(self, item: object) -> bool:
        """Queue `item` unless the answer is being closed; False once it is."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    def close(self) -> None:
        """End the answer: close Docker's stream, join the reader, release the slot. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            reader = self._reader
        self._stop.set()
        try:
            self._source.close()
        except Exception as exc:  # a stream that is already broken
            log.debug("closing a log stream: %s", exc)
        if reader is None:
            self._release()  # never iterated: nobody else will
        else:
            reader.join(JOIN_SECONDS)
            if reader.is_alive():
                log.warning("log reader still running %.0f s after its stream was closed",
                            JOIN_SECONDS)
        if self.ended_by == "open":
            self.ended_by = "closed by the server"  # e.g. its write to a departed client failed
        log.info("%s: answer ended (%s) after %d bytes", self._what, self.ended_by, self.sent)
        self._on_close()
