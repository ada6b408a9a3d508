#!/usr/bin/env bash
# The whole test suite, as CI runs it (after `scripts/setup-host.sh --test`):
#   1. tool setup (pinned Python venvs for the generated client and the fuzzer, the TS client's deps)
#   2. type check, and the OpenAPI drift check + validator
#   3. every node:test file against the real Docker engine
#   4. the Airflow DAG tests with real Airflow against a live Gantry
#   5. schemathesis fuzzing of a live Gantry from the committed document
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-openapi.sh setup
npx tsc -p tsconfig.json --noEmit
bash scripts/ci-openapi.sh check
npm run -s test:node
bash scripts/airflow-test.sh
bash scripts/airflow-compose-check.sh
bash scripts/ci-openapi.sh fuzz
