#!/usr/bin/env bash
# Benchmarks of the hooks and the IE Docker API (issue #5): sets up the venv and the Docker
# Engine binaries like test.sh, then runs `python -m bench` (a private dockerd is started and
# stopped by PID). Writes docs/benchmarks.md and docs/img/bench-*.png.
# Extra arguments go to `python -m bench`, e.g. `--quick`, `--parts throughput,scale`,
# `--wait-for-quiet 600`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

source scripts/debian-packages.sh
install_needed
exec python -m bench "$@"
