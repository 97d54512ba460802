#!/usr/bin/env bash
# Runs the hook service under gunicorn on its embedded default config (port 8080, no broker,
# IE tokens from $LLO_IE_TOKEN_DIR). Any LLO_* variable from README overrides a default.
set -euo pipefail
cd "$(dirname "$0")/.."
LLO_EXTRAS=${LLO_EXTRAS:-ieapi} source scripts/venv.sh
exec gunicorn --config python:hooks.gunicorn_conf "hooks:create_app()"
