#!/bin/sh
# Gantry container entrypoint.
# GANTRY_AIRFLOW_TOKEN (optional): a token for Airflow, turned here into a
# tokens file entry (owner "airflow", scopes submit/read/cancel; only its
# SHA-256 is written), so .env can hold the plain token that Airflow's
# connection sends while Gantry keeps only the hash.
set -eu
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
unset GANTRY_AIRFLOW_TOKEN
exec "$@"
