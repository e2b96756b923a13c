#!/usr/bin/env bash
# Set up a virtual environment (CPU torch first, so pip never pulls a CUDA build) and open the
# TUI on the committed demo database. Extra arguments go to opd-tui.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/opd-tui "$@"
