#!/usr/bin/env bash
# Creates .venv (Python 3.11) with ModelFoundry and its dev extras. Idempotent: a second run is fast.
# torch is installed first, pinned, from PyTorch's CPU wheel index when it answers (on Linux the default index's
# torch is a multi-GB CUDA build); where that index cannot be reached, from the default index and its local wheels.
# FOUNDRY_TORCH_INDEX overrides the CPU index ("" skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH=2.13.0
CPU_INDEX=${FOUNDRY_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.modelfoundry-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null; then
    if [ -z "$CPU_INDEX" ] || ! .venv/bin/python -m pip install -q --retries 0 --timeout 15 \
        --index-url "$CPU_INDEX" "torch==$TORCH" 2>/dev/null; then
      echo "setup: PyTorch's CPU index (${CPU_INDEX:-none}) did not answer; torch $TORCH from the default index" >&2
      .venv/bin/python -m pip install -q "torch==$TORCH"
    fi
  fi
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
