#!/usr/bin/env bash
# Run the whole test suite from a fresh machine: system packages, .venv/, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium renders the MLflow UI in the browser check.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
