# One image for the three services; the command picks the service:
#   python -m transmitter | python -m channel_emulator | python -m receiver
# (docker-compose.yml sets it per service; the code stays one folder per service).
#
# Build from the repository root (compose does this):
#   docker build -t semcom/semcom:cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# Build arguments:
#   BASE_IMAGE       Python >= 3.10 base with the venv module and useradd. Default
#                    python:3.11-slim. Air-gapped hosts: scripts/build_base_image.sh builds a
#                    Debian bookworm base locally (debootstrap + docker import) under this name.
#   TORCH_SPEC       pip requirement for PyTorch, default torch==2.13.0 (the tested release).
#   TORCH_INDEX_URL  index for TORCH_SPEC only. Empty: PyPI, whose x86_64 torch is the CUDA
#                    build (several GB; the receiver then decodes on a GPU when given one).
#                    https://download.pytorch.org/whl/cpu: the CPU build (~200 MB wheel).
#   LOCAL_PACKAGES   1 (default): use deploy/local/ (see its README): *.whl there are
#                    preferred by pip (e.g. a torch CPU wheel when the PyTorch index is out of
#                    reach) and deploy/local/ca.crt, if present, is the CA bundle pip trusts
#                    (hosts behind a TLS-inspecting proxy). 0: ignore it (the CUDA variant).
#   PIP_INDEX_URL    optional PyPI mirror.
# deploy/local/ is read by the first stage only; nothing of it reaches the final image.
#
# Weights: the shipped weights/ are baked in at /app/weights (SEMCOM_WEIGHTS); mount a
# folder over /app/weights to serve others without rebuilding.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=
ARG LOCAL_PACKAGES=1
ARG PIP_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY deploy/local/ /tmp/local/
# A virtualenv keeps pip away from a distro Python (PEP 668) when BASE_IMAGE is a local Debian.
RUN set -eu; \
    if [ "$LOCAL_PACKAGES" = 1 ]; then \
        export PIP_FIND_LINKS=/tmp/local; \
        if [ -f /tmp/local/ca.crt ]; then export PIP_CERT=/tmp/local/ca.crt; fi; \
    fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install "setuptools>=68"; \
    /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
# The other dependencies (cached until pyproject.toml changes): a stub project, installed then dropped.
WORKDIR /build
COPY pyproject.toml ./
RUN set -eu; \
    if [ "$LOCAL_PACKAGES" = 1 ] && [ -f /tmp/local/ca.crt ]; then export PIP_CERT=/tmp/local/ca.crt; fi; \
    mkdir -p shared && touch shared/__init__.py README.md; \
    /opt/venv/bin/pip install . && /opt/venv/bin/pip uninstall -y semcom; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY semcom_cli/ semcom_cli/
COPY transmitter/ transmitter/
COPY channel_emulator/ channel_emulator/
COPY receiver/ receiver/
COPY weights/ weights/
# semcom eval in the image (a Kubernetes Indexed Job, deploy/kubernetes/eval/) lists images
# with training.data; samples/ is the default image set of semcom demo and semcom eval.
COPY training/ training/
COPY samples/ samples/
# Editable, so shared.config's REPO_ROOT is /app and the default weights path holds.
# --no-build-isolation: setuptools comes from the venv, nothing is fetched here.
RUN pip install --no-deps --no-build-isolation -e . \
 && useradd --create-home --uid 10001 --user-group semcom

USER semcom
ENV SEMCOM_BIND_HOST=0.0.0.0 \
    SEMCOM_PLAINTEXT=1 \
    SEMCOM_WEIGHTS=/app/weights/rate_adaptive.safetensors \
    SEMCOM_DEVICE=auto

# gRPC: transmitter 50051, channel emulator 50052, receiver 50053; /metrics 9101-9103.
EXPOSE 50051 50052 50053 9101 9102 9103

# SEMCOM_SERVICE picks the service the default command runs and the port the healthcheck
# asks (compose passes the command and healthcheck explicitly).
ENV SEMCOM_SERVICE=transmitter
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD case "$SEMCOM_SERVICE" in transmitter) p=50051;; channel_emulator) p=50052;; *) p=50053;; esac; \
        semcom health --target "127.0.0.1:$p" || exit 1
CMD ["sh", "-c", "exec python -m \"$SEMCOM_SERVICE\""]
