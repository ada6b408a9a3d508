#!/bin/sh
# Writes the two secret files docker-compose.yaml mounts as Docker secrets,
# from one fresh token (or the one already in secrets/gantry_airflow_token):
#   secrets/gantry_airflow_token      the token, for Gantry (hashed into its tokens file at start)
#   secrets/airflow_connections.json  Airflow's `gantry` connection (with ui_url), read by
#                                     Airflow's local-filesystem secrets backend
# The connection is of type http: the stock HttpOperator takes the hook its
# connection type names (a `gantry`-type connection would hand it GantryHook),
# and the provider reads an http connection the same way (token, ui_url).
# The folder is 0700: no other user of the host reads them; inside the
# containers the files are read-only mounts under /run/secrets, and no
# container's environment holds the token.
#
#   sh docker/make-secrets.sh [ui_url]    # default ui_url http://localhost:8420/ui/
set -eu
cd "$(dirname "$0")/.."
UI_URL=${1:-http://localhost:8420/ui/}
umask 077
mkdir -p secrets
chmod 0700 secrets
if [ ! -s secrets/gantry_airflow_token ]; then
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >secrets/gantry_airflow_token
fi
TOKEN=$(cat secrets/gantry_airflow_token)
printf '{"gantry": {"conn_type": "http", "host": "gantry", "port": 8420, "extra": {"Authorization": "Bearer %s", "ui_url": "%s"}}}\n' \
  "$TOKEN" "$UI_URL" >secrets/airflow_connections.json
# Read by the containers' own users (Gantry's `node`, Airflow's AIRFLOW_UID): the 0700 folder keeps the host's other users out.
chmod 0444 secrets/gantry_airflow_token secrets/airflow_connections.json
echo "wrote secrets/gantry_airflow_token and secrets/airflow_connections.json (ui_url $UI_URL)"
