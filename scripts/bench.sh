#!/usr/bin/env bash
# Benchmarks of the hooks and the IE Docker API (issue #5): sets up the venv and the Docker
# Engine binaries like test.sh, then runs `python -m bench` (a private dockerd is started and
# stopped by PID). Writes docs/benchmarks.md and docs/img/bench-*.png.
# Extra arguments go to `python -m bench`, e.g. `--quick`, `--parts throughput,scale`,
# `--wait-for-quiet 600`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

need_apt=()
if [ -z "${DOCKER_HOST:-}" ]; then
  command -v dockerd >/dev/null || need_apt+=(docker.io iptables)
fi
[ -x /bin/busybox ] || command -v busybox >/dev/null || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]} (install them, or run as root)" >&2; exit 1
  fi
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
exec python -m bench "$@"
