#!/bin/sh
# Gantry container entrypoint.
# GANTRY_AIRFLOW_TOKEN, or GANTRY_AIRFLOW_TOKEN_FILE naming a file that holds
# it (a Docker secret) (optional): a token for Airflow, turned here into a
# tokens file entry (owner "airflow", scopes submit/read/cancel; only its
# SHA-256 is written), so Gantry keeps only the hash of the plain token that
# Airflow's connection sends.
set -eu
if [ -z "${GANTRY_AIRFLOW_TOKEN:-}" ] && [ -n "${GANTRY_AIRFLOW_TOKEN_FILE:-}" ]; then
  GANTRY_AIRFLOW_TOKEN=$(cat "$GANTRY_AIRFLOW_TOKEN_FILE")
  export GANTRY_AIRFLOW_TOKEN
fi
if [ -n "${GANTRY_AIRFLOW_TOKEN:-}" ] && [ -z "${GANTRY_TOKENS_FILE:-}" ]; then
  tokens_file="${GANTRY_DATA_DIR:-/var/lib/gantry}/tokens.json"
  node -e '
    const crypto = require("node:crypto");
    const fs = require("node:fs");
    const sha256 = crypto.createHash("sha256").update(process.env.GANTRY_AIRFLOW_TOKEN, "utf8").digest("hex");
    const entries = [{ owner: process.env.GANTRY_AIRFLOW_OWNER || "airflow", scopes: ["submit", "read", "cancel"], sha256 }];
    fs.writeFileSync(process.argv[1], JSON.stringify(entries, null, 2) + "\n", { mode: 0o600 });
  ' "$tokens_file"
  export GANTRY_TOKENS_FILE="$tokens_file"
fi
unset GANTRY_AIRFLOW_TOKEN GANTRY_AIRFLOW_TOKEN_FILE
exec "$@"
