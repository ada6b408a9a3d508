#!/usr/bin/env bash
# Fuzz a live Gantry from its committed OpenAPI document with schemathesis.
#
#   bash scripts/fuzz.sh            (after `bash scripts/ci-openapi.sh setup`)
#
# Starts Gantry on a free loopback port against the local Docker engine
# (containers use network "none"; nothing leaves this machine), runs every
# schemathesis phase with a bounded number of examples, then checks that only
# accepted submissions left jobs or containers behind (tools/fuzz/verify.py).
# Fails on any schemathesis failure or violation.
#
# Knobs: FUZZ_MAX_EXAMPLES (default 100 per operation), FUZZ_SEED (default fixed,
# so CI is reproducible; set another to explore), FUZZ_WORKERS (default 1),
# FUZZ_OUT (where logs and the JUnit report go; default a temp dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=tools/fuzz/.venv
if [ ! -x "$VENV/bin/st" ]; then
  echo "fuzz: schemathesis is not installed; run \`bash scripts/ci-openapi.sh setup\`" >&2
  exit 2
fi
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-100}
SEED=${FUZZ_SEED:-20261128}
WORKERS=${FUZZ_WORKERS:-1}
OUT=${FUZZ_OUT:-$(mktemp -d -t gantry-fuzz-XXXXXX)}
mkdir -p "$OUT"
DATA=$(mktemp -d -t gantry-fuzz-data-XXXXXX)
RUN_ID=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
TOKEN="fuzz-admin-token-$RUN_ID-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# The token's owner is unique to this run, and Gantry labels every container
# with its job's owner (dev.gantry.owner): this run's containers are told apart
# from those of anything else using the same engine at the same time.
OWNER="fuzz-$RUN_ID"
TOKENS_FILE="$OUT/tokens.json"
printf '[{"owner":"%s","scopes":["admin"],"sha256":"%s"}]\n' "$OWNER" "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)" > "$TOKENS_FILE"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
LEDGER="$OUT/ledger.jsonl"
: > "$LEDGER"

# A strict but wide configuration: any image name passes the allowlist, and
# the pull policy "never" means a name that is not on this host fails the job
# without any pull; short timeouts so every accepted job ends; containers kept
# so that the ones created can be counted. Two static GPUs with the `env`
# driver (no device is touched) let GPU requests reach the allocator. Its run
# folders are its own, never the host's /run/gantry (another Gantry's, which
# this one would rightly refuse to share).
env GANTRY_DATA_DIR="$DATA" GANTRY_SECRETS_RUN_DIR="$DATA/secret-run" GANTRY_NOTICE_DIR="$DATA/notices" GANTRY_TOKENS_FILE="$TOKENS_FILE" GANTRY_HOST=127.0.0.1 GANTRY_PORT="$PORT" \
  GANTRY_GPUS="GPU-fuzz-$RUN_ID-0:81920,GPU-fuzz-$RUN_ID-1:81920" GANTRY_GPU_DRIVER=env GANTRY_LOG_LEVEL=warn GANTRY_IMAGE_ALLOWLIST='**' GANTRY_PULL_POLICY=never \
  GANTRY_ALLOWED_PULL_POLICIES=never GANTRY_NETWORKS=none GANTRY_KEEP_CONTAINERS=true \
  GANTRY_DEFAULT_TIMEOUT_SECONDS=10 GANTRY_MAX_TIMEOUT_SECONDS=20 GANTRY_STOP_GRACE_SECONDS=1 \
  GANTRY_DEFAULT_MEMORY_MIB=64 GANTRY_MAX_MEMORY_MIB=256 GANTRY_MAX_CPUS=1 GANTRY_MAX_RUNNING=4 \
  GANTRY_SSE_HEARTBEAT_SECONDS=5 GANTRY_LOG_MAX_BYTES=1048576 \
  node --import tsx src/main.ts > "$OUT/gantry.log" 2>&1 &
GANTRY_PID=$!

cleanup() {
  kill "$GANTRY_PID" 2>/dev/null || true
  wait "$GANTRY_PID" 2>/dev/null || true
  # Remove only the containers this run created (kept for the count above).
  docker ps -a -q --no-trunc --filter "label=dev.gantry.owner=$OWNER" | xargs -r docker rm -f >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 150); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$GANTRY_PID" 2>/dev/null || { echo "fuzz: gantry exited early:" >&2; cat "$OUT/gantry.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$URL/readyz" >/dev/null

echo "fuzz: schemathesis against $URL (max examples $MAX_EXAMPLES per operation, seed $SEED, workers $WORKERS)"
set +e
SCHEMATHESIS_HOOKS="$ROOT/tools/fuzz/hooks.py" GANTRY_FUZZ_LEDGER="$LEDGER" \
  "$VENV/bin/st" run "$ROOT/openapi/openapi.json" \
  --url "$URL" \
  --header "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --workers "$WORKERS" \
  --request-timeout 40 \
  --generation-database none \
  --report junit --report-junit-path "$OUT/schemathesis-junit.xml" \
  --no-color 2>&1 | tee "$OUT/schemathesis.log"
ST_RC=${PIPESTATUS[0]}
set -e

"$VENV/bin/python" tools/fuzz/verify.py "$URL" "$TOKEN" "$LEDGER" "$OWNER" | tee "$OUT/verify.log"
VERIFY_RC=${PIPESTATUS[0]}

OPS=$(grep -oE 'Tested: [0-9]+' "$OUT/schemathesis.log" | grep -oE '[0-9]+' | tail -1 || true)
CASES=$(grep -oE '[0-9]+ generated' "$OUT/schemathesis.log" | grep -oE '[0-9]+' | tail -1 || true)
FAILS=$(grep -oE '[0-9]+ (unique )?failures?' "$OUT/schemathesis.log" | grep -oE '^[0-9]+' | tail -1 || true)
echo "fuzz figures: operations=${OPS:-?} test_cases=${CASES:-?} schemathesis_failures=${FAILS:-0} schemathesis_exit=$ST_RC verify_exit=$VERIFY_RC (logs in $OUT)"
if [ "$ST_RC" -ne 0 ] || [ "$VERIFY_RC" -ne 0 ]; then
  echo "fuzz: FAILED" >&2
  grep -E '"level":(50|60)' "$OUT/gantry.log" | head -20 >&2 || true
  exit 1
fi
echo "fuzz: passed"
