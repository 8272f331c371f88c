# syntax=docker/dockerfile:1.7
# Two final targets built from the same pyproject.toml that `make run` installs:
#   docker build --target cpu -t lic:cpu .     slim CPU image (default)
#   docker build --target gpu -t lic:gpu .     NVIDIA CUDA runtime + onnxruntime-gpu
# Both: no torch, no compilers, non-root, models baked in, nothing written outside /tmp.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY models/__init__.py ./models/__init__.py
RUN pip install .

FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lic
COPY --from=build /opt/venv /opt/venv
COPY models/zoo /app/models/zoo
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LIC_MODEL_DIR=/app/models/zoo LIC_HOST=0.0.0.0 LIC_PORT=8000
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["lic", "serve"]

FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS gpu
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lic
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY models/__init__.py /src/models/__init__.py
# Same dependencies as the CPU image, with the CUDA build of onnxruntime in place of the CPU one.
RUN pip install '/src[gpu]' && pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps 'onnxruntime-gpu>=1.18' && rm -rf /src
COPY models/zoo /app/models/zoo
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LIC_MODEL_DIR=/app/models/zoo LIC_HOST=0.0.0.0 LIC_PORT=8000 LIC_DEVICE=cuda
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["lic", "serve"]

# `docker build .` without --target gives the CPU image.
FROM cpu
