#!/usr/bin/env bash
# Set up a virtual environment (CPU torch first, so pip never pulls a CUDA build) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,math]'
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
