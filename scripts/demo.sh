#!/usr/bin/env bash
# Quickstart 1: install (once) and run the attention demo. Arguments go to `mt demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# jemalloc avoids glibc allocator page-fault storms in training (see docs/performance.md).
for lib in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2; do
  if [ -f "$lib" ]; then export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"; break; fi
done
exec .venv/bin/mt demo "$@"
