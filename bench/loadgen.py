"""An HTTP/1.1 load generator on raw asyncio streams: pre-rendered requests, keep-alive
connections, latency of every request.

Two ways to load a server:
- closed loop (`closed_loop`): `concurrency` connections, each sending its next request as soon
  as the previous answer is in; what a fixed pool of callers (Metacontroller's sync workers) does;
- open loop (`open_loop`): requests start at a fixed rate whatever the answers do (resync timers
  fire on time); latency counts from the planned start, so queueing is never hidden.

The generator is far cheaper per request than the servers under test (no framework, no JSON),
but it shares the machine with them: its CPU time is reported with the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def render_post(host: str, port: int, path: str, body: bytes) -> bytes:
    """One complete keep-alive POST, as Metacontroller sends it (JSON body)."""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Accept-Encoding: identity\r\n\r\n").encode() + body


@dataclass
class Result:
    """What a run saw: one entry per completed request, in completion order."""

    latencies: list[float] = field(default_factory=list)  # seconds
    tags: list[int] = field(default_factory=list)          # index of the request sent
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)      # only when keep_bodies
    starts: list[float] = field(default_factory=list)      # planned start, s after the first
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def non_200(self) -> int:
        return sum(1 for s in self.statuses if s != 200)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            raise ConnectionError("answer without Content-Length")
        stop = lower.find(b"\r\n", at + 2)
        length = int(lower[at + 17:stop].strip())
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _closed(host: str, port: int, requests: Sequence[bytes], *, concurrency: int,
                  duration: float | None, keep_bodies: bool) -> Result:
    result = Result()
    order = itertools.cycle(range(len(requests))) if duration else iter(range(len(requests)))
    begun = time.perf_counter()
    stop_at = begun + duration if duration else None

    async def worker() -> None:
        conn = await _Conn.open(host, port)
        try:
            for index in order:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                started = time.perf_counter()
                try:
                    status, body = await conn.exchange(requests[index])
                except (ConnectionError, asyncio.IncompleteReadError):
                    result.errors += 1
                    conn.close()
                    conn = await _Conn.open(host, port)
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.starts.append(started - begun)
                result.tags.append(index)
                result.statuses.append(status)
                if keep_bodies:
                    result.bodies.append(body)
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def closed_loop(host: str, port: int, requests: Sequence[bytes], *, concurrency: int,
                duration: float | None = None, keep_bodies: bool = False) -> Result:
    """Send every request once (duration None), or cycle through them for `duration` s."""
    return asyncio.run(_closed(host, port, requests, concurrency=concurrency, duration=duration,
                               keep_bodies=keep_bodies))


async def _open(host: str, port: int, requests: Sequence[bytes], *, rate: float,
                duration: float, max_inflight: int) -> Result:
    result = Result()
    idle: list[_Conn] = []
    slots = asyncio.Semaphore(max_inflight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, planned: float) -> None:
        async with slots:
            conn = idle.pop() if idle else await _Conn.open(host, port)
            try:
                status, _ = await conn.exchange(requests[index])
            except (ConnectionError, asyncio.IncompleteReadError):
                result.errors += 1
                conn.close()
                return
            result.latencies.append(time.perf_counter() - planned)
            result.tags.append(index)
            result.statuses.append(status)
            result.starts.append(planned - started)
            idle.append(conn)

    started = time.perf_counter()
    total = int(rate * duration)
    for n, index in zip(range(total), itertools.cycle(range(len(requests))), strict=False):
        planned = started + n / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, planned))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - started
    for conn in idle:
        with contextlib.suppress(Exception):
            conn.close()
    return result


def open_loop(host: str, port: int, requests: Sequence[bytes], *, rate: float, duration: float,
              max_inflight: int = 512) -> Result:
    """Start `rate` requests per second for `duration` s, cycling through `requests`."""
    return asyncio.run(_open(host, port, requests, rate=rate, duration=duration,
                             max_inflight=max_inflight))
