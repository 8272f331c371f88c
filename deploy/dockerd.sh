#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when dockerd is missing, and starts
# dockerd in the background when `docker info` fails, then waits for it (up to 60 s). Idempotent: with
# an engine already running it does nothing. The daemon's log goes to build/dockerd.log.
#
#   deploy/dockerd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq docker.io >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq docker.io >/dev/null; }
fi
mkdir -p build
echo "starting dockerd (log: build/dockerd.log)" >&2
$SUDO nohup dockerd >build/dockerd.log 2>&1 </dev/null &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; see build/dockerd.log" >&2
tail -20 build/dockerd.log >&2
exit 1
