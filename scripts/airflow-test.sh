#!/usr/bin/env bash
# Airflow integration tests: real `airflow dags test` runs of the example
# DAGs and the provider against a live Gantry on the real Docker engine; before
# them, the provider's unit tests (airflow/provider/tests, a local stub instead of
# Gantry) on the pinned Airflow and again on the oldest versions the provider
# declares (the floor venv).
#
#   GANTRY_URL=http://127.0.0.1:8420 GANTRY_TOKEN=... scripts/airflow-test.sh [pytest args]
#
# With GANTRY_URL unset, the script starts its own Gantry from this checkout on
# 127.0.0.1:${GANTRY_TEST_PORT:-8421} (temp data dir, a static fake GPU with the
# `env` driver so GPU requests work on CPU-only hosts, a mount allowlist for the
# batch_inference volumes) and stops it afterwards.
#
# Optional: GANTRY_TEST_MOUNT_ROOT (a folder inside the allowlist of an external
# Gantry; without it the volume tests are skipped), GANTRY_TEST_IMAGE
# (default local/busybox:latest), AIRFLOW_VENV (default airflow/.venv; made, and made
# anew when the pins change, by this script), AIRFLOW_PYTHON (default python3.11, the
# Python that airflow/constraints.txt was frozen on), AIRFLOW_FLOOR_VENV (default
# airflow/provider/.venv-floor, made from airflow/provider/requirements-floor.txt +
# constraints-floor.txt the same way), GANTRY_SKIP_FLOOR=1 (skip the floor run),
# AIRFLOW_FLOOR_PYTHON (the floor of the provider's requires-python, 3.10: default
# python3.10 on PATH or pyenv's; the floor venv is then made with it from
# constraints-floor-py310.txt; without one the floor run uses AIRFLOW_PYTHON and says so).
# The pytest args apply to the live tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${AIRFLOW_VENV:-$ROOT/airflow/.venv}
PY=${AIRFLOW_PYTHON:-python3.11}

# 1. Airflow, pinned (requirements + constraints, and pip itself), and the provider
#    from this tree. The venv is made anew whenever the pins change; its stamp (the
#    pins' hash) is written only once the install is complete, so a venv left half
#    made by an interrupted run is made anew too.
make_venv() { # venv requirements constraints [python]
  local venv=$1 py=${4:-$PY} pins
  pins=$( (cat "$2" "$3"; [ -z "${4:-}" ] || echo "$4") | sha256sum | cut -d' ' -f1)
  if [ ! -x "$venv/bin/airflow" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$pins" ]; then
    echo "airflow test: creating $venv with $py"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pip==26.3
    "$venv/bin/pip" install -q -r "$2" -c "$3"
    echo "$pins" > "$venv/.stamp"
  fi
}
install_provider() { # venv
  local build
  build=$(mktemp -d)
  tar -C airflow/provider --exclude=./.venv-floor --exclude=./build --exclude='*.egg-info' -cf - . | tar -xf - -C "$build"
  "$1/bin/pip" install -q --no-deps --force-reinstall "$build" >/dev/null
  rm -rf "$build"
}
make_venv "$VENV" airflow/requirements.txt airflow/constraints.txt
install_provider "$VENV"

# 1b. The provider's unit tests (no Gantry needed), on the pinned Airflow and at the floor.
#     They run from the tests folder so that the installed package, not the tree, is imported.
(cd airflow/provider/tests && "$VENV/bin/python" -m pytest . -q -p no:cacheprovider)
if [ "${GANTRY_SKIP_FLOOR:-}" != 1 ]; then
  FLOOR_VENV=${AIRFLOW_FLOOR_VENV:-$ROOT/airflow/provider/.venv-floor}
  # The first candidate that runs as Python 3.10 (a pyenv shim may exist and refuse to run).
  FLOOR_PY=${AIRFLOW_FLOOR_PYTHON:-}
  if [ -z "$FLOOR_PY" ]; then
    for c in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python3.10; do
      if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then FLOOR_PY=$c; break; fi
    done
  fi
  if [ -n "$FLOOR_PY" ]; then
    make_venv "$FLOOR_VENV" airflow/provider/requirements-floor.txt airflow/provider/constraints-floor-py310.txt "$FLOOR_PY"
  else
    echo "airflow test: no Python 3.10 (requires-python's floor) here: the floor run uses $PY"
    make_venv "$FLOOR_VENV" airflow/provider/requirements-floor.txt airflow/provider/constraints-floor.txt
  fi
  install_provider "$FLOOR_VENV"
  echo "airflow test: provider unit tests at the floor ($("$FLOOR_VENV/bin/python" --version) $("$FLOOR_VENV/bin/pip" list 2>/dev/null | grep -E '^(apache-airflow|aiohttp|requests) ' | tr -s ' ' | tr '\n' ' '))"
  (cd airflow/provider/tests && "$FLOOR_VENV/bin/python" -m pytest . -q -p no:cacheprovider)
fi

# 2. Gantry.
STARTED_PID=
cleanup() {
  if [ -n "$STARTED_PID" ]; then
    kill "$STARTED_PID" 2>/dev/null || true
    wait "$STARTED_PID" 2>/dev/null || true
  fi
  if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
if [ -z "${GANTRY_URL:-}" ]; then
  bash scripts/build-test-image.sh >/dev/null
  WORK=$(mktemp -d /tmp/gantry-airflow-test.XXXXXX)
  mkdir -p "$WORK/mounts" && chmod 777 "$WORK/mounts"
  PORT=${GANTRY_TEST_PORT:-8421}
  export GANTRY_TOKEN=${GANTRY_TOKEN:-airflow-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
  # One secret the admin token's owner may use, for the provider's secrets test.
  export GANTRY_TEST_SECRET_NAME=airflow-test-secret
  export GANTRY_TEST_SECRET_VALUE=secret-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -m 0700 "$WORK/secrets"
  printf '%s\n' "$GANTRY_TEST_SECRET_VALUE" >"$WORK/secrets/$GANTRY_TEST_SECRET_NAME"
  echo "{\"$GANTRY_TEST_SECRET_NAME\": [\"admin\"]}" >"$WORK/secrets/.owners.json"
  GANTRY_DATA_DIR="$WORK/data" GANTRY_ADMIN_TOKEN="$GANTRY_TOKEN" GANTRY_HOST=127.0.0.1 GANTRY_PORT="$PORT" \
  GANTRY_METRICS_PORT=0 GANTRY_GPUS="GPU-a1f1a1f1-0000-4000-8000-000000000001:16384" GANTRY_GPU_DRIVER=env \
  GANTRY_MOUNT_ALLOWLIST="$WORK/mounts" GANTRY_STOP_GRACE_SECONDS=2 GANTRY_LOG_LEVEL=warn \
  GANTRY_SECRETS_DIR="$WORK/secrets" GANTRY_SECRETS_RUN_DIR="$WORK/secret-run" GANTRY_NOTICE_DIR="$WORK/notices" \
    node --import tsx src/main.ts >"$WORK/gantry.log" 2>&1 &
  STARTED_PID=$!
  export GANTRY_URL="http://127.0.0.1:$PORT"
  export GANTRY_TEST_MOUNT_ROOT="$WORK/mounts"
  for _ in $(seq 1 120); do
    if curl -fs "$GANTRY_URL/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$STARTED_PID" 2>/dev/null; then cat "$WORK/gantry.log"; echo "Gantry did not start" >&2; exit 1; fi
    sleep 0.5
  done
  curl -fs "$GANTRY_URL/healthz" >/dev/null || { cat "$WORK/gantry.log"; echo "Gantry is not healthy" >&2; exit 1; }
  echo "started Gantry at $GANTRY_URL (log: $WORK/gantry.log)"
fi
: "${GANTRY_TOKEN:?GANTRY_TOKEN is required with GANTRY_URL}"
export GANTRY_URL GANTRY_TOKEN

# 3. The tests (each DAG run is `airflow dags test` in a subprocess with its own AIRFLOW_HOME).
cd airflow
"$VENV/bin/python" -m pytest tests -v -p no:cacheprovider "$@"
