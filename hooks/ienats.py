"""The NATS transport of the IE client: synchronous requests for gunicorn's threads.

The hooks are synchronous (gthread workers), and nats-py is asyncio only. Each hooks process
runs ONE event loop in a daemon thread, holding one connection per NATS server; hook threads
hand it a request with `run_coroutine_threadsafe` and wait for the answer with the call's
timeout. Why not a connection per call: connecting (TCP, TLS, auth) costs more than the
request, and a kept connection is what makes "no responders" instant. Why not a sync client:
there is no maintained synchronous NATS client for Python; writing the protocol by hand would
mean owning reconnects, pings and TLS ourselves. The loop is created lazily in the process
that uses it, so it is never inherited across gunicorn's fork.

Failures map to the same reasons as HTTP: "no responders" (the server knows nobody serves that
IE's subject: its agent is down or not connected) and a server that cannot be reached or is
reconnecting fail at once with `IEUnreachable`; no answer within the read timeout is
`IEUnreachable` too (the agent may have done the work: the next sync asks again, and every
operation is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout

import nats
import nats.errors
from nats.aio.client import Client

from hooks.errors import PermanentError, TemporaryError
from hooks.reasons import Reason
from ieapi.natsauth import NatsIdentity
from ieapi.natswire import Answer, answer_of

log = logging.getLogger(__name__)

# Extra time a hook thread waits beyond the request's own timeout for the loop to hand back
# the result (the loop thread may be busy with another request's bytes for a moment).
_HANDOFF_SECONDS = 0.5


class NatsRequester:
    """One per process: requests over NATS, one connection per server URL."""

    def __init__(self, identity: NatsIdentity, connect_timeout: float) -> None:
        self.identity = identity
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str, Client] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._closing = False

    # ------------------------------------------------------------------ from hook threads

    def request(self, url: str, subject: str, headers: Mapping[str, str], data: bytes, *,
                timeout: float, what: str) -> Answer:
        """Send one request and wait for its answer at most `timeout` seconds."""
        loop = self._running_loop()
        future = asyncio.run_coroutine_threadsafe(
            self._request(url, subject, dict(headers), data, timeout=timeout, what=what), loop)
        try:
            return future.result(timeout + self.connect_timeout + _HANDOFF_SECONDS)
        except FutureTimeout as exc:
            future.cancel()
            raise TemporaryError(Reason.IE_UNREACHABLE,
                                 f"{what}: no answer within the read timeout") from exc

    def close(self) -> None:
        """Close every connection and stop the loop (tests; a worker just exits)."""
        with self._lock:
            loop, self._loop = self._loop, None
            self._closing = True
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)

    # ------------------------------------------------------------------ on the loop

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._clients = {}
                self._connecting = {}
                self._closing = False
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="llo-nats",
                                 daemon=True).start()
            return self._loop

    async def _client(self, url: str, what: str) -> Client:
        lock = self._connecting.setdefault(url, asyncio.Lock())
        async with lock:
            client = self._clients.get(url)
            if client is not None and not client.is_closed:
                return client
            try:
                options = self.identity.connect_options(url)
            except OSError as exc:
                raise PermanentError(Reason.TOKEN_MISSING,
                                     f"{what}: NATS credentials unreadable: {exc.strerror}"
                                     ) from exc
            # Reconnects forever once connected (a restarted server is picked up again), but
            # the first connection is bounded: a hook cannot wait for a server that is down.
            try:
                client = await asyncio.wait_for(nats.connect(
                    servers=[url], name=f"llo-hooks pid {os.getpid()}",
                    connect_timeout=self.connect_timeout, allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    error_cb=_on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=_on_reconnected, **options), self.connect_timeout)
            except TimeoutError as exc:
                raise TemporaryError(
                    Reason.IE_UNREACHABLE,
                    f"{what}: cannot connect to the NATS server") from exc
            except Exception as exc:
                raise TemporaryError(
                    Reason.IE_UNREACHABLE,
                    f"{what}: cannot connect to the NATS server: {type(exc).__name__}") from exc
            self._clients[url] = client
            return client

    async def _request(self, url: str, subject: str, headers: dict[str, str], data: bytes, *,
                       timeout: float, what: str) -> Answer:
        client = await self._client(url, what)
        if not client.is_connected:
            # Reconnecting: a request now would wait in the client's buffer until the timeout.
            raise TemporaryError(Reason.IE_UNREACHABLE,
                                 f"{what}: the NATS server is unreachable (reconnecting)")
        try:
            msg = await client.request(subject, data, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError as exc:
            raise TemporaryError(Reason.IE_UNREACHABLE,
                                 f"{what}: no agent is serving this IE on NATS") from exc
        except nats.errors.TimeoutError as exc:
            raise TemporaryError(Reason.IE_UNREACHABLE,
                                 f"{what}: no answer within the read timeout") from exc
        except nats.errors.Error as exc:
            raise TemporaryError(Reason.IE_UNREACHABLE,
                                 f"{what}: NATS: {type(exc).__name__}") from exc
        answer = answer_of(msg.headers, msg.data)
        if answer is None:
            raise TemporaryError(Reason.IE_ERROR,
                                 f"{what}: unexpected answer (not a CloudEvent of the IE API)")
        return answer

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS: disconnected; reconnecting")

    async def _close_all(self) -> None:
        for client in list(self._clients.values()):
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()


async def _on_error(exc: Exception) -> None:
    log.warning("NATS: %s", type(exc).__name__ + (f": {exc}" if str(exc) else ""))


async def _on_reconnected() -> None:
    log.info("NATS: reconnected")
