#!/usr/bin/env bash
# The whole test suite, on its own on a fresh Debian host (as root), as CI runs it:
#   1. host setup (scripts/setup-host.sh --test): Docker engine, test image,
#      registry, htpasswd, docker-compose, debootstrap, Chromium, Python venv support, npm deps
#   2. tool setup (pinned Python venvs for the generated client and the fuzzer, the TS client's deps)
#   3. type check, lint (Biome; dependency-cruiser's layer rules), and the OpenAPI drift check + validator
#   4. every node:test file against the real Docker engine, then a check that
#      they left nothing running (scripts/test-leftovers.sh)
#   5. the Airflow DAG tests with real Airflow (its pinned venv) against a live Gantry
#   6. static checks of the compose deployment, then the compose stack itself
#      built and started, gpu_test run through it (scripts/compose-e2e.sh)
#   7. schemathesis fuzzing of a live Gantry from the committed document
# Every setup step skips what is already in place (only the Airflow provider is
# reinstalled from this tree on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh --test
bash scripts/ci-openapi.sh setup
npx tsc -p tsconfig.json --noEmit
npm run -s lint
bash scripts/ci-openapi.sh check
# The leftover check runs whether the suite passed or not: a failing test is
# the likeliest to leave a container, engine, cluster or Gantry behind.
# What was there before (an earlier run on this host, killed mid-way) is not this run's to answer for.
before=$(mktemp)
bash scripts/test-leftovers.sh --snapshot >"$before"
suite=0
npm run -s test:node || suite=$?
bash scripts/test-leftovers.sh --since "$before"
[ "$suite" -eq 0 ] || exit "$suite"
bash scripts/airflow-test.sh
bash scripts/airflow-compose-check.sh
bash scripts/compose-e2e.sh
bash scripts/ci-openapi.sh fuzz
