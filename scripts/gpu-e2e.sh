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
# GPU_E2E_MODE=two (a machine with two or more GPUs, e.g. the device kind
# nvidia-h200-x2) runs instead:
#   A, B: two one-GPU jobs at once, each a PyTorch CUDA workload that keeps its
#      card busy for a few seconds; each container must see exactly its own card
#      (device nodes, nvidia-smi -L, torch.cuda.device_count() and UUID), the two
#      UUIDs must differ and the in-container compute windows must overlap;
#   C: a third one-GPU job that must wait ("waiting for GPUs", position 0) until
#      A or B ends, then runs on the card that was freed;
#   D: a two-GPU job that waits behind C and then sees both cards and runs a
#      product on each. The jobs are independent single-process programs: no NCCL.
# GPU_E2E_MODE=telemetry (one GPU) runs the per-job telemetry instead
# (scripts/gpu-e2e-telemetry.mjs): with sampling at the default rate, a bf16
# product job whose summary must show > 50% utilisation and a peak memory within
# 10% of its torch.cuda.max_memory_reserved(), an idle job at ~0%, and two
# sharing jobs each credited its own memory; then Gantry is restarted with
# GANTRY_GPU_SAMPLE_SECONDS=0 and the product job runs again, so throughput and
# Gantry's CPU with and without sampling come from the same call.
# NVLink multicast stays off everywhere: NCCL_NVLS_ENABLE=0,
# TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1 are exported
# here and set in every job's env (the job spec), and each container checks them.
#
# Prepare the carried files here first:  scripts/gpu-e2e-pack.sh
# Then, with the device tool (see docs/gpu.md):
#   run(command="bash scripts/gpu-e2e.sh",
#       carry=[".device-pkgs/docker-min.tar.xz", ".device-pkgs/node.xz", ".device-pkgs/app.tar.xz"])
# Dry run on a machine without a GPU (static inventory, env driver, no
# nvidia-smi or torch in the job; still starts the carried dockerd):
#   E2E_DRY=1 OUT=/tmp/e2e-out bash scripts/gpu-e2e.sh
#   E2E_DRY=1 GPU_E2E_MODE=two OUT=/tmp/e2e-out bash scripts/gpu-e2e.sh
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=${PKG:-$ROOT/.device-pkgs}
OUT=${OUT:-$(mktemp -d /tmp/gpu-e2e-out.XXXXXX)}
WORK=${WORK:-/tmp/gantry-gpu-e2e}
DRY=${E2E_DRY:-}
MODE=${GPU_E2E_MODE:-one}
case "$MODE" in one|two|telemetry) ;; *) echo "GPU_E2E_MODE must be one, two or telemetry, not $MODE" >&2; exit 2 ;; esac
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
  echo "## /proc/driver/nvidia/gpus"; ls /proc/driver/nvidia/gpus 2>&1
  for f in /proc/driver/nvidia/gpus/*/information; do [ -e "$f" ] && { echo "### $f"; cat "$f"; }; done
  echo "## filesystems"; grep -E 'overlay|cgroup' /proc/filesystems
  echo "## python"; python3 -c 'import sys; print(sys.executable, sys.prefix, sys.base_prefix)' 2>&1
  echo "## LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo "## PATH=$PATH"
  if [ -z "$DRY" ]; then
    echo "## nvidia-smi"; nvidia-smi
    echo "## nvidia-smi -L"; nvidia-smi -L
    echo "## nvidia-smi topo -m"; nvidia-smi topo -m
    echo "## which nvidia-smi: $(command -v nvidia-smi) -> $(readlink -f "$(command -v nvidia-smi)")"
    echo "## libcuda"; ldconfig -p 2>/dev/null | grep -E 'libcuda.so.1|libnvidia-ml.so.1'
  fi
} > "$OUT/host.txt" 2>&1

if [ -z "$DRY" ]; then
  nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits > "$OUT/nvidia-smi-query.csv" || die "nvidia-smi failed"
  nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id --format=csv,noheader,nounits > "$OUT/nvidia-smi-gantry-query.csv"
  if [ "$MODE" = telemetry ]; then
    # The sampler's two queries, as this driver answers them (fixtures for the parsers).
    nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used,power.draw --format=csv,noheader,nounits > "$OUT/nvidia-smi-telemetry.csv" 2>&1
    nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits > "$OUT/nvidia-smi-apps.csv" 2>&1
  fi
  HOST_UUIDS=$(cut -d, -f2 "$OUT/nvidia-smi-query.csv" | tr -d ' ' | paste -sd, -)
  # The GPU health queries (src/gpu/health/smi-health.ts), kept in host.txt for test/fixtures/nvidia-smi/h200-health/.
  for q in '--query-gpu=uuid,pci.bus_id,ecc.errors.uncorrected.volatile.total,retired_pages.pending' '--query-remapped-rows=gpu_uuid,remapped_rows.failure'; do
    echo "## nvidia-smi $q --format=csv,noheader,nounits"
    rc=0; nvidia-smi "$q" --format=csv,noheader,nounits 2>&1 || rc=$?
    echo "## exit $rc"
  done >> "$OUT/host.txt"
  log "host GPUs: $(cat "$OUT/nvidia-smi-query.csv" | paste -sd';' -)"
  [ "$MODE" = two ] && [ "$(echo "$HOST_UUIDS" | tr ',' '\n' | grep -c .)" -lt 2 ] && die "GPU_E2E_MODE=two needs two GPUs; nvidia-smi lists $HOST_UUIDS"
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
  [ "$MODE" = two ] && HOST_UUIDS=$HOST_UUIDS,GPU-e2e1dry1-0000-4000-8000-000000000001
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
  const { E2E_URL: url, E2E_TOKEN: token, E2E_DRY: dry, E2E_OUT: out, HOST_UUIDS: hostUuids, E2E_PYTHON: python, E2E_MODE: mode, E2E_MAP: mapDir } = process.env;
  // dcgm-exporter's job mapping as Gantry writes it (GANTRY_DCGM_JOB_MAPPING_DIR): file name → job ids.
  const readMap = () => Object.fromEntries(fs.readdirSync(mapDir).map((f) => [f, fs.readFileSync(`${mapDir}/${f}`, 'utf8').trimEnd().split('\n')]));
  const hostList = hostUuids.split(',');
  const call = async (method, p, body) => {
    const res = await fetch(url + p, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    return { status: res.status, body: type.includes('json') ? JSON.parse(text) : text };
  };
  const results = [];
  const check = (ok, what) => { results.push(`${ok ? 'PASS' : 'FAIL'} ${what}`); console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`); };
  const record = { mode, gpusBefore: null, jobs: {}, observed: {}, gpusDuring: null, gpusAfter: null, timeline: null };

  // The job's Python: every visible CUDA device's UUID, a float32 product checked
  // against float64 and a timed bf16 product on each device, then (E2E_BUSY > 0)
  // a sustained bf16 loop on device 0 whose wall-clock window is printed, so two
  // jobs' windows can be compared. Independent single-process work: no NCCL.
  const PY = [
    'import os, time, torch',
    'want = int(os.environ.get("E2E_EXPECT", "1")); busy = float(os.environ.get("E2E_BUSY", "0"))',
    'n = torch.cuda.device_count(); uuids = []',
    'for i in range(n):',
    '    p = torch.cuda.get_device_properties(i); u = getattr(p, "uuid", None)',
    '    uuids.append(("GPU-" + str(u)) if u is not None else "unknown")',
    '    print(f"TORCH dev={i} version={torch.__version__} cuda={torch.version.cuda} count={n} name={p.name} uuid={uuids[i]} memMiB={p.total_memory >> 20}", flush=True)',
    'errs = []',
    'for i in range(n):',
    '    d = torch.device("cuda", i); torch.manual_seed(i)',
    '    a = torch.randn(4096, 4096, device=d); b = torch.randn(4096, 4096, device=d)',
    '    c = a @ b; ref = a.double() @ b.double()',
    '    errs.append(((c.double() - ref).abs().max() / ref.abs().max()).item())',
    '    x = torch.randn(8192, 8192, device=d, dtype=torch.bfloat16); y = torch.randn(8192, 8192, device=d, dtype=torch.bfloat16)',
    '    for _ in range(3): x @ y',
    '    torch.cuda.synchronize(d); t = time.perf_counter()',
    '    for _ in range(10): x @ y',
    '    torch.cuda.synchronize(d); dt = (time.perf_counter() - t) / 10',
    '    print(f"MATMUL dev={i} uuid={uuids[i]} fp32 4096x4096x4096 max-rel-err={errs[i]:.2e}; bf16 8192x8192x8192 {2 * 8192 ** 3 / dt / 1e12:.0f} TFLOP/s", flush=True)',
    'if busy > 0 and n > 0:',
    '    x = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16); y = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16)',
    '    torch.cuda.synchronize(); t0 = time.time(); k = 0',
    '    while time.time() - t0 < busy:',
    '        for _ in range(20): x @ y',
    '        torch.cuda.synchronize(); k += 20',
    '    t1 = time.time()',
    '    print(f"BUSY dev=0 uuid={uuids[0]} start={t0:.3f} end={t1:.3f} products={k} bf16 {2 * 8192 ** 3 * k / (t1 - t0) / 1e12:.0f} TFLOP/s", flush=True)',
    'expect = os.environ["NVIDIA_VISIBLE_DEVICES"].split(",")',
    'ok = n == want and sorted(uuids) == sorted(expect) and len(errs) == n and all(e < 1e-3 for e in errs)',
    'print("CUDA_OK" if ok else f"CUDA_MISMATCH count={n} want={want} uuids={uuids} expect={expect} errs={errs}", flush=True)',
  ].join('\n');
  const show = 'echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset} TF_FORCE_GPU_ALLOW_GROWTH=${TF_FORCE_GPU_ALLOW_GROWTH:-unset}"; echo "MULTICAST NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-unset} TORCH_SYMM_MEM_DISABLE_MULTICAST=${TORCH_SYMM_MEM_DISABLE_MULTICAST:-unset} NVSHMEM_DISABLE_NVLS=${NVSHMEM_DISABLE_NVLS:-unset}"; echo "DEVICES $(ls /dev | grep nvidia | tr \'\\n\' \' \')"';
  const gpuScript = dry
    ? `${show}; sleep "\${E2E_DRY_SLEEP:-2}"; echo CUDA_OK`
    : `${show}; nvidia-smi -L; nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader; "$E2E_PYTHON" -c "$E2E_PY"`;
  const image = 'local/gpu-host:latest';
  const res = { memoryMiB: 16384, shmMiB: 1024 };
  // NVLink multicast stays off in every job too (the host's GPUs are shared).
  const MC = { NCCL_NVLS_ENABLE: '0', TORCH_SYMM_MEM_DISABLE_MULTICAST: '1', NVSHMEM_DISABLE_NVLS: '1' };
  const gpuJob = (name, count, extra = {}) => ({ name, image, command: ['sh', '-c', gpuScript], env: { ...MC, E2E_PY: PY, E2E_PYTHON: python ?? 'python3', E2E_EXPECT: String(count), ...extra }, gpus: { count }, resources: res, timeoutSeconds: 600 });

  const sub = async (spec) => { const r = await call('POST', '/v1/jobs', spec); if (r.status !== 201) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`); return r.body; };
  const terminal = (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state);
  const get = async (ids) => Object.fromEntries(await Promise.all(Object.entries(ids).map(async ([k, id]) => [k, (await call('GET', `/v1/jobs/${id}`)).body])));
  // Polls every job until all are terminal; onTick sees each snapshot (to record queue states).
  const waitAll = async (ids, onTick) => {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const jobs = await get(ids);
      await onTick(jobs);
      if (Object.values(jobs).every(terminal)) return jobs;
      if (Date.now() > deadline) { console.log('FAIL timed out waiting for the jobs', JSON.stringify(jobs)); return jobs; }
      await sleep(250);
    }
  };
  const finish = async (ids, jobs) => {
    const logs = {};
    for (const [k, id] of Object.entries(ids)) logs[k] = (await call('GET', `/v1/jobs/${id}/logs`)).body;
    record.jobs = Object.fromEntries(Object.entries(jobs).map(([k, j]) => [k, { ...j, spec: { ...j.spec, env: j.spec.env ? Object.keys(j.spec.env) : undefined } }]));
    const t0 = Math.min(...Object.values(jobs).map((j) => Date.parse(j.createdAt)));
    const rel = (t) => (t ? `+${((Date.parse(t) - t0) / 1000).toFixed(3)}s` : '-');
    record.timeline = Object.entries(jobs).map(([k, j]) => `${k.padEnd(7)} gpus=${(j.gpus ?? []).join(',') || '-'} submitted ${rel(j.createdAt)} started ${rel(j.startedAt)} finished ${rel(j.finishedAt)} ${j.state}`);
    await sleep(200);
    record.gpusAfter = (await call('GET', '/v1/gpus')).body;
    // The health monitor polled the real nvidia-smi and kernel log all along (every 2 s): no card may have been taken for faulty.
    const health = (record.gpusAfter.items ?? []).map((g) => `${g.index}:${g.health?.state}${g.health?.code ? `(${g.health.code}: ${g.health.reason})` : ''}`);
    check(health.length > 0 && (record.gpusAfter.items ?? []).every((g) => g.health?.state === 'healthy'), `every card healthy after the jobs, by the health monitor's polls: ${health.join(', ')}`);
    return logs;
  };
  // What a GPU job's container saw, from its log: the device nodes, nvidia-smi -L,
  // PyTorch's devices and UUIDs, the products, and the multicast switches.
  const inspect = (label, job, log, count) => {
    const uuids = job.gpus ?? [];
    check(job.state === 'succeeded' && job.exitCode === 0, `${label} succeeded (state ${job.state}, exit ${job.exitCode}, reason ${job.reason})`);
    check(uuids.length === count && new Set(uuids).size === count && uuids.every((u) => hostList.includes(u)), `${label} was allocated ${count} host GPU(s): ${uuids.join(',')}`);
    check(log.includes(`NVIDIA_VISIBLE_DEVICES=${uuids.join(',')} `), `${label}: the container was told its UUID(s)`);
    check(log.includes('MULTICAST NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1'), `${label}: NVLink multicast off in the container's environment`);
    if (dry) { check(log.includes('CUDA_OK'), `${label}: dry run, the job ran`); return; }
    const devs = /DEVICES (.*)/.exec(log)?.[1]?.trim().split(/\s+/) ?? [];
    check(devs.filter((d) => /^nvidia\d+$/.test(d)).length === count, `${label}: ${count} GPU device node(s) in the container: ${devs.join(' ')}`);
    const smi = log.split('\n').filter((l) => /^GPU \d+: /.test(l));
    check(smi.length === count && uuids.every((u) => smi.some((l) => l.includes(`(UUID: ${u})`))), `${label}: nvidia-smi -L in the container lists exactly the allocated GPU(s): ${smi.join(' | ')}`);
    const torch = log.split('\n').filter((l) => l.startsWith('TORCH '));
    const seen = torch.map((l) => /uuid=(\S+)/.exec(l)?.[1]);
    check(torch.length === count && torch.every((l) => l.includes(` count=${count} `)) && [...seen].sort().join(',') === [...uuids].sort().join(','), `${label}: torch.cuda.device_count()=${count}, the allocated UUID(s): ${torch.join(' | ')}`);
    const mm = log.split('\n').filter((l) => l.startsWith('MATMUL '));
    check(mm.length === count && log.includes('CUDA_OK'), `${label}: a CUDA matrix product ran on each device and matched float64: ${mm.join(' | ')}`);
  };

  record.gpusBefore = (await call('GET', '/v1/gpus')).body;
  const inv = record.gpusBefore.items ?? [];
  const need = mode === 'two' ? 2 : 1;
  check(inv.length >= need && inv.map((g) => g.uuid).join(',') === hostUuids, `GET /v1/gpus lists the host's GPUs (${inv.map((g) => `${g.index}:${g.uuid}:${g.name}:${g.memoryMiB}MiB`).join(', ')}; driver ${record.gpusBefore.driver})`);

  let ids, jobs, logs;
  if (mode === 'two') {
    // A and B: one GPU each, at once, each holding its card for E2E_BUSY seconds of
    // bf16 products. C: one GPU, must wait until A or B ends. D: two GPUs, waits
    // behind C (strict order for GPU jobs) and then sees both cards.
    const busy = { E2E_BUSY: '6', E2E_DRY_SLEEP: '3' };
    const a = await sub(gpuJob('e2e-two-a', 1, busy));
    const b = await sub(gpuJob('e2e-two-b', 1, busy));
    const c = await sub(gpuJob('e2e-two-c', 1));
    const d = await sub(gpuJob('e2e-two-both', 2));
    ids = { a: a.id, b: b.id, c: c.id, d: d.id };
    jobs = await waitAll(ids, async (j) => {
      if (!record.observed.abRunning && j.a.state === 'running' && j.b.state === 'running' && j.c.state === 'queued') {
        record.observed.abRunning = { c: { position: j.c.position, reason: j.c.reason }, d: { state: j.d.state, position: j.d.position, reason: j.d.reason } };
        record.gpusDuring = (await call('GET', '/v1/gpus')).body;
        record.mapDuring = readMap();
      }
      if (!record.observed.cRunning && j.c.state === 'running' && j.d.state === 'queued') {
        record.observed.cRunning = { d: { position: j.d.position, reason: j.d.reason } };
      }
    });
    logs = await finish(ids, jobs);
    inspect('job A (1 GPU)', jobs.a, logs.a, 1);
    inspect('job B (1 GPU)', jobs.b, logs.b, 1);
    const ua = jobs.a.gpus?.[0], ub = jobs.b.gpus?.[0];
    check(ua && ub && ua !== ub, `A and B were given different cards: A ${ua}, B ${ub}`);
    const overlap = Date.parse(jobs.a.startedAt) < Date.parse(jobs.b.finishedAt) && Date.parse(jobs.b.startedAt) < Date.parse(jobs.a.finishedAt);
    const ab = record.observed.abRunning;
    check(overlap && ab?.c?.reason?.startsWith('waiting for GPUs') && ab?.c?.position === 0, `A and B ran at the same time while C waited: ${JSON.stringify(ab)}`);
    const during = record.gpusDuring?.items ?? [];
    check(during.length >= 2 && during.every((g) => g.holders.length === 1) && new Set(during.map((g) => g.holders[0]?.jobId)).size === during.length && during.every((g) => [ids.a, ids.b].includes(g.holders[0]?.jobId)), `GET /v1/gpus while A and B ran: ${during.map((g) => `${g.uuid} held by ${g.holders.map((h) => Object.entries(ids).find(([, v]) => v === h.jobId)?.[0] ?? h.jobId).join(',')}`).join('; ')}`);
    if (!dry) {
      const win = (log) => { const m = /BUSY .*start=([\d.]+) end=([\d.]+)/.exec(log); return m ? [Number(m[1]), Number(m[2])] : null; };
      const wa = win(logs.a), wb = win(logs.b);
      const both = wa && wb ? Math.min(wa[1], wb[1]) - Math.max(wa[0], wb[0]) : -1;
      check(both > 1, `the two cards computed at the same time: in-container bf16 windows overlapped ${both.toFixed(2)} s (${/BUSY .*/.exec(logs.a)?.[0]} | ${/BUSY .*/.exec(logs.b)?.[0]})`);
    }
    inspect('job C (1 GPU, third)', jobs.c, logs.c, 1);
    const uc = jobs.c.gpus?.[0];
    const freedBy = uc === ua ? jobs.a : uc === ub ? jobs.b : null;
    check(freedBy && Date.parse(jobs.c.startedAt) >= Date.parse(freedBy.finishedAt), `C waited, then ran on the card that ${freedBy === jobs.a ? 'A' : freedBy === jobs.b ? 'B' : '?'} released: started ${jobs.c.startedAt} >= ${freedBy?.finishedAt}`);
    inspect('job D (2 GPUs)', jobs.d, logs.d, 2);
    check([...(jobs.d.gpus ?? [])].sort().join(',') === [...hostList].sort().join(',') && Date.parse(jobs.d.startedAt) >= Math.max(...['a', 'b', 'c'].map((k) => Date.parse(jobs[k].finishedAt))), `D saw both cards and started only after A, B and C had ended (queued: ${JSON.stringify(record.observed.cRunning ?? ab?.d)})`);
  } else {
    const first = await sub(gpuJob('e2e-gpu-torch', 1));
    const second = await sub({ name: 'e2e-gpu-second', image, command: ['sh', '-c', dry ? show : `${show}; nvidia-smi -L`], env: MC, gpus: { count: 1 }, resources: res, timeoutSeconds: 300 });
    const cpu = await sub({ name: 'e2e-cpu', image, command: ['sh', '-c', 'echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"; ls /dev/nvidia0 2>&1 || echo "no GPU device node"'], env: MC, timeoutSeconds: 120 });
    ids = { first: first.id, second: second.id, cpu: cpu.id };
    jobs = await waitAll(ids, async (j) => {
      if (!record.observed.secondQueued && j.first.state === 'running' && j.second.state === 'queued') {
        record.observed.secondQueued = { position: j.second.position, reason: j.second.reason };
        record.gpusDuring = (await call('GET', '/v1/gpus')).body;
        record.mapDuring = readMap();
      }
    });
    logs = await finish(ids, jobs);
    const uuid = jobs.first.gpus?.[0];
    inspect('GPU job', jobs.first, logs.first, 1);
    const q = record.observed.secondQueued;
    check(q?.reason?.startsWith('waiting for GPUs') && q?.position === 0, `the second GPU job waited while the first held the GPU: ${JSON.stringify(q)}`);
    check(jobs.second.state === 'succeeded' && jobs.second.gpus?.[0] === uuid && Date.parse(jobs.second.startedAt) >= Date.parse(jobs.first.finishedAt), `the second GPU job then ran on the same card (${jobs.second.state}, ${jobs.second.gpus})`);
    if (!dry) check(logs.second.includes(`(UUID: ${uuid})`), 'the second job saw the card in nvidia-smi -L');
    check(jobs.cpu.state === 'succeeded' && logs.cpu.includes('NVIDIA_VISIBLE_DEVICES=void') && logs.cpu.includes('no GPU device node'), `the CPU job saw void and no /dev/nvidia0: ${JSON.stringify(logs.cpu.trim())}`);
  }
  check((record.gpusAfter.items ?? []).every((g) => g.holders.length === 0), 'every GPU is free at the end');

  // The dcgm-exporter mapping: a file per held card, named by its nvidia-smi index, listing its holders; none once free.
  const wantMap = Object.fromEntries((record.gpusDuring?.items ?? []).filter((g) => g.holders.length > 0).map((g) => [String(g.index), g.holders.map((h) => h.jobId)]));
  check(record.mapDuring && JSON.stringify(record.mapDuring) === JSON.stringify(wantMap) && Object.keys(wantMap).length > 0, `dcgm job mapping while jobs ran matched GET /v1/gpus: ${JSON.stringify(record.mapDuring)}`);
  check(Object.keys(readMap()).length === 0, 'dcgm job mapping is empty once every GPU is free');
  // Usage: Σ over the jobs' attempts of (finishedAt − startedAt) × GPUs, each card billed by its inventory name (GANTRY_GPU_MODEL_WEIGHTS=H200=2).
  const all = Object.values(jobs);
  // From the first submit: a previous run's jobs on the same data dir ended before it.
  const from = new Date(Math.min(...all.map((j) => Date.parse(j.createdAt)))).toISOString();
  const usage = (await call('GET', `/v1/usage?from=${from}&to=${new Date(Date.now() + 1000).toISOString()}`)).body;
  const wantSeconds = all.flatMap((j) => j.attempts).reduce((s, a) => s + (a.startedAt ? ((Date.parse(a.finishedAt) - Date.parse(a.startedAt)) / 1000) * a.gpus.length : 0), 0);
  const item = usage.items?.[0];
  const names = [...new Set(inv.map((g) => g.name))];
  const weight = names[0]?.toLowerCase().includes('h200') ? 2 : 1;
  record.usage = usage;
  check(usage.items?.length === 1 && Math.abs(item.gpuSeconds - wantSeconds) < 0.01 && item.jobs === all.filter((j) => j.gpus?.length).length, `GET /v1/usage: ${item?.gpuSeconds} GPU-seconds (jobs' attempts say ${wantSeconds.toFixed(3)}), ${item?.jobs} GPU jobs`);
  check(names.length === 1 && item?.byModel?.length === 1 && item.byModel[0].model === names[0] && item.byModel[0].weight === weight && Math.abs(item.weightedGpuHours - (weight * item.gpuSeconds) / 3600) < 1e-5, `usage billed by the inventory's model name: ${JSON.stringify(item?.byModel)}`);

  fs.writeFileSync(`${out}/jobs.json`, JSON.stringify(record, null, 2));
  fs.writeFileSync(`${out}/job-logs.txt`, Object.entries(logs).map(([k, l]) => `===== ${k} (${ids[k]}) =====\n${l}`).join('\n'));
  fs.appendFileSync(`${out}/summary.txt`, ['## timeline (from GET /v1/jobs/{id}, relative to the first submit)', ...record.timeline, '## checks', ...results].join('\n') + '\n');
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
  GPUS_SRC=$(echo "$HOST_UUIDS" | tr ',' '\n' | sed 's/$/:81920/' | paste -sd, -)
  DRIVER=env
  DRIVER_MOUNTS=
  DRIVER_ENV=
fi
log "Gantry: GANTRY_GPUS=$GPUS_SRC GANTRY_GPU_DRIVER=$DRIVER GANTRY_GPU_DRIVER_MOUNTS=$DRIVER_MOUNTS GANTRY_GPU_DRIVER_ENV=$DRIVER_ENV"
start_gantry() { # extra VAR=VALUE settings
  env GANTRY_DATA_DIR="$WORK/data" GANTRY_ADMIN_TOKEN="$TOKEN" GANTRY_HOST=127.0.0.1 GANTRY_PORT="$PORT" \
    GANTRY_DOCKER_SOCKET="$SOCK" GANTRY_GPUS="$GPUS_SRC" GANTRY_GPU_DRIVER="$DRIVER" \
    GANTRY_GPU_DRIVER_MOUNTS="$DRIVER_MOUNTS" GANTRY_GPU_DRIVER_ENV="$DRIVER_ENV" GANTRY_LOG_LEVEL=info \
    GANTRY_DCGM_JOB_MAPPING_DIR="$WORK/dcgm-map" GANTRY_GPU_MODEL_WEIGHTS=H200=2 GANTRY_GPU_HEALTH_INTERVAL_SECONDS=2 "$@" \
    "$NODE" "$WORK/app/dist/src/main.js" >> "$WORK/gantry.log" 2>&1 &
  GANTRY_PID=$!
  for i in $(seq 1 60); do
    "$NODE" -e "fetch('http://127.0.0.1:$PORT/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
    kill -0 "$GANTRY_PID" 2>/dev/null || { tail -20 "$WORK/gantry.log" >&2; die "gantry exited"; }
    sleep 0.5
  done
  log "Gantry answers on 127.0.0.1:$PORT ($*)"
}
: > "$WORK/gantry.log"
start_gantry

# ---- 5. jobs over HTTP -------------------------------------------------------
log "mode $MODE: submitting the jobs"
if [ "$MODE" = telemetry ]; then
  tele() { E2E_URL="http://127.0.0.1:$PORT" E2E_TOKEN="$TOKEN" E2E_DRY="$DRY" E2E_OUT="$OUT" E2E_PYTHON="$PYTHON" E2E_GANTRY_PID="$GANTRY_PID" \
    "$NODE" "$ROOT/scripts/gpu-e2e-telemetry.mjs" "$1"; }
  tele on || die "telemetry run (sampling on) failed"
  ps -o pid,etimes,cputime,args -p "$GANTRY_PID" > "$OUT/gantry-ps.txt"
  log "restarting Gantry with sampling off"
  kill "$GANTRY_PID"; for _ in $(seq 1 40); do kill -0 "$GANTRY_PID" 2>/dev/null || break; sleep 0.25; done
  start_gantry GANTRY_GPU_SAMPLE_SECONDS=0
  tele off || die "telemetry run (sampling off) failed"
  ps -o pid,etimes,cputime,args -p "$GANTRY_PID" >> "$OUT/gantry-ps.txt"
  tele report
  RC=$?
  [ "$RC" = 0 ] && log "ALL CHECKS PASSED" || log "SOME CHECKS FAILED"
  exit "$RC"
fi
E2E_MODE="$MODE" E2E_URL="http://127.0.0.1:$PORT" E2E_TOKEN="$TOKEN" E2E_DRY="$DRY" E2E_OUT="$OUT" HOST_UUIDS="$HOST_UUIDS" E2E_PYTHON="$PYTHON" E2E_MAP="$WORK/dcgm-map" \
  "$NODE" "$WORK/e2e.mjs" run
RC=$?
[ "$RC" = 0 ] && log "ALL CHECKS PASSED" || log "SOME CHECKS FAILED"
exit "$RC"
