"""Fast local upstreams for the hook benchmarks, in their own process (`python -m bench.fakes`).

One asyncio process serves, on loopback only:
- `ies` fake IE APIs (one port each): any request on `/v1/containers/<name>` is answered at once
  with a fixed `ContainerStatus` of a running container (DELETE: a `DeleteResult`);
- `blackholes` IEs that accept connections and read requests but never answer;
- one fake Orion-LD: PATCH/POST → 204; `GET /stats` → request counts as JSON.

The upstreams must not be the bottleneck: no framework, a pre-rendered answer, HTTP/1.1 keep-alive.
The process prints one JSON line with its ports, then serves until its stdin closes (the parent
exited or closed it), so it can never outlive the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

# What the fake IE answers for every container: running, unchanged (fixed bytes, name echoed).
_STATUS_HEAD = b'{"name":"'
_STATUS_TAIL = (
    b'","state":"running","id":"'
    + b"c0ffee" * 10 + b'beef'
    + b'","image":"fiware/orion-ld:1.7.0","imageId":"sha256:'
    + b"ab" * 32
    + b'","specHash":"0123456789abcdef","startedAt":"2026-01-01T00:00:00.000000000Z",'
    b'"restartCount":0,"ports":[{"containerPort":1026,"protocol":"TCP","hostIp":"",'
    b'"hostPort":1026}],"network":"llo-net-urn_ngsi-ld_Service_1","warnings":[],'
    b'"isJob":false}')

COUNTS: Counter[str] = Counter()


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: ".encode() + content_type
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    return head + body


_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class _HTTP(asyncio.Protocol):
    """Minimal HTTP/1.1 server side: request line, headers, Content-Length body."""

    role = "ie"

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17:stop if stop >= 0 else None].strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            line = head.split(b"\r\n", 1)[0]
            method, _, rest = line.partition(b" ")
            path = rest.rpartition(b" ")[0]
            assert self.transport is not None
            self.transport.write(self.answer(method, path))

    def answer(self, method: bytes, path: bytes) -> bytes:
        COUNTS[f"ie {method.decode()}"] += 1
        name = path.rsplit(b"/", 1)[-1]
        if method == b"DELETE":
            return _response("200 OK", b'{"name":"' + name + b'","deleted":true}')
        return _response("200 OK", _STATUS_HEAD + name + _STATUS_TAIL)


class _Broker(_HTTP):
    def answer(self, method: bytes, path: bytes) -> bytes:
        if path == b"/stats":
            return _response("200 OK", json.dumps(dict(COUNTS)).encode())
        if path == b"/healthz":
            return _response("200 OK", b'{"status":"ok"}')
        COUNTS[f"broker {method.decode()}"] += 1
        return _NO_CONTENT


class _Blackhole(asyncio.Protocol):
    """Accepts, reads, never answers."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        COUNTS["blackhole connections"] += 1

    def data_received(self, data: bytes) -> None:
        COUNTS["blackhole bytes"] += len(data)


async def _serve(ies: int, blackholes: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    ports: dict[str, Any] = {"ies": [], "blackholes": []}
    for _ in range(ies):
        srv = await loop.create_server(_HTTP, "127.0.0.1", 0, backlog=1024)
        servers.append(srv)
        ports["ies"].append(srv.sockets[0].getsockname()[1])
    for _ in range(blackholes):
        srv = await loop.create_server(_Blackhole, "127.0.0.1", 0, backlog=1024)
        servers.append(srv)
        ports["blackholes"].append(srv.sockets[0].getsockname()[1])
    broker = await loop.create_server(_Broker, "127.0.0.1", 0, backlog=1024)
    servers.append(broker)
    ports["broker"] = broker.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    # Serve until stdin reaches EOF: the parent closed it or died.
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    for srv in servers:
        srv.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ies", type=int, default=1)
    parser.add_argument("--blackholes", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.ies, args.blackholes))


@dataclass
class Fakes:
    """A running fakes process: its ports and PID."""

    process: subprocess.Popen[bytes]
    ie_ports: list[int]
    blackhole_ports: list[int]
    broker_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.broker_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Fakes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fakes(ies: int, blackholes: int = 0) -> Fakes:
    """Start the fakes process and wait for its ports."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE",
                                                            "CURL_CA_BUNDLE")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fakes", "--ies", str(ies), "--blackholes", str(blackholes)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(5)
        raise RuntimeError(f"bench.fakes exited with {process.returncode}")
    ports = json.loads(line)
    return Fakes(process=process, ie_ports=ports["ies"], blackhole_ports=ports["blackholes"],
                 broker_port=ports["broker"])


if __name__ == "__main__":
    main()
