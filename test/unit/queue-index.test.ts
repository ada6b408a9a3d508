import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobSpec } from '../../src/model/job.js';
import { QueueIndex } from '../../src/scheduling/queue-index.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import type { JobRecord } from '../../src/store/store.js';
import { prng, jobRecord as record } from '../helpers/records.js';

const inQueueOrder = (a: JobRecord, b: JobRecord) => b.priority - a.priority || a.seq - b.seq;

test('the index keeps queue order and positions through random puts and deletes', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const rnd = prng(seed);
    const index = new QueueIndex();
    const model = new Map<string, JobRecord>();
    for (let step = 0; step < 400; step++) {
      if (rnd() < 0.65 || model.size === 0) {
        const r = record(step, { priority: Math.floor(rnd() * 3) - 1 });
        index.put(r);
        model.set(r.id, r);
      } else {
        const victim = [...model.keys()][Math.floor(rnd() * model.size)]!;
        assert.equal(index.delete(victim), true);
        model.delete(victim);
      }
      const expected = [...model.values()].sort(inQueueOrder);
      assert.deepEqual(
        [...index.inOrder()].map((r) => r.id),
        expected.map((r) => r.id),
        `seed ${seed} step ${step}`,
      );
      const probe = expected[Math.floor(rnd() * expected.length)];
      if (probe) assert.equal(index.position(probe.id), expected.indexOf(probe));
      const p = Math.floor(rnd() * 3) - 1;
      assert.equal(index.placeFor(p), expected.filter((r) => r.priority >= p).length);
    }
  }
});

test('walking the index while a pass takes jobs out of it skips none and gives none twice', () => {
  const index = new QueueIndex();
  for (let i = 0; i < 20; i++) index.put(record(i, { priority: i % 3 }));
  const seen: string[] = [];
  for (const r of index.inOrder()) {
    seen.push(r.id);
    // A claim removes the job just read, and a job already read is replaced (a patch).
    if (r.seq % 2 === 0) index.delete(r.id);
    else index.put({ ...r });
    // A job arriving behind the walk is reached too; one ahead of it is not.
    if (r.seq === 5) index.put(record(100, { priority: -1 }));
  }
  assert.equal(new Set(seen).size, seen.length, 'none twice');
  assert.equal(seen.length, 21, 'none skipped');
});

test('the queue state: only untaken queued jobs, misfits apart, backoff runnable by the clock', async () => {
  const q = new QueueState(undefined, (r) =>
    r.spec.placement?.node === 'other' ? { path: 'placement.node', message: 'not this node' } : null,
  );
  const ready: string[] = [];
  q.onReady(() => ready.push('kick'));
  const gpu = record(1, { spec: { image: 'local/busybox', command: ['true'], gpus: { count: 1 } } as JobSpec });
  const cpu = record(2);
  const elsewhere = record(3, { spec: { image: 'local/busybox', command: ['true'], placement: { node: 'other' } } as JobSpec });
  const later = record(4, { notBefore: new Date(Date.now() + 150).toISOString() });
  for (const r of [gpu, cpu, elsewhere, later]) q.observe(r);
  assert.deepEqual(
    [...q.all.inOrder()].map((r) => r.id),
    ['j1', 'j2', 'j3', 'j4'],
  );
  const runnable = (skip: (owner: string, gpu: boolean) => boolean = () => false) => [...q.runnableInOrder(skip)].map((r) => r.id);
  assert.deepEqual(runnable(), ['j1', 'j2']);
  assert.deepEqual(
    runnable((_, gpu) => gpu),
    ['j2'],
  );
  assert.equal(q.waiting(elsewhere).code, 'not_here');
  assert.equal(q.waiting(later).code, 'backoff');
  assert.equal(q.waiting(later).estimatedStartAt, later.notBefore);
  await new Promise((r) => setTimeout(r, 250));
  assert.deepEqual(ready, ['kick'], 'the end of a backoff wakes the scheduler');
  assert.deepEqual(
    runnable((_, gpu) => gpu),
    ['j2', 'j4'],
  );
  // Taken by a node: out of the queue, counted as active until it ends.
  q.observe({ ...gpu, node: 'a' });
  assert.deepEqual(q.activeOf(['o']), { jobs: 1, gpus: 1 });
  q.observe({ ...gpu, node: 'a', state: 'running', gpus: ['GPU-x'] });
  assert.deepEqual(q.activeOf(['o']), { jobs: 1, gpus: 1 });
  q.observe({ ...gpu, node: 'a', state: 'succeeded' });
  assert.deepEqual(q.activeOf(['o']), { jobs: 0, gpus: 0 });
  q.observe({ ...cpu, state: 'cancelled' });
  q.drop('j3');
  assert.deepEqual(
    [...q.all.inOrder()].map((r) => r.id),
    ['j4'],
  );
  assert.equal(q.position('j4'), 0);
  assert.equal(q.position('j1'), null);
});
