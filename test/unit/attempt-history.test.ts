/**
 * The attempts of a job and its `notBefore`, as both stores keep them: an
 * ended attempt is added in the same compare-and-set as the job's requeue or
 * end (fenced like every run's write), with the number, node, GPUs and start
 * the row had and the log's end; lost nodes' jobs get theirs in `expire`.
 * Real SQLite files and a real, throwaway PostgreSQL.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { settleLostJob } from '../../src/fleet/node-loss.js';
import { settleAttempt } from '../../src/jobs/retry-policy.js';
import { attemptViews } from '../../src/jobs/view.js';
import type { JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE, type NewLogRecord } from '../../src/model/log.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Fence, Store } from '../../src/store/store.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { RUN_SETTINGS } from '../helpers/records.js';

const SPEC: JobSpec = {
  image: 'local/busybox:latest',
  command: ['true'],
  retry: { maxAttempts: 3, on: ['exit_code', 'node_lost'], backoff: { initialSeconds: 60, factor: 2 } },
};
const lines = (...texts: string[]): NewLogRecord[] => texts.map((line) => ({ stream: 'stdout', line, time: Date.now() }));

let ids = 0;
async function submit(store: Store) {
  const id = `job-${process.pid}-${++ids}`;
  const created = new Date().toISOString();
  return (
    await store.jobs.insert({
      id,
      owner: 'o',
      spec: SPEC,
      specHash: 'h',
      idempotencyKey: null,
      requestId: null,
      createdAt: created,
      settings: RUN_SETTINGS,
    })
  ).record;
}

/** Claims the job for the node and runs it to `running` on GPU-<node>, as a run does. */
async function run(store: Store, id: string, node: { name: string; epoch: number }, attempt: number) {
  const fence: Fence = { node: node.name, attempt, epoch: node.epoch };
  assert.ok(await store.jobs.claim(id, node), 'claimed');
  assert.ok(await store.jobs.update(id, { state: 'starting', gpus: [`GPU-${node.name}`] }, { state: 'queued', fence }));
  const running = await store.jobs.update(id, { state: 'running', startedAt: new Date().toISOString() }, { state: 'starting', fence });
  assert.equal(running?.state, 'running');
  return { fence, running: running! };
}

function contract(open: (t: TestContext) => Promise<{ store: Store; reopen: () => Promise<Store> }>) {
  test('a retried attempt and the last one are kept with their node, GPUs, start and log range; a stale writer adds none', async (t) => {
    const { store, reopen } = await open(t);
    const a = await store.nodes.register({ name: 'a', labels: {}, gpus: [], version: 't', leaseSeconds: 30 });
    const job = await submit(store);
    assert.deepEqual([job.attempts, job.notBefore], [[], null]);

    const first = await run(store, job.id, a, 1);
    await store.logs.append(job.id, lines('one', 'two', 'three'), { ...EMPTY_LOG_STATE, nextSeq: 4 }, first.fence);
    const now = new Date();
    const retry = settleAttempt(first.running, { outcome: 'failed', cause: 'exit_code', reason: 'exited with code 3', exitCode: 3 }, now);
    assert.equal(retry.retried, true);
    const queued = await store.jobs.update(job.id, retry.patch, { state: 'running', fence: first.fence });
    assert.equal(queued?.state, 'queued');
    assert.equal(queued?.attempt, 2);
    assert.equal(queued?.notBefore, new Date(now.getTime() + 60_000).toISOString());
    assert.deepEqual(queued?.gpus, []);
    assert.deepEqual(queued?.attempts, [
      {
        attempt: 1,
        node: 'a',
        gpus: ['GPU-a'],
        startedAt: first.running.startedAt,
        outcome: 'failed',
        cause: 'exit_code',
        retried: true,
        reason: 'exited with code 3',
        exitCode: 3,
        finishedAt: now.toISOString(),
        logEnd: 3,
        gpuTelemetry: null,
      },
    ]);
    assert.deepEqual(
      (await store.jobs.queued()).map((r) => [r.id, r.notBefore]),
      [[job.id, queued?.notBefore]],
      'a job waiting out its backoff is still in the queue',
    );

    // The first attempt's run, cut off, tries to end the job its own way: refused, nothing added.
    const stale = settleAttempt(first.running, { outcome: 'failed', cause: null, reason: 'late', exitCode: 1 }, new Date());
    assert.equal(await store.jobs.update(job.id, stale.patch, { state: 'running', fence: first.fence }), undefined);
    assert.equal((await store.jobs.get(job.id, { fresh: true }))?.attempts.length, 1);

    const second = await run(store, job.id, a, 2);
    await store.logs.append(job.id, lines('banner', 'ok'), { ...EMPTY_LOG_STATE, nextSeq: 6 }, second.fence);
    const end = settleAttempt(second.running, { outcome: 'succeeded', cause: null, reason: null, exitCode: 0 }, new Date());
    const done = await store.jobs.update(job.id, end.patch, { state: 'running', fence: second.fence });
    assert.equal(done?.state, 'succeeded');
    assert.equal(done?.notBefore, queued?.notBefore, "the current attempt's notBefore stays on the job");
    assert.deepEqual(
      done?.attempts.map((x) => [x.attempt, x.node, x.outcome, x.retried, x.logEnd, x.startedAt]),
      [
        [1, 'a', 'failed', true, 3, first.running.startedAt],
        [2, 'a', 'succeeded', false, 5, second.running.startedAt],
      ],
    );
    assert.deepEqual(
      attemptViews(done!.attempts).map((x) => [x.attempt, x.firstLogSeq, x.lastLogSeq]),
      [
        [1, 1, 3],
        [2, 4, 5],
      ],
    );
    const again = await reopen();
    assert.deepEqual((await again.jobs.get(job.id, { fresh: true }))?.attempts, done?.attempts, 'kept across a restart');
  });

  test("a lost node's attempt is kept by expire, in the same transaction that settles it", async (t) => {
    const { store } = await open(t);
    const gone = await store.nodes.register({ name: 'gone', labels: {}, gpus: [], version: 't', leaseSeconds: 1 });
    const job = await submit(store);
    const { fence } = await run(store, job.id, gone, 1);
    await store.logs.append(job.id, lines('x', 'y'), { ...EMPTY_LOG_STATE, nextSeq: 3 }, fence);
    await new Promise((r) => setTimeout(r, 1300));
    const now = new Date();
    const { settled } = await store.nodes.expire((record, node) => settleLostJob(record, node, now));
    assert.equal(settled.length, 1);
    const [{ record, requeued }] = settled as [(typeof settled)[0]];
    assert.equal(requeued, true);
    assert.equal(record.attempt, 2);
    assert.deepEqual(
      record.attempts.map((x) => [x.attempt, x.node, x.gpus, x.cause, x.retried, x.logEnd]),
      [[1, 'gone', ['GPU-gone'], 'node_lost', true, 2]],
    );
    assert.equal(record.notBefore, new Date(now.getTime() + 60_000).toISOString(), 'the backoff applies to every retry');
  });
}

describe('SQLite', () => {
  contract(async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-attempts-'));
    const store = await openSqliteStore(dir);
    t.after(() => store.close());
    return {
      store,
      reopen: async () => {
        await store.close();
        const again = await openSqliteStore(dir);
        t.after(() => again.close());
        return again;
      },
    };
  });
});

describe('PostgreSQL', () => {
  let cluster: TestPostgres;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster.destroy());
  let databases = 0;
  contract(async (t) => {
    const url = await createDatabase(cluster.url, `attempts${process.pid}_${++databases}`);
    const store = await openPostgresStore({ url, node: 'a' });
    t.after(() => store.close());
    return {
      store,
      reopen: async () => {
        const again = await openPostgresStore({ url, node: 'b' });
        t.after(() => again.close());
        return again;
      },
    };
  });
});
