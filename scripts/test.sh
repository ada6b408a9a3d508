#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup-host.sh):
# type check, then every node:test file against the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json --noEmit
npm run test:node
