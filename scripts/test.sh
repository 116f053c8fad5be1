#!/usr/bin/env bash
# Quickstart 2 and CI: install (once) and run the test suite. Arguments go to pytest.
# Tests run in parallel on up to 4 cores (pytest-xdist; MT_TEST_WORKERS=N to choose, 1 for
# one process): most of them train tiny models in one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
workers=${MT_TEST_WORKERS:-$(.venv/bin/python -c "import os; print(min(4, os.cpu_count() or 1))")}
if [ "$workers" -gt 1 ]; then
  exec .venv/bin/python -m pytest -q -n "$workers" "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
