import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { FencedError } from '../../src/model/errors.js';
import type { GpuTelemetry } from '../../src/model/gpu-telemetry.js';
import type { JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { JobPatch, NodeInfo, Store } from '../../src/store/store.js';

// The SQLite store against the Store contract of src/store/store.ts: the
// idempotent insert, claims, fenced writes of jobs and logs, and the node
// registry with its leases. SQLite is one node; a second, fake node name
// with a short lease stands for a node that stopped renewing.

const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });
let n = 0;

async function setup(t: { after(fn: () => unknown): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-sqlite-'));
  const store = await openSqliteStore(dir);
  t.after(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const add = async (s: JobSpec = spec(), opts: { owner?: string; key?: string | null } = {}) => {
    const id = `job-${++n}`;
    const { record } = await store.jobs.insert({
      id,
      owner: opts.owner ?? 'team-a',
      spec: s,
      specHash: `hash-${id}`,
      idempotencyKey: opts.key ?? null,
      requestId: null,
      createdAt: new Date().toISOString(),
    });
    return record;
  };
  return { dir, store, add };
}

const TELEMETRY: GpuTelemetry = {
  attempt: 1,
  samples: 0,
  firstSampleAt: '2026-12-02T10:00:10.000Z',
  lastSampleAt: '2026-12-02T10:00:30.000Z',
  gpuSeconds: 30,
  sharedCard: false,
  meanUtilizationPct: 91.5,
  peakUtilizationPct: 100,
  peakMemoryMiB: 70312,
  energyJoules: 15000,
  declaredMemoryMiB: null,
  overDeclaredMemory: false,
  warnings: [{ kind: 'idle', time: '2026-12-02T10:00:30.000Z', message: 'idle', action: 'warn' }],
};

const node = (name: string, leaseSeconds = 30): NodeInfo => ({
  name,
  labels: { zone: 'a' },
  gpus: [{ index: 0, uuid: `GPU-${name}`, name: 'NVIDIA H200', memoryMiB: 143771 }],
  version: '0.2.0',
  leaseSeconds,
});

/** A job of `nodeName` moved to running through the guarded writes a node makes. */
async function runOn(store: Store, id: string, nodeName: string, epoch: number) {
  assert.ok(await store.jobs.claim(id, { name: nodeName, epoch }), `claim ${id} for ${nodeName}`);
  const fence = { node: nodeName, attempt: 1 };
  assert.ok(await store.jobs.update(id, { state: 'pulling' }, { state: 'queued', fence }));
  assert.ok(await store.jobs.update(id, { state: 'starting', gpus: [`GPU-${nodeName}`] }, { state: 'pulling', fence }));
  const running = await store.jobs.update(id, { state: 'running', startedAt: new Date().toISOString() }, { state: 'starting', fence });
  assert.equal(running?.state, 'running');
  return running!;
}

const state = (next: number, extra: Partial<LogState> = {}): LogState => ({ ...EMPTY_LOG_STATE, nextSeq: next, ...extra });
const line = (text: string): NewLogRecord => ({ stream: 'stdout', line: text, time: Date.now() });

test('insert: a new job is queued with no node and attempt 1; the same owner and key yield the first job', async (t) => {
  const { store, add } = await setup(t);
  const first = await add(spec({ labels: { dag: 'd1' } }), { key: 'k1' });
  assert.equal(first.state, 'queued');
  assert.equal(first.node, null);
  assert.equal(first.attempt, 1);
  assert.ok(Object.isFrozen(first));

  const again = await store.jobs.insert({
    id: 'job-other',
    owner: 'team-a',
    spec: spec({ command: ['false'] }),
    specHash: 'hash-other',
    idempotencyKey: 'k1',
    requestId: null,
    createdAt: new Date().toISOString(),
  });
  assert.equal(again.created, false);
  assert.equal(again.record.id, first.id);
  assert.equal(await store.jobs.get('job-other'), undefined);

  const otherOwner = await add(spec(), { owner: 'team-b', key: 'k1' });
  assert.notEqual(otherOwner.id, first.id, 'keys are per owner');
  assert.deepEqual(
    (await store.jobs.list({ label: { key: 'dag', value: 'd1' }, limit: 10 })).map((r) => r.id),
    [first.id],
  );
});

test('claim: of two claims one wins; a drained node, a lost one or an old epoch cannot claim', async (t) => {
  const { store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const b = await store.nodes.register(node('b'));
  const job = await add();

  const [ca, cb] = await Promise.all([store.jobs.claim(job.id, a), store.jobs.claim(job.id, b)]);
  assert.equal([ca, cb].filter((r) => r !== undefined).length, 1, 'exactly one winner');
  assert.equal(ca?.node, 'a');
  assert.equal(ca?.state, 'queued');
  assert.equal((await store.jobs.get(job.id))?.node, 'a');
  assert.equal(await store.jobs.claim(job.id, b), undefined, 'a job another node claimed cannot be claimed');
  assert.equal((await store.jobs.claim(job.id, a))?.node, 'a', 'its node claims it again (a claim repeated after a lost reply)');

  const second = await add();
  await store.nodes.setDrained('b', true);
  assert.equal(await store.jobs.claim(second.id, b), undefined, 'drained');
  await store.nodes.setDrained('b', false);
  assert.equal(await store.jobs.claim(second.id, { name: 'b', epoch: b.epoch + 1 }), undefined, 'wrong epoch');
  assert.equal(await store.jobs.claim(second.id, { name: 'nobody', epoch: 1 }), undefined, 'unregistered');
  const b2 = await store.nodes.register(node('b'));
  assert.equal(await store.jobs.claim(second.id, b), undefined, 'the epoch before the last registration');
  assert.equal((await store.jobs.claim(second.id, b2))?.node, 'b', 'the current epoch claims');

  const started = await add();
  await store.jobs.update(started.id, { state: 'pulling' });
  assert.equal(await store.jobs.claim(started.id, a), undefined, 'only a queued job');
});

test('queued() leaves claimed jobs out; claimed() and active() are per node', async (t) => {
  const { store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const low = await add();
  const high = await add(spec({ priority: 5 }));
  const taken = await add(spec({ priority: 9 }));
  const later = await add();
  assert.deepEqual(
    (await store.jobs.queued()).map((r) => r.id),
    [taken.id, high.id, low.id, later.id],
  );

  await store.jobs.claim(taken.id, a);
  assert.deepEqual(
    (await store.jobs.queued()).map((r) => r.id),
    [high.id, low.id, later.id],
  );
  assert.deepEqual(
    (await store.jobs.claimed('a')).map((r) => r.id),
    [taken.id],
  );
  assert.deepEqual(await store.jobs.claimed('b'), []);
  assert.deepEqual(await store.jobs.active('a'), [], 'claimed is not active yet');

  await runOn(store, low.id, 'a', a.epoch);
  assert.deepEqual(
    (await store.jobs.active('a')).map((r) => r.id),
    [low.id],
  );
  assert.deepEqual(await store.jobs.active('b'), []);
  assert.deepEqual(
    (await store.jobs.holdingGpus()).map((r) => r.gpus),
    [['GPU-a']],
  );
  await store.jobs.update(low.id, { state: 'succeeded', finishedAt: new Date().toISOString() });
  assert.deepEqual(await store.jobs.holdingGpus(), [], 'an ended job holds no GPU');
  assert.deepEqual(await store.jobs.active('a'), []);
});

test('a fenced update is refused once the job is another node’s or attempt’s, or has ended', async (t) => {
  const { store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const job = await add();
  await runOn(store, job.id, 'a', a.epoch);
  const fence = { node: 'a', attempt: 1 };

  const ok = await store.jobs.update(job.id, { result: 'progress' }, { fence });
  assert.equal(ok?.result, 'progress');
  assert.equal(await store.jobs.update(job.id, { result: 'x' }, { fence: { node: 'b', attempt: 1 } }), undefined, 'other node');
  assert.equal(await store.jobs.update(job.id, { result: 'x' }, { fence: { node: 'a', attempt: 2 } }), undefined, 'other attempt');
  assert.equal(await store.jobs.update(job.id, { result: 'x' }, { state: 'starting', fence }), undefined, 'state guard too');
  assert.equal(await store.jobs.update(job.id, {}, { fence: { node: 'b', attempt: 1 } }), undefined, 'an empty patch checks the guard');
  assert.equal((await store.jobs.update(job.id, {}, { fence }))?.id, job.id);

  // A new attempt of the job, queued again: the old attempt's writes are refused.
  const requeued = await store.jobs.update(job.id, { state: 'queued', node: null, attempt: 2 }, { state: 'running' });
  assert.equal(requeued?.attempt, 2);
  assert.equal(await store.jobs.update(job.id, { state: 'failed' }, { fence }), undefined);
  assert.equal((await store.jobs.get(job.id))?.state, 'queued', 'the refused write changed nothing');

  // The right node and attempt, but the job has ended.
  const b = await store.nodes.register(node('b'));
  await store.jobs.claim(job.id, b);
  const fenceB = { node: 'b', attempt: 2 };
  assert.ok(await store.jobs.update(job.id, { state: 'cancelled', finishedAt: new Date().toISOString() }, { fence: fenceB }));
  assert.equal(await store.jobs.update(job.id, { result: 'late' }, { fence: fenceB }), undefined);
  assert.equal((await store.jobs.get(job.id))?.result, 'progress');
});

test('the GPU telemetry summary is stored as JSON with the run’s fence, read back after a reopen, and refused once the job ended', async (t) => {
  const { dir, store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const job = await add();
  assert.equal(job.gpuTelemetry, null, 'a new job has none');
  await runOn(store, job.id, 'a', a.epoch);
  const fence = { node: 'a', attempt: 1 };
  const summary = { ...TELEMETRY, samples: 3 };
  assert.deepEqual((await store.jobs.update(job.id, { gpuTelemetry: summary }, { fence }))?.gpuTelemetry, summary);
  const finishedAt = new Date().toISOString();
  const endAttempt = { outcome: 'succeeded', cause: null, retried: false, reason: null, exitCode: 0, finishedAt } as const;
  const ended = await store.jobs.update(job.id, { state: 'succeeded', finishedAt, endAttempt }, { fence });
  assert.deepEqual(ended?.attempts[0]?.gpuTelemetry, summary, 'the ended attempt keeps the summary it had');
  assert.equal(await store.jobs.update(job.id, { gpuTelemetry: { ...summary, samples: 4 } }, { fence }), undefined, 'ended: refused');
  // Another connection to the file: read from disk, not from the first store's cache.
  const other = await openSqliteStore(dir);
  t.after(() => other.close());
  assert.deepEqual((await other.jobs.get(job.id))?.gpuTelemetry, summary);
});

test('a fenced log write of a run that is no longer the writer’s rejects with FencedError and stores nothing', async (t) => {
  const { store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const job = await add();
  await runOn(store, job.id, 'a', a.epoch);
  const fence = { node: 'a', attempt: 1 };

  await store.logs.append(job.id, [line('one'), line('two')], state(3, { stdoutRecords: 2 }), fence);
  assert.deepEqual(
    (await store.logs.tail(job.id, 10)).map((l) => l.line),
    ['one', 'two'],
  );

  await assert.rejects(store.logs.append(job.id, [line('three')], state(4, { stdoutRecords: 3 }), { node: 'b', attempt: 1 }), FencedError);
  await assert.rejects(store.logs.append(job.id, [line('three')], state(4, { stdoutRecords: 3 }), { node: 'a', attempt: 2 }), FencedError);
  await assert.rejects(store.logs.saveState(job.id, state(3, { complete: true }), { node: 'b', attempt: 1 }), FencedError);
  await assert.rejects(store.logs.append('no-such-job', [line('x')], state(2), fence), FencedError);

  await store.jobs.update(job.id, { state: 'succeeded', finishedAt: new Date().toISOString() }, { fence });
  await assert.rejects(store.logs.append(job.id, [line('late')], state(4, { stdoutRecords: 3 }), fence), (err: unknown) => {
    assert.ok(err instanceof FencedError);
    assert.equal(err.jobId, job.id);
    assert.match(err.message, /ended \(succeeded\)/);
    return true;
  });
  await assert.rejects(store.logs.saveState(job.id, state(3, { complete: true }), fence), FencedError);

  assert.deepEqual(
    (await store.logs.tail(job.id, 10)).map((l) => l.line),
    ['one', 'two'],
    'no record of a refused write',
  );
  const stored = await store.logs.state(job.id);
  assert.equal(stored.nextSeq, 3);
  assert.equal(stored.complete, false, 'no state of a refused write');
  assert.equal((await store.logs.chunks(job.id, 0, { chunks: 10, lines: 100 })).length, 1);
  assert.equal((await store.logs.totals()).stdoutRecords, 2);

  // Without a fence (a job's logs written by a one-node setup or a test), nothing is checked.
  await store.logs.append('no-such-job', [line('x')], state(2, { stdoutRecords: 1 }));
  assert.equal((await store.logs.state('no-such-job')).nextSeq, 2);
});

test('nodes: register bumps the epoch and keeps drained; renew with an old epoch is refused', async (t) => {
  const { store } = await setup(t);
  const first = await store.nodes.register(node('a'));
  assert.equal(first.epoch, 1);
  assert.equal(first.state, 'up');
  assert.equal(first.drained, false);
  assert.deepEqual(first.labels, { zone: 'a' });
  assert.equal(first.gpus[0]?.uuid, 'GPU-a');
  assert.equal(first.leaseSeconds, 30);
  assert.ok(first.heartbeatAgeSeconds >= 0 && first.heartbeatAgeSeconds < 5);
  assert.equal(await store.nodes.renew('a', 1), true);

  const drained = await store.nodes.setDrained('a', true);
  assert.equal(drained?.drained, true);
  assert.equal((await store.nodes.get('a'))?.drained, true);
  assert.equal(await store.nodes.setDrained('nobody', true), undefined);

  const second = await store.nodes.register({ ...node('a'), version: '0.2.1', labels: { zone: 'b' } });
  assert.equal(second.epoch, 2);
  assert.equal(second.drained, true, 'a new process of a drained node stays drained');
  assert.equal(second.version, '0.2.1');
  assert.deepEqual(second.labels, { zone: 'b' });
  assert.equal(await store.nodes.renew('a', 1), false, 'the old process');
  assert.equal(await store.nodes.renew('a', 2), true);
  assert.equal(await store.nodes.renew('nobody', 1), false);

  await store.nodes.setDrained('a', false);
  assert.equal((await store.nodes.get('a'))?.drained, false);
  await store.nodes.register(node('b'));
  assert.deepEqual(
    (await store.nodes.list()).map((r) => [r.name, r.epoch]),
    [
      ['a', 2],
      ['b', 1],
    ],
  );
  assert.equal(await store.nodes.get('c'), undefined);
});

test('expire: a node past its lease is lost, its running jobs settled with the patch given, its claimed ones unclaimed', async (t) => {
  const { store, add } = await setup(t);
  const self = await store.nodes.register(node('self', 30));
  const gone = await store.nodes.register(node('gone', 1));

  const running = await add();
  const retried = await add(spec({ retry: { maxAttempts: 2, on: ['node_lost'] } }));
  const claimed = await add();
  const mine = await add();
  await runOn(store, running.id, 'gone', gone.epoch);
  await runOn(store, retried.id, 'gone', gone.epoch);
  await store.jobs.claim(claimed.id, gone);
  await runOn(store, mine.id, 'self', self.epoch);
  assert.deepEqual(await store.jobs.queued(), []);

  const early = await store.nodes.expire(() => assert.fail('nothing has expired yet'));
  assert.deepEqual(early, { lost: [], settled: [] });

  await new Promise((r) => setTimeout(r, 1300));
  assert.equal(await store.nodes.renew('self', self.epoch), true);
  const seen: string[] = [];
  const settle = (record: { id: string; spec: JobSpec; attempt: number }, lost: { name: string; state: string }): JobPatch => {
    seen.push(`${record.id}@${lost.name}:${lost.state}`);
    return record.spec.retry
      ? { state: 'queued', node: null, attempt: record.attempt + 1, gpus: [], startedAt: null, reason: 'node lost; retrying' }
      : { state: 'failed', reason: `node ${lost.name} was lost`, finishedAt: new Date().toISOString(), gpus: [] };
  };
  const { lost, settled } = await store.nodes.expire(settle);

  assert.deepEqual(
    lost.map((r) => [r.name, r.state]),
    [['gone', 'lost']],
  );
  assert.deepEqual(seen.sort(), [`${retried.id}@gone:lost`, `${running.id}@gone:lost`].sort());
  const byId = new Map(settled.map((s) => [s.record.id, s]));
  assert.equal(byId.size, 2, 'the claimed job is not settled, only given back');
  assert.equal(byId.get(running.id)?.requeued, false);
  assert.equal(byId.get(running.id)?.record.state, 'failed');
  assert.equal(byId.get(retried.id)?.requeued, true);
  assert.equal(byId.get(retried.id)?.record.attempt, 2);

  assert.equal((await store.jobs.get(running.id))?.reason, 'node gone was lost');
  const unclaimed = await store.jobs.get(claimed.id);
  assert.equal(unclaimed?.state, 'queued');
  assert.equal(unclaimed?.node, null);
  assert.equal(unclaimed?.attempt, 1, 'given back unchanged');
  assert.deepEqual(
    (await store.jobs.queued()).map((r) => r.id),
    [retried.id, claimed.id],
  );
  assert.equal((await store.jobs.get(mine.id))?.state, 'running', 'the renewing node keeps its job');
  assert.deepEqual(
    (await store.jobs.holdingGpus()).map((r) => r.id),
    [mine.id],
  );

  // The lost node's old process is fenced off everywhere.
  assert.equal(await store.nodes.renew('gone', gone.epoch), false);
  assert.equal(await store.jobs.update(running.id, { state: 'succeeded' }, { fence: { node: 'gone', attempt: 1 } }), undefined);
  await assert.rejects(store.logs.append(retried.id, [line('late')], state(2), { node: 'gone', attempt: 1 }), FencedError);
  const third = await add();
  assert.equal(await store.jobs.claim(third.id, gone), undefined, 'a lost node claims nothing');
  assert.deepEqual(await store.nodes.expire(settle), { lost: [], settled: [] }, 'a lost node is settled once');

  // Registering again brings it back up, with a new epoch.
  const back = await store.nodes.register(node('gone', 1));
  assert.equal(back.state, 'up');
  assert.equal(back.epoch, gone.epoch + 1);
});

test('expire: a settle that throws changes nothing', async (t) => {
  const { store, add } = await setup(t);
  const gone = await store.nodes.register(node('gone', 1));
  const first = await add();
  const second = await add();
  await runOn(store, first.id, 'gone', gone.epoch);
  await runOn(store, second.id, 'gone', gone.epoch);
  await new Promise((r) => setTimeout(r, 1300));
  let calls = 0;
  await assert.rejects(
    store.nodes.expire(() => {
      if (++calls === 2) throw new Error('boom');
      return { state: 'failed' };
    }),
    /boom/,
  );
  assert.equal(calls, 2);
  assert.equal((await store.nodes.get('gone'))?.state, 'up');
  assert.deepEqual(
    [(await store.jobs.get(first.id))?.state, (await store.jobs.get(second.id))?.state],
    ['running', 'running'],
    'the first job’s settled record was rolled back, cache included',
  );
});

test('a job left running by Gantry 0.1.0 (node NULL) is the first registering node’s', async (t) => {
  const { dir, store, add } = await setup(t);
  const job = await add();
  await store.jobs.update(job.id, { state: 'running' });
  // As the migration leaves such a job: written straight into the file.
  const raw = new Database(path.join(dir, 'gantry.db'));
  raw.prepare(`UPDATE jobs SET node = NULL WHERE id = ?`).run(job.id);
  raw.close();
  assert.equal((await store.jobs.get(job.id))?.node, null);
  assert.deepEqual(await store.jobs.active('self'), []);

  await store.nodes.register(node('self'));
  assert.equal((await store.jobs.get(job.id))?.node, 'self', 'cached record dropped');
  assert.deepEqual(
    (await store.jobs.active('self')).map((r) => r.id),
    [job.id],
  );
  assert.ok(await store.jobs.update(job.id, { result: 'adopted' }, { fence: { node: 'self', attempt: 1 } }));
});

test('store-wide: no change feed; writes are probed; records are frozen and replaced on each write', async (t) => {
  const { store, add } = await setup(t);
  assert.equal(store.changes, null);
  await store.probeWritable();
  const job = await add();
  const got = await store.jobs.get(job.id);
  assert.equal(got, await store.jobs.get(job.id), 'cached');
  const next = await store.jobs.update(job.id, { cancelRequested: true });
  assert.notEqual(next, got);
  assert.equal(got?.cancelRequested, false);
  assert.equal(next?.cancelRequested, true);
  assert.equal(await store.jobs.update(job.id, { reason: 'x' }, { state: 'running' }), undefined, 'compare-and-set on state');
  assert.equal((await store.jobs.get(job.id))?.reason, null);
});
