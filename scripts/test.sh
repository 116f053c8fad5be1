#!/usr/bin/env bash
# Quickstart 2 and CI: install (once) and run the test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
