#!/usr/bin/env bash
# The main job on built-in defaults: install, start the three services with the shipped
# weights, send the sample photos of samples/ (three Kodak images) over AWGN and Rayleigh at
# 1/10/20 dB, print the results, stop the services. Extra arguments go to `semcom demo`
# (--images DIR: another folder; see `semcom demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/semcom demo "$@"
