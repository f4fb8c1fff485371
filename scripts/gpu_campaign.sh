#!/usr/bin/env bash
# The GPU campaign (issue 15; scripts/gpu_campaign.py says what each step does):
#
#   bash scripts/gpu_campaign.sh --plan      here: build carry/ (wheels, photos, Kodak), print the
#                                            bytes that would travel (refuses above 60 MiB) and the
#                                            device call to make
#   bash scripts/gpu_campaign.sh --dry-run [--out DIR] [--carry DIR]
#                                            here: the whole campaign on CPU, 20 s of training,
#                                            tiny settings (output: DIR, default a temp folder)
#   bash scripts/gpu_campaign.sh [--minutes M] [--deadline S]
#                                            on the GPU machine, carry/ carried: installs the carried
#                                            wheels, then the campaign (training 6 min by default,
#                                            everything within 530 s), at most 8 files to $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
local_python() { if [ -x .venv/bin/python ]; then echo .venv/bin/python; else command -v python3; fi; }
case "${1:-}" in
  -h|--help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  --plan)
    export PYTHON=${PYTHON:-$(local_python)}
    exec "$PYTHON" scripts/gpu_campaign.py plan "${@:2}"
    ;;
  --dry-run)
    shift
    args=("$@")
    if [[ " ${args[*]} " != *" --out "* ]]; then args+=(--out "$(mktemp -d -t gpu_campaign_out.XXXXXX)"); fi
    export PYTHON=${PYTHON:-$(local_python)}
    exec "$PYTHON" scripts/gpu_campaign.py run --dry-run "${args[@]}"
    ;;
  *)
    site=/tmp/semcom-site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      carry/wheels/*.whl
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHON=python3
    exec python3 scripts/gpu_campaign.py run "$@"
    ;;
esac
