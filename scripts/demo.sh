#!/usr/bin/env bash
# Quickstart 1: install (once) and run the attention demo. Arguments go to `mt demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/mt demo "$@"
