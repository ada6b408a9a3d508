#!/usr/bin/env bash
# Start a Docker engine for development and CI if none answers yet.
# Bridge and iptables are off: test containers run with network "none" and
# this machine must never route container traffic anywhere.
set -euo pipefail
SOCK=${GANTRY_DOCKER_SOCKET:-/var/run/docker.sock}
if docker -H "unix://$SOCK" info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
mkdir -p /var/log
setsid dockerd --bridge=none --iptables=false --ip-masq=false -H "unix://$SOCK" >/var/log/gantry-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  docker -H "unix://$SOCK" info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not come up; see /var/log/gantry-dockerd.log" >&2
tail -20 /var/log/gantry-dockerd.log >&2
exit 1
