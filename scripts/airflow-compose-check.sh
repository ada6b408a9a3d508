#!/usr/bin/env bash
# Static checks of the Airflow + Gantry deployment files (no image can be pulled here):
#   1. docker-compose config accepts docker-compose.yaml with docker/.env.example,
#      and refuses it, naming the variable, when a secret is missing;
#   2. the resolved config: the Airflow 3 services, Gantry alone mounting the
#      Docker socket, AIRFLOW_CONN_GANTRY pointing at Gantry with the .env token,
#      Gantry set up for the NVIDIA toolkit, its data dir on a volume, the job volumes, no mount point
#      inside a read-only bind mount, no pull of an image from a namespace
#      nobody here owns, [operators] default_deferrable left off;
#   3. the Dockerfiles: multi-stage Gantry on a slim Node 26 base with a
#      HEALTHCHECK on /healthz:8420, Airflow installed against constraints,
#      the example job images and their files;
#   4. the batch-inference script run on its own sample data.
# scripts/compose-e2e.sh builds and runs the stack itself; these checks name
# the rule a change breaks, in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker-compose}
FILE=${COMPOSE_FILE_UNDER_TEST:-docker-compose.yaml}  # a variant can be checked, e.g. to see a check fail
PY=${PYTHON:-airflow/.venv/bin/python}
[ -x "$PY" ] || PY=python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== docker-compose config (with docker/.env.example)"
cp docker/.env.example "$TMP/env"
"$COMPOSE" --project-directory . --env-file "$TMP/env" -f "$FILE" config >"$TMP/resolved.yaml" \
  || fail "docker-compose config refused docker-compose.yaml"
# Profiles are resolved too (the job image service).
"$COMPOSE" --project-directory . --env-file "$TMP/env" -f "$FILE" --profile images config --services >"$TMP/services"
grep -qx gantry-nvidia-smi-check-image "$TMP/services" || fail "the images profile lacks the nvidia-smi-check image"

echo "== a missing secret is refused by name"
grep -v '^GANTRY_AIRFLOW_TOKEN=' docker/.env.example >"$TMP/env-missing"
if "$COMPOSE" --project-directory . --env-file "$TMP/env-missing" -f "$FILE" config >"$TMP/out" 2>&1; then
  fail "docker-compose config accepted a .env without GANTRY_AIRFLOW_TOKEN"
fi
grep -q "GANTRY_AIRFLOW_TOKEN" "$TMP/out" || { cat "$TMP/out"; fail "the error does not name GANTRY_AIRFLOW_TOKEN"; }

echo "== resolved services"
"$PY" - "$TMP/resolved.yaml" docker/.env.example <<'PYEOF'
import json
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
env_file = dict(
    line.split("=", 1) for line in open(sys.argv[2]).read().splitlines() if line and not line.startswith("#")
)
services = cfg["services"]
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


airflow = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
for name, command in airflow.items():
    svc = services.get(name)
    check(svc is not None, f"service {name} is missing")
    if svc:
        cmd = svc.get("command")
        cmd = " ".join(cmd) if isinstance(cmd, list) else cmd
        check(cmd == command, f"{name} runs {cmd!r}, expected {command!r}")
for name in ("postgres", "redis", "airflow-init", "gantry"):
    check(name in services, f"service {name} is missing")


def volume_sources(svc):
    for v in svc.get("volumes", []):
        yield (v.get("source"), v.get("target")) if isinstance(v, dict) else tuple(v.split(":")[:2])


# Only Gantry holds the Docker socket.
for name, svc in services.items():
    socket = any("docker.sock" in str(src or "") or "docker.sock" in str(dst or "") for src, dst in volume_sources(svc))
    check(socket == (name == "gantry"), f"{name} {'mounts' if socket else 'does not mount'} the Docker socket")
    check(not svc.get("privileged"), f"{name} is privileged")
    # Docker creates a mount point inside the container; inside a read-only
    # bind mount it cannot, and the container does not start.
    mounts = []  # (target, read-only bind)
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            mounts.append((str(v["target"]), v.get("type") == "bind" and bool(v.get("read_only"))))
        else:
            src, dst, *mode = v.split(":")
            mounts.append((dst, src.startswith("/") and "ro" in ",".join(mode).split(",")))
    for outer, read_only in mounts:
        for inner, _ in mounts:
            if read_only and inner.startswith(outer.rstrip("/") + "/"):
                problems.append(f"{name}: {inner} is mounted inside the read-only mount {outer}")
    default_deferrable = str(svc.get("environment", {}).get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false"))
    check(default_deferrable.lower() in ("false", "0"),
          f"{name}: AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE={default_deferrable} makes the example DAGs' operators defer")

# Airflow reaches Gantry through AIRFLOW_CONN_GANTRY with the token from .env.
token = env_file["GANTRY_AIRFLOW_TOKEN"]
for name in list(airflow) + ["airflow-init"]:
    env = services.get(name, {}).get("environment", {})
    raw = env.get("AIRFLOW_CONN_GANTRY")
    check(raw is not None, f"{name} has no AIRFLOW_CONN_GANTRY")
    if raw:
        conn = json.loads(raw)
        check(conn.get("conn_type") == "http", f"{name}: gantry connection is not http")
        check((conn.get("host"), conn.get("port")) == ("gantry", 8420), f"{name}: gantry connection points at {conn}")
        check(conn.get("extra", {}).get("Authorization") == f"Bearer {token}", f"{name}: no bearer token from .env")
    check(str(env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "")).startswith("http://airflow-apiserver:8080/"),
          f"{name}: execution API URL")

g = services.get("gantry", {})
genv = g.get("environment", {})
check(genv.get("GANTRY_GPU_DRIVER") == "nvidia", "gantry: GANTRY_GPU_DRIVER is not nvidia")
check(genv.get("GANTRY_GPUS") == "nvidia-smi", "gantry: GANTRY_GPUS is not nvidia-smi")
check(genv.get("GANTRY_ADMIN_TOKEN") == env_file["GANTRY_ADMIN_TOKEN"], "gantry: admin token not from .env")
check(genv.get("GANTRY_AIRFLOW_TOKEN") == token, "gantry: airflow token not from .env")
check(set(genv.get("GANTRY_MOUNT_ALLOWLIST", "").split(",")) >= {"gantry-data", "gantry-models"}, "gantry: mount allowlist")
# A pull goes to the registry the image's first path component names, Docker Hub
# when it names none: pulls are allowed only when every allowlisted image names
# a registry host (a dot, a port or localhost), never Docker Hub's namespaces.
pulls = set(genv.get("GANTRY_ALLOWED_PULL_POLICIES", "missing,always,never").split(",")) - {"never"}
if pulls:
    for pattern in genv.get("GANTRY_IMAGE_ALLOWLIST", "local/*").split(","):
        first = pattern.split("/")[0]
        check("/" in pattern and ("." in first or ":" in first or first == "localhost"),
              f"gantry: pull policies {sorted(pulls)} allowed for {pattern}, which names no registry host (Docker Hub)")
check(any(str(p.get("target")) == "8420" if isinstance(p, dict) else str(p).split("/")[0].endswith(":8420") for p in g.get("ports", [])), "gantry: port 8420")
check("/healthz" in json.dumps(g.get("healthcheck", {})), "gantry: healthcheck does not call /healthz")
devices = g.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
check(any(d.get("driver") == "nvidia" for d in devices), "gantry: no nvidia device reservation for nvidia-smi")
check(str(env_file["DOCKER_GID"]) in [str(x) for x in g.get("group_add", [])], "gantry: group_add DOCKER_GID")
# The data dir holds the SQLite store and node-id, the node's name: it must
# outlive a recreated container (every upgrade), so a named volume or a host path.
data_dir = genv.get("GANTRY_DATA_DIR", "/var/lib/gantry")
check(any(dst == data_dir and src for src, dst in volume_sources(g)),
      f"gantry: its data dir {data_dir} is not on a named volume or host path (a recreated container would lose node-id)")
vols = cfg.get("volumes", {})
check(vols.get("gantry-data", {}).get("name") == "gantry-data", "volume gantry-data must keep its name")
check(vols.get("gantry-models", {}).get("name") == "gantry-models", "volume gantry-models must keep its name")

if problems:
    print("\n".join(f"FAIL: {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(services)} services; only gantry mounts the Docker socket; AIRFLOW_CONN_GANTRY ok in {len(airflow) + 1} services")
PYEOF

echo "== Dockerfiles"
df=docker/Dockerfile
[ "$(grep -c '^FROM ' "$df")" -ge 2 ] || fail "$df is not multi-stage"
grep -q '^ARG NODE_IMAGE=node:26-[a-z]*-slim$' "$df" || fail "$df: base is not a slim Node 26 image"
grep -q '^HEALTHCHECK ' "$df" || fail "$df has no HEALTHCHECK"
sed -n '/^HEALTHCHECK/,/^[A-Z]/p' "$df" | grep -q "/healthz" || fail "$df: HEALTHCHECK does not GET /healthz"
grep -q "GANTRY_PORT=8420" "$df" && grep -q "^EXPOSE 8420" "$df" || fail "$df: port 8420"
grep -A3 '^RUN ' docker/airflow/Dockerfile | grep -q -- '--constraint' \
  || fail "docker/airflow/Dockerfile: pip installs without constraints"
for f in docker/Dockerfile docker/airflow/Dockerfile docker/jobs/nvidia-smi-check/Dockerfile docker/jobs/batch-inference/Dockerfile; do
  [ -f "$f" ] || fail "$f is missing"
  # Every COPY source must exist (relative to its build context).
  ctx=$( [ "$f" = docker/Dockerfile ] || [ "$f" = docker/airflow/Dockerfile ] && echo . || dirname "$f")
  grep -E '^COPY ' "$f" | grep -v -- '--from=' | sed -E 's/^COPY (--[^ ]+ )*//' | awk '{$NF=""; print}' | tr ' ' '\n' | while read -r src; do
    [ -z "$src" ] && continue
    [ -e "$ctx/$src" ] || fail "$f: COPY source $ctx/$src does not exist"
  done
done
sh -n docker/gantry-entrypoint.sh && sh -n docker/jobs/nvidia-smi-check/check.sh

echo "== gantry-entrypoint writes a hashed tokens file"
mkdir -p "$TMP/gantry-data"
GANTRY_DATA_DIR="$TMP/gantry-data" GANTRY_AIRFLOW_TOKEN=check-token-0123456789 \
  sh docker/gantry-entrypoint.sh sh -c 'cat "$GANTRY_TOKENS_FILE"; [ -z "${GANTRY_AIRFLOW_TOKEN:-}" ]' >"$TMP/tokens.json" \
  || fail "entrypoint did not hand over a tokens file (or leaked GANTRY_AIRFLOW_TOKEN)"
want=$(printf %s check-token-0123456789 | sha256sum | cut -d' ' -f1)
grep -q "$want" "$TMP/tokens.json" && ! grep -q check-token "$TMP/tokens.json" || fail "tokens file: $(cat "$TMP/tokens.json")"

echo "== batch-inference script on its sample"
"$PY" docker/jobs/batch-inference/infer.py --seed "$TMP/seed" >/dev/null
INPUT_PATH="$TMP/seed/data/input/batch.jsonl" OUTPUT_PATH="$TMP/seed/data/output/p.jsonl" MODEL_DIR="$TMP/seed/models" \
  "$PY" docker/jobs/batch-inference/infer.py >"$TMP/infer.out"
tail -n 1 "$TMP/infer.out" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); assert r["rows"] == 4, r'
[ "$(wc -l <"$TMP/seed/data/output/p.jsonl")" -eq 4 ] || fail "batch-inference wrote $(wc -l <"$TMP/seed/data/output/p.jsonl") predictions"

echo "compose check passed"
