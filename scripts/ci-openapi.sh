#!/usr/bin/env bash
# OpenAPI tooling for CI and developers.
#
#   bash scripts/ci-openapi.sh              setup, check, fuzz
#   bash scripts/ci-openapi.sh setup        Python venvs (pinned), tools/ts-client deps, Python client
#   bash scripts/ci-openapi.sh check        drift: the committed document and TS types vs the code; validator
#   bash scripts/ci-openapi.sh fuzz         schemathesis against a live Gantry (scripts/fuzz.sh)
#
# `setup` must run before the node:test files (test/clients.test.ts uses what it
# installs); scripts/test.sh runs it first.
# Installs are skipped when their pinned inputs have not changed since the last run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}

stamp_ok() { # stamp_ok DIR INPUT... : DIR/.stamp holds the hash of the inputs
  local want
  want=$(cat "${@:2}" | sha256sum | cut -d' ' -f1)
  [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$want" ]
}
stamp_write() {
  cat "${@:2}" | sha256sum | cut -d' ' -f1 > "$1/.stamp"
}

venv() { # venv DIR REQUIREMENTS
  local dir=$1 req=$2
  if stamp_ok "$dir" "$req" 2>/dev/null && [ -x "$dir/bin/python" ]; then
    echo "openapi setup: $dir is up to date"
    return
  fi
  echo "openapi setup: creating $dir from $req"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  stamp_write "$dir" "$req"
}

setup() {
  venv tools/py-client/.venv tools/py-client/requirements.txt
  venv tools/fuzz/.venv tools/fuzz/requirements.txt
  if stamp_ok tools/ts-client/node_modules tools/ts-client/package-lock.json 2>/dev/null; then
    echo "openapi setup: tools/ts-client/node_modules is up to date"
  else
    echo "openapi setup: npm ci in tools/ts-client"
    npm ci --prefix tools/ts-client --no-audit --no-fund --loglevel=error
    stamp_write tools/ts-client/node_modules tools/ts-client/package-lock.json
  fi
  # The Python client, generated from the committed document (ignored; the
  # tests generate their own copy too).
  rm -rf tools/py-client/build
  mkdir -p tools/py-client/build
  tools/py-client/.venv/bin/openapi-python-client generate --path openapi/openapi.json \
    --config tools/py-client/config.yml --output-path tools/py-client/build/gantry_client --meta none >/dev/null
  echo "openapi setup: generated tools/py-client/build/gantry_client"
}

check() {
  npm run -s openapi:check
  npm run -s --prefix tools/ts-client check
  npm run -s --prefix tools/ts-client typecheck
  node_modules/.bin/validate-api openapi/openapi.json
}

fuzz() {
  bash scripts/start-dockerd.sh
  bash scripts/build-test-image.sh
  bash scripts/fuzz.sh
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(setup check fuzz)
for step in "${steps[@]}"; do
  case "$step" in
    setup | check | fuzz) "$step" ;;
    *) echo "usage: $0 [setup] [check] [fuzz]" >&2; exit 2 ;;
  esac
done
