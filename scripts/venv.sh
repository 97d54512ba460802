# Sourced by run.sh and test.sh: make (or reuse) the project's venv and install the project
# into it. A stamp keeps the second run fast; editing pyproject.toml invalidates it.
VENV=${LLO_VENV:-"$PWD/.venv"}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# One stamp per (pyproject.toml, extras): run.sh and test.sh ask for different extras and must
# not reinstall each other's; a changed pyproject.toml drops every stamp.
extras=${LLO_EXTRAS:-ieapi,test,dev,bench}
hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp="$VENV/.llo-installed-$hash-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  find "$VENV" -maxdepth 1 -name '.llo-installed-*' ! -name ".llo-installed-$hash-*" -delete
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import hooks, flask, gunicorn, requests, pydantic, yaml" \
    || { echo "venv install failed" >&2; exit 1; }
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
