#!/usr/bin/env bash
# One command for a newcomer: set up this host (Docker engine, test image,
# npm dependencies), build Gantry, and run it in the foreground with the
# embedded defaults (127.0.0.1:8420, data in ./data, images local/*).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
npm run build --silent
exec npm start --silent
