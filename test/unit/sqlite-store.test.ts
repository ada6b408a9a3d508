import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { FencedError } from '../../src/model/errors.js';
import type { JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { JobPatch, NodeInfo, Store } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../helpers/records.js';

// The SQLite store's own parts of the Store contract of src/store/store.ts
// (the JobStore contract is job-store.test.ts, run against both stores):
// fenced log writes, the node registry with its leases, jobs a 0.1.0 data
// dir left, and the record cache. SQLite is one node; a second, fake node name
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
      settings: RUN_SETTINGS,
    });
    return record;
  };
  return { dir, store, add };
}

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
  const fence = { node: nodeName, attempt: 1, epoch: 1 };
  assert.ok(await store.jobs.update(id, { state: 'pulling' }, { state: 'queued', fence }));
  assert.ok(await store.jobs.update(id, { state: 'starting', gpus: [`GPU-${nodeName}`] }, { state: 'pulling', fence }));
  const running = await store.jobs.update(id, { state: 'running', startedAt: new Date().toISOString() }, { state: 'starting', fence });
  assert.equal(running?.state, 'running');
  return running!;
}

const state = (next: number, extra: Partial<LogState> = {}): LogState => ({ ...EMPTY_LOG_STATE, nextSeq: next, ...extra });
const line = (text: string): NewLogRecord => ({ stream: 'stdout', line: text, time: Date.now() });

test('a fenced log write of a run that is no longer the writer’s rejects with FencedError and stores nothing', async (t) => {
  const { store, add } = await setup(t);
  const a = await store.nodes.register(node('a'));
  const job = await add();
  await runOn(store, job.id, 'a', a.epoch);
  const fence = { node: 'a', attempt: 1, epoch: 1 };

  await store.logs.append(job.id, [line('one'), line('two')], state(3, { stdoutRecords: 2 }), fence);
  assert.deepEqual(
    (await store.logs.tail(job.id, 10)).map((l) => l.line),
    ['one', 'two'],
  );

  await assert.rejects(
    store.logs.append(job.id, [line('three')], state(4, { stdoutRecords: 3 }), { node: 'b', attempt: 1, epoch: 1 }),
    FencedError,
  );
  await assert.rejects(
    store.logs.append(job.id, [line('three')], state(4, { stdoutRecords: 3 }), { node: 'a', attempt: 2, epoch: 1 }),
    FencedError,
  );
  await assert.rejects(store.logs.saveState(job.id, state(3, { complete: true }), { node: 'b', attempt: 1, epoch: 1 }), FencedError);
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
  assert.deepEqual(await store.nodes.renew('a', 1), { drained: false, othersDue: false });

  const drained = await store.nodes.setDrained('a', true);
  assert.equal(drained?.drained, true);
  assert.equal((await store.nodes.get('a'))?.drained, true);
  assert.equal(await store.nodes.setDrained('nobody', true), undefined);

  const second = await store.nodes.register({ ...node('a'), version: '0.2.1', labels: { zone: 'b' } });
  assert.equal(second.epoch, 2);
  assert.equal(second.drained, true, 'a new process of a drained node stays drained');
  assert.equal(second.version, '0.2.1');
  assert.deepEqual(second.labels, { zone: 'b' });
  assert.equal(await store.nodes.renew('a', 1), null, 'the old process');
  assert.deepEqual(await store.nodes.renew('a', 2), { drained: true, othersDue: false });
  assert.equal(await store.nodes.renew('nobody', 1), null);

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
  assert.equal((await store.nodes.renew('self', self.epoch))?.othersDue, true, 'the renewal tells that a lease ran out');
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
  assert.equal(await store.nodes.renew('gone', gone.epoch), null);
  assert.equal(await store.jobs.update(running.id, { state: 'succeeded' }, { fence: { node: 'gone', attempt: 1, epoch: 1 } }), undefined);
  await assert.rejects(store.logs.append(retried.id, [line('late')], state(2), { node: 'gone', attempt: 1, epoch: 1 }), FencedError);
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
  assert.ok(await store.jobs.update(job.id, { result: 'adopted' }, { fence: { node: 'self', attempt: 1, epoch: 1 } }));
});

test('store-wide: no change feed; writes are probed; a record is served from memory until a write replaces it', async (t) => {
  const { store, add } = await setup(t);
  assert.equal(store.changes, null);
  await store.probeWritable();
  const job = await add();
  const got = await store.jobs.get(job.id);
  assert.equal(got, await store.jobs.get(job.id), 'cached');
  const next = await store.jobs.update(job.id, { cancelRequested: true });
  assert.equal(await store.jobs.get(job.id), next, 'the write’s record replaced the cached one');
  assert.equal(await store.jobs.update(job.id, { reason: 'x' }, { state: 'running' }), undefined);
  assert.equal((await store.jobs.get(job.id))?.reason, null, 'a refused write leaves the cached record as it was');
});
