"""Network faults made for real on loopback: a peer that accepts and never answers, and a relay
that holds chosen HTTP requests until the test releases them.

Both are fault injectors, not doubles: the relay forwards bytes unchanged to a real server
(e.g. a real registry), it only decides *when*.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable

_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"OPTIONS ")


def _listen(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.settimeout(0.2)
    return sock


class _Acceptor:
    """An accept loop on a thread; subclasses handle each connection on its own thread."""

    def __init__(self, port: int = 0) -> None:
        self._sock = _listen(port)
        self.port: int = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._accept_thread = threading.Thread(target=self._accept, daemon=True,
                                               name=f"{type(self).__name__}:{self.port}")
        self._accept_thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self.accepted += 1
                self._conns.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.append(sock)

    def close(self) -> None:
        """Stop listening and drop every connection; returns once all threads ended."""
        self._closed.set()
        self._sock.close()
        self._accept_thread.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> _Acceptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StallServer(_Acceptor):
    """Accepts connections and reads whatever comes, but never answers: the peer that hangs.
    A client sees its connect succeed and then waits for its read timeout."""

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._closed.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


class GatedRelay(_Acceptor):
    """A TCP relay to `upstream_port` that parks every HTTP request whose request line contains
    one of `hold` until `release()`; other HTTP requests pass at once. Anything that is not
    plain HTTP (e.g. a TLS ClientHello) is closed at once, so a client that tries HTTPS first
    falls back to HTTP quickly. One request per connection is assumed for the decision (Docker's
    registry client disables keep-alive)."""

    def __init__(self, upstream_port: int, hold: Iterable[str] = ("/blobs/",)) -> None:
        self.upstream_port = upstream_port
        self.hold_markers = tuple(marker.encode() for marker in hold)
        self._gate = threading.Event()
        self.held_lines: list[str] = []
        self.waiting = 0
        super().__init__()

    def release(self) -> None:
        """Let parked and future requests through."""
        self._gate.set()

    def wait_until_holding(self, count: int = 1, timeout: float = 30.0) -> None:
        """Block until `count` requests are parked at the gate (a transfer really is midway)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.waiting >= count:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {count} requests parked within {timeout}s "
                           f"(held so far: {self.held_lines})")

    def _request_line(self, conn: socket.socket) -> bytes | None:
        conn.settimeout(10)
        try:
            head = conn.recv(8192, socket.MSG_PEEK)
        except OSError:
            return None
        if not head.startswith(_HTTP_METHODS):
            return None
        return head.split(b"\r\n", 1)[0]

    def _serve(self, conn: socket.socket) -> None:
        line = self._request_line(conn)
        if line is None:
            conn.close()
            return
        if any(marker in line for marker in self.hold_markers) and not self._gate.is_set():
            with self._lock:
                self.held_lines.append(line.decode(errors="replace"))
                self.waiting += 1
            try:
                while not self._gate.wait(0.2):
                    if self._closed.is_set():
                        conn.close()
                        return
            finally:
                with self._lock:
                    self.waiting -= 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            conn.close()
            return
        self._track(upstream)
        conn.settimeout(None)
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        with self._lock:
            self._threads.append(back)
        back.start()
        _pump(conn, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until either side closes, then close both directions."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
