"""`python -m hooks` serves the hooks under gunicorn with the embedded configuration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_python_m_hooks_serves_and_stops() -> None:
    port = _free_port()
    env = {**os.environ, "LLO_LISTEN": f"127.0.0.1:{port}", "LLO_WORKERS": "1",
           "LLO_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "hooks"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "hooks did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        answer = requests.post(f"http://127.0.0.1:{port}/scd/sync", data=b"nope", timeout=5)
        assert answer.status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_invalid_settings_stop_the_start() -> None:
    env = {**os.environ, "LLO_BROKER_URL": "no-scheme"}
    done = subprocess.run([sys.executable, "-m", "hooks"], env=env, capture_output=True,
                          timeout=30, check=False)
    assert done.returncode != 0
    assert b"broker_url" in done.stderr
