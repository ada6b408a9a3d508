#!/usr/bin/env bash
# Run by scripts/test.sh once the node:test suite has ended, passed or failed:
# fails, naming each one, if the tests left behind anything that outlives them:
#   - containers with Gantry's label (dev.gantry.managed=true, MANAGED_LABELS in
#     src/runtime/runtime.ts) on the main engine, with their owner and job;
#   - private Docker engines (test/helpers/dockerd.ts, under /tmp/gd-*);
#   - throwaway PostgreSQL clusters (test/helpers/postgres.ts, /tmp/gantry-pg-*);
#   - Gantry processes of this tree (test/helpers/gantry.ts: node … src/main.ts).
# Meant for a host where nothing else runs Gantry or its tests (CI): on a
# shared host it also names what other runs have under way.
#   --snapshot     prints what is there now (one line each), to pass to --since
#   --since FILE   leaves out what FILE lists: what was there before the suite ran
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests' main engine is GANTRY_DOCKER_SOCKET when set (test/helpers/gantry.ts).
if [ -n "${GANTRY_DOCKER_SOCKET:-}" ]; then export DOCKER_HOST="unix://$GANTRY_DOCKER_SOCKET"; fi

containers=$(docker ps --all --no-trunc --filter label=dev.gantry.managed=true \
  --format '{{.Names}}  owner={{.Label "dev.gantry.owner"}}  job={{.Label "dev.gantry.job-id"}}  {{.Status}}  {{.Command}}')
# The patterns come through the environment, not the command line, so the
# scan never finds itself.
processes=$(ps -eo pid=,args= | GANTRY_MAIN="$PWD/src/main.ts" awk '
  ($2 ~ /(^|\/)dockerd$/ && index($0, "unix:///tmp/gd-")) ||
  ($2 ~ /(^|\/)(postgres|postmaster)$/ && index($0, "/tmp/gantry-pg-")) ||
  index($0, ENVIRON["GANTRY_MAIN"])')

if [ "${1:-}" = --snapshot ]; then
  printf '%s\n' "$containers" "$processes" | sed '/^$/d'
  exit 0
fi
if [ "${1:-}" = --since ]; then
  # Only what the suite left: a container (by name) or process (by pid) already there before it ran is not its own.
  since() { awk 'NR == FNR { seen[$1] = 1; next } !($1 in seen)' "$1" -; }
  containers=$(since "$2" <<<"$containers")
  processes=$(since "$2" <<<"$processes")
fi
if [ -z "$containers" ] && [ -z "$processes" ]; then
  echo "test-leftovers: no container, engine, cluster or Gantry left behind"
  exit 0
fi
if [ -n "$containers" ]; then
  echo "test-leftovers: Gantry-labelled containers left on the main engine:" >&2
  sed 's/^/  /' <<<"$containers" >&2
fi
if [ -n "$processes" ]; then
  echo "test-leftovers: processes left running (private dockerd, gantry-pg cluster, Gantry):" >&2
  sed 's/^/  /' <<<"$processes" >&2
fi
exit 1
