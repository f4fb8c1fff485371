#!/usr/bin/env bash
# Install, check the generated gRPC stubs are current, run the default test suite (CPU,
# tiny models; the slow suites are marked `slow`, run them with `-m slow`).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python scripts/gen_proto.py --check
python -m pytest -q "$@"
