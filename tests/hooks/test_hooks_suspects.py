"""hooks.http.Suspects: an IE that stops answering holds at most one hook thread per process.

While one call is already retrying an unreachable IE, concurrent calls to it fail at once with
the same (stable) failure text; sequential calls always try for real; any answer clears it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hooks.errors import TemporaryError
from hooks.http import Deadline, Suspects, origin_of
from hooks.ie import Endpoint, IEClient
from hooks.reasons import Reason
from hooks.settings import Settings
from tests.hooks.helpers import TOKEN, fake_ie, silent_server

READ_TIMEOUT = 0.6


@pytest.fixture
def client(tmp_path: Path) -> IEClient:
    (tmp_path / "ie-a").write_text(TOKEN)
    return IEClient(Settings(ie_token_dir=tmp_path, ie_connect_timeout_seconds=0.5,
                             ie_read_timeout_seconds=READ_TIMEOUT))


def ep(url: str) -> Endpoint:
    return Endpoint(ie="ie-a", url=url, token_key="ie-a")


def test_origin_of() -> None:
    assert origin_of("http://10.0.0.5:8081/v1/containers/a.b") == "http://10.0.0.5:8081"
    assert origin_of("https://ie.example/v1/info") == "https://ie.example"


def test_state_machine() -> None:
    s = Suspects()
    origin = "http://ie:1"
    assert s.admit(origin) == (None, False)  # unknown: go
    s.done(origin, probe=False, answered=False, failure="cannot connect: Connection refused")
    assert s.admit(origin) == (None, True)  # the one probe
    assert s.admit(origin) == ("cannot connect: Connection refused", False)  # fail fast
    s.done(origin, probe=True, answered=False, failure=None)  # e.g. deadline: state kept
    assert s.admit(origin) == (None, True)
    s.done(origin, probe=True, answered=True, failure=None)
    assert s.admit(origin) == (None, False)  # cleared by an answer
    assert s.admit("http://other:2") == (None, False)


def test_concurrent_calls_to_a_silent_ie_fail_fast_with_the_same_message(
        client: IEClient) -> None:
    with silent_server() as url:
        with pytest.raises(TemporaryError) as first:
            client.get(ep(url), "demo.web", Deadline(5))
        outcomes: list[tuple[float, str, Reason]] = []

        def call() -> None:
            started = time.monotonic()
            try:
                client.get(ep(url), "demo.web", Deadline(5))
            except TemporaryError as exc:
                outcomes.append((time.monotonic() - started, exc.message, exc.reason))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)  # the first one is the probe
        for t in threads:
            t.join(5)
    durations = sorted(d for d, _, _ in outcomes)
    assert len(outcomes) == 4
    assert durations[-1] >= READ_TIMEOUT * 0.9  # the probe waited for real
    assert all(d < READ_TIMEOUT / 2 for d in durations[:3]), durations  # the others did not
    assert {m for _, m, _ in outcomes} == {first.value.message}  # status text stays stable
    assert {r for _, _, r in outcomes} == {Reason.IE_UNREACHABLE}


def test_a_sequential_call_tries_again_and_an_answer_clears(client: IEClient) -> None:
    with fake_ie() as (_, server):
        client.suspects.done(origin_of(server.url), probe=False, answered=False,
                             failure="no answer within the read timeout")
        assert client.info(ep(server.url), Deadline(5)).ie_id  # the probe is real
        assert client.suspects.admit(origin_of(server.url)) == (None, False)
