#!/usr/bin/env bash
# install_torch.sh PYTHON: the tested torch into PYTHON's environment, unless it is there already.
# First from PyTorch's CPU wheel index (on Linux the default index's torch is a multi-GB CUDA build); where that
# index does not answer (no route to it, as on machines that carry the CPU wheel locally), from the default index.
# FOUNDRY_TORCH_INDEX overrides the CPU index; FOUNDRY_TORCH_INDEX="" goes straight to the default index.
set -euo pipefail
PY=$1
TORCH=${FOUNDRY_TORCH_VERSION:-2.13.0}
CPU_INDEX=${FOUNDRY_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
if "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null; then
  exit 0
fi
if [ -n "$CPU_INDEX" ] && "$PY" -m pip install -q --retries 0 --timeout 15 --index-url "$CPU_INDEX" "torch==$TORCH"; then
  exit 0
fi
echo "setup: PyTorch's CPU index (${CPU_INDEX:-not used}) did not answer; torch $TORCH from the default index" >&2
"$PY" -m pip install -q "torch==$TORCH"
