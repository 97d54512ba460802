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
  echo "installing the project into $VENV (extras: $extras)" >&2
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
         && "$VENV/bin/python" -m pip install -q -e ".[$extras]"; } >"$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log" >&2
    echo "venv: pip install failed (log above)" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
