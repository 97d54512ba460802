"""`llo-hooks --help` (and `python -m hooks --help`) prints the usage with every LLO_* variable
and exits, without starting a server; unknown arguments are refused."""

from __future__ import annotations

import subprocess
import sys

from hooks.settings import Settings


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # LLO_LISTEN on a port nobody may take: a server started by mistake would fail or hang.
    return subprocess.run([sys.executable, "-m", "hooks", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"LLO_LISTEN": "256.0.0.1:1", "PATH": "/usr/bin:/bin"})


def test_help_prints_every_setting_and_exits() -> None:
    for flag in ("--help", "-h"):
        done = _run(flag)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: llo-hooks")
        for field in Settings.model_fields:
            assert Settings.env_name(field) in done.stdout
        assert "LLO_LOG_FORMAT                       default: json" in done.stdout
        assert "Booting worker" not in done.stderr


def test_unknown_arguments_are_refused() -> None:
    done = _run("--port", "9000")
    assert done.returncode == 2
    assert "unexpected arguments '--port 9000'" in done.stderr
    assert "usage: llo-hooks" in done.stderr
