import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Job } from '../../src/model/job.js';
import type { JobRecord, Store } from '../../src/store/store.js';
import { harness, owner, spec } from '../helpers/scheduler-harness.js';

// The rule of the queue: a job whose cancel was asked is never requeued (it
// ends cancelled, its attempt recorded), and a queued job never holds a
// cancel. Each test makes a cancel land at the worst moment of a requeue
// path: between the run's read of the job and its write sending the job back.

const running = (j: Job) => j.state === 'running';

/**
 * Wraps the store: every job record it hands back is kept (to check that
 * none was ever queued holding a cancel), and `cancelBeforeRequeue` makes
 * the cancel land right before the next write that requeues the job, as a
 * cancel through another node would.
 */
function watched() {
  const seen: JobRecord[] = [];
  let cancelNext = false;
  const wrap = (s: Store): Store => ({
    ...s,
    jobs: Object.assign(Object.create(s.jobs) as Store['jobs'], {
      update: async (...args: Parameters<Store['jobs']['update']>) => {
        const [id, patch] = args;
        if (cancelNext && patch.state === 'queued') {
          cancelNext = false;
          await s.jobs.update(id, { cancelRequested: true });
        }
        const record = await s.jobs.update(...args);
        if (record) seen.push(record);
        return record;
      },
    }),
  });
  return {
    wrap,
    seen,
    cancelBeforeRequeue() {
      cancelNext = true;
    },
    queuedWithCancel: () => seen.filter((r) => r.state === 'queued' && r.cancelRequested),
  };
}

test('a retry rule never requeues a job whose cancel landed just before the requeue: it ends cancelled, its attempt recorded', async (t) => {
  const w = watched();
  const h = await harness(t, { store: w.wrap });
  const id = await h.submit(spec({ retry: { maxAttempts: 3, on: ['exit_code'] } }));
  await h.until(id, running);
  w.cancelBeforeRequeue();
  h.runtime.exit((await h.runtime.containerOf(id)).id, 1);
  const done = await h.until(id);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.attempt, 1, 'no second attempt was queued or claimed');
  assert.equal(done.attempts.length, 1);
  assert.equal(done.attempts[0]?.outcome, 'failed');
  assert.equal(done.attempts[0]?.retried, false);
  assert.deepEqual(w.queuedWithCancel(), []);
});

test('the engine-away requeue of a job whose cancel landed meanwhile ends it cancelled, never queued with its cancel', async (t) => {
  const w = watched();
  const h = await harness(t, { store: w.wrap });
  h.runtime.awayAt('create', 50);
  w.cancelBeforeRequeue();
  const id = await h.submit();
  const done = await h.until(id);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.attempts.length, 1, 'the attempt cut short is recorded');
  assert.equal(done.attempts[0]?.outcome, 'cancelled');
  assert.equal(h.runtime.containers.size, 0);
  assert.deepEqual(w.queuedWithCancel(), []);
});

/** Makes every image pull of the runtime hang, as a slow registry would, until `release` is called. */
function slowPulls(runtime: { pullImage(image: string): Promise<void> }) {
  const pull = runtime.pullImage.bind(runtime);
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => {
    release = r;
  });
  runtime.pullImage = async (image) => {
    await released;
    await pull(image);
  };
  return { release };
}

test('Gantry restarted during an image pull: the job goes back to the queue as the same attempt and runs', async (t) => {
  let h = await harness(t);
  const pulls = slowPulls(h.runtime);
  const id = await h.submit(spec({ pullPolicy: 'always' }));
  await h.until(id, (j) => j.state === 'pulling');
  h = await h.restart();
  pulls.release();
  const started = await h.until(id, running);
  assert.equal(started.attempt, 1, 'the same attempt: nothing of it had run');
  assert.deepEqual(started.attempts, []);
  h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
  const done = await h.until(id);
  assert.equal(done.state, 'succeeded');
});

test('Gantry restarted during the pull of a job whose cancel was asked: it ends cancelled, never queued again', async (t) => {
  const w = watched();
  let h = await harness(t, { store: w.wrap });
  const pulls = slowPulls(h.runtime);
  const id = await h.submit(spec({ pullPolicy: 'always' }));
  await h.until(id, (j) => j.state === 'pulling');
  await h.jobs.cancel(owner, id);
  h = await h.restart();
  pulls.release();
  const done = await h.until(id);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.attempts.length, 1);
  assert.equal(done.attempts[0]?.outcome, 'cancelled');
  assert.equal(h.runtime.containers.size, 0);
  assert.deepEqual(w.queuedWithCancel(), []);
});

test('a running job whose container vanished while Gantry was stopped still fails, saying so', async (t) => {
  let h = await harness(t);
  const id = await h.submit();
  await h.until(id, running);
  // Removed behind Gantry's back: the restarted node finds no container for its running job.
  h.runtime.containers.delete((await h.runtime.containerOf(id)).id);
  h = await h.restart();
  const done = await h.until(id);
  assert.equal(done.state, 'failed');
  assert.match(done.reason ?? '', /vanished/);
  assert.equal(done.attempt, 1);
});
