#!/usr/bin/env bash
# Installs and starts what Gantry needs on a Debian host: a Docker engine
# (bridge and iptables off), the local test image and npm dependencies.
# With --test, also what the test suite needs: a registry and htpasswd for the
# pull tests, docker-compose and debootstrap (the compose stack test builds
# its base images from Debian packages), Chromium for the
# UI tests, curl, Pythons that can make venvs (python3 for the client and
# fuzzer venvs, python3.11 for Airflow's pins), PostgreSQL (the shared
# store's tests start throwaway clusters), openssl (the TLS tests make
# their certificates) and Toxiproxy (the fleet's liveness tests cut, freeze
# and slow one node's link to PostgreSQL through it), built from its pinned
# Go module into /usr/local/bin/toxiproxy-server.
# Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

wanted=(dockerd:docker.io busybox:busybox-static)
if [ "${1:-}" = "--test" ]; then
  wanted+=(docker-registry:docker-registry htpasswd:apache2-utils docker-compose:docker-compose debootstrap:debootstrap chromium:chromium curl:curl openssl:openssl)
fi
need=()
for bin in "${wanted[@]}"; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
if [ "${1:-}" = "--test" ]; then
  # A venv needs ensurepip, which Debian ships apart from the interpreter;
  # the package brings the interpreter too where it is missing.
  for py in python3:python3-venv python3.11:python3.11-venv; do
    "${py%%:*}" -m ensurepip --version >/dev/null 2>&1 || need+=("${py##*:}")
  done
  # PostgreSQL's server binaries, for the throwaway clusters of the shared-store tests (test/helpers/postgres.ts).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # Go, to build Toxiproxy below (an installed toolchain in /usr/local/go will do).
  command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need+=(golang-go)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${1:-}" = "--test" ]; then
  toxiproxy_version=2.5.0
  if ! /usr/local/bin/toxiproxy-server -version 2>/dev/null | grep -qx "toxiproxy-server version ${toxiproxy_version}"; then
    echo "building toxiproxy-server ${toxiproxy_version}"
    go=$(command -v go || echo /usr/local/go/bin/go)
    gobin=$(mktemp -d)
    GOBIN="$gobin" "$go" install -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${toxiproxy_version}" \
      "github.com/Shopify/toxiproxy/v2/cmd/server@v${toxiproxy_version}"
    install -m 0755 "$gobin/server" /usr/local/bin/toxiproxy-server
    rm -rf "$gobin"
  fi
fi

bash scripts/start-dockerd.sh
bash scripts/build-test-image.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
