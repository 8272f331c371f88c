# Images of the lic service: run time only (service/, models/zoo, the locked run-time packages; no
# torch, no tests, no compilers), non-root (uid 10001), nothing written outside /tmp.
#
# Online (a registry and the Python package index reachable):
#   docker build --target cpu -t lic:cpu .     python:3.11-slim-bookworm + onnxruntime (default target)
#   docker build --target gpu -t lic:gpu .     NVIDIA CUDA 13 + cuDNN 9 runtime + onnxruntime-gpu
# Offline (only Debian's mirror reachable; what `make image` does, see deploy/README.md):
#   deploy/base-image.sh && deploy/wheelhouse.sh cpu
#   docker build --build-arg BASE=lic-base:bookworm --build-arg PIP_OFFLINE=1 --target cpu -t lic:cpu .
#
# Both kinds install the same files: the lock files (deploy/lock.sh) pin every package with its sha256
# hashes, and pip checks them whether they come from the index or from deploy/wheelhouse/, which is
# empty in an online build. This Dockerfile needs no BuildKit feature (Debian's docker.io builds it
# with the classic builder).

ARG BASE=python:3.11-slim-bookworm
ARG GPU_BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04

FROM ${BASE} AS build
ARG PIP_OFFLINE=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
COPY deploy/requirements.lock /src/deploy/requirements.lock
COPY deploy/wheelhouse /wheels
RUN /opt/venv/bin/pip install --quiet --require-hashes --only-binary=:all: --find-links /wheels ${PIP_OFFLINE:+--no-index} \
      -r /src/deploy/requirements.lock
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY models/__init__.py /src/models/__init__.py
# The project itself with the locked setuptools; then the installers go (nothing installs at run time),
# and so do the packages' own test suites and onnx's test data (34 MB).
RUN /opt/venv/bin/pip install --quiet --no-deps --no-build-isolation --no-index /src \
    && /opt/venv/bin/pip uninstall --quiet -y setuptools pip \
    && cd /opt/venv/lib/python3*/site-packages && rm -rf onnx/backend/test/data \
    && find numpy -depth -type d -name tests -exec rm -rf {} +

FROM ${BASE} AS cpu
RUN echo 'lic:x:10001:10001:lic:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'lic:x:10001:' >> /etc/group
COPY --from=build /opt/venv /opt/venv
COPY models/zoo /app/models/zoo
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LIC_MODEL_DIR=/app/models/zoo LIC_HOST=0.0.0.0 LIC_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["lic", "serve"]

# GPU: the CUDA runtime base with the distribution's Python 3.11 and deploy/requirements-gpu.lock
# (onnxruntime-gpu in place of onnxruntime). The onnxruntime-gpu wheels on PyPI are built for CUDA 13 and
# cuDNN 9 (1.31.1 says "Require cuDNN 9.* and CUDA 13.*" when they are missing), hence the CUDA 13 base;
# the nodes need an NVIDIA driver of the 580 branch or newer. Offline, --build-arg GPU_BASE=... must name a CUDA base the
# engine already holds; with GPU_BASE=lic-base:bookworm the stage builds for a check, without CUDA.
FROM ${GPU_BASE} AS gpu-build
ARG PIP_OFFLINE=
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >/dev/null \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
COPY deploy/requirements-gpu.lock /src/deploy/requirements-gpu.lock
COPY deploy/wheelhouse /wheels
RUN /opt/venv/bin/pip install --quiet --require-hashes --only-binary=:all: --find-links /wheels ${PIP_OFFLINE:+--no-index} \
      -r /src/deploy/requirements-gpu.lock
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY models/__init__.py /src/models/__init__.py
RUN /opt/venv/bin/pip install --quiet --no-deps --no-build-isolation --no-index /src \
    && /opt/venv/bin/pip uninstall --quiet -y setuptools pip \
    && cd /opt/venv/lib/python3*/site-packages && rm -rf onnx/backend/test/data \
    && find numpy -depth -type d -name tests -exec rm -rf {} +

FROM ${GPU_BASE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3.11 libgomp1 >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && echo 'lic:x:10001:10001:lic:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'lic:x:10001:' >> /etc/group
COPY --from=gpu-build /opt/venv /opt/venv
COPY models/zoo /app/models/zoo
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LIC_MODEL_DIR=/app/models/zoo LIC_HOST=0.0.0.0 LIC_PORT=8000 LIC_DEVICE=cuda
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["lic", "serve"]

# `docker build .` without --target gives the CPU image.
FROM cpu
