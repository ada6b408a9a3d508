import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { frozenJson } from '../../src/api/frozen-json.js';
import type { Principal } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import type { JobService } from '../../src/jobs/service.js';
import { IdempotencyConflictError, NotFoundError, PolicyViolationError, UnsatisfiableSpecError } from '../../src/model/errors.js';
import type { Job, JobSpec } from '../../src/model/job.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import { jobServiceOn } from '../helpers/domain.js';

// JobService against a real SQLite store: views and their JSON are reused
// only while the job is unchanged, and the guarantees that must not depend
// on the store being synchronous (idempotent submits racing each other,
// a cancel racing the scheduler) hold through the store's own constraints.

const owner: Principal = { owner: 'team-a', scopes: new Set(['submit', 'read', 'cancel']), isAdmin: false };
const other: Principal = { owner: 'team-b', scopes: new Set(['submit', 'read', 'cancel']), isAdmin: false };
const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });

async function setup(t: { after(fn: () => unknown): void }) {
  const store = await openSqliteStore(fs.mkdtempSync(path.join(os.tmpdir(), 'jobs-')));
  t.after(() => store.close());
  const config = loadConfig({ GANTRY_DATA_DIR: os.tmpdir() });
  const { service, events, queue } = jobServiceOn(store, config, async (s) =>
    (s.gpus?.count ?? 0) > 2 ? { path: 'gpus', message: 'this host has 2' } : null,
  );
  const add = async (s: JobSpec = spec()) => (await service.submit(owner, s, { idempotencyKey: null, requestId: null })).job.id;
  return { store, events, queue, service, add };
}

const polled = async (service: JobService, id: string) => JSON.parse(frozenJson(await service.get(owner, id))) as Job;

test('a started job keeps one frozen view, and its JSON, until it changes', async (t) => {
  const { service, add } = await setup(t);
  const id = await add();
  await service.transition(id, 'starting');
  await service.transition(id, 'running', { startedAt: new Date().toISOString(), containerId: 'c1' });
  const first = await service.get(owner, id);
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first.spec) && Object.isFrozen(first.spec.command), 'frozen all the way down');
  assert.equal(await service.get(owner, id), first, 'unchanged job, same view');
  assert.equal(frozenJson(first), JSON.stringify(first));

  await service.patch(id, { result: 'half way' });
  assert.notEqual(await service.get(owner, id), first, 'a patch replaces the view');
  assert.equal((await polled(service, id)).result, 'half way');

  await service.transition(id, 'succeeded', { exitCode: 0, finishedAt: new Date().toISOString() });
  const done = await polled(service, id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.exitCode, 0);
  assert.equal(done.result, 'half way');
});

test('a finished job is served from memory, and only to whoever may see it', async (t) => {
  const { service, add, store } = await setup(t);
  const id = await add();
  await service.transition(id, 'cancelled', { finishedAt: new Date().toISOString(), reason: 'x' });
  const view = await service.findVisible(owner, id);
  assert.equal(view?.state, 'cancelled');
  await store.close(); // no store read is needed any more
  assert.equal(await service.findVisible(owner, id), view);
  assert.equal(await service.findVisible(other, id), undefined, "another owner's job is not visible");
  assert.equal(await service.findVisible({ ...other, isAdmin: true }, id), view);
});

test('a queued job is viewed afresh on every poll, so its position follows the queue', async (t) => {
  const { service, add } = await setup(t);
  const a = await add();
  const b = await add();
  assert.equal((await polled(service, b)).position, 1);
  assert.equal(Object.isFrozen(await service.get(owner, b)), false);
  await service.cancel(owner, a);
  assert.equal((await polled(service, b)).position, 0);
  assert.equal((await polled(service, a)).state, 'cancelled');
  const urgent = await add(spec({ priority: 5 }));
  assert.deepEqual(await Promise.all([urgent, b].map(async (id) => (await polled(service, id)).position)), [0, 1]);
});

test('submits with one idempotency key racing each other make one job; another body with the key is refused', async (t) => {
  const { service, store } = await setup(t);
  const results = await Promise.all(
    Array.from({ length: 20 }, () => service.submit(owner, spec({ name: 'same' }), { idempotencyKey: 'k1', requestId: null })),
  );
  assert.equal(new Set(results.map((r) => r.job.id)).size, 1);
  assert.equal(results.filter((r) => r.created).length, 1);
  assert.equal((await store.jobs.list({ limit: 100 })).length, 1);
  await assert.rejects(service.submit(owner, spec({ name: 'other' }), { idempotencyKey: 'k1', requestId: null }), IdempotencyConflictError);
  const theirs = await service.submit(other, spec({ name: 'other' }), { idempotencyKey: 'k1', requestId: null });
  assert.ok(theirs.created, 'keys are scoped to the owner');
});

test('a cancel racing the scheduler never overwrites the state it set, and vice versa', async (t) => {
  const { service, add, events, store } = await setup(t);
  // A node took the job (still `queued` in the store) and moves it on while the cancel is asked.
  const id = await add();
  await store.jobs.update(id, { node: 'node-1' });
  const asked: string[] = [];
  events.onCancelRequested((j) => asked.push(j));
  const [cancelled, started] = await Promise.all([service.cancel(owner, id), service.transition(id, 'starting')]);
  const after = await store.jobs.get(id);
  if (started === undefined) {
    // The cancel came first: a queued job ends at once, even one a node took, and its step is refused quietly.
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(after?.state, 'cancelled');
    assert.deepEqual(asked, []);
  } else {
    // The step came first: the run is asked to stop, and finds the request on the job.
    assert.equal(after?.state, 'starting');
    assert.equal(after?.cancelRequested, true);
    assert.deepEqual(asked, [id]);
  }

  // Not taken: the cancel ends it, and a late step of the scheduler is refused quietly.
  const queued = await add();
  assert.equal((await service.cancel(owner, queued)).state, 'cancelled');
  assert.equal(await service.transition(queued, 'starting'), undefined);
  assert.equal((await service.get(owner, queued)).state, 'cancelled');
});

test('a queued job never holds a cancel: one a node took ends at once, and a requeue of a job whose cancel was asked ends it cancelled', async (t) => {
  const { service, add, store } = await setup(t);
  const fence = { node: 'node-1', attempt: 1, epoch: 1 };
  const taken = await add();
  await store.jobs.update(taken, { node: 'node-1' });
  const ended = await service.cancel(owner, taken);
  assert.equal(ended.state, 'cancelled', 'a claimed job that never started is ended by the cancel itself');
  assert.equal((await store.jobs.get(taken))?.cancelRequested, false);

  // Pulling when the cancel is asked, then sent back to the queue (the engine went away).
  const pulling = await add();
  await store.jobs.update(pulling, { node: 'node-1' });
  await service.transition(pulling, 'pulling', {}, fence);
  assert.equal((await service.cancel(owner, pulling)).state, 'pulling');
  const back = await service.requeue(pulling, fence);
  assert.equal(back?.state, 'cancelled', 'never queued again once its cancel was asked');
  assert.equal(back?.attempts.length, 1, 'its attempt is recorded');
  assert.equal(back?.attempts[0]?.outcome, 'cancelled');

  // The store itself refuses a requeue once a cancel was asked: one that slips between the read and the write.
  const running = await add();
  await store.jobs.update(running, { node: 'node-1', state: 'running', cancelRequested: true });
  assert.equal(await store.jobs.update(running, { state: 'queued', node: null }, { state: 'running', fence }), undefined);
  assert.equal((await store.jobs.get(running))?.state, 'running');
});

test('the domain says what is wrong in its own terms, with spec-relative paths', async (t) => {
  const { service } = await setup(t);
  const refused = await service
    .submit(owner, spec({ image: 'docker.io/evil:1' }), { idempotencyKey: null, requestId: null })
    .catch((e) => e);
  assert.ok(refused instanceof PolicyViolationError);
  assert.deepEqual(
    refused.errors.map((e: { path: string }) => e.path),
    ['image'],
  );
  const impossible = await service.submit(owner, spec({ gpus: { count: 3 } }), { idempotencyKey: null, requestId: null }).catch((e) => e);
  assert.ok(impossible instanceof UnsatisfiableSpecError);
  assert.deepEqual(impossible.errors, [{ path: 'gpus', message: 'this host has 2' }]);
  await assert.rejects(service.get(owner, 'nope'), NotFoundError);
});

test('a transition checked against a cached record that lags the store reads the store before refusing', async (t) => {
  const { store, add } = await setup(t);
  const id = await add();
  const queued = (await store.jobs.get(id, { fresh: true }))!;
  await store.jobs.update(id, { state: 'starting', node: 'n1', nodeEpoch: 1 });
  // The cache still holds the record from before this node's own claim (its announcement is on its way).
  const lagging = {
    ...store.jobs,
    get: (jobId: string, o?: { fresh?: boolean }) => (o?.fresh ? store.jobs.get(jobId, o) : Promise.resolve(queued)),
  };
  Object.setPrototypeOf(lagging, store.jobs);
  const { service } = jobServiceOn({ ...store, jobs: lagging } as typeof store, loadConfig({ GANTRY_DATA_DIR: os.tmpdir() }));
  const fence = { node: 'n1', attempt: 1, epoch: 1 };
  const running = await service.transition(id, 'running', { startedAt: new Date().toISOString() }, fence);
  assert.equal(running?.state, 'running', 'neither an illegal transition (queued → running) nor a fence refusal on the cached word');
  const stranger = { node: 'n2', attempt: 1, epoch: 1 };
  await assert.rejects(
    service.transition(id, 'succeeded', { exitCode: 0 }, stranger),
    /no longer|is now/,
    'the store’s own word still refuses',
  );
});
