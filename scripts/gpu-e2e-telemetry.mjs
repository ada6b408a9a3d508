// The telemetry run of scripts/gpu-e2e.sh (GPU_E2E_MODE=telemetry), against a
// Gantry the script started. `on`: with sampling at the default rate, a bf16
// matrix-product job (its own throughput and torch.cuda.max_memory_reserved()),
// an idle job holding the card, and two sharing jobs allocating known amounts;
// `off`: the same product job with sampling off (Gantry restarted with
// GANTRY_GPU_SAMPLE_SECONDS=0). `report` compares the two and writes the checks.
// With E2E_DRY=1 no job touches a GPU and every check that needs nvidia-smi or
// PyTorch is reported SKIP, not PASS.
import fs from 'node:fs';

const [phase] = process.argv.slice(2);
const { E2E_URL: url, E2E_TOKEN: token, E2E_DRY: dry, E2E_OUT: out, E2E_PYTHON: python, E2E_GANTRY_PID: gantryPid } = process.env;
const BUSY = dry ? 3 : 50;
/** GANTRY_GPU_SAMPLE_SECONDS's default, at which the `on` phase runs. */
const SAMPLE_SECONDS = 10;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const call = async (method, p, body) => {
  const res = await fetch(url + p, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text };
};
const terminal = (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state);
const job = async (id) => (await call('GET', `/v1/jobs/${id}`)).body;
const sub = async (spec) => {
  const r = await call('POST', '/v1/jobs', spec);
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};
/** CPU seconds of Gantry and of the children it waited for (its nvidia-smi runs), from /proc (what `ps` reads). */
const gantryCpu = () => {
  const f = fs.readFileSync(`/proc/${gantryPid}/stat`, 'utf8').split(') ')[1].split(' ');
  // Fields 14-17 of stat (utime, stime, cutime, cstime), counted after the command name.
  return f.slice(11, 15).reduce((a, b) => a + Number(b), 0) / 100;
};

const PY = [
  'import os, time, torch',
  'hold = torch.empty(int(os.environ["E2E_HOLD_MIB"]) << 20, dtype=torch.uint8, device="cuda")',
  'busy = float(os.environ["E2E_BUSY"])',
  'if os.environ["E2E_WORK"] == "matmul":',
  '    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)',
  '    for _ in range(3): x @ y',
  '    torch.cuda.synchronize(); t0 = time.time(); k = 0',
  '    while time.time() - t0 < busy:',
  '        for _ in range(20): x @ y',
  '        torch.cuda.synchronize(); k += 20',
  '    dt = time.time() - t0',
  '    print(f"THROUGHPUT bf16 8192x8192x8192 {2 * 8192 ** 3 * k / dt / 1e12:.2f} TFLOP/s products={k} seconds={dt:.1f}", flush=True)',
  'else:',
  '    time.sleep(busy)',
  'torch.cuda.synchronize()',
  'print(f"MAXRESERVED_MIB {torch.cuda.max_memory_reserved() >> 20}", flush=True)',
].join('\n');
const MC = { NCCL_NVLS_ENABLE: '0', TORCH_SYMM_MEM_DISABLE_MULTICAST: '1', NVSHMEM_DISABLE_NVLS: '1' };
const spec = (name, work, holdMiB, gpus, busy = BUSY) => ({
  name,
  image: 'local/gpu-host:latest',
  command: ['sh', '-c', dry ? `sleep ${busy}; echo "THROUGHPUT dry"` : '"$E2E_PYTHON" -c "$E2E_PY"'],
  env: { ...MC, E2E_PY: PY, E2E_PYTHON: python ?? 'python3', E2E_WORK: work, E2E_HOLD_MIB: String(holdMiB), E2E_BUSY: String(busy) },
  gpus,
  resources: { memoryMiB: 16384, shmMiB: 1024 },
  timeoutSeconds: 600,
});

/** Runs the product job alone and measures it and Gantry's CPU while it runs. */
async function productRun(name) {
  const m = await sub(spec(name, 'matmul', 16384, { count: 1 }));
  let v = await job(m.id);
  while (v.state !== 'running' && !terminal(v)) v = await job(m.id).then(async (j) => (await sleep(100), j));
  const cpu0 = gantryCpu();
  const t0 = Date.now();
  let metrics = null;
  let gpus = null;
  // Polled once a second: the API calls are Gantry's CPU too, the same with sampling on and off.
  while (!terminal(v)) {
    await sleep(1000);
    v = await job(m.id);
    if (!metrics && Date.now() - t0 > (BUSY * 1000) / 2) {
      const text = (await call('GET', '/metrics')).body;
      metrics = String(text).split('\n').filter((l) => l.startsWith('gantry_job_gpu_')).join('\n');
      gpus = (await call('GET', '/v1/gpus')).body;
    }
  }
  const cpu = gantryCpu() - cpu0;
  const wall = (Date.now() - t0) / 1000;
  const log = String((await call('GET', `/v1/jobs/${m.id}/logs`)).body);
  const after = String((await call('GET', '/metrics')).body).split('\n').filter((l) => l.includes(m.id));
  return { job: v, log, cpuSeconds: cpu, wallSeconds: wall, metricsWhileRunning: metrics, metricsAfter: after, gpusWhileRunning: gpus };
}

if (phase === 'on') {
  const product = await productRun('e2e-telemetry-matmul');
  const idle = await sub(spec('e2e-telemetry-idle', 'idle', 2048, { count: 1 }, dry ? 3 : 35));
  const s1 = await sub(spec('e2e-telemetry-share-6g', 'idle', 6144, { count: 1, memoryMiB: 20480 }, dry ? 3 : 30));
  const s2 = await sub(spec('e2e-telemetry-share-10g', 'idle', 10240, { count: 1, memoryMiB: 20480 }, dry ? 3 : 30));
  let sharedGpus = null;
  const ids = { idle: idle.id, s1: s1.id, s2: s2.id };
  const jobs = {};
  for (;;) {
    for (const [k, id] of Object.entries(ids)) jobs[k] = await job(id);
    if (!sharedGpus && jobs.s1.state === 'running' && jobs.s2.state === 'running') sharedGpus = (await call('GET', '/v1/gpus')).body;
    if (Object.values(jobs).every(terminal)) break;
    await sleep(500);
  }
  const logs = {};
  for (const [k, id] of Object.entries(ids)) logs[k] = String((await call('GET', `/v1/jobs/${id}/logs`)).body);
  fs.writeFileSync(`${out}/telemetry-on.json`, JSON.stringify({ product, jobs, logs, sharedGpus }, null, 2));
} else if (phase === 'off') {
  fs.writeFileSync(`${out}/telemetry-off.json`, JSON.stringify({ product: await productRun('e2e-telemetry-matmul-off') }, null, 2));
} else if (phase === 'report') {
  const on = JSON.parse(fs.readFileSync(`${out}/telemetry-on.json`, 'utf8'));
  const off = JSON.parse(fs.readFileSync(`${out}/telemetry-off.json`, 'utf8'));
  const results = [];
  const check = (ok, what) => results.push(`${ok ? 'PASS' : 'FAIL'} ${what}`);
  const skip = (what) => results.push(`SKIP (dry run: no GPU, nvidia-smi or PyTorch) ${what}`);
  const t = (j) => j.gpuTelemetry;
  const num = (re, s) => Number(re.exec(s)?.[1] ?? Number.NaN);
  check(on.product.job.state === 'succeeded' && off.product.job.state === 'succeeded', `both product jobs succeeded (${on.product.job.state}, ${off.product.job.state})`);
  for (const k of ['idle', 's1', 's2']) check(on.jobs[k].state === 'succeeded', `${k} succeeded (${on.jobs[k].state}, ${on.jobs[k].reason})`);
  check(off.product.job.gpuTelemetry === null, 'with GANTRY_GPU_SAMPLE_SECONDS=0 the job has no telemetry');
  const sharedCards = (on.sharedGpus?.items ?? []).filter((g) => g.holders.length === 2);
  check(sharedCards.length === 1, `the two sharing jobs held one card together: ${JSON.stringify(on.sharedGpus?.items?.map((g) => g.holders))}`);
  const tOn = num(/THROUGHPUT .* ([\d.]+) TFLOP\/s/, on.product.log);
  const tOff = num(/THROUGHPUT .* ([\d.]+) TFLOP\/s/, off.product.log);
  const samplerCpu = on.product.cpuSeconds - (off.product.cpuSeconds / off.product.wallSeconds) * on.product.wallSeconds;
  const cpuPerGpu = (samplerCpu / on.product.wallSeconds) * 100;
  const ticks = on.product.wallSeconds / SAMPLE_SECONDS;
  const figures = {
    throughputTflops: { on: tOn, off: tOff, differencePct: ((tOff - tOn) / tOff) * 100 },
    gantryCpu: {
      on: { cpuSeconds: on.product.cpuSeconds, wallSeconds: on.product.wallSeconds },
      off: { cpuSeconds: off.product.cpuSeconds, wallSeconds: off.product.wallSeconds },
      samplerPctOfOneCorePerSampledGpu: cpuPerGpu,
      samplerCpuMsPerTick: (samplerCpu * 1000) / ticks,
    },
    product: t(on.product.job),
    maxReservedMiB: num(/MAXRESERVED_MIB (\d+)/, on.product.log),
    idle: t(on.jobs.idle),
    shared: { s1: t(on.jobs.s1), s2: t(on.jobs.s2) },
  };
  fs.writeFileSync(`${out}/telemetry-figures.json`, JSON.stringify(figures, null, 2));
  fs.writeFileSync(`${out}/telemetry-metrics.txt`, `## /metrics while the product job ran\n${on.product.metricsWhileRunning}\n## its series after it ended (none expected)\n${on.product.metricsAfter.join('\n')}\n`);
  fs.writeFileSync(`${out}/telemetry-gpus.json`, JSON.stringify({ whileProductRan: on.product.gpusWhileRunning, whileSharing: on.sharedGpus }, null, 2));
  check(on.product.metricsAfter.length === 0, 'the product job’s /metrics series were removed when it ended');
  if (dry) {
    for (const w of ['product job: mean utilisation > 50%', 'product job: peak memory within 10% of torch.cuda.max_memory_reserved()', 'idle job: ~0% utilisation', 'sharing jobs: each its own memory', 'throughput with telemetry on within 1% of off', '/metrics carried the product job’s series']) skip(w);
  } else {
    const p = t(on.product.job);
    check(p?.meanUtilizationPct > 50, `product job: mean utilisation ${p?.meanUtilizationPct}% (peak ${p?.peakUtilizationPct}%) over ${p?.samples} samples, energy ${p?.energyJoules} J, ${p?.gpuSeconds} GPU-s`);
    const reserved = figures.maxReservedMiB;
    check(Math.abs(p?.peakMemoryMiB - reserved) <= 0.1 * reserved, `product job: peak memory ${p?.peakMemoryMiB} MiB vs torch.cuda.max_memory_reserved() ${reserved} MiB (within 10%)`);
    const i = t(on.jobs.idle);
    check(i?.peakUtilizationPct !== null && i?.peakUtilizationPct <= 5, `idle job holding 2 GiB: mean ${i?.meanUtilizationPct}%, peak ${i?.peakUtilizationPct}% over ${i?.samples} samples, memory ${i?.peakMemoryMiB} MiB`);
    const a = t(on.jobs.s1);
    const b = t(on.jobs.s2);
    const near = (x, want) => x >= want && x <= want + 1536; // plus its CUDA context
    check(a?.sharedCard && b?.sharedCard && near(a?.peakMemoryMiB, 6144) && near(b?.peakMemoryMiB, 10240), `sharing jobs: own memory 6 GiB job ${a?.peakMemoryMiB} MiB, 10 GiB job ${b?.peakMemoryMiB} MiB (utilisation ${a?.meanUtilizationPct}/${b?.meanUtilizationPct}: not split)`);
    check(Math.abs(figures.throughputTflops.differencePct) <= 1, `throughput with telemetry at the default rate ${tOn} TFLOP/s, off ${tOff} TFLOP/s (${figures.throughputTflops.differencePct.toFixed(2)}%)`);
    check(/gantry_job_gpu_utilization_ratio\{/.test(on.product.metricsWhileRunning ?? ''), `/metrics carried the product job’s series: ${(on.product.metricsWhileRunning ?? '').split('\n').join(' | ')}`);
  }
  results.push(`INFO Gantry CPU while the product job ran: on ${on.product.cpuSeconds.toFixed(2)} s / ${on.product.wallSeconds.toFixed(1)} s, off ${off.product.cpuSeconds.toFixed(2)} s / ${off.product.wallSeconds.toFixed(1)} s: the sampler ≈ ${cpuPerGpu.toFixed(3)}% of one core per sampled GPU, ≈ ${((samplerCpu * 1000) / ticks).toFixed(1)} ms of CPU per ${SAMPLE_SECONDS} s tick (one GPU)`);
  fs.appendFileSync(`${out}/summary.txt`, ['## telemetry checks', ...results].join('\n') + '\n');
  for (const r of results) console.log(r);
  process.exit(results.some((r) => r.startsWith('FAIL')) ? 1 : 0);
}
