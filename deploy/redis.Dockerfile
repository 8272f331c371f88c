# Redis for the tile cache, from Debian's redis-server package, for machines without a registry:
# the same debootstrap base as the lic image (deploy/base-image.sh), packages from Debian's mirror.
#   docker build --build-arg BASE=lic-base:bookworm -t lic-redis:bookworm - <deploy/redis.Dockerfile  (no context)
# Arguments after the image name are redis-server's (as with the official image); protected mode is
# off, as there, because the network policy decides who connects (deploy/k8s/base/networkpolicy.yaml).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["redis-server", "--protected-mode", "no"]
CMD ["--save", "", "--appendonly", "no"]
