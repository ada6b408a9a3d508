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
grep -v '^GANTRY_ADMIN_TOKEN=' docker/.env.example >"$TMP/env-missing"
if "$COMPOSE" --project-directory . --env-file "$TMP/env-missing" -f "$FILE" config >"$TMP/out" 2>&1; then
  fail "docker-compose config accepted a .env without GANTRY_ADMIN_TOKEN"
fi
grep -q "GANTRY_ADMIN_TOKEN" "$TMP/out" || { cat "$TMP/out"; fail "the error does not name GANTRY_ADMIN_TOKEN"; }

echo "== docker/make-secrets.sh: one token for Gantry and for Airflow's gantry connection, in a 0700 folder"
mkdir -p "$TMP/tree/docker" && cp docker/make-secrets.sh "$TMP/tree/docker/"
sh "$TMP/tree/docker/make-secrets.sh" http://gpu-host.example:8420/ui/ >/dev/null
[ "$(stat -c %a "$TMP/tree/secrets")" = 700 ] || fail "secrets/ is not 0700"
"$PY" - "$TMP/tree/secrets" <<'PYEOF' || fail "make-secrets.sh wrote a connection that does not match the token"
import json
import sys

d = sys.argv[1]
token = open(f"{d}/gantry_airflow_token").read()
conn = json.load(open(f"{d}/airflow_connections.json"))["gantry"]
assert len(token) >= 32 and conn["conn_type"] == "http" and (conn["host"], conn["port"]) == ("gantry", 8420), conn
assert conn["extra"] == {"Authorization": f"Bearer {token}", "ui_url": "http://gpu-host.example:8420/ui/"}, conn
PYEOF

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

# Airflow reads the gantry connection from a Docker secret through its local-filesystem
# secrets backend; no Airflow container has the token (or any connection) in its environment.
for name in list(airflow) + ["airflow-init"]:
    svc = services.get(name, {})
    env = svc.get("environment", {})
    check(not any(k.startswith("AIRFLOW_CONN_") for k in env), f"{name}: a connection in the environment")
    check(not any("GANTRY_AIRFLOW_TOKEN" in str(v) or "Bearer" in str(v) for v in env.values()), f"{name}: a token in the environment")
    check(env.get("AIRFLOW__SECRETS__BACKEND") == "airflow.secrets.local_filesystem.LocalFilesystemBackend", f"{name}: secrets backend")
    kwargs = json.loads(env.get("AIRFLOW__SECRETS__BACKEND_KWARGS") or "{}")
    check(kwargs.get("connections_file_path") == "/run/secrets/airflow_connections.json", f"{name}: connections file {kwargs}")
    check({"source": "airflow_connections", "target": "airflow_connections.json"} in svc.get("secrets", []), f"{name}: no connections secret")
    check(str(env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "")).startswith("http://airflow-apiserver:8080/"),
          f"{name}: execution API URL")

g = services.get("gantry", {})
genv = g.get("environment", {})
check(genv.get("GANTRY_GPU_DRIVER") == "nvidia", "gantry: GANTRY_GPU_DRIVER is not nvidia")
check(genv.get("GANTRY_GPUS") == "nvidia-smi", "gantry: GANTRY_GPUS is not nvidia-smi")
check(genv.get("GANTRY_ADMIN_TOKEN") == env_file["GANTRY_ADMIN_TOKEN"], "gantry: admin token not from .env")
check("GANTRY_AIRFLOW_TOKEN" not in genv, "gantry: the airflow token is in its environment")
check(genv.get("GANTRY_AIRFLOW_TOKEN_FILE") == "/run/secrets/gantry_airflow_token", "gantry: airflow token not from its secret")
check({"source": "gantry_airflow_token"} in g.get("secrets", []), "gantry: no gantry_airflow_token secret")
check(cfg.get("secrets", {}).get("gantry_airflow_token", {}).get("file", "").endswith("/secrets/gantry_airflow_token"), "secret files")
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
print(f"ok: {len(services)} services; only gantry mounts the Docker socket; the gantry connection from a secret in {len(airflow) + 1} services")
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
printf %s check-token-from-file-0123 >"$TMP/token-file"
GANTRY_DATA_DIR="$TMP/gantry-data" GANTRY_AIRFLOW_TOKEN_FILE="$TMP/token-file" \
  sh docker/gantry-entrypoint.sh sh -c 'cat "$GANTRY_TOKENS_FILE"; [ -z "${GANTRY_AIRFLOW_TOKEN:-}${GANTRY_AIRFLOW_TOKEN_FILE:-}" ]' >"$TMP/tokens.json" \
  || fail "entrypoint did not take the token from GANTRY_AIRFLOW_TOKEN_FILE"
grep -q "$(printf %s check-token-from-file-0123 | sha256sum | cut -d' ' -f1)" "$TMP/tokens.json" || fail "tokens file from a file: $(cat "$TMP/tokens.json")"

echo "== batch-inference script on its sample"
"$PY" docker/jobs/batch-inference/infer.py --seed "$TMP/seed" >/dev/null
INPUT_PATH="$TMP/seed/data/input/batch.jsonl" OUTPUT_PATH="$TMP/seed/data/output/p.jsonl" MODEL_DIR="$TMP/seed/models" \
  "$PY" docker/jobs/batch-inference/infer.py >"$TMP/infer.out"
tail -n 1 "$TMP/infer.out" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); assert r["rows"] == 4, r'
[ "$(wc -l <"$TMP/seed/data/output/p.jsonl")" -eq 4 ] || fail "batch-inference wrote $(wc -l <"$TMP/seed/data/output/p.jsonl") predictions"

echo "compose check passed"
