#!/usr/bin/env bash
# Builds the base image for offline image builds: a minimal Debian from debootstrap, imported with
# `docker import`, for machines that reach Debian's mirror but no container registry.
#
#   deploy/base-image.sh            # -> lic-base:bookworm (kept if it already exists; FORCE=1 rebuilds)
#   SUITE=bookworm MIRROR=http://... TAG=lic-base:bookworm deploy/base-image.sh
#
# Debian bookworm's python3 is 3.11, the minor version the project is tested with (.venv, the lock
# files, python:3.11-slim-bookworm). The image holds the variant "minbase" plus python3, python3-venv
# (pip for the build stage), libgomp1 (OpenMP, for onnxruntime) and ca-certificates (TLS to a managed
# Redis), with security updates, without documentation, man pages or locales (as Debian's slim images).
# The Dockerfile's build stage and deploy/redis.Dockerfile start from it:
#   docker build --build-arg BASE=lic-base:bookworm ...
# MIRROR defaults to debootstrap's own; the host's apt sources (with its security and updates suites)
# are copied into the image when the host runs the same suite. Needs root, debootstrap and dockerd
# (deploy/dockerd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${SUITE:-bookworm}
TAG=${TAG:-lic-base:$SUITE}
MIRROR=${MIRROR:-}
PACKAGES="python3 python3-venv libgomp1 ca-certificates"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

if [ -z "${FORCE:-}" ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG exists (FORCE=1 rebuilds it)"; exit 0
fi
if ! command -v debootstrap >/dev/null; then
  $SUDO apt-get install -y -qq debootstrap >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq debootstrap >/dev/null; }
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/lic-rootfs.XXXXXX")
chmod 755 "$root"  # apt's sandbox user must read its downloads
log=$root.log
cleanup() { $SUDO umount "$root/proc" 2>/dev/null || true; $SUDO rm -rf "$root" "$log"; }
trap cleanup EXIT

echo "debootstrap $SUITE (minbase) into $root" >&2
$SUDO debootstrap --variant=minbase "$SUITE" "$root" $MIRROR >"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }

# As Debian's slim images: no documentation, man pages or translations from here on.
$SUDO tee "$root/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
$SUDO tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
CFG
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = "$SUITE" ] && [ -z "$MIRROR" ]; then
  # the host's sources: the same mirror, plus its -updates and -security suites
  $SUDO rm -f "$root/etc/apt/sources.list"
  [ -f /etc/apt/sources.list ] && $SUDO cp /etc/apt/sources.list "$root/etc/apt/sources.list"
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && grep -q debian "$f" && $SUDO cp "$f" "$root/etc/apt/sources.list.d/"
  done
fi
$SUDO mount -t proc proc "$root/proc"
$SUDO chroot "$root" /bin/sh -ec "
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get upgrade -y -qq
  apt-get install -y -qq $PACKAGES
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /var/cache/debconf/*-old /usr/share/doc/*/changelog* /usr/share/man/* /usr/share/locale/*
" >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
$SUDO umount "$root/proc"
python=$($SUDO chroot "$root" python3 --version)

echo "docker import -> $TAG ($python)" >&2
$SUDO tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase $SUITE + $PACKAGES ($python)" - "$TAG" >/dev/null
docker image ls "$TAG"
