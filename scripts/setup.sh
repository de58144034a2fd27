#!/usr/bin/env bash
# Creates .venv (Python 3.11) with ModelFoundry and its dev extras. Idempotent: a second run is fast.
# torch is installed first, pinned (scripts/install_torch.sh: PyTorch's CPU wheel index when it answers, else the
# default index), so that no resolver pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.modelfoundry-setup
want=$(cat pyproject.toml scripts/setup.sh scripts/install_torch.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  bash scripts/install_torch.sh .venv/bin/python
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
