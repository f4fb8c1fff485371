#!/usr/bin/env bash
# Build the Python base image locally, for hosts that reach Debian's package mirror but no
# image registry: debootstrap a minimal Debian bookworm (Python 3.11, venv, CA certificates)
# and `docker import` it under the name the Dockerfile uses (default python:3.11-slim), so
# `docker compose build` then finds it locally and pulls nothing.
#
#   sudo bash scripts/build_base_image.sh                 # tags python:3.11-slim
#   BASE_IMAGE=semcom/base:bookworm bash scripts/build_base_image.sh
#   FORCE=1 ...                                           # rebuild even if the tag exists
#
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker daemon.
# MIRROR (default http://deb.debian.org/debian) and SUITE (default bookworm) can be set.
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE exists (FORCE=1 rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install -y debootstrap" >&2; exit 1; }

work=$(mktemp -d /tmp/semcom-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
start=$(date +%s)
echo "debootstrap $SUITE from $MIRROR into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Smaller image: no package caches, lists, docs or translations.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
# `python` as in the official images.
ln -sf python3 "$rootfs/usr/bin/python"
tar -C "$rootfs" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["python3"]' \
  - "$BASE_IMAGE" >/dev/null
echo "built $BASE_IMAGE ($(docker run --rm "$BASE_IMAGE" python3 --version)) in $(( $(date +%s) - start )) s," \
     "$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
