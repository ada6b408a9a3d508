#!/usr/bin/env bash
# End-to-end on a real GPU: starts Debian's dockerd (carried as files) on a
# machine with an NVIDIA GPU but no Docker, no NVIDIA container toolkit and no
# network, starts Gantry in `devices` mode with nvidia-smi discovery, submits
# jobs over HTTP and checks what the containers saw:
#   1. a GPU job runs nvidia-smi and a PyTorch CUDA matrix product; it must see
#      exactly the GPU Gantry allocated (device nodes, nvidia-smi -L, torch);
#   2. a second GPU job waits ("waiting for GPUs") until the first ends, then
#      gets the same card;
#   3. a CPU job sees NVIDIA_VISIBLE_DEVICES=void and no /dev/nvidia*;
#   and the logs come back through Gantry. Exit status 0 only if all hold.
#
# Prepare the carried files here first:  scripts/gpu-e2e-pack.sh
# Then, with the device tool (see docs/gpu.md):
#   run(command="bash scripts/gpu-e2e.sh",
#       carry=[".device-pkgs/docker-min.tar.xz", ".device-pkgs/node.xz", ".device-pkgs/app.tar.xz"])
# Dry run on a machine without a GPU (static inventory, env driver, no
# nvidia-smi or torch in the job; still starts the carried dockerd):
#   E2E_DRY=1 OUT=/tmp/e2e-out bash scripts/gpu-e2e.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=${PKG:-$ROOT/.device-pkgs}
OUT=${OUT:-$(mktemp -d /tmp/gpu-e2e-out.XXXXXX)}
WORK=${WORK:-/tmp/gantry-gpu-e2e}
DRY=${E2E_DRY:-}
PORT=${E2E_PORT:-18420}
TOKEN=e2e-admin-token-0123456789abcdef
SOCK=$WORK/docker.sock
NODE=$WORK/node/node
mkdir -p "$OUT"
: > "$OUT/summary.txt"
T0=$(date +%s)

log() { echo "[gpu-e2e +$(($(date +%s) - T0))s] $*" | tee -a "$OUT/summary.txt" >&2; }
die() { log "FAIL: $*"; exit 1; }

GANTRY_PID=
DOCKERD_PID=
cleanup() {
  local rc=$?
  [ -n "$GANTRY_PID" ] && kill "$GANTRY_PID" 2>/dev/null && sleep 1
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.25; done
  fi
  [ -f "$WORK/gantry.log" ] && tail -c 200000 "$WORK/gantry.log" > "$OUT/gantry.log"
  [ -f "$WORK/dockerd.log" ] && tail -c 200000 "$WORK/dockerd.log" > "$OUT/dockerd.log"
  log "exit status $rc"
  exit "$rc"
}
trap cleanup EXIT

unxz_to() { # src.xz dest: xz when the machine has it, else Python's lzma
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"), 1 << 20)' "$1" "$2"; fi
}

# ---- 0. the machine ----------------------------------------------------------
{
  echo "## uname"; uname -a
  echo "## os"; head -2 /etc/os-release
  echo "## cgroup mounts"; grep cgroup /proc/mounts
  echo "## apparmor"; cat /sys/module/apparmor/parameters/enabled 2>&1
  echo "## /dev/nvidia*"; ls -l /dev/nvidia* 2>&1
  echo "## /proc/driver/nvidia/gpus"; ls /proc/driver/nvidia/gpus 2>&1 && cat /proc/driver/nvidia/gpus/*/information 2>&1
  echo "## filesystems"; grep -E 'overlay|cgroup' /proc/filesystems
  echo "## python"; python3 -c 'import sys; print(sys.executable, sys.prefix, sys.base_prefix)' 2>&1
  echo "## LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo "## PATH=$PATH"
  if [ -z "$DRY" ]; then
    echo "## nvidia-smi"; nvidia-smi
    echo "## nvidia-smi -L"; nvidia-smi -L
    echo "## which nvidia-smi: $(command -v nvidia-smi) -> $(readlink -f "$(command -v nvidia-smi)")"
    echo "## libcuda"; ldconfig -p 2>/dev/null | grep -E 'libcuda.so.1|libnvidia-ml.so.1'
  fi
} > "$OUT/host.txt" 2>&1

if [ -z "$DRY" ]; then
  nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits > "$OUT/nvidia-smi-query.csv" || die "nvidia-smi failed"
  nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits > "$OUT/nvidia-smi-gantry-query.csv"
  HOST_UUIDS=$(cut -d, -f2 "$OUT/nvidia-smi-query.csv" | tr -d ' ' | paste -sd, -)
  log "host GPUs: $(cat "$OUT/nvidia-smi-query.csv")"
  PYTHON=$(python3 -c 'import sys; print(sys.executable)')
  PYPREFIX=$(python3 -c 'import sys; print(sys.prefix)')
  PYBASE=$(python3 -c 'import sys; print(sys.base_prefix)')
  # /dev/nvidia-uvm appears once the driver's UVM module is loaded; CUDA on the host does that.
  if [ ! -e /dev/nvidia-uvm ]; then
    log "no /dev/nvidia-uvm yet; initialising CUDA once on the host"
    python3 -c 'import torch; torch.zeros(1, device="cuda")' >> "$OUT/host.txt" 2>&1
  fi
else
  HOST_UUIDS=GPU-e2e0dry0-0000-4000-8000-000000000000
  PYTHON=python3
  PYPREFIX=/usr
  PYBASE=/usr
fi

# ---- 1. unpack the carried engine, Node and Gantry ---------------------------
for f in docker-min.tar.xz node.xz app.tar.xz; do [ -s "$PKG/$f" ] || die "missing $PKG/$f (run scripts/gpu-e2e-pack.sh)"; done
rm -rf "$WORK/docker" "$WORK/node" "$WORK/app" "$WORK/rootfs" "$WORK/data"
mkdir -p "$WORK/docker" "$WORK/node" "$WORK/app" "$WORK/data"
unxz_to "$PKG/docker-min.tar.xz" "$WORK/docker.tar" && tar -C "$WORK/docker" -xf "$WORK/docker.tar" && rm "$WORK/docker.tar" || die "unpacking docker"
unxz_to "$PKG/node.xz" "$NODE" && chmod +x "$NODE" || die "unpacking node"
unxz_to "$PKG/app.tar.xz" "$WORK/app.tar" && tar -C "$WORK/app" -xf "$WORK/app.tar" && rm "$WORK/app.tar" || die "unpacking gantry"
log "unpacked: node $("$NODE" --version), dockerd $(LD_LIBRARY_PATH="$WORK/docker/lib" "$WORK/docker/bin/dockerd" --version 2>&1 | head -1)"

# ---- 2. dockerd ----------------------------------------------------------------
if ! grep -q cgroup /proc/mounts; then
  log "no cgroup filesystem mounted; mounting cgroup2 on /sys/fs/cgroup"
  mount -t cgroup2 none /sys/fs/cgroup || die "could not mount cgroup2"
fi
rm -f "$SOCK"
# dockerd re-executes itself (docker-applyLayer) without LD_LIBRARY_PATH, so the
# loader must find libdevmapper (and libseccomp, if the host lacks it) by itself:
# a throwaway GPU machine gets one extra search folder holding only those.
if [ -z "$DRY" ] && ! ldconfig -p | grep -q 'libdevmapper.so.1.02.1 '; then
  mkdir -p "$WORK/syslib"
  cp "$WORK/docker/lib/libdevmapper.so.1.02.1" "$WORK/syslib/"
  ldconfig -p | grep -q 'libseccomp.so.2 ' || cp "$WORK/docker/lib/libseccomp.so.2" "$WORK/syslib/"
  echo "$WORK/syslib" > /etc/ld.so.conf.d/zz-gantry-gpu-e2e.conf && ldconfig
  log "added $WORK/syslib ($(ls "$WORK/syslib" | paste -sd' ' -)) to the loader's search path"
fi
PATH="$WORK/docker/bin:$PATH" LD_LIBRARY_PATH="$WORK/docker/lib" setsid "$WORK/docker/bin/dockerd" \
  --data-root "$WORK/docker-data" --exec-root "$WORK/docker-exec" --pidfile "$WORK/dockerd.pid" \
  -H "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false --userland-proxy=false \
  --storage-driver="${E2E_STORAGE_DRIVER:-vfs}" > "$WORK/dockerd.log" 2>&1 < /dev/null &
DOCKERD_PID=$!
ping_docker() { "$NODE" -e "require('http').get({socketPath:'$SOCK',path:'/_ping'},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"; }
for i in $(seq 1 120); do ping_docker && break; kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd exited"; }; sleep 0.5; done
ping_docker || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd did not answer"; }
log "dockerd answers on $SOCK"
"$NODE" -e "require('http').get({socketPath:'$SOCK',path:'/info'},r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>{const i=JSON.parse(b);console.log('## docker info', JSON.stringify({ServerVersion:i.ServerVersion,Driver:i.Driver,CgroupDriver:i.CgroupDriver,CgroupVersion:i.CgroupVersion,Runtimes:Object.keys(i.Runtimes||{}),InitBinary:i.InitBinary,KernelVersion:i.KernelVersion,SecurityOptions:i.SecurityOptions}))})})" >> "$OUT/host.txt" 2>&1

# ---- 3. the job image: busybox in /bin, the host's /usr (and Python) mounted by Gantry
cat > "$WORK/e2e.mjs" <<'JS'
import http from 'node:http';
import fs from 'node:fs';
const [cmd, ...args] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (cmd === 'import') {
  // POST /images/create?fromSrc=- with the rootfs tar on stdin (docker import).
  const [sock, repo, tag, changes] = args;
  const q = new URLSearchParams({ fromSrc: '-', repo, tag });
  for (const c of JSON.parse(changes)) q.append('changes', c);
  const req = http.request({ socketPath: sock, method: 'POST', path: `/images/create?${q}`, headers: { 'content-type': 'application/x-tar' } }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => {
      if (res.statusCode !== 200 || body.includes('"error"')) { console.error(res.statusCode, body); process.exit(1); }
      console.log(body.trim().split('\n').pop());
    });
  });
  process.stdin.pipe(req);
} else if (cmd === 'run') {
  const { E2E_URL: url, E2E_TOKEN: token, E2E_DRY: dry, E2E_OUT: out, HOST_UUIDS: hostUuids, E2E_PYTHON: python } = process.env;
  const call = async (method, p, body) => {
    const res = await fetch(url + p, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    return { status: res.status, body: type.includes('json') ? JSON.parse(text) : text };
  };
  const results = [];
  const check = (ok, what) => { results.push(`${ok ? 'PASS' : 'FAIL'} ${what}`); console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`); };
  const record = { gpusBefore: null, jobs: {}, observedQueued: null, gpusDuring: null, gpusAfter: null };

  const PY = [
    'import os, time, torch',
    'n = torch.cuda.device_count()',
    'p = torch.cuda.get_device_properties(0)',
    'u = getattr(p, "uuid", None)',
    'uuid = ("GPU-" + str(u)) if u is not None else "unknown"',
    'print(f"TORCH version={torch.__version__} cuda={torch.version.cuda} count={n} name={p.name} uuid={uuid} memMiB={p.total_memory >> 20}", flush=True)',
    'torch.manual_seed(0)',
    'a = torch.randn(4096, 4096, device="cuda"); b = torch.randn(4096, 4096, device="cuda")',
    'c = a @ b; ref = a.double() @ b.double()',
    'err = ((c.double() - ref).abs().max() / ref.abs().max()).item()',
    'x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)',
    'for _ in range(3): x @ y',
    'torch.cuda.synchronize(); t = time.perf_counter()',
    'for _ in range(10): x @ y',
    'torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 10',
    'print(f"MATMUL fp32 4096x4096x4096 max-rel-err={err:.2e}; bf16 8192x8192x8192 {2 * 8192 ** 3 / dt / 1e12:.0f} TFLOP/s", flush=True)',
    'ok = n == 1 and uuid == os.environ["NVIDIA_VISIBLE_DEVICES"] and err < 1e-3',
    'print("CUDA_OK" if ok else "CUDA_MISMATCH", flush=True)',
  ].join('\n');
  const show = 'echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset} TF_FORCE_GPU_ALLOW_GROWTH=${TF_FORCE_GPU_ALLOW_GROWTH:-unset}"; echo "DEVICES $(ls /dev | grep nvidia | tr \'\\n\' \' \')"';
  const gpuScript = dry
    ? `${show}; sleep 2; echo CUDA_OK`
    : `${show}; nvidia-smi -L; nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader; "$E2E_PYTHON" -c "$E2E_PY"`;
  const image = 'local/gpu-host:latest';
  const res = { memoryMiB: 16384, shmMiB: 1024 };

  record.gpusBefore = (await call('GET', '/v1/gpus')).body;
  const inv = record.gpusBefore.items ?? [];
  check(inv.length >= 1 && inv.map((g) => g.uuid).join(',') === hostUuids, `GET /v1/gpus lists the host's GPUs (${inv.map((g) => `${g.index}:${g.uuid}:${g.name}:${g.memoryMiB}MiB`).join(', ')}; driver ${record.gpusBefore.driver})`);

  const sub = async (spec) => { const r = await call('POST', '/v1/jobs', spec); if (r.status !== 201) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`); return r.body; };
  const first = await sub({ name: 'e2e-gpu-torch', image, command: ['sh', '-c', gpuScript], env: { E2E_PY: PY, E2E_PYTHON: python ?? 'python3' }, gpus: { count: 1 }, resources: res, timeoutSeconds: 600 });
  const second = await sub({ name: 'e2e-gpu-second', image, command: ['sh', '-c', dry ? show : `${show}; nvidia-smi -L`], gpus: { count: 1 }, resources: res, timeoutSeconds: 300 });
  const cpu = await sub({ name: 'e2e-cpu', image, command: ['sh', '-c', 'echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"; ls /dev/nvidia0 2>&1 || echo "no GPU device node"'], timeoutSeconds: 120 });

  const ids = { first: first.id, second: second.id, cpu: cpu.id };
  const deadline = Date.now() + 240_000;
  let jobs;
  for (;;) {
    jobs = Object.fromEntries(await Promise.all(Object.entries(ids).map(async ([k, id]) => [k, (await call('GET', `/v1/jobs/${id}`)).body])));
    if (!record.observedQueued && jobs.first.state === 'running' && jobs.second.state === 'queued') {
      record.observedQueued = { position: jobs.second.position, reason: jobs.second.reason };
      record.gpusDuring = (await call('GET', '/v1/gpus')).body;
    }
    const terminal = (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state);
    if (Object.values(jobs).every(terminal)) break;
    if (Date.now() > deadline) { console.log('FAIL timed out waiting for the jobs', JSON.stringify(jobs)); break; }
    await sleep(250);
  }
  const logs = {};
  for (const [k, id] of Object.entries(ids)) logs[k] = (await call('GET', `/v1/jobs/${id}/logs`)).body;
  record.jobs = Object.fromEntries(Object.entries(jobs).map(([k, j]) => [k, { ...j, spec: { ...j.spec, env: j.spec.env ? Object.keys(j.spec.env) : undefined } }]));
  await sleep(200);
  record.gpusAfter = (await call('GET', '/v1/gpus')).body;

  const uuid = jobs.first.gpus?.[0];
  const f = logs.first;
  check(jobs.first.state === 'succeeded' && jobs.first.exitCode === 0, `GPU job succeeded (state ${jobs.first.state}, exit ${jobs.first.exitCode}, reason ${jobs.first.reason})`);
  check(jobs.first.gpus?.length === 1 && hostUuids.split(',').includes(uuid), `GPU job was allocated one host GPU: ${uuid}`);
  check(f.includes(`NVIDIA_VISIBLE_DEVICES=${uuid} `), 'the container was told its UUID');
  if (!dry) {
    const devs = /DEVICES (.*)/.exec(f)?.[1]?.trim().split(/\s+/) ?? [];
    const gpuNodes = devs.filter((d) => /^nvidia\d+$/.test(d));
    check(gpuNodes.length === 1, `exactly one GPU device node in the container: ${devs.join(' ')}`);
    const smi = f.split('\n').filter((l) => /^GPU \d+: /.test(l));
    check(smi.length === 1 && smi[0].includes(`(UUID: ${uuid})`), `nvidia-smi -L in the container lists exactly the allocated GPU: ${smi.join(' | ')}`);
    check(new RegExp(`TORCH .*count=1 .*uuid=${uuid}`).test(f), `PyTorch sees one CUDA device, the allocated one: ${/TORCH .*/.exec(f)?.[0]}`);
    check(/MATMUL .*max-rel-err=/.test(f) && f.includes('CUDA_OK'), `the CUDA matrix product ran and matched float64: ${/MATMUL .*/.exec(f)?.[0]}`);
  } else {
    check(f.includes('CUDA_OK'), 'dry run: the job ran');
  }
  check(record.observedQueued?.reason === 'waiting for GPUs' && record.observedQueued?.position === 0, `the second GPU job waited while the first held the GPU: ${JSON.stringify(record.observedQueued)}`);
  check(jobs.second.state === 'succeeded' && jobs.second.gpus?.[0] === uuid && Date.parse(jobs.second.startedAt) >= Date.parse(jobs.first.finishedAt), `the second GPU job then ran on the same card (${jobs.second.state}, ${jobs.second.gpus})`);
  if (!dry) check(logs.second.includes(`(UUID: ${uuid})`), 'the second job saw the card in nvidia-smi -L');
  check(jobs.cpu.state === 'succeeded' && logs.cpu.includes('NVIDIA_VISIBLE_DEVICES=void') && logs.cpu.includes('no GPU device node'), `the CPU job saw void and no /dev/nvidia0: ${JSON.stringify(logs.cpu.trim())}`);
  check((record.gpusAfter.items ?? []).every((g) => g.holders.length === 0), 'every GPU is free at the end');

  fs.writeFileSync(`${out}/jobs.json`, JSON.stringify(record, null, 2));
  fs.writeFileSync(`${out}/job-logs.txt`, Object.entries(logs).map(([k, l]) => `===== ${k} (${ids[k]}) =====\n${l}`).join('\n'));
  fs.appendFileSync(`${out}/summary.txt`, results.join('\n') + '\n');
  process.exit(results.every((r) => r.startsWith('PASS')) ? 0 : 1);
}
JS

R=$WORK/rootfs
# /sbin stays a real folder: Docker mounts its init at /sbin/docker-init, which
# must not lead into the read-only /usr that Gantry mounts from the host.
mkdir -p "$R/bin" "$R/sbin" "$R/usr" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root" "$R/run" "$R/var/tmp"
cp "$WORK/docker/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
# The host's merged-/usr links, so that the host's programs find their loader and libraries.
for d in lib lib64 lib32 libx32; do [ -L "/$d" ] && ln -s "$(readlink "/$d")" "$R/$d"; done
cp -a /etc/ld.so.cache /etc/ld.so.conf "$R/etc/" 2>/dev/null; cp -a /etc/ld.so.conf.d "$R/etc/" 2>/dev/null
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
chmod 1777 "$R/tmp" "$R/var/tmp"
tar -C "$R" -cf - . | "$NODE" "$WORK/e2e.mjs" import "$SOCK" local/gpu-host latest \
  '["ENV PATH=/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CMD [\"/bin/sh\"]"]' >&2 \
  || die "docker import failed"
log "imported local/gpu-host:latest"

# ---- 4. Gantry: devices driver, nvidia-smi discovery, host driver mounts -------
if [ -z "$DRY" ]; then
  GPUS_SRC=nvidia-smi
  DRIVER=devices
  SMI_DIR=$(dirname "$(readlink -f "$(command -v nvidia-smi)")")
  LIB_DIRS=$( { ldconfig -p 2>/dev/null | awk '/(libcuda|libnvidia-ml)\.so\.1 /{print $NF}' | xargs -r -n1 dirname; \
               ls -d /usr/local/nvidia/lib64 2>/dev/null; echo "${LD_LIBRARY_PATH:-}" | tr ':' '\n'; } | grep '^/' | awk '!seen[$0]++' | while read -r d; do [ -d "$d" ] && echo "$d"; done | paste -sd: -)
  MOUNTS=(/usr)
  under_mounts() { local m; for m in "${MOUNTS[@]}"; do case "$1/" in "$m"/*) return 0 ;; esac; done; return 1; }
  for d in "$PYPREFIX" "$PYBASE" "$SMI_DIR" $(echo "$LIB_DIRS" | tr ':' ' '); do
    d=$(readlink -f "$d")  # /lib -> /usr/lib is already inside /usr
    under_mounts "$d" || MOUNTS+=("$d")
  done
  DRIVER_MOUNTS=$(IFS=,; echo "${MOUNTS[*]}")
  DRIVER_ENV="LD_LIBRARY_PATH=$LIB_DIRS,PATH=$SMI_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
else
  GPUS_SRC="$HOST_UUIDS:81920"
  DRIVER=env
  DRIVER_MOUNTS=
  DRIVER_ENV=
fi
log "Gantry: GANTRY_GPUS=$GPUS_SRC GANTRY_GPU_DRIVER=$DRIVER GANTRY_GPU_DRIVER_MOUNTS=$DRIVER_MOUNTS GANTRY_GPU_DRIVER_ENV=$DRIVER_ENV"
env GANTRY_DATA_DIR="$WORK/data" GANTRY_ADMIN_TOKEN="$TOKEN" GANTRY_HOST=127.0.0.1 GANTRY_PORT="$PORT" \
  GANTRY_DOCKER_SOCKET="$SOCK" GANTRY_GPUS="$GPUS_SRC" GANTRY_GPU_DRIVER="$DRIVER" \
  GANTRY_GPU_DRIVER_MOUNTS="$DRIVER_MOUNTS" GANTRY_GPU_DRIVER_ENV="$DRIVER_ENV" GANTRY_LOG_LEVEL=info \
  "$NODE" "$WORK/app/dist/src/main.js" > "$WORK/gantry.log" 2>&1 &
GANTRY_PID=$!
for i in $(seq 1 60); do
  "$NODE" -e "fetch('http://127.0.0.1:$PORT/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
  kill -0 "$GANTRY_PID" 2>/dev/null || { tail -20 "$WORK/gantry.log" >&2; die "gantry exited"; }
  sleep 0.5
done
log "Gantry answers on 127.0.0.1:$PORT"

# ---- 5. jobs over HTTP -------------------------------------------------------
E2E_URL="http://127.0.0.1:$PORT" E2E_TOKEN="$TOKEN" E2E_DRY="$DRY" E2E_OUT="$OUT" HOST_UUIDS="$HOST_UUIDS" E2E_PYTHON="$PYTHON" \
  "$NODE" "$WORK/e2e.mjs" run
RC=$?
[ "$RC" = 0 ] && log "ALL CHECKS PASSED" || log "SOME CHECKS FAILED"
exit "$RC"
