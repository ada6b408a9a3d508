import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GpuSample, GpuWarning } from '../../src/model/gpu-telemetry.js';
import type { Job } from '../../src/model/job.js';
import { ADMIN_TOKEN, containersOf, docker, type InProcessGantry, startGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

// The real engine runs the jobs; an `nvidia-smi` on the PATH answers the
// sampler's two queries from files the test writes, so the test decides what
// the cards show. The compute-apps answer names the real host PIDs of the
// jobs' containers (from the engine), which is what proves that the sampler
// attributes a shared card's memory to the right job.
const UUID0 = 'GPU-11111111-aaaa-4000-8000-000000000001';
const UUID1 = 'GPU-22222222-bbbb-4000-8000-000000000002';
const GPUS = `${UUID0}:81920,${UUID1}:81920`;

const SMI_DIR = tempDir('gantry-fake-smi-');
fs.writeFileSync(
  path.join(SMI_DIR, 'nvidia-smi'),
  `#!/bin/sh
echo "$1" >> "${SMI_DIR}/calls.log"
case "$1" in
  --query-gpu=uuid,utilization.gpu,memory.used,power.draw) cat "${SMI_DIR}/cards.csv" ;;
  --query-compute-apps=gpu_uuid,pid,used_memory) cat "${SMI_DIR}/apps.csv" ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
`,
  { mode: 0o755 },
);
const cards = (rows: string[]) => fs.writeFileSync(path.join(SMI_DIR, 'cards.csv'), `${rows.join('\n')}\n`);
const apps = (rows: string[]) => fs.writeFileSync(path.join(SMI_DIR, 'apps.csv'), rows.length ? `${rows.join('\n')}\n` : '');
process.env.PATH = `${SMI_DIR}:${process.env.PATH}`;

const GATE_DIR = tempDir('gantry-gate-');
function newGate(): { mounts: { source: string; target: string }[]; open(): void } {
  const dir = fs.mkdtempSync(`${GATE_DIR}/g-`);
  fs.chmodSync(dir, 0o755);
  return { mounts: [{ source: dir, target: '/gate' }], open: () => fs.writeFileSync(`${dir}/open`, '') };
}
const held = (gate: ReturnType<typeof newGate>, gpus: Record<string, unknown>) => ({
  image: TEST_IMAGE,
  command: ['sh', '-c', 'while [ ! -e /gate/open ]; do sleep 0.05; done'],
  mounts: gate.mounts,
  gpus,
});

async function gantry(t: TestContext, env: Record<string, string> = {}): Promise<InProcessGantry> {
  return startGantry(t, {
    GANTRY_GPUS: GPUS,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_MOUNT_ALLOWLIST: GATE_DIR,
    GANTRY_GPU_SAMPLE_SECONDS: '0.2',
    ...env,
  });
}

/** The host PID of the job's container's first process, as the engine reports it. */
async function hostPid(jobId: string): Promise<number> {
  const [c] = await containersOf(jobId);
  assert.ok(c, `no container for ${jobId}`);
  const pid = (await docker.getContainer(c.Id).inspect()).State.Pid;
  assert.ok(pid > 0);
  return pid;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

/** The value of a metric series with exactly these labels, or undefined. */
function metric(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (m?.[1] === name && (m[2]!.match(/[a-z_]+="[^"]*"/g) ?? []).sort().join(',') === want) return Number(m[3]);
  }
  return undefined;
}
const scrape = async (g: InProcessGantry) => (await g.call('GET', '/metrics')).text;

test('exclusive and shared jobs: summaries on the view, shared memory by container PID, live /metrics series that go with the job, SSE telemetry and an idle warning', async (t) => {
  cards([`${UUID0}, 87, 30000, 400.50`, `${UUID1}, 60, 9000, 300.00`]);
  apps([]);
  const g = await gantry(t, { GANTRY_GPU_IDLE_MINUTES: '0.01', GANTRY_GPU_IDLE_ACTION: 'warn' });
  fs.rmSync(path.join(SMI_DIR, 'calls.log'), { force: true });
  await sleep(1000); // five ticks
  assert.equal(fs.existsSync(path.join(SMI_DIR, 'calls.log')), false, 'no GPU job runs: nvidia-smi is not run');
  const gate = newGate();
  const a = await g.submit(held(gate, { count: 1 }));
  const s1 = await g.submit(held(gate, { count: 1, memoryMiB: 4096 }));
  const s2 = await g.submit(held(gate, { count: 1, memoryMiB: 4096 }));
  for (const j of [a, s1, s2]) await g.waitFor(j.id, (v) => v.state === 'running');
  assert.deepEqual((await g.job(a.id)).gpus, [UUID0]);
  assert.deepEqual((await g.job(s1.id)).gpus, [UUID1]);
  assert.deepEqual((await g.job(s2.id)).gpus, [UUID1]);
  // Each sharing job's own processes; a stranger's process on the card counts for nobody.
  apps([`${UUID1}, ${await hostPid(s1.id)}, 3000`, `${UUID1}, ${await hostPid(s2.id)}, 5000`, `${UUID1}, 999999, 20000`]);

  const sse = readSse(`${g.url}/v1/jobs/${a.id}/logs?telemetry=true`, ADMIN_TOKEN, {
    stop: (e) => e.event === 'gpu-warning',
  });

  const viewA = await until('A sampled twice', async () => {
    const v = await g.job(a.id);
    return (v.gpuTelemetry?.samples ?? 0) >= 2 && v;
  });
  assert.equal(viewA.gpuTelemetry!.sharedCard, false);
  assert.equal(viewA.gpuTelemetry!.meanUtilizationPct, 87);
  assert.equal(viewA.gpuTelemetry!.peakUtilizationPct, 87);
  assert.equal(viewA.gpuTelemetry!.peakMemoryMiB, 30000);
  assert.ok(viewA.gpuTelemetry!.energyJoules! > 0);
  assert.ok(viewA.gpuTelemetry!.gpuSeconds > 0);

  const shared = async (id: string, mem: number) =>
    until(`${id} saw ${mem} MiB`, async () => {
      const v = await g.job(id);
      return v.gpuTelemetry?.peakMemoryMiB === mem && v;
    });
  const v1 = await shared(s1.id, 3000);
  const v2 = await shared(s2.id, 5000);
  assert.equal(v1.gpuTelemetry!.sharedCard, true);
  assert.equal(v1.gpuTelemetry!.meanUtilizationPct, null, 'a shared card’s utilisation is not the job’s');
  assert.equal(v1.gpuTelemetry!.energyJoules, null);
  assert.equal(v1.gpuTelemetry!.overDeclaredMemory, false);
  assert.equal(v2.gpuTelemetry!.overDeclaredMemory, true, 'S2 uses 5000 MiB, declared 4096');
  assert.equal(v2.gpuTelemetry!.warnings[0]?.kind, 'memory_exceeded');
  assert.equal(v2.gpuTelemetry!.warnings[0]?.action, 'warn');
  assert.equal(v2.state, 'running', 'warn only');

  const owner = viewA.owner;
  const text = await scrape(g);
  assert.equal(metric(text, 'gantry_job_gpu_utilization_ratio', { job_id: a.id, owner, gpu: UUID0 }), 0.87);
  assert.equal(metric(text, 'gantry_job_gpu_power_watts', { job_id: a.id, owner, gpu: UUID0 }), 400.5);
  assert.equal(metric(text, 'gantry_job_gpu_memory_used_bytes', { job_id: a.id, owner, gpu: UUID0 }), 30000 * 1024 * 1024);
  assert.equal(metric(text, 'gantry_job_gpu_memory_used_bytes', { job_id: s1.id, owner, gpu: UUID1 }), 3000 * 1024 * 1024);
  assert.equal(metric(text, 'gantry_job_gpu_memory_used_bytes', { job_id: s2.id, owner, gpu: UUID1 }), 5000 * 1024 * 1024);
  assert.equal(metric(text, 'gantry_job_gpu_utilization_ratio', { job_id: s1.id, owner, gpu: UUID1 }), undefined);

  // The card falls idle: a warning, on the view and on the SSE stream, and the job runs on.
  cards([`${UUID0}, 0, 30000, 90.00`, `${UUID1}, 60, 9000, 300.00`]);
  const { events } = await sse;
  const telemetry = events.filter((e) => e.event === 'telemetry');
  assert.ok(telemetry.length >= 1, 'telemetry events before the warning');
  assert.ok(
    telemetry.every((e) => e.id === undefined),
    'telemetry events carry no id (Last-Event-ID stays the log’s)',
  );
  const sample = JSON.parse(telemetry[0]!.data) as GpuSample;
  assert.equal(sample.jobId, a.id);
  assert.deepEqual(sample.gpus[0], { uuid: UUID0, utilizationPct: 87, memoryUsedMiB: 30000, powerWatts: 400.5 });
  const warning = JSON.parse(events.at(-1)!.data) as GpuWarning;
  assert.equal(warning.kind, 'idle');
  assert.equal(warning.action, 'warn');
  const idleView = await g.job(a.id);
  assert.equal(idleView.state, 'running');
  assert.ok(idleView.gpuTelemetry!.warnings.some((w) => w.kind === 'idle'));
  assert.equal(idleView.gpuTelemetry!.peakUtilizationPct, 87);
  const logA = await until('the warning in the job’s log', async () => {
    const text = (await g.call('GET', `/v1/jobs/${a.id}/logs`)).text;
    return text.includes('[gantry] GPU warning') && text;
  });
  assert.match(logA, /\[gantry\] GPU warning \(idle\): its GPUs were at most 5% utilised for [\d.]+ minutes/);

  // Each tick ran the two queries once, for all three jobs together.
  const calls = fs.readFileSync(path.join(SMI_DIR, 'calls.log'), 'utf8').trim().split('\n');
  const cardQueries = calls.filter((c) => c.startsWith('--query-gpu=')).length;
  assert.ok(cardQueries >= 2);
  assert.ok(Math.abs(calls.filter((c) => c.startsWith('--query-compute-apps=')).length - cardQueries) <= 1);
  assert.ok(cardQueries < Number(idleView.gpuTelemetry!.samples) + 3, `one card query per tick, not per job: ${cardQueries}`);

  gate.open();
  const ended = await Promise.all([a, s1, s2].map((j) => g.waitFor(j.id)));
  for (const j of ended) assert.equal(j.state, 'succeeded', j.reason ?? '');
  const endedA = ended[0]!;
  const heldSeconds = (Date.parse(endedA.finishedAt!) - Date.parse(endedA.startedAt!)) / 1000;
  assert.ok(Math.abs(endedA.gpuTelemetry!.gpuSeconds - heldSeconds) < 0.011, 'GPU-seconds of an ended job: one card × its run time');
  assert.deepEqual(endedA.attempts[0]?.gpuTelemetry, endedA.gpuTelemetry, 'the ended attempt keeps its summary');
  await until('series removed', async () => {
    const after = await scrape(g);
    return !after.includes(a.id) && !after.includes(s1.id) && !after.includes(s2.id);
  });
});

test('policy end: an idle card ends its job (cause idle); a sharing job over its declared memory ends (cause memory_exceeded)', async (t) => {
  cards([`${UUID0}, 0, 500, 80.00`, `${UUID1}, 70, 9000, 300.00`]);
  apps([]);
  const g = await gantry(t, {
    GANTRY_GPU_IDLE_MINUTES: '0.01',
    GANTRY_GPU_IDLE_ACTION: 'end',
    GANTRY_GPU_MEMORY_EXCEEDED_ACTION: 'end',
  });
  const gate = newGate();
  t.after(() => gate.open());
  const idle = await g.submit(held(gate, { count: 1 }));
  const greedy = await g.submit(held(gate, { count: 1, memoryMiB: 2048 }));
  await g.waitFor(greedy.id, (v) => v.state === 'running');
  apps([`${UUID1}, ${await hostPid(greedy.id)}, 2049`]);

  const check = (j: Job, cause: string, pattern: RegExp) => {
    assert.equal(j.state, 'failed');
    assert.equal(j.attempts.at(-1)?.cause, cause);
    assert.match(j.reason ?? '', pattern);
    assert.equal(j.gpuTelemetry?.warnings.at(-1)?.action, 'end');
    assert.equal(j.attempts.at(-1)?.gpuTelemetry?.warnings.at(-1)?.kind, cause);
  };
  check(await g.waitFor(idle.id, undefined, 30_000), 'idle', /utilised for .* minutes \(GANTRY_GPU_IDLE_MINUTES=0\.01\)/);
  check(await g.waitFor(greedy.id, undefined, 30_000), 'memory_exceeded', /2049 MiB of shared GPU .* 2048 MiB it declared/);
  assert.match((await g.call('GET', `/v1/jobs/${greedy.id}/logs`)).text, /\[gantry\] GPU warning \(memory_exceeded, ending the job\)/);
});
