#!/usr/bin/env bash
# Makes a minimal Debian base image with Python 3 (python3, python3-venv, ca-certificates) from
# Debian's packages, for building the project's Dockerfiles where no container registry is
# reachable. The root filesystem tarball is cached; importing it into a dockerd takes seconds.
#
#   scripts/images/base-image.sh [TAG]     # needs DOCKER_HOST (or the default socket)
#   scripts/images/base-image.sh --rootfs-only   # only build/cache the tarball (no Docker)
#
# Prints the tag (with --rootfs-only: the tarball's path). Pass the tag as
# `--build-arg BASE_IMAGE=<tag>`. The cache lives in ${LLO_CACHE_DIR:-~/.cache/llo-docker}/base.
set -euo pipefail
rootfs_only=false
if [ "${1:-}" = "--rootfs-only" ]; then
  rootfs_only=true
  shift
fi
tag=${1:-llo-base/debian-python:bookworm}
cache=${LLO_CACHE_DIR:-$HOME/.cache/llo-docker}/base
tarball="$cache/debian-bookworm-python3.tar"
mkdir -p "$cache"
have_tarball() { [ -f "$tarball" ] && [ -s "$tarball" ]; }

if ! have_tarball; then
  # One build at a time (parallel test sessions); re-check once the lock is ours.
  exec 9>"$cache/.lock"
  flock 9
fi
if ! have_tarball; then
  if ! command -v mmdebstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  # The machine's own Debian mirror, read from its apt sources (deb822 or one-line format).
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  [ -n "$mirror" ] || { echo "no Debian mirror found in apt sources" >&2; exit 1; }
  echo "building Debian base rootfs (about a minute)" >&2
  rm -rf "$tarball" "$tarball.part"  # leftovers of an interrupted or older build
  # --format: the ".part" name would otherwise make mmdebstrap write a directory.
  mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$tarball.part" "deb $mirror bookworm main" >&2
  mv "$tarball.part" "$tarball"
fi
if $rootfs_only; then
  echo "$tarball"
  exit 0
fi

if ! docker image inspect "$tag" >/dev/null 2>&1; then
  docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' "$tarball" "$tag" >/dev/null
fi
echo "$tag"
