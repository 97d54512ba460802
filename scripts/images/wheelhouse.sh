#!/usr/bin/env bash
# Makes a wheelhouse: the project and every dependency (the `ieapi` extra included) as wheels
# for the Python of the image base (scripts/images/base-image.sh: Debian bookworm, CPython 3.11),
# plus setuptools for building the project from source. With it the Dockerfiles install with
# no package index at all:
#
#   scripts/images/wheelhouse.sh                      # fills build/wheels (gitignored)
#   docker build --build-arg BASE_IMAGE="$(scripts/images/base-image.sh)" \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -t llo-docker-hooks .
#
# Needs a package index only when the wheelhouse is missing or pyproject.toml changed (the
# stamp file records what it was built from). Prints the directory.
#
# Environment: LLO_WHEELS_PYTHON (default 3.11), LLO_WHEELS_PLATFORM (default
# manylinux2014_<machine>), PIP (default: the project's .venv pip, else python3 -m pip).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/build/wheels}"
py="${LLO_WHEELS_PYTHON:-3.11}"
platform="${LLO_WHEELS_PLATFORM:-manylinux2014_$(uname -m)}"
if [ -n "${PIP:-}" ]; then
  read -r -a pip <<<"$PIP"
elif [ -x "$root/.venv/bin/pip" ]; then
  pip=("$root/.venv/bin/pip")
else
  pip=(python3 -m pip)
fi

want="$( { echo "python=$py platform=$platform"; cat "$root/pyproject.toml"; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$want" ]; then
  echo "$out"
  exit 0
fi

echo "building the wheelhouse in $out (CPython $py, $platform)" >&2
tmp="$(mktemp -d "${TMPDIR:-/tmp}/llo-wheels.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The project itself is pure Python: one py3-none-any wheel.
"${pip[@]}" wheel --quiet --disable-pip-version-check --no-deps -w "$tmp/project" "$root" >&2
project_wheel="$(ls "$tmp"/project/*.whl)"
# Pure-Python dependencies published as source only (nkeys, for NATS nkey auth): built into
# py3-none-any wheels here (no compiler needed) and offered to the download below.
mkdir -p "$tmp/wheels"
"${pip[@]}" wheel --quiet --disable-pip-version-check --no-deps -w "$tmp/wheels" \
  "nkeys>=0.2" >&2
# Its dependencies for the image's interpreter, binary wheels only (no compiler in the image).
# setuptools >= 77: pyproject.toml's license is a PEP 639 SPDX string.
"${pip[@]}" download --quiet --disable-pip-version-check --only-binary=:all: \
  --python-version "$py" --implementation cp --abi "cp${py/./}" --platform "$platform" \
  --find-links "$tmp/wheels" -d "$tmp/wheels" "$project_wheel[ieapi]" "setuptools>=77" >&2
cp "$project_wheel" "$tmp/wheels/"
echo "$want" >"$tmp/wheels/.stamp"
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
[ ! -e "$out" ] || mv "$out" "$out.old"
mv "$tmp/wheels" "$out"
rm -rf "$out.old"
echo "$out"
