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
# Tesseract reads text burned into images for the PHI screen (ingest/ocr.py). A Debian package, not a
# pip one: installed here when this runs as root with apt-get, otherwise named for the operator.
if ! command -v tesseract >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng >/dev/null; } || echo "note: could not install tesseract-ocr" >&2
  else
    echo "note: tesseract is not installed (apt-get install tesseract-ocr); posts whose image text" \
      "cannot be read are held for a moderator (PLIPBOT_INGEST__OCR_UNAVAILABLE)" >&2
  fi
fi
pip_q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--dev" ]; then
  pip_q -e ".[dev]"
else
  pip_q -e .
fi
