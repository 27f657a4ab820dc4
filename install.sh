#!/usr/bin/env bash
# Creates .venv and installs plipbot into it. torch/torchvision are pinned here, first, so that
# pip never resolves an unpinned (multi-GB, possibly newer) torch as a transitive dependency.
# Usage: ./install.sh          runtime only
#        ./install.sh --dev    plus the test tools (pytest, ruff, transformers as the reference)
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_q() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }
pip_q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--dev" ]; then
  pip_q -e ".[dev]"
else
  pip_q -e .
fi
