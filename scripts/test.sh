#!/usr/bin/env bash
# From a fresh machine to every test tier: venv and packages, Docker Engine binaries (the tests
# start their own private dockerd and stop it by PID), the CRD API server build (cached under
# ~/.cache), then ruff, mypy and pytest. Extra arguments go to pytest, e.g. `-m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

need_apt=()
if [ -z "${DOCKER_HOST:-}" ]; then
  command -v dockerd >/dev/null || need_apt+=(docker.io iptables)
fi
[ -x /bin/busybox ] || command -v busybox >/dev/null || need_apt+=(busybox-static)
command -v openssl >/dev/null || need_apt+=(openssl)
# A real local registry, so the reliability tier can hold an image pull mid-way.
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
# The CRD API server tier (etcd) and the offline image builds (a Debian base rootfs).
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]} (install them, or run as root)" >&2; exit 1
  fi
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Built once and cached under ~/.cache: the CRD API server, the Debian base rootfs for image
# builds, and a wheelhouse so that `docker build` installs without a package index.
bash scripts/crdserver/build.sh >/dev/null
bash scripts/images/base-image.sh --rootfs-only >/dev/null
bash scripts/images/wheelhouse.sh >/dev/null

echo "== ruff";  ruff check .
echo "== mypy";  mypy
echo "== pytest"
exec python -m pytest "$@"
