# Sourced by run.sh and test.sh: make (or reuse) the project's venv and install the project
# into it. A stamp keeps the second run fast; editing pyproject.toml invalidates it.
VENV=${LLO_VENV:-"$PWD/.venv"}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.llo-installed-$(sha256sum pyproject.toml | cut -c1-16)-${LLO_EXTRAS:-all}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[${LLO_EXTRAS:-ieapi,test,dev,bench}]"
  rm -f "$VENV"/.llo-installed-*
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
