#!/usr/bin/env bash
# Create .venv (if missing) and install semcom with its test tools into it.
#
# PyTorch: an already installed torch is kept. Otherwise TORCH_SPEC is installed, default
# "torch==2.13.0" (the tested release; on Linux x86_64 PyPI serves a CUDA build of several
# GB: a CPU-only host can first run
#   pip install torch --index-url https://download.pytorch.org/whl/cpu
# inside .venv, or set TORCH_SPEC). Every other dependency comes from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  echo "installing ${TORCH_SPEC:-torch==2.13.0}"
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, grpc, semcom_cli.main" || { echo "install failed" >&2; exit 1; }
echo "installed: torch $(python -c 'import torch; print(torch.__version__)'), semcom at .venv/bin/semcom"
