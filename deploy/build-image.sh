#!/usr/bin/env bash
# Builds an image on a machine whose containers reach Debian's mirror but no registry and no Python
# package index (what `make image` runs): starts dockerd if needed (deploy/dockerd.sh), makes the
# debootstrap base (deploy/base-image.sh), fills the wheelhouse on the host (deploy/wheelhouse.sh) and
# builds from it with `--no-index`.
#
#   deploy/build-image.sh cpu     # -> lic:cpu            (Dockerfile, target cpu)
#   deploy/build-image.sh redis   # -> lic-redis:bookworm (deploy/redis.Dockerfile, Debian's redis-server)
#   deploy/build-image.sh gpu     # -> lic:gpu            (target gpu; GPU_BASE must be an image the engine
#                                 #    holds: the CUDA base cannot be pulled here. GPU_BASE=lic-base:bookworm
#                                 #    builds every step after FROM, without CUDA: lic:gpu-check)
# BASE (default lic-base:bookworm) names the base of the CPU and Redis images.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-cpu}
BASE=${BASE:-lic-base:bookworm}
deploy/dockerd.sh
if [ "$BASE" = lic-base:bookworm ] || [ "${GPU_BASE:-}" = lic-base:bookworm ]; then deploy/base-image.sh; fi
offline=(--build-arg PIP_OFFLINE=1)
case $kind in
  cpu)
    deploy/wheelhouse.sh cpu
    tag=lic:cpu
    docker build --quiet --build-arg BASE="$BASE" "${offline[@]}" --target cpu -t $tag . >/dev/null ;;
  gpu)
    GPU_BASE=${GPU_BASE:-nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04}
    tag=lic:gpu; [ "$GPU_BASE" = lic-base:bookworm ] && tag=lic:gpu-check
    docker image inspect "$GPU_BASE" >/dev/null 2>&1 || { echo "the GPU base $GPU_BASE is not in the engine and cannot be pulled without a registry (GPU_BASE=lic-base:bookworm checks the rest)" >&2; exit 1; }
    deploy/wheelhouse.sh gpu
    docker build --quiet --build-arg BASE="$BASE" --build-arg GPU_BASE="$GPU_BASE" "${offline[@]}" --target gpu -t $tag . >/dev/null ;;
  redis)
    tag=lic-redis:bookworm
    docker build --quiet --build-arg BASE="$BASE" -t $tag - <deploy/redis.Dockerfile >/dev/null ;;  # no context
  *) echo "usage: $0 cpu|gpu|redis" >&2; exit 2 ;;
esac
echo "$tag: $(docker image inspect -f '{{.Size}}' $tag | awk '{printf "%.0f MB (%.0f MiB)", $1/1e6, $1/2^20}')"
