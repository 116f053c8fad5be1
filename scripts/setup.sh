#!/usr/bin/env bash
# Creates .venv and installs mt into it (editable), once; later calls return at once.
# torch comes first, pinned, so pip never pulls a newer CUDA build where a CPU wheel
# is at hand; on a machine with an NVIDIA GPU the same pin installs PyPI's CUDA build.
# Override with MT_TORCH="torch==X.Y.Z" (or MT_TORCH="" to keep what is installed).
# The rest installs with uv (seconds; pip takes about a minute on 2 cores), or with pip
# where uv cannot be had or fails, or when MT_INSTALLER=pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${MT_TORCH-torch==2.13.0}
stamp=.venv/.mt-installed
want="$(sha256sum pyproject.toml | cut -c1-16) ${TORCH_SPEC}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/mt ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
log=.venv/pip.log
pip_install() {  # quiet unless it fails
  .venv/bin/python -m pip install -q "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "setup failed: pip install $*" >&2; exit 1; }
}
if [ -n "$TORCH_SPEC" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "installing $TORCH_SPEC ..."
  pip_install "$TORCH_SPEC"
fi
echo "installing mt and its dependencies ..."
if [ "${MT_INSTALLER:-uv}" = uv ] && .venv/bin/python -m pip install -q uv >"$log" 2>&1 \
   && .venv/bin/python -m uv pip install --python .venv/bin/python -q -e ".[dev,serve,deploy]" >"$log" 2>&1; then
  :  # torch, already there, satisfies mt's range and stays as it is
else
  pip_install -e ".[dev,serve,deploy]"
fi
echo "$want" > "$stamp"
