import assert from 'node:assert/strict';
import fs from 'node:fs';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import { type InProcessGantry, startGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

// The env driver with a static inventory: Gantry's allocation and queue run
// for real against the engine, with no GPU needed. Each job prints what it
// was given, so the test reads the allocation back from inside containers.
const TWO_GPUS = 'GPU-11111111-aaaa-4000-8000-000000000001:81920,GPU-22222222-bbbb-4000-8000-000000000002:81920';
const [UUID0, UUID1] = TWO_GPUS.split(',').map((e) => e.split(':')[0]!);

interface GpuView {
  index: number;
  uuid: string;
  memoryMiB: number;
  allocatedMemoryMiB: number;
  holders: { jobId: string; memoryMiB: number | null }[];
}

/**
 * A folder mounted read-only at /gate: jobs that `await` it block until the
 * test opens the gate, so what runs at once is decided by the test, not by
 * how fast this machine is.
 */
const GATE_DIR = tempDir('gantry-gate-');
const AWAIT = 'while [ ! -e /gate/open ]; do sleep 0.05; done';
function newGate(): { env: Record<string, string>; mounts: { source: string; target: string }[]; open(): void } {
  const dir = fs.mkdtempSync(`${GATE_DIR}/g-`);
  fs.chmodSync(dir, 0o755);
  return {
    env: { GANTRY_MOUNT_ALLOWLIST: GATE_DIR },
    mounts: [{ source: dir, target: '/gate' }],
    open: () => fs.writeFileSync(`${dir}/open`, ''),
  };
}

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

async function gpuList(g: InProcessGantry): Promise<GpuView[]> {
  const r = await g.call<{ driver: string; items: GpuView[] }>('GET', '/v1/gpus');
  assert.equal(r.status, 200, r.text);
  return r.body.items;
}

async function logsOf(g: InProcessGantry, id: string): Promise<string[]> {
  return (await g.call('GET', `/v1/jobs/${id}/logs`)).text.split('\n').filter(Boolean);
}

/** Largest number of [startedAt, finishedAt] intervals that overlap at one instant. */
function maxOverlap(jobs: Job[]): number {
  const edges = jobs.flatMap((j) => [
    [Date.parse(j.startedAt!), 1],
    [Date.parse(j.finishedAt!), -1],
  ]) as [number, number][];
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // an end before a start at the same ms
  let cur = 0;
  let max = 0;
  for (const [, d] of edges) max = Math.max(max, (cur += d));
  return max;
}

/** Counts how often each job's GPUs were really released (release() returned true). */
function spyReleases(g: InProcessGantry): Map<string, number> {
  const gpus = g.app.gantry.gpus;
  const release = gpus.release.bind(gpus);
  const counts = new Map<string, number>();
  gpus.release = (jobId: string) => {
    const freed = release(jobId);
    if (freed) counts.set(jobId, (counts.get(jobId) ?? 0) + 1);
    return freed;
  };
  return counts;
}

async function allFree(g: InProcessGantry, t: TestContext | null = null): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const held = (await gpuList(g)).flatMap((d) => d.holders);
    if (held.length === 0) return;
    if (Date.now() > deadline) assert.fail(`GPUs still held: ${JSON.stringify(held)}${t ? ` (${t.name})` : ''}`);
    await sleep(50);
  }
}

test('two GPUs, three one-GPU jobs: at most two run at once, they see different UUIDs, the third waits with its position', async (t) => {
  const gate = newGate();
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env', ...gate.env });
  const gpus = await gpuList(g);
  assert.deepEqual(
    gpus.map((d) => [d.index, d.uuid, d.memoryMiB, d.holders]),
    [
      [0, UUID0, 81920, []],
      [1, UUID1, 81920, []],
    ],
  );
  const script = `echo "visible=$NVIDIA_VISIBLE_DEVICES caps=$NVIDIA_DRIVER_CAPABILITIES tf=$TF_FORCE_GPU_ALLOW_GROWTH"; ${AWAIT}; echo "$NVIDIA_VISIBLE_DEVICES"`;
  const submitted = [];
  for (let i = 0; i < 3; i++) submitted.push(await g.submit(sh(script, { gpus: { count: 1 }, name: `gpu-${i}`, mounts: gate.mounts })));
  await g.waitFor(submitted[0]!.id, (j) => j.state === 'running');

  // While two run, the third is queued at the head of the queue, waiting for GPUs.
  await g.waitFor(submitted[1]!.id, (j) => j.state === 'running');
  const third = await g.job(submitted[2]!.id);
  assert.equal(third.state, 'queued');
  assert.equal(third.position, 0);
  assert.equal(third.waiting?.code, 'gpus');
  // Both holders run to their timeouts (a day by default) at the latest.
  assert.match(third.reason!, /^waiting for GPUs, expected free by \S+ at the latest/);
  assert.ok(Date.parse(third.waiting!.estimatedStartAt!) > Date.now() + 23 * 3600_000);
  const busy = await gpuList(g);
  assert.deepEqual(busy.flatMap((d) => d.holders.map((h) => h.jobId)).sort(), [submitted[0]!.id, submitted[1]!.id].sort());
  assert.ok(busy.every((d) => d.holders.length === 1 && d.holders[0]!.memoryMiB === null && d.allocatedMemoryMiB === 81920));
  await sleep(500);
  assert.equal((await g.job(submitted[2]!.id)).state, 'queued', 'still waiting while both GPUs are held');
  gate.open();

  const done = await Promise.all(submitted.map((j) => g.waitFor(j.id)));
  for (const j of done) {
    assert.equal(j.state, 'succeeded', `${j.id}: ${j.reason}`);
    assert.equal(j.gpus.length, 1);
    assert.equal(j.result, j.gpus[0], 'the container saw exactly the GPU Gantry allocated');
    assert.deepEqual(await logsOf(g, j.id), [`visible=${j.gpus[0]} caps=compute,utility tf=true`, j.gpus[0]]);
  }
  assert.equal(maxOverlap(done), 2, 'never more than two at once, and two did run together');
  assert.notEqual(done[0]!.gpus[0], done[1]!.gpus[0], 'the two concurrent jobs saw different UUIDs');
  assert.ok(Date.parse(done[2]!.startedAt!) >= Math.min(Date.parse(done[0]!.finishedAt!), Date.parse(done[1]!.finishedAt!)));
  await allFree(g);
});

test('a CPU job sees NVIDIA_VISIBLE_DEVICES=void and no GPU variables, and runs while GPU jobs wait', async (t) => {
  const gate = newGate();
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env', ...gate.env });
  const hog = await g.submit(sh(AWAIT, { gpus: { count: 2 }, mounts: gate.mounts }));
  await g.waitFor(hog.id, (j) => j.state === 'running');
  const waiting = await g.submit(sh('true', { gpus: { count: 1 } }));
  const cpu = await g.submit(
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell default (${VAR:-unset}), expanded in the container
    sh('echo "visible=$NVIDIA_VISIBLE_DEVICES tf=${TF_FORCE_GPU_ALLOW_GROWTH:-unset} mem=${GANTRY_GPU_MEMORY_MIB:-unset}"'),
  );
  const c = await g.waitFor(cpu.id);
  assert.equal(c.state, 'succeeded');
  assert.equal(c.result, 'visible=void tf=unset mem=unset');
  assert.deepEqual(c.gpus, []);
  assert.equal((await g.job(waiting.id)).state, 'queued', 'the CPU job did not wait behind the GPU queue');
  gate.open();
  assert.equal((await g.waitFor(waiting.id)).state, 'succeeded');
  await allFree(g);
});

test('two 40 GB jobs share an 80 GB card while a third waits; each is told its budget', async (t) => {
  const gate = newGate();
  const g = await startGantry(t, { GANTRY_GPUS: 'GPU-share-0000-4000-8000-000000000080:81920', GANTRY_GPU_DRIVER: 'env', ...gate.env });
  const spec = sh(`echo "budget=$GANTRY_GPU_MEMORY_MIB visible=$NVIDIA_VISIBLE_DEVICES"; ${AWAIT}`, {
    gpus: { count: 1, memoryMiB: 40960 },
    mounts: gate.mounts,
  });
  const jobs = [await g.submit(spec), await g.submit(spec), await g.submit(spec)];
  await g.waitFor(jobs[0]!.id, (j) => j.state === 'running');
  await g.waitFor(jobs[1]!.id, (j) => j.state === 'running');
  const [card] = await gpuList(g);
  assert.deepEqual(card!.holders, [
    { jobId: jobs[0]!.id, memoryMiB: 40960 },
    { jobId: jobs[1]!.id, memoryMiB: 40960 },
  ]);
  assert.equal(card!.allocatedMemoryMiB, 81920);
  const third = await g.job(jobs[2]!.id);
  assert.deepEqual([third.state, third.position, third.waiting?.code], ['queued', 0, 'gpus']);
  gate.open();

  const done = await Promise.all(jobs.map((j) => g.waitFor(j.id)));
  for (const j of done) {
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(await logsOf(g, j.id), ['budget=40960 visible=GPU-share-0000-4000-8000-000000000080']);
  }
  assert.equal(maxOverlap(done), 2);
  await allFree(g);
});

test('requests that can never fit are refused at submit with 422 naming body.gpus', async (t) => {
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env' });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ count: 3 }, /asks for 3 GPU\(s\) but this host has 2/],
    [{ ids: ['GPU-nope'] }, /unknown GPU "GPU-nope"/],
    [{ ids: ['2'] }, /unknown GPU "2"/],
    [{ count: 1, memoryMiB: 90000 }, /asks for 90000 MiB but the largest GPU has 81920 MiB/],
    [{ ids: ['0', UUID0] }, /named twice/],
    [{ count: 2, memoryMiB: 100 }, /memory sharing needs "count": 1/],
    [{ count: 1, ids: ['0'] }, /exactly one of "count" or "ids"/],
    [{ count: 0 }, /.+/],
  ];
  for (const [gpus, message] of cases) {
    const r = await g.call<{ errors: { field: string; message: string }[] }>('POST', '/v1/jobs', { body: sh('true', { gpus }) });
    assert.equal(r.status, 422, `${JSON.stringify(gpus)}: ${r.text}`);
    assert.ok(
      r.body.errors.some((e) => e.field.startsWith('body.gpus') && message.test(e.message)),
      `${JSON.stringify(gpus)}: ${r.text}`,
    );
  }
  const list = await g.call<{ items: unknown[] }>('GET', '/v1/jobs');
  assert.equal(list.body.items.length, 0, 'no job was stored');

  const none = await startGantry(t, { GANTRY_GPUS: 'none', GANTRY_GPU_DRIVER: 'env' });
  const r = await none.call<{ errors: { field: string; message: string }[] }>('POST', '/v1/jobs', {
    body: sh('true', { gpus: { count: 1 } }),
  });
  assert.equal(r.status, 422);
  assert.match(r.body.errors[0]!.message, /this host has 0/);
  assert.deepEqual((await none.call<{ items: unknown[] }>('GET', '/v1/gpus')).body.items, []);
});

test('ids by index or UUID get exactly those cards', async (t) => {
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env' });
  const byIndex = await g.submit(sh('echo $NVIDIA_VISIBLE_DEVICES', { gpus: { ids: ['1'] } }));
  const byUuid = await g.submit(sh('echo $NVIDIA_VISIBLE_DEVICES', { gpus: { ids: [UUID1, UUID0] } }));
  const a = await g.waitFor(byIndex.id);
  const b = await g.waitFor(byUuid.id);
  assert.deepEqual([a.state, a.gpus, a.result], ['succeeded', [UUID1], UUID1]);
  assert.deepEqual([b.state, b.gpus, b.result], ['succeeded', [UUID1, UUID0], `${UUID1},${UUID0}`]);
  await allFree(g);
});

test('GPUs are released exactly once on every path: success, failure, a start that fails, cancel (queued and running), timeout', async (t) => {
  const gate = newGate();
  // The admin may name a user, so a name the image lacks makes a start fail.
  const g = await startGantry(t, {
    GANTRY_GPUS: TWO_GPUS,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_STOP_GRACE_SECONDS: '1',
    GANTRY_ALLOW_ROOT_OWNERS: 'admin',
    ...gate.env,
  });
  const released = spyReleases(g);
  const one = { gpus: { count: 1 } };

  const ok = await g.submit(sh('true', one));
  const bad = await g.submit(sh('exit 4', one));
  assert.deepEqual([(await g.waitFor(ok.id)).state, (await g.waitFor(bad.id)).state], ['succeeded', 'failed']);

  const noStart = await g.submit(sh('true', { ...one, user: 'nosuchuser' }));
  const ns = await g.waitFor(noStart.id);
  assert.equal(ns.state, 'failed');
  assert.match(ns.reason!, /the container did not start: .*unable to find user nosuchuser/);
  assert.equal(ns.gpus.length, 1, 'it had been given a GPU');

  // Both cards held (one job to cancel, one behind a gate), so a third waits.
  const running = await g.submit(sh('sleep 30', one));
  const held = await g.submit(sh(AWAIT, { ...one, mounts: gate.mounts }));
  await g.waitFor(running.id, (j) => j.state === 'running');
  await g.waitFor(held.id, (j) => j.state === 'running');
  const queued = await g.submit(sh('true', one));
  const q = await g.job(queued.id);
  assert.deepEqual([q.state, q.waiting?.code], ['queued', 'gpus']);
  assert.equal((await g.call<Job>('POST', `/v1/jobs/${queued.id}/cancel`)).body.state, 'cancelled');
  await g.call('POST', `/v1/jobs/${running.id}/cancel`);
  const r = await g.waitFor(running.id);
  assert.equal(r.state, 'cancelled', `${r.state}: ${r.reason}`);
  gate.open();
  assert.equal((await g.waitFor(held.id)).state, 'succeeded');

  const slow = await g.submit(sh('sleep 30', { ...one, timeoutSeconds: 1 }));
  const s = await g.waitFor(slow.id);
  assert.equal(s.state, 'timed_out', `${s.state}: ${s.reason}`);
  await allFree(g);

  const expected = [ok, bad, noStart, running, held, slow].map((j) => j.id);
  assert.deepEqual([...released.keys()].sort(), [...expected].sort(), 'each job that held GPUs released them; the queued one held none');
  for (const id of expected) assert.equal(released.get(id), 1, `${id} released exactly once`);

  // And the cards are usable again, both at once.
  const after = await g.waitFor((await g.submit(sh('echo $NVIDIA_VISIBLE_DEVICES', { gpus: { count: 2 } }))).id);
  assert.equal(after.result, `${UUID0},${UUID1}`);
});

test('queue order: higher priority first, FIFO within a priority; positions are shown', async (t) => {
  const gate = newGate();
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env', ...gate.env });
  const hog = await g.submit(sh(AWAIT, { gpus: { count: 2 }, mounts: gate.mounts }));
  await g.waitFor(hog.id, (j) => j.state === 'running');
  const low1 = await g.submit(sh('sleep 0.3', { gpus: { count: 2 }, priority: 0 }));
  const low2 = await g.submit(sh('sleep 0.3', { gpus: { count: 2 }, priority: 0 }));
  const high = await g.submit(sh('sleep 0.3', { gpus: { count: 2 }, priority: 5 }));
  const positions = await Promise.all([high, low1, low2].map(async (j) => (await g.job(j.id)).position));
  assert.deepEqual(positions, [0, 1, 2]);
  gate.open();
  const done = await Promise.all([hog, high, low1, low2].map((j) => g.waitFor(j.id)));
  const starts = done.map((j) => Date.parse(j.startedAt!));
  assert.ok(starts[0]! < starts[1]! && starts[1]! < starts[2]! && starts[2]! < starts[3]!, `start order ${JSON.stringify(starts)}`);
  assert.equal(maxOverlap(done), 1);
});

test('backfill and explainable waiting: a short job uses a card the reservation does not need yet; dry runs say what a submit would do', async (t) => {
  const gate = newGate();
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'env', ...gate.env });
  // One card held for up to an hour; a two-card job must wait for it and so holds the reservation.
  const hog = await g.submit(sh(AWAIT, { gpus: { count: 1 }, mounts: gate.mounts, timeoutSeconds: 3600 }));
  await g.waitFor(hog.id, (j) => j.state === 'running');
  const big = await g.submit(sh('true', { gpus: { count: 2 } }));
  const long = await g.submit(sh('true', { gpus: { count: 1 }, timeoutSeconds: 7200 }));
  const bigView = await g.waitFor(big.id, (j) => j.waiting?.code === 'gpus');
  const hogDeadline = Date.parse((await g.job(hog.id)).startedAt!) + 3600_000;
  assert.ok(Math.abs(Date.parse(bigView.waiting!.estimatedStartAt!) - hogDeadline) < 5000, "the reservation is the holder's deadline");
  const longView = await g.job(long.id);
  assert.deepEqual(
    [longView.position, longView.waiting?.code],
    [1, `reserved_for:${big.id}`],
    'a job that would outlast the reservation waits',
  );

  // A dry run stores nothing and answers as the queue would.
  const before = (await g.call<{ items: Job[] }>('GET', '/v1/jobs?limit=100')).body.items.length;
  const dryLong = await g.call<Job>('POST', '/v1/jobs?dryRun=true', { body: sh('true', { gpus: { count: 1 }, timeoutSeconds: 7200 }) });
  assert.equal(dryLong.status, 200, dryLong.text);
  assert.equal(dryLong.headers.location, undefined);
  assert.deepEqual(
    [dryLong.body.id, dryLong.body.state, dryLong.body.position, dryLong.body.waiting?.code],
    ['dry-run', 'queued', 2, `reserved_for:${big.id}`],
  );
  const dryCpu = await g.call<Job>('POST', '/v1/jobs?dryRun=true', { body: sh('true') });
  assert.match(dryCpu.body.reason!, /^would start at once on node/);
  const dryUrgent = await g.call<Job>('POST', '/v1/jobs?dryRun=true', { body: sh('true', { gpus: { count: 2 }, priority: 9 }) });
  assert.deepEqual([dryUrgent.body.position, dryUrgent.body.waiting?.code], [0, 'gpus']);
  const dryRefused = await g.call<{ errors: { field: string }[] }>('POST', '/v1/jobs?dryRun=true', {
    body: sh('true', { gpus: { count: 3 } }),
  });
  assert.equal(dryRefused.status, 422, 'a dry run is refused as the submit would be');
  assert.equal((await g.call<{ items: Job[] }>('GET', '/v1/jobs?limit=100')).body.items.length, before, 'no dry run was stored');

  // A job short enough to end before the reservation takes the free card now.
  const short = await g.submit(sh('echo $NVIDIA_VISIBLE_DEVICES', { gpus: { count: 1 }, timeoutSeconds: 60 }));
  const s = await g.waitFor(short.id);
  assert.equal(s.state, 'succeeded', s.reason ?? '');
  assert.equal((await g.job(long.id)).state, 'queued', 'the long one still waits');
  gate.open();
  const done = await Promise.all([big, long].map((j) => g.waitFor(j.id)));
  assert.ok(Date.parse(done[0]!.startedAt!) <= Date.parse(done[1]!.startedAt!), 'the reservation holder started first');
});
