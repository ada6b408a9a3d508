import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gpuInjection } from '../../src/gpu/inject.js';
import { StoreUnavailableError } from '../../src/model/errors.js';
import type { Job } from '../../src/model/job.js';
import { containerSpec } from '../../src/runner/container-spec.js';
import type { Store } from '../../src/store/store.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { RUN_SETTINGS } from '../helpers/records.js';

// The scheduler and one job's run, driven against an in-memory container
// runtime and a real SQLite store: every way a job can end, in milliseconds.
// test/integration/ covers the same paths against the real engine.

import { config, harness, owner, spec } from '../helpers/scheduler-harness.js';

const running = (j: Job) => j.state === 'running';

test('a job runs to success: output captured, result kept, container removed', async (t) => {
  const h = await harness(t);
  const id = await h.submit();
  await h.until(id, running);
  const c = await h.runtime.containerOf(id);
  h.runtime.write(c.id, 'hello\nresult=42\n');
  h.runtime.exit(c.id, 0);
  const done = await h.until(id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.exitCode, 0);
  assert.equal(done.result, 'result=42');
  assert.deepEqual(await h.lines(id), ['hello', 'result=42']);
  assert.equal(h.runtime.containers.size, 0, 'removed once the end is recorded');
  assert.equal(c.spec.labels['dev.gantry.job-id'], id);
  assert.equal(c.spec.network, 'none');
});

test('a non-zero exit fails the job with the code; an OOM kill says so', async (t) => {
  const h = await harness(t);
  const a = await h.submit();
  const b = await h.submit(spec({ resources: { memoryMiB: 64 } }));
  await h.until(a, running);
  await h.until(b, running);
  h.runtime.exit((await h.runtime.containerOf(a)).id, 3);
  h.runtime.exit((await h.runtime.containerOf(b)).id, 137, { oomKilled: true });
  assert.deepEqual([(await h.until(a)).state, (await h.until(a)).reason], ['failed', 'exited with code 3']);
  const oom = await h.until(b);
  assert.equal(oom.state, 'failed');
  assert.equal(oom.reason, 'OOMKilled: the container exceeded its memory limit of 64 MiB');
});

test('a job past its timeout is stopped and ends timed_out', async (t) => {
  const h = await harness(t);
  const id = await h.submit(spec({ timeoutSeconds: 1 }));
  const done = await h.until(id, undefined, 4000);
  assert.equal(done.state, 'timed_out');
  assert.equal(done.exitCode, 143);
  assert.match(done.reason!, /exceeded its timeout of 1 s/);
  assert.ok(h.runtime.calls.includes('stop'));
});

test('cancel: a queued job never gets a container; a running one is stopped and ends cancelled', async (t) => {
  const h = await harness(t);
  h.runtime.goAway({ liveRestore: true }); // nothing starts while the engine is away
  const queued = await h.submit();
  assert.equal((await h.jobs.cancel(owner, queued)).state, 'cancelled');
  h.runtime.comeBack();
  const id = await h.submit();
  await h.until(id, running);
  await h.jobs.cancel(owner, id);
  const done = await h.until(id);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.reason, 'cancelled by request');
  // Cancelled while queued, or (had the scheduler taken it already) before it started: either way no container.
  assert.match((await h.until(queued)).reason!, /^cancelled (while queued|before it started)$/);
  assert.equal(h.runtime.calls.filter((op) => op === 'create').length, 1, 'only the second job got a container');
  assert.equal(h.runtime.containers.size, 0);
});

test("create and start failures fail the job with the engine's words", async (t) => {
  const h = await harness(t);
  h.runtime.failNext('create', 'Conflict. The container name is already in use');
  const a = await h.submit();
  const createFailed = await h.until(a);
  assert.equal(createFailed.state, 'failed');
  assert.equal(createFailed.reason, 'could not create the container: Conflict. The container name is already in use');
  h.runtime.failNext('start', 'OCI runtime create failed: exec: "nope": executable file not found');
  const b = await h.submit();
  const startFailed = await h.until(b);
  assert.equal(startFailed.reason, 'the container did not start: OCI runtime create failed: exec: "nope": executable file not found');
  assert.equal(h.runtime.containers.size, 0, 'the failed container is removed');
});

test('a store that cannot take the end (disk full) keeps the outcome and records it once it can', async (t) => {
  let refuse = 2;
  const h = await harness(t, {
    store: (s) => ({
      ...s,
      jobs: Object.assign(Object.create(s.jobs) as Store['jobs'], {
        update: async (...args: Parameters<Store['jobs']['update']>) => {
          if (args[1].finishedAt !== undefined && refuse > 0) {
            refuse -= 1;
            throw new StoreUnavailableError('full', 'database or disk is full');
          }
          return s.jobs.update(...args);
        },
      }),
    }),
  });
  const id = await h.submit();
  await h.until(id, running);
  const c = await h.runtime.containerOf(id);
  h.runtime.write(c.id, 'done\n');
  h.runtime.exit(c.id, 0);
  const done = await h.until(id, undefined, 10_000);
  assert.equal(done.state, 'succeeded', 'the real outcome, not a storage error');
  assert.equal(refuse, 0);
  assert.equal(h.runtime.containers.size, 0, 'the container stayed until the end was recorded, then went');
});

test('after a restart, a running container is re-adopted: no line lost or repeated, the job ends normally', async (t) => {
  const first = await harness(t);
  const id = await first.submit();
  await first.until(id, running);
  const c = await first.runtime.containerOf(id);
  first.runtime.write(c.id, 'one\ntwo\n');
  await new Promise((r) => setTimeout(r, 60)); // captured and flushed
  const second = await first.restart();
  second.runtime.write(c.id, 'three\n');
  second.runtime.exit(c.id, 0);
  const done = await second.until(id);
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(await second.lines(id), ['one', 'two', 'three']);
});

test('a container created but never started before a restart is started then', async (t) => {
  const runtime = new FakeRuntime();
  const h0 = await harness(t, { runtime });
  const id = await h0.submit();
  await h0.until(id, running);
  // Play an earlier Gantry that stopped between create and start: the job reads `starting`.
  await h0.store.jobs.update(id, { state: 'starting' });
  const c = await runtime.containerOf(id);
  c.state = 'created';
  const h = await h0.restart();
  await h.until(id, running);
  runtime.exit(c.id, 0);
  assert.equal((await h.until(id)).state, 'succeeded');
});

test('a shutdown while a container is being created waits for the create, starts nothing, and the next start starts it', async (t) => {
  const runtime = new FakeRuntime();
  const h0 = await harness(t, { runtime });
  const release = runtime.holdNext('create');
  const id = await h0.submit();
  await h0.until(id, (j) => j.state === 'starting');
  let shut = false;
  const shutdown = h0.scheduler.shutdown().then(() => (shut = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(shut, false, 'the shutdown waits for the create in flight');
  release();
  await shutdown;
  const c = await runtime.containerOf(id);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.state, 'created', 'no container is started once the node shuts down');
  assert.equal(runtime.calls.includes('start'), false);
  const h = await h0.restart();
  await h.until(id, running);
  runtime.exit(c.id, 0);
  assert.equal((await h.until(id)).state, 'succeeded');
  assert.equal(runtime.calls.filter((op) => op === 'create').length, 1, 'the one container it made');
});

test('the engine away: jobs wait in the queue with a reason and start when it answers', async (t) => {
  const h = await harness(t);
  h.runtime.goAway({ liveRestore: true });
  const id = await h.submit();
  const waiting = await h.until(id, (j) => j.reason?.includes('container engine') === true);
  assert.equal(waiting.state, 'queued');
  assert.match(waiting.reason!, /waiting for the container engine, which is unreachable: connect ENOENT/);
  h.runtime.comeBack();
  await h.until(id, running, 10_000);
  h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
  assert.equal((await h.until(id)).state, 'succeeded');
});

test('the engine going away under a running job: with live-restore the job carries on; without, its reason says why it stopped', async (t) => {
  const h = await harness(t);
  const kept = await h.submit();
  await h.until(kept, running);
  const c = await h.runtime.containerOf(kept);
  h.runtime.write(c.id, 'before\n');
  await new Promise((r) => setTimeout(r, 60));
  h.runtime.goAway({ liveRestore: true });
  await new Promise((r) => setTimeout(r, 50));
  h.runtime.comeBack();
  await new Promise((r) => setTimeout(r, 700)); // the first probe is after 500 ms
  h.runtime.write(c.id, 'after\n');
  h.runtime.exit(c.id, 0);
  const done = await h.until(kept, undefined, 10_000);
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(await h.lines(kept), ['before', 'after']);

  const lost = await h.submit();
  await h.until(lost, running);
  h.runtime.goAway({ liveRestore: false });
  await new Promise((r) => setTimeout(r, 50));
  h.runtime.comeBack();
  const ended = await h.until(lost, undefined, 10_000);
  assert.equal(ended.state, 'failed');
  assert.equal(ended.exitCode, 143);
  assert.match(ended.reason!, /stopped while the container engine was away .*enable live-restore/);
});

test("the container spec the runtime gets is built from the checked spec and Gantry's own labels", () => {
  const s = containerSpec(
    {
      jobId: 'j',
      attempt: 1,
      owner: 'o',
      spec: spec({ labels: { 'dev.gantry.job-id': 'forged' } }),
      settings: RUN_SETTINGS,
      mounts: [],
      runEnv: {},
      gpu: gpuInjection(config.gpus, [], null),
    },
    config,
  );
  assert.equal(s.labels['dev.gantry.job-id'], 'j', "a job's labels cannot forge Gantry's");
});

test('the engine gone between create and start: the run waits for it and starts the container it made', async (t) => {
  const h = await harness(t);
  h.runtime.awayAt('start', 100);
  const id = await h.submit();
  await h.until(id, running, 10_000);
  assert.equal(h.runtime.calls.filter((op) => op === 'create').length, 1, 'no second container');
  const c = await h.runtime.containerOf(id);
  h.runtime.write(c.id, 'ran\n');
  h.runtime.exit(c.id, 0);
  const done = await h.until(id);
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(await h.lines(id), ['ran']);
});
