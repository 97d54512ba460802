"""Part 6 of the benchmark (`python -m bench --quick --parts nats`) runs on its own, writes its
section and plot, and measures both transports with sane numbers (the speed goal is judged in
docs/benchmarks.md, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_bench_quick import assert_sane_nats

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_nats_bench(tmp_path: Path, dockerd: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE",
                                                            "CURL_CA_BUNDLE")}
    env["DOCKER_HOST"] = dockerd
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--parts", "nats",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=550, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "## 6. IEs behind NAT" in (tmp_path / "benchmarks.md").read_text()
    assert (tmp_path / "img" / "bench-nats.png").stat().st_size > 10_000
    assert_sane_nats(json.loads((tmp_path / "img" / "bench-results.json").read_text())["nats"])
