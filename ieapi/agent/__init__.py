"""The IE Docker API as an outbound-only NATS agent.

The agent dials out to a NATS server and answers the IE contract's operations as request-reply
on its own subjects (`ieapi.natswire`), with the same `Service` (and so the same engine) as the
HTTP server; both may run at once on one IE. It keeps no state of its own: an operation that
was answered is done in Docker, and a request lost with a connection is simply asked again by
the hooks (every operation is idempotent).

The engine is blocking (docker SDK), so each request runs in a bounded thread pool while the
event loop keeps the connection alive (pings, reconnects). Requests are served in a queue
group, so two agents for the same IE share the work instead of both answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from pydantic import BaseModel

from ieapi.agent.settings import AgentSettings
from ieapi.contract import ErrorBody, ErrorCode, dump
from ieapi.errors import IEApiError, InvalidRequestError
from ieapi.natsauth import NatsIdentity
from ieapi.natswire import (
    CE,
    agent_source,
    ie_subjects,
    operation_of,
    reply_headers,
)
from ieapi.service import Reply, Service

log = logging.getLogger(__name__)

QUEUE_GROUP = "llo-ieapi"
_MAX_CONNECT_BACKOFF_SECONDS = 30.0


def identity_of(settings: AgentSettings) -> NatsIdentity:
    return NatsIdentity(user=settings.user, password_file=settings.password_file,
                        nkey_seed_file=settings.nkey_seed_file, creds_file=settings.creds_file,
                        ca_file=settings.ca_file)


class Agent:
    """Serves one IE's subjects until `stop()`; reconnects for as long as it runs."""

    def __init__(self, settings: AgentSettings, service: Service) -> None:
        self.settings = settings
        self.service = service
        self.source = agent_source(settings.ie_name)
        self.subjects = ie_subjects(settings.subject_prefix, settings.ie_name)
        self._pool = ThreadPoolExecutor(max_workers=settings.threads,
                                        thread_name_prefix="ieapi-agent")
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: Client | None = None

    def _nc(self) -> Client:
        assert self._client is not None, "answering before connecting"
        return self._client

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Connect (retrying until stopped), serve, and on stop drain: in-flight operations
        finish and are answered before the connection closes."""
        nc = await self._connect()
        if nc is None:
            return
        self._client = nc
        try:
            await nc.subscribe(self.subjects, queue=QUEUE_GROUP, cb=self._on_message)
            await nc.flush()
            log.info("serving %s on %s (queue %s)", self.subjects,
                     nc.connected_url.netloc if nc.connected_url else "?", QUEUE_GROUP)
            await self._stopping.wait()
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._pool.shutdown(wait=True)
            log.info("stopped")

    async def _connect(self) -> Client | None:
        """The first connection, retried with backoff: an edge box may boot long before its
        uplink or the NATS server is there. Later losses are the client's reconnects."""
        s = self.settings
        backoff = s.reconnect_wait_seconds
        while not self._stopping.is_set():
            try:
                return await nats.connect(
                    servers=[s.nats_url], name=f"llo-ieapi-agent {s.ie_name}",
                    connect_timeout=s.connect_timeout_seconds,
                    reconnect_time_wait=s.reconnect_wait_seconds,
                    max_reconnect_attempts=-1, allow_reconnect=True,
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    **identity_of(s).connect_options(s.nats_url))
            except Exception as exc:  # every connect failure is retried
                log.warning("cannot connect to %s: %s; retrying in %.1fs", s.nats_url,
                            _describe(exc), backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, _MAX_CONNECT_BACKOFF_SECONDS)
        return None

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", _describe(exc))

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS")

    async def _on_message(self, msg: Msg) -> None:
        # Handled in its own task: the subscription's callback must not wait for Docker, or
        # one slow pull would hold every other request of this IE behind it.
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        operation = operation_of(msg.subject)
        name = headers.get(f"{CE}subject")
        if not msg.reply:
            log.warning("%s: no reply subject, ignored", msg.subject)
            return
        loop = asyncio.get_running_loop()
        status, body = await loop.run_in_executor(self._pool, self._serve, msg, name)
        try:
            # Not msg.respond(): that would echo the request's headers as the answer's.
            await self._nc().publish(msg.reply, body, headers=reply_headers(
                operation, status, source=self.source, name=name))
        except Exception as exc:  # the requester will ask again
            log.warning("%s %s: answer not sent: %s", msg.subject, name or "", _describe(exc))

    def _serve(self, msg: Msg, name: str | None) -> tuple[int, bytes]:
        """Run one operation (in a pool thread): (status code, JSON body)."""
        operation = operation_of(msg.subject)
        try:
            if operation is None:
                raise InvalidRequestError(f"unknown operation in subject {msg.subject!r}")
            reply = self.service.call(operation, name, msg.data)
        except IEApiError as exc:
            if exc.http_status >= 500:
                log.warning("%s %s: %s", msg.subject, name or "", exc.message)
            return exc.http_status, _json(exc.body())
        except Exception:
            log.exception("unexpected error on %s %s", msg.subject, name or "")
            return 500, _json(ErrorBody.of(ErrorCode.INTERNAL, "internal error"))
        log.debug("%s %s: %d", msg.subject, name or "", reply.status)
        return reply.status, _reply_json(reply)


def _json(model: BaseModel) -> bytes:
    return json.dumps(dump(model), separators=(",", ":")).encode()


def _reply_json(reply: Reply) -> bytes:
    return _json(reply.body)


def _describe(exc: BaseException) -> str:
    """A short text for a client-library failure (never a credential: the library's errors
    name servers and states, not passwords)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
